"""Apply a schedule to an optimizer's parameter groups, keeping the groups' lr ratios."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from optbench.core.errors import ConfigError
from optbench.schedules.base import Schedule, step_index
from optbench.schedules.plateau import ReduceOnPlateau


def _set(group: dict, key: str, value: float) -> None:
    current = group[key]
    if isinstance(current, torch.Tensor):  # lr as a tensor (capturable / compiled optimizers)
        current.fill_(value)
    else:
        group[key] = value


class LRController:
    """Writes ``schedule(step)`` into every parameter group before each optimizer step.

    Group ``i`` gets ``schedule(step) * plateau_scale * scale_i`` where
    ``scale_i = initial lr of group i / schedule.base_lr`` (read at construction), so groups
    created with different lrs (e.g. no-decay biases at half lr) keep their ratios;
    ``plateau_scale`` is ``plateau.scale`` (1 without a plateau). A schedule with
    ``cycle_momentum`` also gets its momentum written: ``group["momentum"]`` (SGD, RMSprop)
    or ``group["betas"][0]`` (Adam family).

    Usage in a loop::

        controller = LRController(optimizer, schedule)
        for each optimizer step t (0-based, over the whole run):
            controller.apply(t)            # before optimizer.step()
        at each epoch end: controller.on_epoch_end(metrics)   # metric-driven schedules

    Args:
        optimizer: a built optimizer; its groups' current ``lr`` define the ratios.
        schedule: any :class:`Schedule` (a :class:`ReduceOnPlateau` included).
        plateau: an extra :class:`ReduceOnPlateau` whose factor multiplies ``schedule``
            (e.g. cosine x plateau); its ``base_lr`` only sets its own ``min_lr`` scale.

    Raises:
        ConfigError: when the schedule cycles momentum and the optimizer has neither
            ``momentum`` nor ``betas``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: Schedule,
                 plateau: ReduceOnPlateau | None = None) -> None:
        self.optimizer = optimizer
        self.schedule = schedule
        self.plateau = plateau
        self.scales = [float(group["lr"]) / schedule.base_lr for group in optimizer.param_groups]
        self._momentum_key: str | None = None
        if schedule.momentum(0) is not None:
            defaults = optimizer.defaults
            self._momentum_key = "betas" if "betas" in defaults else "momentum" if "momentum" in defaults else None
            if self._momentum_key is None:
                raise ConfigError("schedule cycle_momentum", True,
                                  f"false for {type(optimizer).__name__}, which has no momentum or betas")
        self._lr: float | None = None

    @property
    def lr(self) -> float | None:
        """The base lr last written (``schedule * plateau``; group ``i`` got it times
        ``scales[i]``), None before the first :meth:`apply`."""
        return self._lr

    def lr_at(self, step: int) -> float:
        """The base lr for ``step`` (``schedule(step) * plateau.scale``), without writing it."""
        lr = self.schedule(step)
        return lr * self.plateau.scale if self.plateau is not None else lr

    def apply(self, step: int) -> float:
        """Write the lrs (and cycled momentum) of optimizer step ``step`` (0-based) into
        every group; call before ``optimizer.step()``. Returns the base lr."""
        step = step_index(step)
        lr = self.lr_at(step)
        if lr != self._lr:
            for group, scale in zip(self.optimizer.param_groups, self.scales, strict=True):
                _set(group, "lr", lr * scale)
            self._lr = lr
        if self._momentum_key is not None:
            momentum = self.schedule.momentum(step)
            for group in self.optimizer.param_groups:
                if self._momentum_key == "betas":
                    group["betas"] = (momentum, *group["betas"][1:])
                else:
                    _set(group, "momentum", momentum)  # type: ignore[arg-type]
        return lr

    @property
    def monitors(self) -> list[str]:
        """The metric keys :meth:`on_epoch_end` needs (empty for pure schedules)."""
        keys = [self.schedule.monitor, self.plateau.monitor if self.plateau is not None else None]
        return [k for k in keys if k is not None]

    def state_dict(self) -> dict[str, Any]:
        """The metric-driven parts' state (plateau counters), for a checkpoint; the step-driven
        parts are pure functions of the step and need none."""
        return {"schedule": self.schedule.state_dict(),
                "plateau": self.plateau.state_dict() if self.plateau is not None else None}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output.

        Raises:
            ValueError: the state does not fit this controller (a plateau part saved or missing).
        """
        if (state["plateau"] is None) != (self.plateau is None):
            raise ValueError("the saved schedule state does not fit the recipe's schedule")
        self.schedule.load_state_dict(dict(state["schedule"]))
        if self.plateau is not None:
            self.plateau.load_state_dict(dict(state["plateau"]))

    def on_epoch_end(self, metrics: Mapping[str, float] | float) -> None:
        """Feed the epoch's metrics to the metric-driven parts; the new lr applies from the
        next :meth:`apply`.

        Args:
            metrics: the epoch's ``{"valid_loss": ..., ...}`` (each part reads its
                ``monitor``), or one number fed to every part.

        Raises:
            ConfigError: when a monitored key is missing from ``metrics``.
        """
        parts: list[Schedule] = [self.schedule] + ([self.plateau] if self.plateau is not None else [])
        for part in parts:
            key = part.monitor
            if key is None:
                continue
            if isinstance(metrics, Mapping):
                if key not in metrics:
                    raise ConfigError("schedule monitor", key, sorted(metrics))
                part.observe(metrics[key])
            else:
                part.observe(float(metrics))


__all__ = ["LRController"]
