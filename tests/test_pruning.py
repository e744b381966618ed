"""Pruning components (techniques/pruning.py): exact sparsity that holds through momentum and Adam
steps, layer vs global scope, Zhu & Gupta's cubic schedule and the cycles, lottery-ticket rewinding,
SNIP's scores |w * dL/dw|, the structured shrink (identical outputs, fewer parameters), masks
through a checkpoint resume, bad parameters (also on the command line)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from optbench.cli.main import main
from optbench.core.component import RunContext
from optbench.core.errors import ConfigError
from optbench.core.spec import Recipe, RunStatus, Task
from optbench.engine import split_data, train
from optbench.engine.checkpoint import Checkpointer
from optbench.tasks.classification import array_dataset_loader, classification_task
from optbench.tasks.models import Conv1dNet
from optbench.techniques.pruning import (
    MagnitudePruning,
    SnipPruning,
    cubic_sparsity,
    cycle_sparsity,
    keep_largest,
)
from optbench.techniques.structured_pruning import StructuredPruning, shrink


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(6 * 4 * 4, 12), nn.ReLU(),
                         nn.Linear(12, 5))


def _bind(component, model, optimizer, *, steps_per_epoch=10, total_steps=100):
    component.setup(RunContext(model=model, optimizer=optimizer, task=None, device=torch.device("cpu"),
                               generator=torch.Generator().manual_seed(0), steps_per_epoch=steps_per_epoch,
                               total_steps=total_steps, engine="single", seed=0))


def _steps(component, model, optimizer, n, seed=0):
    """``n`` update steps on random batches through the update-side hooks, as TrainStep runs them."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x, y = torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 5, (16,), generator=g)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        component.after_backward()
        optimizer.step()
        component.after_step()


def _layers(model):
    return [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]


@pytest.mark.parametrize("make_optimizer", [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3),
    lambda p: torch.optim.Adam(p, lr=0.01),
    lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
], ids=["momentum", "adam", "adamw"])
def test_exact_sparsity_holds_through_optimizer_steps(make_optimizer):
    torch.manual_seed(0)
    model = _net()
    optimizer = make_optimizer(model.parameters())
    # gradual: pruning events after epochs 1 and 2 (10 steps each); momentum/Adam state is live by then
    component = MagnitudePruning(sparsity=0.7, start_epoch=1, end_epoch=2)
    _bind(component, model, optimizer)
    _steps(component, model, optimizer, 25)
    for layer in _layers(model)[:-1]:  # the output layer stays dense by default
        assert int((layer.weight == 0).sum()) == round(0.7 * layer.weight.numel())
    assert int((_layers(model)[-1].weight == 0).sum()) == 0
    mask_zeros = {name: int((~mask).sum()) for name, mask in component.masks.items()}
    _steps(component, model, optimizer, 10, seed=1)  # after more steps: the same weights are zero
    for name, mask in component.masks.items():
        weight = model.get_parameter(name)
        assert torch.equal(weight == 0, ~mask) and int((~mask).sum()) == mask_zeros[name]
    assert component.metrics()["sparsity"] == pytest.approx(
        sum(mask_zeros.values()) / sum(m.numel() for m in component.masks.values()))


def test_global_scope_ranks_all_layers_together_layer_scope_each():
    torch.manual_seed(0)
    model = _net()
    with torch.no_grad():
        _layers(model)[0].weight.mul_(100.0)  # the first layer's weights are the largest
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)][:-1]
    total = sum(model.get_submodule(n).weight.numel() for n in names)
    glob = MagnitudePruning(sparsity=0.5, scope="global", end_epoch=0, include_last=False)
    _bind(glob, model, None)  # one-shot at initialization
    zeros = {n: int((model.get_submodule(n).weight == 0).sum()) for n in names}
    assert sum(zeros.values()) == round(0.5 * total)
    assert zeros[names[0]] == 0  # the large layer keeps everything under one global threshold
    torch.manual_seed(0)
    model = _net()
    layer = MagnitudePruning(sparsity=0.5, scope="layer", end_epoch=0)
    _bind(layer, model, None)
    for n in names:
        w = model.get_submodule(n).weight
        assert int((w == 0).sum()) == round(0.5 * w.numel())


