"""Reduce the learning rate when a monitored metric stops improving (the one stateful schedule)."""

from __future__ import annotations

import math
from typing import Any

from optbench.core.spec import Direction
from optbench.schedules.base import Schedule, check, is_int, is_number, step_index

THRESHOLD_MODES = ("rel", "abs")


class ReduceOnPlateau(Schedule):
    """Multiply the lr by ``factor`` after more than ``patience`` epochs without improvement.

    Fed once per epoch with :meth:`update` (the value of :attr:`monitor`, e.g. the validation
    loss); calling it as a schedule (``schedule(step)``) returns the current lr whatever the
    step. Rules, identical to ``torch.optim.lr_scheduler.ReduceLROnPlateau``:

    * a value is an improvement when it beats the best so far by the threshold —
      ``rel``: ``v < best * (1 - threshold)`` (minimize) or ``v > best * (1 + threshold)``
      (maximize); ``abs``: ``v < best - threshold`` or ``v > best + threshold``. The first
      value always improves (best starts at +inf / -inf); NaN never does.
    * otherwise the bad-epoch counter grows; epochs in cooldown do not count.
    * when the counter **exceeds** ``patience`` (the ``patience + 1``-th bad epoch in a
      row), ``lr <- max(lr * factor, min_lr)`` (skipped when that changes lr by <= ``eps``),
      the counter restarts and ``cooldown`` epochs follow.

    Args:
        base_lr: the starting lr (> 0).
        direction: whether the monitored metric is better larger or smaller — stated by the
            task's metric (``task.direction("valid_loss")``), never guessed.
        monitor: the metric key fed, for the caller (default ``"valid_loss"``).
        factor: in (0, 1). patience, cooldown: integers >= 0 (epochs). threshold: >= 0.
        threshold_mode: ``"rel"`` or ``"abs"``. min_lr: in [0, base_lr]. eps: >= 0.

    Raises:
        ConfigError: for any value out of range.
    """

    def __init__(self, base_lr: float, direction: Direction, *, monitor: str = "valid_loss",
                 factor: float = 0.1, patience: int = 10, threshold: float = 1e-4,
                 threshold_mode: str = "rel", cooldown: int = 0, min_lr: float = 0.0,
                 eps: float = 1e-8) -> None:
        name = "reduce_on_plateau"
        check(f"{name} lr", is_number(base_lr) and base_lr > 0, base_lr, "a number > 0")
        check(f"{name} direction", isinstance(direction, Direction), direction, [d.value for d in Direction])
        check(f"{name} monitor", isinstance(monitor, str) and monitor != "", monitor,
              "a metric key such as valid_loss or valid_accuracy")
        check(f"{name} factor", is_number(factor) and 0 < factor < 1, factor, "a number in (0, 1)")
        check(f"{name} patience", is_int(patience) and patience >= 0, patience, "an integer >= 0")
        check(f"{name} threshold", is_number(threshold) and threshold >= 0, threshold, "a number >= 0")
        check(f"{name} threshold_mode", threshold_mode in THRESHOLD_MODES, threshold_mode, THRESHOLD_MODES)
        check(f"{name} cooldown", is_int(cooldown) and cooldown >= 0, cooldown, "an integer >= 0")
        check(f"{name} min_lr", is_number(min_lr) and 0 <= min_lr <= base_lr, min_lr,
              f"a number in [0, lr={base_lr:g}]")
        check(f"{name} eps", is_number(eps) and eps >= 0, eps, "a number >= 0")
        self.base_lr = float(base_lr)
        self.direction = direction
        self._monitor = monitor
        self.factor, self.patience, self.threshold = float(factor), int(patience), float(threshold)
        self.threshold_mode, self.cooldown = threshold_mode, int(cooldown)
        self.min_lr, self.eps = float(min_lr), float(eps)
        self._lr = self.base_lr
        self.best = -math.inf if direction is Direction.MAXIMIZE else math.inf
        self.bad_epochs = 0
        self.cooldown_left = 0
        self.epochs_seen = 0

    @property
    def lr(self) -> float:
        """The current learning rate."""
        return self._lr

    @property
    def scale(self) -> float:
        """``lr / base_lr``: the factor applied so far (1, factor, factor**2, ...)."""
        return self._lr / self.base_lr

    @property
    def monitor(self) -> str | None:
        return self._monitor

    def is_improvement(self, value: float) -> bool:
        """Whether ``value`` beats the best so far by the threshold (see the class docs)."""
        maximize = self.direction is Direction.MAXIMIZE
        if self.threshold_mode == "rel":
            return value > self.best * (1.0 + self.threshold) if maximize \
                else value < self.best * (1.0 - self.threshold)
        return value > self.best + self.threshold if maximize else value < self.best - self.threshold

    def update(self, value: float) -> float:
        """Record one epoch's metric ``value`` and return the lr for the next epoch."""
        value = float(value)
        self.epochs_seen += 1
        if self.is_improvement(value):
            self.best = value
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.bad_epochs = 0
        if self.bad_epochs > self.patience:
            new_lr = max(self._lr * self.factor, self.min_lr)
            if self._lr - new_lr > self.eps:
                self._lr = new_lr
            self.cooldown_left = self.cooldown
            self.bad_epochs = 0
        return self._lr

    def observe(self, value: float) -> None:
        self.update(value)

    def __call__(self, step: int) -> float:
        step_index(step)
        return self._lr

    def state_dict(self) -> dict[str, Any]:
        """The mutable state (for a checkpoint): lr, best, counters."""
        return {"lr": self._lr, "best": self.best, "bad_epochs": self.bad_epochs,
                "cooldown_left": self.cooldown_left, "epochs_seen": self.epochs_seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self._lr, self.best = float(state["lr"]), float(state["best"])
        self.bad_epochs, self.cooldown_left = int(state["bad_epochs"]), int(state["cooldown_left"])
        self.epochs_seen = int(state["epochs_seen"])

    def __repr__(self) -> str:
        return (f"ReduceOnPlateau(base_lr={self.base_lr!r}, direction={self.direction.value!r}, "
                f"monitor={self._monitor!r}, factor={self.factor!r}, patience={self.patience!r}, "
                f"threshold={self.threshold!r}, threshold_mode={self.threshold_mode!r}, "
                f"cooldown={self.cooldown!r}, min_lr={self.min_lr!r}, eps={self.eps!r}; lr={self._lr!r})")


__all__ = ["THRESHOLD_MODES", "ReduceOnPlateau"]
