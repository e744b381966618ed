"""Decaying schedules, each a closed form of the step ``t`` (optimizer steps done, 0-based).

``lr0`` is ``base_lr``, the recipe's learning rate. Every horizon and interval is counted in
optimizer steps (not epochs); :func:`optbench.schedules.make_schedule` also accepts the
``*_epochs`` spelling of each and converts it with the run's steps per epoch.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from optbench.schedules.base import Schedule, check, is_int, is_number, step_index


def _check_base_lr(name: str, base_lr: float) -> None:
    check(f"{name} lr", is_number(base_lr) and base_lr > 0, base_lr, "a number > 0")


def _check_min_lr(name: str, field: str, value: float, base_lr: float) -> None:
    check(f"{name} {field}", is_number(value) and 0.0 <= value <= base_lr, value,
          f"a number in [0, lr={base_lr:g}]")


@dataclass(frozen=True)
class Constant(Schedule):
    """``lr(t) = lr0``."""

    base_lr: float

    def __post_init__(self) -> None:
        _check_base_lr("constant", self.base_lr)

    def __call__(self, step: int) -> float:
        step_index(step)
        return self.base_lr


@dataclass(frozen=True)
class StepDecay(Schedule):
    """``lr(t) = lr0 * gamma ** floor(t / step_size)``.

    Source: ``torch.optim.lr_scheduler.StepLR`` (stepped per optimizer step); the classic
    "divide by 10 every 30 epochs" of He et al. 2016 is ``step_size = 30 * steps_per_epoch``.
    """

    base_lr: float
    step_size: int
    gamma: float = 0.1

    def __post_init__(self) -> None:
        _check_base_lr("step", self.base_lr)
        check("step step_size", is_int(self.step_size) and self.step_size >= 1, self.step_size, "an integer >= 1")
        check("step gamma", is_number(self.gamma) and 0 < self.gamma <= 1, self.gamma, "a number in (0, 1]")

    def __call__(self, step: int) -> float:
        return self.base_lr * self.gamma ** (step_index(step) // self.step_size)


@dataclass(frozen=True)
class MultiStepDecay(Schedule):
    """``lr(t) = lr0 * gamma ** (number of milestones m with m <= t)``.

    ``milestones`` is a strictly increasing tuple of steps. Source:
    ``torch.optim.lr_scheduler.MultiStepLR``.
    """

    base_lr: float
    milestones: tuple[int, ...]
    gamma: float = 0.1

    def __post_init__(self) -> None:
        _check_base_lr("multistep", self.base_lr)
        ms = self.milestones
        check("multistep milestones",
              isinstance(ms, tuple) and len(ms) >= 1 and all(is_int(m) and m >= 1 for m in ms)
              and all(a < b for a, b in zip(ms, ms[1:], strict=False)), ms,
              "a non-empty strictly increasing list of integers >= 1")
        check("multistep gamma", is_number(self.gamma) and 0 < self.gamma <= 1, self.gamma, "a number in (0, 1]")

    def __call__(self, step: int) -> float:
        return self.base_lr * self.gamma ** bisect.bisect_right(self.milestones, step_index(step))


@dataclass(frozen=True)
class ExponentialDecay(Schedule):
    """``lr(t) = lr0 * gamma ** t`` — ``gamma`` is the factor **per optimizer step**.

    Convention: per-step ``gamma`` as ``torch.optim.lr_scheduler.ExponentialLR`` stepped per
    step. The optax / TensorFlow form ``decay_rate ** (t / decay_steps)`` is the same
    schedule with ``gamma = decay_rate ** (1 / decay_steps)``. ``gamma > 1`` (a growing lr)
    is allowed: it is the learning-rate range test of Smith 2017, section 3.3.
    """

    base_lr: float
    gamma: float

    def __post_init__(self) -> None:
        _check_base_lr("exponential", self.base_lr)
        check("exponential gamma", is_number(self.gamma) and self.gamma > 0, self.gamma, "a number > 0")

    def __call__(self, step: int) -> float:
        return self.base_lr * self.gamma ** step_index(step)


@dataclass(frozen=True)
class InverseTimeDecay(Schedule):
    """``lr(t) = lr0 / (1 + decay * t)``, the "hyperbolic" 1/t decay.

    Source: the Robbins-Monro step sizes (sum lr = inf, sum lr^2 < inf); Bottou 2012,
    "Stochastic gradient descent tricks", eq. 10 (``decay = lr0 * lambda``); Keras
    ``InverseTimeDecay`` with ``decay_steps = 1``.
    """

    base_lr: float
    decay: float

    def __post_init__(self) -> None:
        _check_base_lr("inverse_time", self.base_lr)
        check("inverse_time decay", is_number(self.decay) and self.decay > 0, self.decay, "a number > 0")

    def __call__(self, step: int) -> float:
        return self.base_lr / (1.0 + self.decay * step_index(step))


@dataclass(frozen=True)
class PolynomialDecay(Schedule):
    """``lr(t) = (lr0 - end_lr) * (1 - min(t, T) / T) ** power + end_lr``, ``T = decay_steps``.

    Sources: optax ``polynomial_schedule``; with ``end_lr = 0`` it is
    ``torch.optim.lr_scheduler.PolynomialLR(total_iters=T, power=power)``; ``power = 1`` is
    linear decay. ``end_lr`` is held after ``T``.
    """

    base_lr: float
    decay_steps: int
    power: float = 1.0
    end_lr: float = 0.0

    def __post_init__(self) -> None:
        _check_base_lr("polynomial", self.base_lr)
        check("polynomial decay_steps", is_int(self.decay_steps) and self.decay_steps >= 1, self.decay_steps,
              "an integer >= 1")
        check("polynomial power", is_number(self.power) and self.power > 0, self.power, "a number > 0")
        check("polynomial end_lr", is_number(self.end_lr) and self.end_lr >= 0, self.end_lr, "a number >= 0")

    def __call__(self, step: int) -> float:
        t = step_index(step)
        if t >= self.decay_steps:
            return self.end_lr
        return (self.base_lr - self.end_lr) * (1.0 - t / self.decay_steps) ** self.power + self.end_lr


@dataclass(frozen=True)
class CosineDecay(Schedule):
    """``lr(t) = min_lr + (lr0 - min_lr) * (1 + cos(pi * t / T)) / 2`` for ``t <= T``, then ``min_lr``.

    ``T = decay_steps``. Source: Loshchilov & Hutter 2017 (SGDR), eq. 5 with a single period,
    as ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=T, eta_min=min_lr)`` up to ``T``;
    after ``T`` torch's lr rises again, ours holds ``min_lr`` (nanoGPT, optax
    ``cosine_decay_schedule``).
    """

    base_lr: float
    decay_steps: int
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        _check_base_lr("cosine", self.base_lr)
        check("cosine decay_steps", is_int(self.decay_steps) and self.decay_steps >= 1, self.decay_steps,
              "an integer >= 1")
        _check_min_lr("cosine", "min_lr", self.min_lr, self.base_lr)

    def __call__(self, step: int) -> float:
        t = step_index(step)
        if t >= self.decay_steps:
            return self.min_lr
        return self.min_lr + (self.base_lr - self.min_lr) * (1.0 + math.cos(math.pi * t / self.decay_steps)) / 2.0


@dataclass(frozen=True)
class CosineWarmRestarts(Schedule):
    """SGDR: cosine annealing restarted after periods ``t0, t0*t_mult, t0*t_mult**2, ...`` steps.

    ``lr(t) = min_lr + (lr0 - min_lr) * (1 + cos(pi * T_cur / T_i)) / 2`` where ``T_i`` is the
    length of the current period and ``T_cur`` the steps since its start (exact integer
    arithmetic). Source: Loshchilov & Hutter 2017, "SGDR: stochastic gradient descent with
    warm restarts", eq. 5; ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts`` stepped per
    optimizer step. The paper counts ``T_0`` in epochs: pass ``t0_epochs``.
    """

    base_lr: float
    t0: int
    t_mult: int = 1
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        _check_base_lr("cosine_warm_restarts", self.base_lr)
        check("cosine_warm_restarts t0", is_int(self.t0) and self.t0 >= 1, self.t0, "an integer >= 1")
        check("cosine_warm_restarts t_mult", is_int(self.t_mult) and self.t_mult >= 1, self.t_mult,
              "an integer >= 1")
        _check_min_lr("cosine_warm_restarts", "min_lr", self.min_lr, self.base_lr)

    def period(self, step: int) -> tuple[int, int]:
        """``(T_cur, T_i)`` at ``step``: steps into the current period and its length."""
        t_cur, t_i = step_index(step), self.t0
        if self.t_mult == 1:
            return t_cur % t_i, t_i
        while t_cur >= t_i:
            t_cur -= t_i
            t_i *= self.t_mult
        return t_cur, t_i

    def __call__(self, step: int) -> float:
        t_cur, t_i = self.period(step)
        return self.min_lr + (self.base_lr - self.min_lr) * (1.0 + math.cos(math.pi * t_cur / t_i)) / 2.0


__all__ = [
    "Constant",
    "CosineDecay",
    "CosineWarmRestarts",
    "ExponentialDecay",
    "InverseTimeDecay",
    "MultiStepDecay",
    "PolynomialDecay",
    "StepDecay",
]