def test_global_scope_prunes_the_smallest_magnitudes_overall():
    torch.manual_seed(1)
    model = _net()
    before = {n: m.weight.detach().clone() for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)}
    component = MagnitudePruning(sparsity=0.6, scope="global", end_epoch=0, include_last=True)
    _bind(component, model, None)
    values = torch.cat([w.abs().reshape(-1) for w in before.values()])
    k = round(0.6 * values.numel())
    cut = values.sort().values[k - 1]
    for name, w in before.items():
        pruned = model.get_submodule(name).weight == 0
        assert torch.equal(pruned, w.abs() <= cut)  # continuous weights: no ties at the cut


def test_cubic_schedule_values_and_cycles():
    s = dict(initial=0.1, final=0.9, start=10, end=50)
    assert cubic_sparsity(9, **s) == 0.0
    assert cubic_sparsity(10, **s) == pytest.approx(0.1)
    assert cubic_sparsity(30, **s) == pytest.approx(0.9 + (0.1 - 0.9) * 0.5 ** 3)
    assert cubic_sparsity(40, **s) == pytest.approx(0.9 - 0.8 * 0.25 ** 3)
    assert cubic_sparsity(50, **s) == cubic_sparsity(70, **s) == 0.9
    component = MagnitudePruning(sparsity=0.9, initial_sparsity=0.1, start_epoch=1, end_epoch=5)
    events = component.schedule(steps_per_epoch=10, total_steps=100)
    assert sorted(events) == [10, 20, 30, 40, 50]
    for t, value in events.items():
        assert value == pytest.approx(0.9 + (0.1 - 0.9) * (1 - (t - 10) / 40) ** 3)
    every = MagnitudePruning(sparsity=0.5, start_epoch=0, end_epoch=2, frequency=3).schedule(10, 100)
    assert sorted(every) == [3, 6, 9, 12, 15, 18, 20] and every[20] == 0.5  # t=0 prunes 0: no event
    cycles = MagnitudePruning(sparsity=0.875, cycles=3, end_epoch=3).schedule(10, 60)
    assert sorted(cycles) == [10, 20, 30]
    assert [cycles[t] for t in (10, 20, 30)] == pytest.approx([0.5, 0.75, 0.875])  # density 1/2 per cycle
    assert cycle_sparsity(3, 3, 0.875) == pytest.approx(0.875)
    with pytest.raises(ConfigError, match="end_epoch"):
        MagnitudePruning(sparsity=0.5, end_epoch=20).schedule(10, 100)
    assert max(MagnitudePruning(sparsity=0.5).schedule(10, 70)) == 40  # default end: ceil(7 / 2) epochs


def test_default_schedule_ends_at_half_the_run():
    torch.manual_seed(0)
    model = _net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    component = MagnitudePruning(sparsity=0.8)
    _bind(component, model, optimizer, steps_per_epoch=5, total_steps=20)  # 4 epochs: s_f after epoch 2
    _steps(component, model, optimizer, 5)
    assert component.target == pytest.approx(0.8 - 0.8 * 0.5 ** 3)
    _steps(component, model, optimizer, 5)
    assert component.target == 0.8 and component.metrics()["sparsity"] == pytest.approx(0.8, abs=0.01)


def test_lottery_ticket_rewinding_resets_the_survivors_to_initialization():
    torch.manual_seed(0)
    model = _net()
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    component = MagnitudePruning(sparsity=0.75, cycles=2, end_epoch=2, rewind_epoch=0)
    _bind(component, model, optimizer)
    _steps(component, model, optimizer, 9)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 5, (16,))  # step 10: the first cycle's pruning + rewinding
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    component.after_backward()
    optimizer.step()
    trained = {n: p.detach().clone() for n, p in model.named_parameters()}
    component.after_step()
    for n, p in model.named_parameters():
        mask = component.masks.get(n)
        expected = init[n] if mask is None else init[n] * mask
        assert torch.equal(p.detach(), expected), n
        if mask is not None:  # the mask ranks the trained weights, not the initial ones
            assert torch.equal(mask, keep_largest(trained[n].abs(), round(0.5 * p.numel())))
        assert not optimizer.state[p]  # optimizer state cleared: retraining starts afresh
    with pytest.raises(ConfigError, match="rewind_epoch"):
        MagnitudePruning(sparsity=0.5, start_epoch=1, rewind_epoch=2)


