"""Learning-rate schedules: pure ``step -> lr`` functions applied to an optimizer's groups.

``make_schedule("cosine", 0.1, total_steps=3000, steps_per_epoch=100, warmup_steps=100)``
returns a :class:`Schedule`; ``schedule(t)`` is the lr of the optimizer step after ``t``
steps (0-based). :class:`LRController` writes it into ``param_groups`` before every step,
keeping each group's ratio to the recipe's lr. Registered names (:data:`schedules`):
``constant``, ``warmup``, ``step``, ``multistep``, ``exponential``, ``inverse_time``,
``polynomial``, ``cosine``, ``cosine_warm_restarts``, ``cyclic``, ``one_cycle``,
``reduce_on_plateau`` (the only one reading a metric, once per epoch). Every schedule takes
``warmup_steps``/``warmup_epochs`` and ``warmup_start_factor``; every step count may be given
in epochs (``*_epochs``). Closed forms and sources are in each class's docstring; every one
is checked against its ``torch.optim.lr_scheduler`` counterpart in ``tests/test_schedules.py``.

Importing this package imports neither matplotlib nor anything beyond torch and NumPy;
:func:`plot_schedule` imports matplotlib on first use.
"""

from __future__ import annotations

from typing import Any

from optbench.schedules.base import Schedule, Warmup, schedule_values, with_warmup
from optbench.schedules.catalog import ScheduleSpec, check_params, make_schedule, schedules
from optbench.schedules.controller import LRController
from optbench.schedules.cyclic import Cyclic, OneCycle
from optbench.schedules.decay import (
    Constant,
    CosineDecay,
    CosineWarmRestarts,
    ExponentialDecay,
    InverseTimeDecay,
    MultiStepDecay,
    PolynomialDecay,
    StepDecay,
)
from optbench.schedules.params import parse_params
from optbench.schedules.plateau import ReduceOnPlateau


def plot_schedule(values: Any, title: str, **kwargs: Any) -> Any:
    """Figure of lr against step; see :func:`optbench.schedules.plot.plot_schedule`."""
    from optbench.schedules.plot import plot_schedule as _plot

    return _plot(values, title, **kwargs)


__all__ = [
    "Constant",
    "CosineDecay",
    "CosineWarmRestarts",
    "Cyclic",
    "ExponentialDecay",
    "InverseTimeDecay",
    "LRController",
    "MultiStepDecay",
    "OneCycle",
    "PolynomialDecay",
    "ReduceOnPlateau",
    "Schedule",
    "ScheduleSpec",
    "StepDecay",
    "Warmup",
    "check_params",
    "make_schedule",
    "parse_params",
    "plot_schedule",
    "schedule_values",
    "schedules",
    "with_warmup",
]
