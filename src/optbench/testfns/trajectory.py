"""Optimizer trajectories on 2-D test functions: the data behind the classic pictures."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from optbench.core.errors import ConfigError, require_positive
from optbench.testfns.functions import TestFunction


@dataclass
class Trajectory:
    """The path of one optimizer on one function.

    Attributes:
        optimizer: registry name; hyperparams: what it ran with (``lr`` included).
        points: ``(steps + 1, 2)`` positions, the start first.
        values: ``(steps + 1,)`` function values at the points.
        diverged: the path left the finite numbers (and was cut there).
    """

    optimizer: str
    hyperparams: dict
    points: np.ndarray
    values: np.ndarray
    diverged: bool = False
    notes: dict = field(default_factory=dict)

    @property
    def final_value(self) -> float:
        """Function value at the last point."""
        return float(self.values[-1])

    def distance_to(self, point: tuple[float, float]) -> np.ndarray:
        """Euclidean distance of every point to ``point``, shape ``(steps + 1,)``."""
        return np.linalg.norm(self.points - np.asarray(point), axis=1)


def trajectory(function: TestFunction, optimizer: str, *, steps: int, start: tuple[float, float] | None = None,
               noise: float = 0.0, seed: int = 0, **hyperparams: object) -> Trajectory:
    """Run ``optimizer`` (any registry name) for ``steps`` steps on ``function`` from ``start``.

    Args:
        function: the 2-D test function.
        optimizer: optimizer registry name; ``hyperparams`` are passed to it (``lr`` ...).
        steps: optimizer steps.
        start: start point (the function's default when None).
        noise: standard deviation of Gaussian noise added to every gradient, to mimic a
            stochastic gradient (0: exact gradients).
        seed: seed of that noise.

    Returns:
        the :class:`Trajectory` in float64.

    Raises:
        ConfigError / UnknownNameError: bad optimizer name, hyperparameter, steps or noise.
    """
    from optbench.optim import capabilities, create_optimizer

    require_positive("steps", steps, integer=True)
    if not noise >= 0:
        raise ConfigError("noise", noise, "a number >= 0")
    point = torch.tensor(start or function.start, dtype=torch.float64, requires_grad=True)
    opt = create_optimizer(optimizer, [point], **hyperparams)
    caps = capabilities(optimizer)
    generator = torch.Generator().manual_seed(seed)
    points, values = [point.detach().clone()], [function(point.detach()).item()]
    diverged = False

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        value = function(point)
        value.backward(create_graph=caps.create_graph)
        if noise:
            point.grad.add_(torch.randn(2, generator=generator, dtype=torch.float64), alpha=noise)
        return value

    for _ in range(steps):
        if caps.needs_closure or caps.two_pass:
            opt.step(closure)  # SAM evaluates it twice itself
        else:
            closure()
            opt.step()
        value = function(point.detach()).item()
        if not (math.isfinite(value) and torch.isfinite(point).all()):
            diverged = True
            break
        points.append(point.detach().clone())
        values.append(value)
    return Trajectory(optimizer, dict(hyperparams), torch.stack(points).numpy(), np.asarray(values), diverged)