def test_snip_scores_are_connection_sensitivities_on_the_batch():
    torch.manual_seed(0)
    model = _net()
    x, y = torch.randn(32, 1, 8, 8), torch.randint(0, 5, (32,))
    nn.functional.cross_entropy(model(x), y).backward()
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)][:-1]
    expected = {f"{n}.weight": (m.weight * m.weight.grad).abs().detach() for n, m in layers}
    component = SnipPruning(sparsity=0.6)
    _bind(component, model, None)
    component.after_backward()  # the first gradient: scores, masks, masked gradients
    assert component.scores.keys() == expected.keys()
    for name, score in expected.items():
        assert torch.allclose(component.scores[name], score, rtol=0, atol=0)
    flat = torch.cat([s.reshape(-1) for s in expected.values()])
    k = round(0.6 * flat.numel())
    cut = flat.sort().values[k - 1]
    for name, score in expected.items():
        assert torch.equal(~component.masks[name], score <= cut)
        assert torch.equal(model.get_parameter(name).grad == 0, ~component.masks[name] | (score == 0))
    assert sum(int((~m).sum()) for m in component.masks.values()) == k
    masks = {n: m.clone() for n, m in component.masks.items()}
    component.after_step()
    for name, mask in masks.items():  # weights pruned; later gradients leave the masks alone
        assert torch.equal(model.get_parameter(name) == 0, ~mask)
    component.after_backward()
    assert all(torch.equal(component.masks[n], m) for n, m in masks.items())


def test_structured_shrink_keeps_the_outputs_and_removes_parameters():
    torch.manual_seed(0)
    model = _net()
    with torch.no_grad():  # non-trivial batch-norm statistics and affine parameters
        bn = model[1]
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    component = StructuredPruning(sparsity=0.5, norm="l2")
    _bind(component, model, None)  # epoch 0: removed at initialization
    norms = model[0].weight.detach().reshape(8, -1).norm(dim=1)
    assert torch.equal(component.kept["0"], norms.argsort(descending=True)[:4].sort().values)
    assert sorted(component.kept) == ["0", "3", "7"]  # every layer but the output layer
    small = shrink(model, component.kept)
    model.eval()
    small.eval()
    x = torch.randn(7, 1, 8, 8)
    assert torch.allclose(small(x), model(x), rtol=1e-5, atol=1e-6)
    assert small[0].weight.shape == (4, 1, 3, 3) and small[1].num_features == 4
    assert small[3].weight.shape == (3, 4, 3, 3)
    assert small[7].weight.shape == (6, 3 * 4 * 4) and small[9].weight.shape == (5, 6)
    # the kept units' own outputs are identical (first conv + batch norm)
    assert torch.allclose(small[1](small[0](x)), model[1](model[0](x))[:, component.kept["0"]], atol=1e-6)
    dense = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in small.parameters()) < dense / 2
    assert torch.equal(component.example_input, x[:1])  # captured at the model's first forward pass
    assert sum(p.numel() for p in component.model_to_measure(model).parameters()) < dense / 2
    assert component.shrunk is True


def test_structured_shrink_of_the_mnist1d_cnn_with_flatten_in_forward():
    torch.manual_seed(0)
    model = Conv1dNet(channels=10)
    component = StructuredPruning(sparsity=0.3, norm="l1")
    _bind(component, model, None)
    small = shrink(model, component.kept)
    x = torch.randn(5, 40)
    assert torch.allclose(small(x), model(x), rtol=1e-5, atol=1e-6)
    assert small.head.weight.shape == (10, 7 * 5)


def _digits_conv() -> Task:
    def model() -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                             nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))
    return classification_task("conv_digits", "digits conv", model, array_dataset_loader("digits", 16.0, True),
                               target_accuracy=0.9, valid_size=200, recipe={})


class _Kill(BaseException):
    pass


