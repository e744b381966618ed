"""Communication-efficient ddp modes: what each sends (bytes per step), that the lossless settings equal plain
DDP, that the lossy ones still train, DiLoCo's outer step, and one-line errors for bad modes."""

from __future__ import annotations

import math
import socket

import pytest
import torch
import torch.distributed as dist
from torch import nn

from optbench.core.errors import ConfigError
from optbench.core.spec import Recipe, RunStatus
from optbench.engine.distributed import DistributedConfig, parse_mode, run_distributed
from optbench.engine.distributed.compression import (
    DILOCO_OUTER_LR,
    DILOCO_OUTER_MOMENTUM,
    Communicator,
    parse_compression,
)

N, B, TRAIN = 2, 16, 512  # 16 steps per epoch
RECIPE = Recipe("sgd", {"lr": 0.1}, batch_size=B, epochs=2, train_size=TRAIN)
PARAMS = 9_610  # digits_mlp: 64-128-10
MODES = ("ddp", "ddp+fp16", "ddp+powersgd:2", "ddp+topk:1", "ddp+topk:0.1", "ddp+local:1", "ddp+local:4",
         "ddp+diloco:4")


@pytest.fixture(scope="module")
def runs() -> dict[str, object]:
    return {mode: run_distributed(DistributedConfig("digits_mlp", RECIPE, mode=mode, nproc=N, keep_state=True,
                                                    timeout=240)) for mode in MODES}


def _bytes(run) -> list[int]:
    return [s.comm_bytes for s in run.steps if s.worker == 0]


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_every_mode_trains_and_records_its_bytes(runs) -> None:
    for mode, run in runs.items():
        assert run.result.status is RunStatus.FINISHED, (mode, run.result.error)
        assert run.result.epochs[-1].metrics["valid_accuracy"] > 0.8, mode
        assert run.result.environment["distributed"]["mode"] == mode
    steps = 2 * TRAIN // (N * B)
    assert _bytes(runs["ddp"]) == [4 * PARAMS] * steps
    assert _bytes(runs["ddp+fp16"]) == [2 * PARAMS] * steps
    assert _bytes(runs["ddp+topk:1"]) == [8 * PARAMS] * steps  # every value and its int32 index
    assert _bytes(runs["ddp+local:4"]) == [0, 0, 0, 4 * PARAMS] * (steps // 4)  # parameters every 4th update
    assert _bytes(runs["ddp+diloco:4"]) == [0, 0, 0, 4 * PARAMS] * (steps // 4)
    topk = _bytes(runs["ddp+topk:0.1"])
    assert 8 * math.ceil(0.1 * PARAMS) <= topk[0] <= 8 * (math.ceil(0.1 * PARAMS) + 3)  # per bucket ceil
    powersgd = _bytes(runs["ddp+powersgd:2"])
    rank2 = 4 * ((64 + 128) * 2 + (10 + 128) * 2 + 128 + 10)  # P and Q of both weight matrices, biases whole
    assert powersgd[:2] == [4 * PARAMS] * 2 and set(powersgd[2:]) == {rank2}  # vanilla first, then rank 2


def test_lossless_settings_equal_plain_ddp(runs) -> None:
    reference = runs["ddp"].final_state
    assert _max_diff(runs["ddp+topk:1"].final_state, reference) < 1e-5  # all entries: the exact average
    assert _max_diff(runs["ddp+local:1"].final_state, reference) < 1e-5  # SGD: averaging models = gradients
    assert 0 < _max_diff(runs["ddp+fp16"].final_state, reference) < 1e-2  # rounded, not changed
    assert _max_diff(runs["ddp+local:4"].final_state, reference) > 1e-4  # local steps do differ


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_diloco_outer_step_is_nesterov_on_the_averaged_delta() -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        model = nn.Linear(3, 2)
        communicator = Communicator(parse_compression("diloco:2"), world_size=1)
        communicator.start(model)
        anchor = [p.detach().clone() for p in model.parameters()]
        with torch.no_grad():
            for p in model.parameters():
                p.sub_(0.5)  # two inner steps moved every parameter by -0.5
        communicator.after_update(model, 1)  # not an outer step yet
        assert all(torch.equal(p, a - 0.5) for p, a in zip(model.parameters(), anchor, strict=True))
        communicator.after_update(model, 2)
        # Nesterov SGD, first step: buffer b = g = 0.5; update = g + momentum * b = 0.5 (1 + momentum)
        expected = [a - DILOCO_OUTER_LR * 0.5 * (1 + DILOCO_OUTER_MOMENTUM) for a in anchor]
        for p, e in zip(model.parameters(), expected, strict=True):
            assert torch.allclose(p, e, atol=1e-6)
        assert communicator.take_bytes() == 4 * sum(p.numel() for p in model.parameters())
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("text", ["ddp+zip", "ddp+topk:0", "ddp+topk:1.5", "ddp+fp16:3", "ddp+local:1.5",
                                  "ddp+powersgd", "ddp+diloco:0", "ps-sync+fp16"])
def test_bad_modes_name_the_allowed_forms(text: str) -> None:
    with pytest.raises(ConfigError, match="allowed"):
        parse_mode(text)


def test_mode_names_are_canonical() -> None:
    assert parse_mode("DDP+TopK:0.010").name == "ddp+topk:0.01"
    assert parse_mode("ddp+powersgd:4.0").name == "ddp+powersgd:4"
    assert parse_mode("ddp+local:8").compression.value == 8
    assert not parse_mode("ddp+diloco:8").has_server


def test_report_data_and_figure_of_accuracy_against_communication(runs) -> None:
    from optbench.analysis.communication import communication_curves
    from optbench.report.figures import plot_communication

    curves = {c.mode: c for c in communication_curves([r.result for r in runs.values()], "valid_accuracy")}
    assert set(curves) == set(MODES)
    steps_per_epoch = TRAIN // (N * B)
    assert curves["ddp"].bytes == (4 * PARAMS * steps_per_epoch, 4 * PARAMS * 2 * steps_per_epoch)
    assert curves["ddp+fp16"].bytes[-1] == curves["ddp"].bytes[-1] / 2
    assert curves["ddp"].values[-1] == runs["ddp"].result.epochs[-1].metrics["valid_accuracy"]
    assert curves["ddp"].seconds[-1] == pytest.approx(sum(e.train_seconds for e in runs["ddp"].result.epochs))
    figure = plot_communication(list(curves.values()), "valid_accuracy")
    assert [len(ax.get_lines()) for ax in figure.axes] == [len(MODES), len(MODES)]
    assert communication_curves([runs["ddp"].result], "valid_accuracy") == []  # one mode: nothing to compare
