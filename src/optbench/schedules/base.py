"""The :class:`Schedule` contract, linear warmup in front of any schedule, and value checks.

A schedule is a function of the **step** — the number of optimizer steps already done,
0-based — to a learning rate: ``schedule(t)`` is the lr of the ``(t+1)``-th optimizer step
(optax / nanoGPT style, no hidden state). It is the same convention as a
``torch.optim.lr_scheduler`` stepped once after every optimizer step: after ``t`` calls of
``scheduler.step()`` the optimizer holds ``schedule(t)``.

Only :class:`~optbench.schedules.plateau.ReduceOnPlateau` reads a metric and is stateful;
every other schedule is a frozen dataclass (its ``repr`` shows every parameter) and a pure
function of the step.
"""

from __future__ import annotations

import math
import operator
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from optbench.core.errors import ConfigError


def check(field: str, ok: bool, value: object, allowed: str) -> None:
    """Raise :class:`ConfigError` ``(field, value, allowed)`` unless ``ok``."""
    if not ok:
        raise ConfigError(field, value, allowed)


def is_int(value: object) -> bool:
    """True for an ``int`` (or NumPy integer) that is not a ``bool``."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """True for a finite ``int``/``float`` that is not a ``bool``."""
    return (isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
            and math.isfinite(value))


def step_index(step: int) -> int:
    """``step`` as a non-negative ``int``; raises ``ValueError`` when negative, ``TypeError``
    when not an integer."""
    t = operator.index(step)
    if t < 0:
        raise ValueError(f"schedule step must be >= 0, got {t}")
    return t


class Schedule(ABC):
    """A learning-rate schedule: ``schedule(step) -> lr``.

    Attributes:
        base_lr: the recipe's learning rate (1/gradient units) the schedule is built from;
            :class:`~optbench.schedules.controller.LRController` scales every parameter
            group by ``group_initial_lr / base_lr``.
    """

    base_lr: float

    @abstractmethod
    def __call__(self, step: int) -> float:
        """The learning rate of the optimizer step after ``step`` steps (``step >= 0``)."""

    def momentum(self, step: int) -> float | None:
        """The momentum (or Adam's beta1) at ``step`` when the schedule cycles it, else None."""
        return None

    @property
    def monitor(self) -> str | None:
        """The metric key (``"valid_loss"``) the schedule reads once per epoch, or None."""
        return None

    def observe(self, value: float) -> None:
        """Feed one end-of-epoch value of :attr:`monitor` (a no-op for pure schedules)."""

    def state_dict(self) -> dict[str, Any]:
        """The mutable state, for a checkpoint (empty for pure functions of the step)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (nothing for pure functions of the step)."""


@dataclass(frozen=True)
class Warmup(Schedule):
    """Linear warmup for ``warmup_steps`` steps, then ``inner`` counting from 0.

    Closed form (``W = warmup_steps``, ``s = start_factor``)::

        lr(t) = inner(0) * (s + (1 - s) * t / W)    for t < W
        lr(t) = inner(t - W)                         for t >= W

    so the ramp ends exactly where ``inner`` starts (``inner(0)`` is ``base_lr`` for every
    decaying schedule). With ``inner`` constant this is
    ``torch.optim.lr_scheduler.LinearLR(start_factor=s, end_factor=1, total_iters=W)``; it
    is the warmup of Goyal et al. 2017 ("Accurate, large minibatch SGD", section 2.2) and
    of nanoGPT. ``s = 0`` (the default, as in HuggingFace ``get_*_schedule_with_warmup``)
    makes the first step's lr 0. A schedule wrapped in a warmup starts its own clock after
    the warmup: :func:`optbench.schedules.make_schedule` therefore gives it a horizon of
    ``total_steps - W``, so a cosine still ends at ``min_lr`` on the last step.
    A metric-driven ``inner`` (plateau) receives every :meth:`observe`, also during warmup.
    """

    inner: Schedule
    warmup_steps: int
    start_factor: float = 0.0

    def __post_init__(self) -> None:
        check("warmup_steps", is_int(self.warmup_steps) and self.warmup_steps >= 1, self.warmup_steps,
              "an integer >= 1")
        check("warmup_start_factor", is_number(self.start_factor) and 0.0 <= self.start_factor <= 1.0,
              self.start_factor, "a number in [0, 1]")
        check("warmup inner schedule", isinstance(self.inner, Schedule), self.inner, "a Schedule")

    @property
    def base_lr(self) -> float:  # type: ignore[override]
        return self.inner.base_lr

    def __call__(self, step: int) -> float:
        t = step_index(step)
        if t >= self.warmup_steps:
            return self.inner(t - self.warmup_steps)
        s = self.start_factor
        return self.inner(0) * (s + (1.0 - s) * t / self.warmup_steps)

    def momentum(self, step: int) -> float | None:
        t = step_index(step)
        return self.inner.momentum(max(t - self.warmup_steps, 0))

    @property
    def monitor(self) -> str | None:
        return self.inner.monitor

    def observe(self, value: float) -> None:
        self.inner.observe(value)

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)


def with_warmup(schedule: Schedule, warmup_steps: int, start_factor: float = 0.0) -> Schedule:
    """``schedule`` behind a linear warmup of ``warmup_steps`` steps (see :class:`Warmup`).

    ``warmup_steps == 0`` returns ``schedule`` itself.

    Raises:
        ConfigError: for ``warmup_steps`` not an integer >= 0 or ``start_factor`` outside [0, 1].
    """
    check("warmup_steps", is_int(warmup_steps) and warmup_steps >= 0, warmup_steps, "an integer >= 0")
    if warmup_steps == 0:
        check("warmup_start_factor", is_number(start_factor) and 0.0 <= start_factor <= 1.0, start_factor,
              "a number in [0, 1]")
        return schedule
    return Warmup(schedule, int(warmup_steps), float(start_factor))


def schedule_values(schedule: Schedule, steps: int | Iterable[int]) -> np.ndarray:
    """The learning rates of ``schedule`` at steps ``0 .. steps-1`` (or at the given steps).

    Returns:
        float64 array of shape ``(steps,)`` (or ``(len(steps),)``), in 1/gradient units.
        A metric-driven schedule gives its current lr at every step.
    """
    index = range(step_index(steps)) if is_int(steps) else steps  # type: ignore[arg-type]
    return np.fromiter((schedule(t) for t in index), dtype=np.float64)


__all__ = ["Schedule", "Warmup", "schedule_values", "with_warmup"]