@pytest.mark.parametrize("technique", ["magnitude_pruning:sparsity=0.8,end_epoch=3,frequency=2",
                                       "structured_pruning:sparsity=0.5,epoch=1"])
def test_masks_survive_a_checkpoint_resume(tmp_path, technique):
    task = _digits_conv()
    data = split_data(task.load_data(), task.valid_size, seed=0, train_size=160)
    recipe = Recipe("momentum", {"lr": 0.05, "momentum": 0.9}, batch_size=32, epochs=4, techniques=[technique])
    full = train(task, data, recipe, seed=2)
    assert full.status is RunStatus.FINISHED, full.error
    checkpoint = Checkpointer(tmp_path / "c.pt", full.run_id)

    def stop(record):
        if record.epoch == 2:
            raise _Kill

    with pytest.raises(_Kill):
        train(task, data, recipe, seed=2, checkpoint=checkpoint, on_epoch=stop)
    saved = torch.load(checkpoint.path, weights_only=True)["components"][f"0:{technique.split(':')[0]}"]
    assert saved["masks"] and all(m.dtype == torch.bool for m in saved["masks"].values())
    resumed = train(task, data, recipe, seed=2, checkpoint=checkpoint)
    assert resumed.environment["checkpoint"] == {"resumed_epoch": 1}
    assert [e.metrics for e in resumed.epochs] == [e.metrics for e in full.epochs]  # bitwise
    assert full.epochs[-1].metrics["sparsity"] > 0.45
    cost = full.environment["model_cost"]
    assert cost["nonzero_parameters"] < cost["parameters"] or cost.get("shrunk")


@pytest.mark.parametrize(("params", "field"), [
    ({"sparsity": 1.5}, "magnitude_pruning sparsity"),
    ({"sparsity": 1.0}, "magnitude_pruning sparsity"),
    ({"sparsity": 0.5, "scope": "net"}, "magnitude_pruning scope"),
    ({"sparsity": 0.5, "initial_sparsity": 0.6}, "magnitude_pruning initial_sparsity"),
    ({"sparsity": 0.5, "start_epoch": 2, "end_epoch": 1}, "magnitude_pruning end_epoch"),
    ({"sparsity": 0.5, "frequency": 0}, "magnitude_pruning frequency"),
    ({"sparsity": 0.5, "include_last": "yes"}, "magnitude_pruning include_last"),
])
def test_bad_parameters_are_refused(params, field):
    with pytest.raises(ConfigError) as info:
        MagnitudePruning(**params)
    assert str(info.value).startswith(f"invalid {field}") and "\n" not in str(info.value)
    for cls, bad in ((SnipPruning, {"sparsity": -0.1}), (SnipPruning, {"sparsity": 0.5, "scope": "x"}),
                     (StructuredPruning, {"sparsity": 0.5, "norm": "l3"}), (StructuredPruning, {"sparsity": 2})):
        with pytest.raises(ConfigError):
            cls(**bad)


def test_cli_refuses_a_bad_sparsity_in_one_line_and_stores_nothing(tmp_path, capsys):
    out, db = tmp_path / "out", tmp_path / "store.db"
    code = main(["compare", "--task", "digits_mlp", "--optimizers", "adam", "--seeds", "1", "--epochs", "1",
                 "--quiet", "--out", str(out), "--store", str(db), "--technique", "magnitude_pruning:sparsity=1.5"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("optbench: error: invalid magnitude_pruning sparsity 1.5") and "allowed: " in err, err
    assert "\n" not in err and "Traceback" not in err
    assert not db.exists() and not out.exists()


def test_a_pruning_epoch_beyond_the_budget_is_refused_before_any_run():
    from optbench.engine.validate import check_recipe
    from optbench.tasks import get_task

    task = get_task("mnist1d_mlp")
    for technique, field in (("structured_pruning:sparsity=0.5,epoch=5", "structured_pruning epoch"),
                             ("magnitude_pruning:sparsity=0.5,end_epoch=5", "magnitude_pruning end_epoch")):
        with pytest.raises(ConfigError, match=field):
            check_recipe(Recipe("adam", {}, epochs=2, techniques=[technique]), task)
        check_recipe(Recipe("adam", {}, epochs=5, techniques=[technique]), task)  # within the budget
