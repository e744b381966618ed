"""2:4 semi-structured sparsity (techniques/semi_structured.py): exactly 2 nonzeros in every group of
4 along the input dimension, kept through Adam and momentum steps; the sparse-first-dense-later switch;
the eligible layers; bad parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from optbench.core.component import RunContext
from optbench.core.errors import ConfigError
from optbench.tasks import get_task
from optbench.techniques.semi_structured import Sparse24, eligible_layers, mask_2_4


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 6 * 6, 20), nn.ReLU(), nn.Linear(20, 5))


def _bind(component, model, optimizer, total_steps=40):
    component.setup(RunContext(model=model, optimizer=optimizer, task=None, device=torch.device("cpu"),
                               generator=torch.Generator().manual_seed(0), steps_per_epoch=10,
                               total_steps=total_steps, engine="single", seed=0))


def _steps(component, model, optimizer, n):
    g = torch.Generator().manual_seed(0)
    for _ in range(n):
        x, y = torch.randn(8, 1, 6, 6, generator=g), torch.randint(0, 5, (8,), generator=g)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        component.after_backward()
        optimizer.step()
        component.after_step()


def _groups(weight):
    return (weight.detach().reshape(weight.shape[0], -1) != 0).reshape(weight.shape[0], -1, 4).sum(-1)


def test_mask_keeps_the_two_largest_of_every_four():
    w = torch.tensor([[0.1, -3.0, 2.0, 0.5, 4.0, 0.0, -0.2, 0.3]])
    assert mask_2_4(w).tolist() == [[False, True, True, False, True, False, False, True]]
    conv = torch.randn(6, 4, 3, 3)
    mask = mask_2_4(conv)
    assert mask.shape == conv.shape
    assert torch.equal(mask.reshape(6, -1, 4).sum(-1), torch.full((6, 9), 2))
    kept = (conv.abs() * mask).reshape(6, -1, 4)
    dropped = (conv.abs() * ~mask).reshape(6, -1, 4)
    assert torch.all(kept.topk(2, -1).values.min(-1).values >= dropped.max(-1).values)
    with pytest.raises(ValueError, match="multiple of 4"):
        mask_2_4(torch.randn(3, 5))


@pytest.mark.parametrize("make_optimizer", [lambda p: torch.optim.Adam(p, lr=0.01),
                                            lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3)],
                         ids=["adam", "momentum"])
def test_two_of_four_hold_through_steps(make_optimizer):
    torch.manual_seed(0)
    model = _net()
    optimizer = make_optimizer(model.parameters())
    component = Sparse24(include_last=True)
    _bind(component, model, optimizer)
    names = sorted(component.masks)
    assert names == ["2.weight", "5.weight", "7.weight"]  # the first conv has 1 * 3 * 3 = 9 inputs: not eligible
    masks = {n: m.clone() for n, m in component.masks.items()}
    _steps(component, model, optimizer, 30)
    for name in names:
        weight = model.get_parameter(name)
        assert torch.equal(_groups(weight), torch.full_like(_groups(weight), 2)), name
        assert torch.equal(weight != 0, masks[name])  # the pattern chosen at initialization holds
    assert component.metrics() == {"sparsity": 0.5, "sparse_2_4_active": 1.0, "sparse_2_4_simulated": 1.0}
    assert int((model[0].weight == 0).sum()) == 0


def test_sparse_first_dense_later_switches_at_the_fraction():
    torch.manual_seed(0)
    model = _net()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    component = Sparse24(dense_after=0.25)
    _bind(component, model, optimizer, total_steps=40)
    assert component.dense_step == 10 and sorted(component.masks) == ["2.weight", "5.weight"]
    _steps(component, model, optimizer, 9)
    assert torch.equal(_groups(model[5].weight), torch.full_like(_groups(model[5].weight), 2))
    _steps(component, model, optimizer, 1)
    assert component.masks == {} and component.metrics()["sparse_2_4_active"] == 0.0
    _steps(component, model, optimizer, 3)
    zeros = int((model[5].weight == 0).sum())  # the pruned weights grow back once dense (where inputs are live)
    assert zeros < 0.75 * model[5].weight.numel() / 2
    state = component.state_dict()
    again = Sparse24(dense_after=0.25)
    _bind(again, _net(), None)
    again.load_state_dict(state)
    assert again.masks == {} and again.t == 13 and again.dense_step == 10


def test_eligible_layers_and_refusals():
    model = _net()
    assert [n for n, _ in eligible_layers(model, include_last=False)] == ["2", "5"]
    assert [n for n, _ in eligible_layers(model, include_last=True)] == ["2", "5", "7"]
    with pytest.raises(ConfigError, match="sparse_2_4 for this model"):  # inputs 1*5, 25*3, 25*3: none fits
        Sparse24().check_task(get_task("mnist1d_cnn"))
    Sparse24().check_task(get_task("mnist1d_mlp"))
    for bad in ({"dense_after": 0.0}, {"dense_after": 1.5}, {"include_last": 1}):
        with pytest.raises(ConfigError) as info:
            Sparse24(**bad)
        assert "\n" not in str(info.value) and "sparse_2_4" in str(info.value)
