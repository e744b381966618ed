"""Early stopping on the validation split (Prechelt 1998, "Early stopping - but when?").

The rule is the patience criterion (Goodfellow, Bengio & Courville 2016, Algorithm 7.1; a form
of Prechelt's "stop after s successive non-improving strips"): an epoch *improves* when its
validation value beats the best so far by more than ``min_delta``; training stops once
``patience`` epochs in a row have not improved. The harness passes only validation values — the
test split is never looked at.
"""

from __future__ import annotations

import math
from typing import Any

from optbench.core.component import Component, RunContext
from optbench.core.errors import ConfigError
from optbench.core.spec import Direction
from optbench.techniques import _validate


class EarlyStopping:
    """Patience-based early stopping.

    Args:
        patience: epochs without improvement before stopping (an integer >= 1).
        min_delta: the margin an improvement must exceed, in the metric's units (>= 0).
        direction: :class:`~optbench.core.spec.Direction` of the monitored validation metric.

    Attributes:
        best: the best value so far (``nan`` before the first finite update).
        best_epoch: the 1-based epoch of ``best`` (0 before it).
        epoch: updates seen so far.
        bad_epochs: consecutive epochs without improvement.
        stopped_epoch: the epoch at which :meth:`update` first returned True (0 while running).

    Raises:
        ConfigError: for a bad ``patience``, ``min_delta`` or ``direction``.
    """

    def __init__(self, patience: int, min_delta: float = 0.0,
                 direction: Direction | str = Direction.MINIMIZE) -> None:
        self.patience = _validate.integer("early_stopping patience", patience, low=1)
        self.min_delta = _validate.number("early_stopping min_delta", min_delta, low=0.0, high_open=True)
        try:
            self.direction = Direction(direction)
        except ValueError:
            raise ConfigError("early_stopping direction", direction, [d.value for d in Direction]) from None
        self.best = math.nan
        self.best_epoch = 0
        self.epoch = 0
        self.bad_epochs = 0
        self.stopped_epoch = 0

    def _improves(self, value: float) -> bool:
        if math.isnan(self.best):
            return True
        if self.direction is Direction.MINIMIZE:
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, value: float) -> bool:
        """Record one epoch's validation ``value``; True when training should stop now.

        A non-finite value (NaN, inf) never improves. Calls after a stop return True and change
        nothing.
        """
        if self.stopped_epoch:
            return True
        self.epoch += 1
        value = float(value)
        if math.isfinite(value) and self._improves(value):
            self.best, self.best_epoch, self.bad_epochs = value, self.epoch, 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            self.stopped_epoch = self.epoch
        return bool(self.stopped_epoch)

    @property
    def improved(self) -> bool:
        """True when the last update set a new best (the moment to keep a copy of the weights)."""
        return self.epoch > 0 and self.best_epoch == self.epoch

    def state_dict(self) -> dict[str, Any]:
        """The counters, for a checkpoint (JSON-ready)."""
        return {"best": self.best, "best_epoch": self.best_epoch, "epoch": self.epoch,
                "bad_epochs": self.bad_epochs, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore counters saved by :meth:`state_dict`."""
        self.best = float(state["best"])
        self.best_epoch, self.epoch = int(state["best_epoch"]), int(state["epoch"])
        self.bad_epochs, self.stopped_epoch = int(state["bad_epochs"]), int(state["stopped_epoch"])



class EarlyStoppingComponent(Component):
    """Patience-based early stopping on the task's target metric on the validation split (never the
    test split): the run ends after ``patience`` epochs without an improvement larger than
    ``min_delta`` (Prechelt 1998)."""

    name = "early_stopping"
    family = "stopping"
    source = "Prechelt 1998; Goodfellow et al. 2016, Alg. 7.1"
    description = "Stop after `patience` epochs without improvement of the validation target metric."

    def __init__(self, *, patience: int, min_delta: float = 0.0) -> None:
        self.stopper = EarlyStopping(patience, min_delta)
        self.key = ""

    def setup(self, run: RunContext) -> None:
        self.key = f"valid_{run.task.target.metric}"
        self.stopper = EarlyStopping(self.stopper.patience, self.stopper.min_delta, run.task.direction(self.key))

    def on_epoch_end(self, epoch: int, metrics: Any) -> dict[str, Any] | None:
        if self.stopper.update(metrics[self.key]):
            return {"stopped_epoch": epoch, "best_epoch": self.stopper.best_epoch}
        return None

    def state_dict(self) -> dict[str, Any]:
        return self.stopper.state_dict()

    def load_state_dict(self, state: Any) -> None:
        self.stopper.load_state_dict(dict(state))

#: The techniques of this module (discovered by :mod:`optbench.techniques.registry`).
COMPONENTS = (EarlyStoppingComponent,)

__all__ = ["COMPONENTS", "EarlyStoppingComponent", "EarlyStopping"]
