"""Low-rank factorization (techniques/low_rank.py): SVD at full rank reproduces a Linear's and a
Conv's outputs, rank k has k(m+n) weights and is the best rank-k approximation, the energy rule, the
layer selection, from-scratch factors, bad parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from optbench.core.component import ModelContext
from optbench.core.errors import ConfigError
from optbench.tasks import get_task
from optbench.techniques.low_rank import LowRank, factor_weight, factorize, svd_rank


@pytest.mark.parametrize("layer", [nn.Linear(12, 7), nn.Conv2d(3, 5, 3, stride=2, padding=1),
                                   nn.Conv1d(4, 6, 5, padding=2, bias=False)], ids=["linear", "conv2d", "conv1d"])
def test_full_rank_svd_reproduces_the_layer(layer):
    torch.manual_seed(0)
    full = min(layer.weight.shape[0], layer.weight[0].numel())
    pair = factorize(layer, full)
    x = torch.randn(4, 12) if isinstance(layer, nn.Linear) else torch.randn(4, layer.in_channels, *([9] * (
        layer.weight.dim() - 2)))
    assert torch.allclose(pair(x), layer(x), rtol=1e-5, atol=1e-5)
    assert pair[0].bias is None and (pair[1].bias is None) == (layer.bias is None)


def test_rank_k_has_k_times_m_plus_n_weights_and_is_the_best_approximation():
    torch.manual_seed(0)
    layer = nn.Linear(30, 20)
    pair = factorize(layer, 4)
    assert pair[0].weight.numel() + pair[1].weight.numel() == 4 * (30 + 20)
    product = (pair[1].weight @ pair[0].weight).detach()
    u, s, vh = torch.linalg.svd(layer.weight.detach().double())
    best = (u[:, :4] * s[:4]) @ vh[:4]
    assert torch.allclose(product.double(), best, atol=1e-6)
    error = torch.linalg.matrix_norm(product.double() - layer.weight.detach().double())
    assert float(error) == pytest.approx(float(s[4:].pow(2).sum().sqrt()), rel=1e-5)  # Eckart-Young
    a, b = factor_weight(nn.Conv2d(2, 3, 3).weight, 2)
    assert a.shape == (2, 18) and b.shape == (3, 2)


def test_energy_rule_keeps_the_smallest_sufficient_rank():
    s = torch.tensor([3.0, 2.0, 1.0, 1.0])  # squares 9, 4, 1, 1 of 15
    assert svd_rank(s, energy=9 / 15) == 1
    assert svd_rank(s, energy=0.61) == 2
    assert svd_rank(s, energy=13 / 15) == 2
    assert svd_rank(s, energy=0.9) == 3
    assert svd_rank(s, energy=1.0) == 4
    assert svd_rank(s, rank=10) == 4
    with pytest.raises(ValueError):
        svd_rank(s)


def test_component_factorizes_the_middle_layers_and_reports_parameters():
    torch.manual_seed(0)
    model = get_task("mnist1d_cnn").make_model()
    component = LowRank(rank=3)
    x = torch.randn(5, 40)
    before = model(x)
    new = component.prepare_model(model, ModelContext(task=None, device=torch.device("cpu")))
    assert component.ranks == {"features.2": 3, "features.4": 3}  # not the first conv, not the head
    assert component.factored_params == 2 * 3 * (25 + 25 * 3)
    assert component.metrics() == {"low_rank_params": 600.0, "low_rank_param_ratio": 600 / (2 * 25 * 75)}
    assert isinstance(new.features[2], nn.Sequential) and new.features[2][1].kernel_size == (1,)
    assert not torch.allclose(new(x), before, atol=1e-3)  # rank 3 of 25 changes the function
    torch.manual_seed(0)
    model = get_task("mnist1d_cnn").make_model()
    exact = LowRank(energy=1.0, layers=r"features\.[24]").prepare_model(model, None)
    torch.manual_seed(0)
    assert torch.allclose(exact(x), get_task("mnist1d_cnn").make_model()(x), rtol=1e-5, atol=1e-5)


def test_from_scratch_factors_are_random_not_the_svd():
    torch.manual_seed(0)
    layer = nn.Linear(16, 16)
    pair = factorize(layer, 4, from_scratch=True)
    a, b = factor_weight(layer.weight, 4)
    assert not torch.allclose(pair[0].weight, a) and pair[1].weight.shape == b.shape


def test_bad_parameters_and_unmatched_patterns_are_refused():
    for bad in ({"rank": 0}, {}, {"rank": 2, "energy": 0.9}, {"energy": 0.0}, {"energy": 1.5},
                {"rank": 2, "layers": "("}, {"rank": 2, "min_params": -1}, {"rank": 2, "from_scratch": "no"}):
        with pytest.raises(ConfigError) as info:
            LowRank(**bad)
        assert "\n" not in str(info.value) and "low_rank" in str(info.value)
    task = get_task("mnist1d_cnn")
    LowRank(rank=2).check_task(task)
    LowRank(rank=2, layers="head").check_task(task)
    with pytest.raises(ConfigError, match="features.0, features.2, features.4, head"):
        LowRank(rank=2, layers="classifier").check_task(task)
    with pytest.raises(ConfigError, match="low_rank layers"):
        LowRank(rank=2, min_params=10**6).check_task(task)
    assert LowRank(rank=2, layers=4).layers == "4"  # "layers=4" on the command line is the integer 4
