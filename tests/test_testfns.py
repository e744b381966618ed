"""2-D test functions: values at known minima, gradients vs hand-derived formulas, trajectories."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from optbench.core.errors import ConfigError, UnknownNameError
from optbench.testfns import functions, get_function, trajectory


@pytest.mark.parametrize("name", functions.names())
def test_minima_have_the_known_value_and_zero_gradient(name):
    f = get_function(name)
    for point in f.minima:
        xy = torch.tensor(point, dtype=torch.float64)
        assert float(f(xy)) == pytest.approx(f.minimum_value, abs=1e-6)
        assert float(f.gradient(xy).norm()) < 1e-3
    (x0, x1), (y0, y1) = f.bounds
    assert x0 < f.start[0] < x1 and y0 < f.start[1] < y1


def test_gradients_match_hand_derived_formulas():
    xy = torch.tensor([[0.3, -1.2], [-1.1, 0.7]], dtype=torch.float64)
    x, y = xy[:, 0], xy[:, 1]
    rosen = torch.stack([-2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)], -1)
    assert torch.allclose(get_function("rosenbrock").gradient(xy), rosen)
    himmel = torch.stack([4 * x * (x**2 + y - 11) + 2 * (x + y**2 - 7),
                          2 * (x**2 + y - 11) + 4 * y * (x + y**2 - 7)], -1)
    assert torch.allclose(get_function("himmelblau").gradient(xy), himmel)
    rastr = 2 * xy + 20 * math.pi * torch.sin(2 * math.pi * xy)
    assert torch.allclose(get_function("rastrigin").gradient(xy), rastr)
    assert torch.allclose(get_function("saddle").gradient(xy), torch.stack([2 * x, -2 * y], -1))
    expected = torch.stack([3 * x**2 - 3 * y**2, -6 * x * y], -1)
    assert torch.allclose(get_function("monkey_saddle").gradient(xy), expected)
    q = get_function("ill_conditioned_quadratic", condition=10.0)
    assert torch.allclose(q.gradient(xy), torch.stack([x, 10 * y], -1))


def test_trajectories_of_the_classic_demonstrations():
    rosen = get_function("rosenbrock")
    adam = trajectory(rosen, "adam", steps=2000, lr=0.05)
    assert adam.points.shape == (2001, 2) and not adam.diverged
    assert adam.final_value < 1e-3 < adam.values[0]
    # ill-conditioned quadratic: momentum gets much closer than plain SGD with the same lr
    q = get_function("ill_conditioned_quadratic", condition=50.0)
    sgd = trajectory(q, "sgd", steps=100, lr=0.03)
    momentum = trajectory(q, "momentum", steps=100, lr=0.03)
    assert momentum.final_value < 0.01 * sgd.final_value
    # the saddle: plain SGD leaves a start near the ridge slowly; its y grows geometrically
    saddle = trajectory(get_function("saddle"), "sgd", steps=50, lr=0.05)
    assert abs(saddle.points[-1, 1]) == pytest.approx(1e-3 * 1.1**50, rel=1e-9)
    # L-BFGS (closure) and SAM (two passes) go through the same code
    assert trajectory(rosen, "lbfgs", steps=20, lr=1.0).final_value < 1e-6
    # SAM's normalized perturbation has length rho even at the minimum, so on a quadratic it
    # settles into a small oscillation around it (Bartlett et al. 2023) instead of converging
    sam = trajectory(q, "sam:sgd", steps=300, lr=0.03, rho=0.01)
    assert sam.final_value < 1e-3 * sam.values[0]


def test_noise_is_seeded_and_divergence_is_cut():
    q = get_function("ill_conditioned_quadratic")
    a = trajectory(q, "sgd", steps=30, lr=0.01, noise=0.5, seed=1)
    b = trajectory(q, "sgd", steps=30, lr=0.01, noise=0.5, seed=1)
    c = trajectory(q, "sgd", steps=30, lr=0.01, noise=0.5, seed=2)
    assert np.array_equal(a.points, b.points) and not np.array_equal(a.points, c.points)
    bad = trajectory(q, "sgd", steps=5000, lr=1.0)  # lr > 2/condition: diverges
    assert bad.diverged and np.isfinite(bad.values).all()


def test_bad_input():
    with pytest.raises(UnknownNameError):
        get_function("sphere")
    with pytest.raises(ConfigError):
        get_function("rosenbrock", condition=3)
    with pytest.raises(ConfigError):
        get_function("ill_conditioned_quadratic", condition=-1)
    with pytest.raises(ConfigError):
        trajectory(get_function("beale"), "adam", steps=0, lr=0.1)


def test_trajectory_command_writes_the_paths(tmp_path, capsys):
    import json

    from optbench.cli.main import main

    out = tmp_path / "t.json"
    assert main(["trajectory", "--function", "ill_conditioned_quadratic", "--condition", "20", "--optimizers",
                 "sgd,momentum", "--steps", "40", "--lr", "0.05", "--lr", "momentum=0.02", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [t["optimizer"] for t in data["trajectories"]] == ["sgd", "momentum"]
    assert data["trajectories"][1]["hyperparams"] == {"lr": 0.02}
    assert len(data["trajectories"][0]["points"]) == 41 and data["formula"] == "(x^2 + 20 y^2) / 2"
    assert main(["trajectory", "--lr", "fast", "--out", str(tmp_path / "x.json")]) == 2
    assert "--lr" in capsys.readouterr().err
