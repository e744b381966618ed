"""Annealed Gaussian gradient noise (Neelakantan et al. 2015, "Adding gradient noise improves learning
for very deep networks", sec. 2): before every optimizer step each gradient element gets
``N(0, sigma_t^2)`` noise with ``sigma_t^2 = eta / (1 + t)^gamma``, ``t`` the optimizer steps taken
so far; the paper uses ``eta`` in {0.01, 0.3, 1.0} and ``gamma = 0.55``.

This module is the worked example of docs/architecture.md ("Adding a technique"): one component
class with one hook (``after_backward``: it acts on the reduced gradient, so on the parameter
server in ``ps`` and identically on every DDP replica, its noise drawn from a generator seeded
by the run's seed), its state for checkpoints, and its listing in ``COMPONENTS``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from optbench.core.component import Component, RunContext
from optbench.techniques import _validate


class GradientNoise(Component):
    """Add annealed Gaussian noise to the gradients before each optimizer step.

    Args:
        eta: the noise variance at step 0 (> 0), in squared gradient units.
        gamma: the decay exponent of the variance (>= 0; 0: constant noise).

    Raises:
        ConfigError: ``eta`` not > 0 or ``gamma`` < 0.
    """

    name = "gradient_noise"
    family = "gradient"
    source = "Neelakantan et al. 2015, sec. 2 (eq. 1)"
    description = "Add N(0, eta/(1+t)^gamma) noise to every gradient element before each step."

    def __init__(self, *, eta: float, gamma: float = 0.55) -> None:
        self.eta = _validate.number("gradient_noise eta", eta, low=0.0, low_open=True, high_open=True)
        self.gamma = _validate.number("gradient_noise gamma", gamma, low=0.0, high_open=True)
        self.t = 0
        self._params: list[Tensor] = []
        self._generator = torch.Generator()

    def setup(self, run: RunContext) -> None:
        self._params = [p for p in run.model.parameters() if p.requires_grad]
        self._generator = torch.Generator().manual_seed(run.seed + 7_919)  # one stream per run, same on every replica

    def std(self, t: int) -> float:
        """The noise standard deviation at step ``t`` (0-based): ``sqrt(eta / (1 + t)^gamma)``."""
        return (self.eta / (1 + t) ** self.gamma) ** 0.5

    @torch.no_grad()
    def after_backward(self) -> None:
        std = self.std(self.t)
        for p in self._params:
            if p.grad is not None:
                noise = torch.randn(p.grad.shape, generator=self._generator, dtype=p.grad.dtype)
                p.grad.add_(noise.to(p.grad.device, non_blocking=True), alpha=std)
        self.t += 1

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t, "generator": self._generator.get_state()}

    def load_state_dict(self, state: Any) -> None:
        self.t = int(state["t"])
        self._generator.set_state(state["generator"])


#: The techniques of this module (discovered by :mod:`optbench.techniques.registry`).
COMPONENTS = (GradientNoise,)

__all__ = ["COMPONENTS", "GradientNoise"]
