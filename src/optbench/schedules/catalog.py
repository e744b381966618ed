"""The schedule catalogue: the strict registry :data:`schedules` and :func:`make_schedule`.

Every entry takes the common parameters ``warmup_steps`` (or ``warmup_epochs``, default 0)
and ``warmup_start_factor`` (default 0): a linear warmup in front of the schedule, which
then starts counting after the warmup (see :class:`~optbench.schedules.base.Warmup`).

All step counts are **optimizer steps** (the schedule is evaluated once per step); each can
be spelled in epochs instead (``step_size_epochs=30``, ``milestones_epochs=[30, 60]``,
``t0_epochs=10``, ``warmup_epochs=0.5``), converted with the run's steps per epoch as
``round(epochs * steps_per_epoch)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from optbench.core.errors import ConfigError
from optbench.core.registry import Registry
from optbench.core.spec import Direction
from optbench.schedules.base import Schedule, check, is_int, is_number, with_warmup
from optbench.schedules.cyclic import ANNEAL, CYCLIC_MODES, Cyclic, OneCycle
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
from optbench.schedules.params import REQUIRED, Param, resolve
from optbench.schedules.plateau import THRESHOLD_MODES, ReduceOnPlateau

DirectionOf = Callable[[str], Direction]


@dataclass(frozen=True)
class Context:
    """What a builder knows about the run.

    Attributes:
        base_lr: the recipe's learning rate.
        horizon: optimizer steps left after the warmup (``total_steps - warmup_steps``).
        steps_per_epoch: optimizer steps per epoch.
        direction_of: metric key -> :class:`Direction` (``task.direction``), or None.
    """

    base_lr: float
    horizon: int
    steps_per_epoch: int
    direction_of: DirectionOf | None = None


Builder = Callable[..., Schedule]  # (context, **params) -> Schedule


@dataclass(frozen=True)
class ScheduleSpec:
    """One registered schedule.

    Args:
        name: registry name (``"cosine"``).
        build: ``(context, **resolved_params) -> Schedule``.
        params: the schedule's own parameters (the warmup ones are added by :func:`make_schedule`).
        summary: the closed form in one line.
        source: paper / library reference.
    """

    name: str
    build: Builder
    params: tuple[Param, ...]
    summary: str
    source: str

    def describe(self) -> str:
        """One line for ``optbench list schedules``: summary, parameters with defaults, source."""
        names = ", ".join(p.describe() for p in self.all_params())
        return f"{self.summary}  [{names}]  ({self.source})"

    def all_params(self) -> tuple[Param, ...]:
        """Own parameters plus the common warmup ones (an own declaration wins)."""
        own = {p.name for p in self.params}
        return self.params + tuple(p for p in WARMUP_PARAMS if p.name not in own)


def _pos(v: Any) -> bool:
    return v > 0


def _nonneg(v: Any) -> bool:
    return v >= 0


def _at_least_1(v: Any) -> bool:
    return v >= 1


def _unit(v: Any) -> bool:
    return 0 < v <= 1


WARMUP_PARAMS = (
    Param("warmup_steps", "int", 0, _nonneg, "an integer >= 0", steps=True,
          doc="linear warmup steps before the schedule, which then starts counting"),
    Param("warmup_start_factor", "float", 0.0, lambda v: 0 <= v <= 1, "a number in [0, 1]",
          doc="warmup starts at this fraction of the lr"),
)
_GAMMA = Param("gamma", "float", 0.1, _unit, "a number in (0, 1]")
_DECAY_STEPS = Param("decay_steps", "int", None, _at_least_1, "an integer >= 1", steps=True,
                     doc="steps of decay (default: total_steps - warmup_steps), then the final lr is held")
_MIN_LR = Param("min_lr", "float", 0.0, _nonneg, "a number in [0, lr]")


def _momentum(base: float, peak: float) -> tuple[Param, ...]:
    """``cycle_momentum`` and its bounds (torch's defaults differ between CyclicLR and OneCycleLR)."""
    return (Param("cycle_momentum", "bool", False, doc="also cycle momentum / Adam's beta1"),
            Param("base_momentum", "float", base, lambda v: 0 <= v < 1, "a number in [0, 1)"),
            Param("max_momentum", "float", peak, lambda v: 0 <= v < 1, "a number in [0, 1)"))


def _plateau(ctx: Context, *, monitor: str, **params: Any) -> Schedule:
    if ctx.direction_of is None:
        raise ConfigError("reduce_on_plateau monitor", monitor,
                          "a metric whose direction is known (make_schedule(..., direction_of=task.direction))")
    return ReduceOnPlateau(ctx.base_lr, ctx.direction_of(monitor), monitor=monitor, **params)


_SPECS = (
    ScheduleSpec("constant", lambda ctx: Constant(ctx.base_lr), (), "lr(t) = lr0", "no schedule"),
    ScheduleSpec(
        "warmup", lambda ctx: Constant(ctx.base_lr),
        (Param("warmup_steps", "int", REQUIRED, _at_least_1, "an integer >= 1", steps=True),),
        "linear warmup from warmup_start_factor*lr0 to lr0 over warmup_steps, then lr0",
        "Goyal et al. 2017 sec. 2.2; torch LinearLR"),
    ScheduleSpec(
        "step", lambda ctx, **p: StepDecay(ctx.base_lr, **p),
        (Param("step_size", "int", REQUIRED, _at_least_1, "an integer >= 1", steps=True), _GAMMA),
        "lr(t) = lr0 * gamma ** floor(t / step_size)", "torch StepLR"),
    ScheduleSpec(
        "multistep", lambda ctx, **p: MultiStepDecay(ctx.base_lr, **p),
        (Param("milestones", "int_list", REQUIRED,
               lambda v: len(v) >= 1 and all(m >= 1 for m in v) and all(a < b for a, b in zip(v, v[1:], strict=False)),
               "a non-empty strictly increasing list of integers >= 1", steps=True), _GAMMA),
        "lr(t) = lr0 * gamma ** #(milestones <= t)", "torch MultiStepLR"),
    ScheduleSpec(
        "exponential", lambda ctx, **p: ExponentialDecay(ctx.base_lr, **p),
        (Param("gamma", "float", REQUIRED, _pos, "a number > 0 (factor per optimizer step)"),),
        "lr(t) = lr0 * gamma ** t (gamma per step; decay_rate ** (1/decay_steps) in optax terms)",
        "torch ExponentialLR"),
    ScheduleSpec(
        "inverse_time", lambda ctx, **p: InverseTimeDecay(ctx.base_lr, **p),
        (Param("decay", "float", REQUIRED, _pos, "a number > 0 (per optimizer step)"),),
        "lr(t) = lr0 / (1 + decay * t)", "Bottou 2012 eq. 10; Keras InverseTimeDecay"),
    ScheduleSpec(
        "polynomial",
        lambda ctx, decay_steps, **p: PolynomialDecay(ctx.base_lr, decay_steps or ctx.horizon, **p),
        (_DECAY_STEPS, Param("power", "float", 1.0, _pos, "a number > 0"),
         Param("end_lr", "float", 0.0, _nonneg, "a number >= 0")),
        "lr(t) = (lr0 - end_lr) * (1 - min(t, T)/T) ** power + end_lr",
        "optax polynomial_schedule; torch PolynomialLR"),
    ScheduleSpec(
        "cosine",
        lambda ctx, decay_steps, **p: CosineDecay(ctx.base_lr, decay_steps or ctx.horizon, **p),
        (_DECAY_STEPS, _MIN_LR),
        "lr(t) = min_lr + (lr0 - min_lr) * (1 + cos(pi * min(t, T) / T)) / 2",
        "Loshchilov & Hutter 2017; torch CosineAnnealingLR"),
    ScheduleSpec(
        "cosine_warm_restarts", lambda ctx, **p: CosineWarmRestarts(ctx.base_lr, **p),
        (Param("t0", "int", REQUIRED, _at_least_1, "an integer >= 1", steps=True,
               doc="length of the first period"),
         Param("t_mult", "int", 1, _at_least_1, "an integer >= 1"), _MIN_LR),
        "SGDR: cosine from lr0 to min_lr over periods t0, t0*t_mult, ...",
        "Loshchilov & Hutter 2017 eq. 5; torch CosineAnnealingWarmRestarts"),
    ScheduleSpec(
        "cyclic", lambda ctx, **p: Cyclic(ctx.base_lr, **p),
        (Param("max_lr", "float", REQUIRED, _pos, "a number >= lr"),
         Param("step_size_up", "int", 2000, _at_least_1, "an integer >= 1", steps=True),
         Param("step_size_down", "int", None, _at_least_1, "an integer >= 1", steps=True,
               doc="default: step_size_up"),
         Param("mode", "choice", "triangular", choices=CYCLIC_MODES),
         Param("gamma", "float", 1.0, _unit, "a number in (0, 1] (exp_range only)"), *_momentum(0.8, 0.9)),
        "triangle waves between lr0 and max_lr (triangular, triangular2, exp_range)",
        "Smith 2017 sec. 3.1; torch CyclicLR"),
    ScheduleSpec(
        "one_cycle", lambda ctx, **p: OneCycle(ctx.base_lr, ctx.horizon, **p),
        (Param("max_lr", "float", None, _pos, "a number > 0", doc="peak lr (default: lr0)"),
         Param("pct_start", "float", 0.3, lambda v: 0 < v < 1, "a number in (0, 1)"),
         Param("anneal", "choice", "cos", choices=ANNEAL),
         Param("div_factor", "float", 25.0, _pos, "a number > 0"),
         Param("final_div_factor", "float", 1e4, _pos, "a number > 0"),
         Param("three_phase", "bool", False), *_momentum(0.85, 0.95)),
        "max_lr/div_factor -> max_lr -> max_lr/div_factor/final_div_factor over total_steps",
        "Smith & Topin 2019; torch OneCycleLR"),
    ScheduleSpec(
        "reduce_on_plateau", _plateau,
        (Param("monitor", "str", "valid_loss", lambda v: v.startswith(("valid_", "train_")),
               "a validation or training metric key such as valid_loss (never the test set)",
               doc="metric key read once per epoch"),
         Param("factor", "float", 0.1, lambda v: 0 < v < 1, "a number in (0, 1)"),
         Param("patience", "int", 10, _nonneg, "an integer >= 0 (epochs)"),
         Param("threshold", "float", 1e-4, _nonneg, "a number >= 0"),
         Param("threshold_mode", "choice", "rel", choices=THRESHOLD_MODES),
         Param("cooldown", "int", 0, _nonneg, "an integer >= 0 (epochs)"),
         Param("min_lr", "float", 0.0, _nonneg, "a number in [0, lr]"),
         Param("eps", "float", 1e-8, _nonneg, "a number >= 0")),
        "lr *= factor after more than `patience` epochs without improvement of `monitor`",
        "torch ReduceLROnPlateau"),
)

#: The strict schedule registry (unknown names raise UnknownNameError listing these).
schedules: Registry[ScheduleSpec] = Registry("schedule")
for _spec in _SPECS:
    schedules.register(_spec.name, _spec)
for _alias, _name in (("sgdr", "cosine_warm_restarts"), ("1cycle", "one_cycle"), ("plateau", "reduce_on_plateau")):
    schedules.alias(_alias, _name)


def check_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``params`` of schedule ``name`` without a run (names, kinds, single-value ranges).

    For a recipe's early check, before anything runs; checks that need the run (``warmup_steps
    < total_steps``, ``min_lr <= lr``, epochs converted to steps) happen in :func:`make_schedule`.

    Returns:
        every parameter with defaults filled in (``*_epochs`` values kept under that name).

    Raises:
        UnknownNameError: for an unknown schedule name.
        ConfigError: for an unknown parameter (the message lists the allowed ones) or a bad value.
    """
    return resolve(name, schedules.get(name).all_params(), params, None)


def make_schedule(name: str, base_lr: float, /, *, total_steps: int, steps_per_epoch: int,
                  direction_of: DirectionOf | None = None, **params: Any) -> Schedule:
    """Build schedule ``name`` for a run of ``total_steps`` optimizer steps.

    ``name`` and ``base_lr`` are positional-only, so a user parameter spelled ``base_lr`` or
    ``name`` is rejected as unknown (ConfigError listing the allowed ones); validate user
    parameters with :func:`check_params` first, which also rejects ``total_steps``.

    Args:
        name: a registered name or alias (``sgdr``, ``1cycle``, ``plateau``).
        base_lr: the recipe's learning rate (> 0).
        total_steps: optimizer steps of the whole run (``epochs * steps_per_epoch``); the
            horizon of ``cosine``/``polynomial`` (unless ``decay_steps``) and ``one_cycle``,
            minus any warmup.
        steps_per_epoch: optimizer steps per epoch, to convert ``*_epochs`` parameters.
        direction_of: metric key -> Direction (pass ``task.direction``); required by
            ``reduce_on_plateau`` to know whether its ``monitor`` is better larger or smaller.
        **params: the schedule's parameters (see :meth:`ScheduleSpec.describe`).

    Returns:
        a :class:`Schedule` (``step -> lr``) with a readable repr; wrapped in
        :class:`~optbench.schedules.base.Warmup` when ``warmup_steps > 0``.

    Raises:
        UnknownNameError: for an unknown name.
        ConfigError: an unknown parameter (listing the allowed ones), a missing or
            out-of-range one, ``warmup_steps >= total_steps``.
    """
    spec = schedules.get(name)
    name = spec.name
    check(f"{name} lr", is_number(base_lr) and base_lr > 0, base_lr, "a number > 0")
    check("total_steps", is_int(total_steps) and total_steps >= 1, total_steps, "an integer >= 1")
    check("steps_per_epoch", is_int(steps_per_epoch) and steps_per_epoch >= 1, steps_per_epoch,
          "an integer >= 1")
    resolved = resolve(name, spec.all_params(), params, int(steps_per_epoch))
    warmup_steps = resolved.pop("warmup_steps")
    start_factor = resolved.pop("warmup_start_factor")
    if warmup_steps:
        check(f"{name} warmup_steps", warmup_steps < total_steps, warmup_steps,
              f"an integer < total_steps={total_steps}")
    ctx = Context(float(base_lr), int(total_steps) - warmup_steps, int(steps_per_epoch), direction_of)
    return with_warmup(spec.build(ctx, **resolved), warmup_steps, start_factor)


__all__ = ["Context", "ScheduleSpec", "WARMUP_PARAMS", "check_params", "make_schedule", "schedules"]
