"""Gradient noise (Neelakantan et al. 2015): the noise added before each step has the annealed
variance eta / (1 + t)^gamma, it survives a checkpoint, and bad parameters are refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from optbench.core.component import RunContext
from optbench.core.errors import ConfigError
from optbench.core.spec import TechniqueSpec
from optbench.techniques.registry import make_component


def _run(model: nn.Module) -> RunContext:
    return RunContext(model=model, optimizer=None, task=None, device=torch.device("cpu"),
                      generator=torch.Generator(), steps_per_epoch=1, total_steps=1, engine="single", seed=3)


def test_added_noise_has_the_annealed_variance():
    noise = make_component(TechniqueSpec.parse("gradient_noise:eta=0.3,gamma=0.55"))
    weight = nn.Parameter(torch.zeros(200_000))
    noise.setup(_run(nn.ParameterList([weight])))
    for t in range(3):
        weight.grad = torch.zeros_like(weight)
        noise.after_backward()
        expected = 0.3 / (1 + t) ** 0.55
        assert weight.grad.var().item() == pytest.approx(expected, rel=0.02)
        assert weight.grad.mean().item() == pytest.approx(0.0, abs=5 * (expected / 200_000) ** 0.5)


def _steps(component, weight: nn.Parameter, n: int) -> list[torch.Tensor]:
    out = []
    for _ in range(n):
        weight.grad = torch.zeros_like(weight)
        component.after_backward()
        out.append(weight.grad.clone())
    return out


def _built(weight: nn.Parameter):
    component = make_component(TechniqueSpec("gradient_noise", {"eta": 1.0}))
    component.setup(_run(nn.ParameterList([weight])))
    return component


def test_noise_stream_is_seeded_and_restored_from_its_state():
    w = nn.Parameter(torch.zeros(8))
    a = _built(w)
    first = _steps(a, w, 2)
    state = a.state_dict()
    rest = _steps(a, w, 2)
    w2 = nn.Parameter(torch.zeros(8))
    b = _built(w2)
    b.load_state_dict(state)
    resumed = _steps(b, w2, 2)
    assert b.t == 4 and all(torch.equal(x, y) for x, y in zip(resumed, rest, strict=True))
    w3 = nn.Parameter(torch.zeros(8))
    assert torch.equal(_steps(_built(w3), w3, 1)[0], first[0])  # same run seed: same stream
    assert not torch.equal(first[0], first[1])


@pytest.mark.parametrize("params", [{"eta": 0.0}, {"eta": -1.0}, {"eta": 0.1, "gamma": -0.5}, {"gamma": 0.5},
                                    {"eta": 0.1, "sigma": 1.0}])
def test_bad_parameters_are_refused(params):
    with pytest.raises(ConfigError):
        make_component(TechniqueSpec("gradient_noise", params))
