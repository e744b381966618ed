"""The architecture space's blocks and image builder: every block builds and trains with its documented
parameter count, points that cannot be realized are refused naming the key, and an architecture is a task."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from optbench.cli.main import app
from optbench.core.errors import ConfigError
from optbench.nas import BLOCKS, ImageArchitecture, block_parameters, make_block
from optbench.nas.sequence import SequenceArchitecture
from optbench.tasks import get_task


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


CASES = [  # (c_in, c_out, kernel, stride, norm, expansion of inverted)
    (8, 8, 3, 1, "batch", 4), (8, 16, 3, 2, "batch", 6), (6, 12, 5, 1, "none", 1), (12, 12, 1, 2, "none", 2),
]


@pytest.mark.parametrize("kind", BLOCKS)
@pytest.mark.parametrize("case", CASES)
def test_every_block_builds_trains_and_has_its_formula_count(kind: str, case: tuple) -> None:
    c_in, c_out, kernel, stride, norm, t = case
    expansion = t if kind == "inverted" else None
    block = make_block(kind, c_in, c_out, kernel=kernel, stride=stride, norm=norm, activation="relu6",
                       expansion=expansion)
    assert _count(block) == block_parameters(kind, c_in, c_out, kernel=kernel, stride=stride, norm=norm,
                                             expansion=expansion)
    x = torch.randn(3, c_in, 8, 8, requires_grad=True)
    out = block(x)
    assert out.shape == (3, c_out, 8 // stride, 8 // stride)
    out.square().mean().backward()
    assert x.grad is not None and all(p.grad is not None for p in block.parameters())


def test_hand_counts_of_two_blocks() -> None:
    # inverted 8 -> 8, t = 4, k = 3, batch norm: expand 8*32 + 64, depthwise 9*32 + 64, project 32*8 + 16
    assert block_parameters("inverted", 8, 8, kernel=3, stride=1, norm="batch", expansion=4) == 320 + 352 + 272
    # residual 8 -> 16 stride 2, no norm: 9*8*16+16, 9*16*16+16, shortcut 8*16+16
    assert block_parameters("residual", 8, 16, kernel=3, stride=2, norm="none") == 1168 + 2320 + 144


ARCHS = [
    ImageArchitecture(),
    ImageArchitecture(channels=(8, 16, 24), depth=2, block="inverted", expansion=6, activation="relu6", width=0.5),
    ImageArchitecture(channels=(16,), block="separable", kernel=5, norm="none", dropout=0.2, resolution=1.5),
    ImageArchitecture(channels=(8, 16), depth=3, block="residual", activation="silu", width=1.5, resolution=0.5),
]


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.describe())
def test_networks_have_their_formula_count_and_shapes(arch: ImageArchitecture) -> None:
    net = arch.build(1, 10, 8)
    assert _count(net) == arch.parameters(1, 10)
    assert net(torch.randn(4, 1, 8, 8)).shape == (4, 10)


def test_conditional_expansion_and_unrealizable_points_name_their_key() -> None:
    assert "t=" not in ImageArchitecture(block="residual").describe()
    assert "inverted t=3" in ImageArchitecture(block="inverted", expansion=3).describe()
    bad = {
        "channels": ImageArchitecture(channels=(8, 8, 8, 8, 8)),  # 5 stages on 8 x 8: 8 -> 4 -> 2 -> 1 -> 0
        "expansion of block plain": ImageArchitecture(expansion=4),
        "expansion": ImageArchitecture(block="inverted"),
        "block": ImageArchitecture(block="dense"),
        "kernel": ImageArchitecture(channels=(8, 8, 8, 8), kernel=5),  # last stage 1 x 1
        "width": ImageArchitecture(width=0.0),
    }
    for key, arch in bad.items():
        with pytest.raises(ConfigError, match=f"invalid {key} "):
            arch.build(1, 10, 8)


def test_an_architecture_is_a_task_and_a_bad_one_exits_2(tmp_path) -> None:
    task = get_task("nas_cnn[block=inverted,expansion=4,channels=8-16,depth=2]")
    assert task.name == "nas_cnn[block=inverted,channels=8-16,depth=2,expansion=4]"
    assert "inverted t=4 k3 [8x2, 16x2]" in task.description
    model = task.make_model()
    assert f"{_count(model):,} parameters" in task.description
    result = CliRunner().invoke(app, ["compare", "--task", "nas_cnn[block=dense]", "--optimizers", "adam",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "invalid block 'dense'" in result.output
    assert not (tmp_path / "out").exists()


SEQUENCES = [
    SequenceArchitecture("lstm", layers=2, width=16),
    SequenceArchitecture("gru", layers=1, width=24, dropout=0.1),
    SequenceArchitecture("transformer", layers=2, width=16, heads=4),
]


@pytest.mark.parametrize("arch", SEQUENCES, ids=lambda a: a.describe())
def test_sequence_cells_build_train_and_have_their_formula_count(arch: SequenceArchitecture) -> None:
    net = arch.build(1, 40, 10)
    assert _count(net) == arch.parameters(1, 40, 10)
    out = net(torch.randn(5, 40))
    assert out.shape == (5, 10)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_sequence_conditional_heads() -> None:
    assert "heads" not in SequenceArchitecture("lstm").describe()
    for arch, key in ((SequenceArchitecture("gru", heads=2), "heads of cell gru"),
                      (SequenceArchitecture("transformer", width=10, heads=4), "heads"),
                      (SequenceArchitecture("transformer", width=8), "heads"),
                      (SequenceArchitecture("rnn"), "cell")):
        with pytest.raises(ConfigError, match=f"invalid {key} "):
            arch.build(1, 40, 10)
    assert "transformer 1x32 heads 4" in get_task("nas_seq[cell=transformer,width=32,heads=4]").description


def test_a_parameter_budget_is_a_hard_constraint() -> None:
    fits = get_task("nas_cnn[channels=8-16,max_params=100000]")
    assert "parameters" in fits.description
    with pytest.raises(ConfigError, match="invalid task nas_seq max_params 1000; allowed: a budget of at least"):
        get_task("nas_seq[cell=lstm,width=32,max_params=1000]")


def test_a_latency_budget_is_a_hard_constraint_measured_here() -> None:
    import re

    state = torch.random.get_rng_state()
    for ref in ("nas_cnn[channels=8-16,max_latency_ms=10000]", "nas_seq[cell=gru,width=16,max_latency_ms=10000]"):
        assert "parameters" in get_task(ref).description  # a generous budget passes
    for ref, key in (("nas_cnn[channels=8-16,max_latency_ms=0.000001]", "nas_cnn"),
                     ("nas_seq[cell=transformer,width=16,heads=2,max_latency_ms=0.000001]", "nas_seq")):
        with pytest.raises(ConfigError, match=f"invalid task {key} max_latency_ms 1e-06; allowed: a budget of "
                                              "at least") as info:
            get_task(ref)
        measured = float(re.search(r"at least ([0-9.e+-]+) ms", str(info.value)).group(1))
        assert 0 < measured < 10000 and "batch 1" in str(info.value) and "machine-dependent" in str(info.value)
        assert len(str(info.value).splitlines()) == 1
    assert torch.equal(state, torch.random.get_rng_state())  # measuring leaves the global RNG alone
    for ref in ("nas_cnn[max_latency_ms=-1]", "nas_seq[max_latency_ms=-0.5]"):
        with pytest.raises(ConfigError, match="max_latency_ms -.*; allowed: 0 \\(no budget\\) or a number"):
            get_task(ref)


def test_the_latency_is_model_costs_batch_1_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    from optbench.engine import model_cost

    seen = []

    def timer(model: torch.nn.Module, x: torch.Tensor, **kwargs) -> float:  # stands in for the one timer
        seen.append((model.training, tuple(x.shape)))
        return 12.5

    monkeypatch.setattr(model_cost, "latency_ms", timer)
    with pytest.raises(ConfigError, match="a budget of at least 12.5 ms"):
        get_task("nas_cnn[channels=8-16,max_latency_ms=12]")
    fits = get_task("nas_seq[cell=lstm,width=8,max_latency_ms=13]")
    assert fits.name == "nas_seq[cell=lstm,max_latency_ms=13,width=8]"
    assert seen == [(False, (1, 1, 8, 8)), (False, (1, 40))]  # eval mode, batch 1, the task's input shape
    assert get_task("nas_cnn[channels=8-16]") and len(seen) == 2  # no budget: nothing measured


def test_a_search_stores_points_over_the_latency_budget_as_failed_trials() -> None:
    from optbench.core.spec import Recipe, RunStatus
    from optbench.search import SearchConfig, parse_space
    from optbench.search.local import run_search_local

    space, problems = parse_space({"task.channels": {"choices": ["8", "8-16"]},
                                   "task.max_latency_ms": {"choices": [0.000001, 10000.0]}}, "t.toml", task="nas_cnn")
    assert problems == []
    base = Recipe("adam", {"lr": 1e-2}, batch_size=64, epochs=1, train_size=200)
    outcome = run_search_local("nas_cnn", "nas_cnn", base, SearchConfig(space=space, sampler="random", n_trials=4,
                                                                        seed=0))
    assert len(outcome.trials) == 4
    for t in outcome.trials:
        if t.params["task.max_latency_ms"] < 1:  # recorded with the reason, never trained
            assert t.result.status is RunStatus.FAILED and not t.result.epochs
            assert "unrealizable architecture" in t.result.error and "max_latency_ms" in t.result.error
            assert " ms (this architecture's median forward latency" in t.result.error
        else:
            assert t.result.status is RunStatus.FINISHED
    assert {t.result.status for t in outcome.trials} == {RunStatus.FAILED, RunStatus.FINISHED}


def test_the_image_space_also_runs_on_fashion_mnist_like_fmnist_cnn3() -> None:
    task = get_task("nas_cnn[dataset=fmnist,channels=8-16]")
    reference = get_task("fmnist_cnn3")
    assert "Fashion-MNIST" in task.description and task.valid_size == reference.valid_size == 5000
    assert task.recipe == reference.recipe  # one working recipe, one budget for both
    assert task.make_model()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ConfigError, match="dataset.*digits, fmnist"):
        get_task("nas_cnn[dataset=cifar10]")
