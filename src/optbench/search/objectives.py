"""What a search optimizes: the validation metric and, for a multi-objective search, the model's costs.

A study's ``[search] objectives`` lists the objectives, the validation metric first (docs/architecture.md,
"Architecture search")::

    objectives = ["valid_accuracy:max", "params:min"]

* the first entry is a validation metric ``valid_<metric>``, optionally ``:max`` or ``:min`` (default: the
  task's direction of that metric); tuning never reads test or train metrics;
* the others are costs (``costs`` registry), each minimized (``:min`` or nothing), read from what the
  trial's run records in ``RunResult.environment``:

  - ``params``: trainable parameters (``optimizer_cost.trained_parameters``, recorded by every run);
  - ``flops``: forward FLOPs of one example (``model_cost.flops``; the recipe needs a technique that
    measures the model, e.g. ``model_cost``);
  - ``latency``: median milliseconds of a forward pass at batch 1 (``model_cost.latency_ms_batch_1``,
    measured on the run's device; same requirement).

With several objectives a search is an Optuna multi-objective study (``directions=[...]``): its answer is
the Pareto front of the finished trials (:func:`non_dominated`), not one best trial. Optuna prunes only
single-objective studies, CMA-ES optimizes one objective, and the Optuna mirror writes one value per
trial, so a multi-objective search refuses a pruner, ``cmaes`` and ``optuna_storage``
(:func:`check_multi_objective`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from optbench.core.errors import ConfigError
from optbench.core.registry import Registry
from optbench.core.spec import Direction, Recipe, RunResult

FIELD = "search.objectives"


@dataclass(frozen=True)
class CostObjective:
    """A cost a multi-objective search minimizes.

    Attributes:
        record: the ``RunResult.environment`` entry holding it (``"optimizer_cost"``, ``"model_cost"``).
        key: its key in that entry.
        description: one line (``optbench list``, error messages).
        measured: whether the recipe needs a technique that measures the model (``measures_model``).
    """

    record: str
    key: str
    description: str
    measured: bool = False


costs: Registry[CostObjective] = Registry("search objective")
costs.register("params", CostObjective("optimizer_cost", "trained_parameters", "trainable parameters"))
costs.register("flops", CostObjective("model_cost", "flops", "forward FLOPs of one example", measured=True))
costs.register("latency", CostObjective("model_cost", "latency_ms_batch_1",
                                        "median ms of a forward pass at batch 1", measured=True))

ALLOWED = ("a list of distinct objectives: a validation metric 'valid_<metric>[:max|:min]' first, then costs "
           "(each ':min') among params, flops, latency")


@dataclass(frozen=True)
class Objectives:
    """Parsed ``[search] objectives``: the validation ``metric`` (None: the task's target metric), its
    ``direction`` (None: the task's) and the minimized ``costs`` (``costs`` registry names)."""

    metric: str | None = None
    direction: Direction | None = None
    costs: tuple[str, ...] = ()


def parse_objectives(value: Any) -> Objectives:
    """Read ``[search] objectives`` (see the module doc); an empty list means the task's metric alone.

    Raises:
        ConfigError: (field ``search.objectives``) not a list of strings, a first entry that is not a
            validation metric, an unknown cost, a cost maximized, or an objective given twice.
    """
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(FIELD, value, ALLOWED)
    if not value:
        return Objectives()
    names = [v.strip().partition(":") for v in value]
    metric, _, way = names[0]
    if not metric.startswith("valid_") or len(metric) <= len("valid_") or way not in ("", "max", "min"):
        raise ConfigError(FIELD, value, ALLOWED)
    direction = None if not way else Direction.MAXIMIZE if way == "max" else Direction.MINIMIZE
    rest = []
    for name, _, way in names[1:]:
        if name not in costs.names() or way not in ("", "min") or name in rest:
            raise ConfigError(FIELD, value, ALLOWED)
        rest.append(name)
    return Objectives(metric, direction, tuple(rest))


def check_multi_objective(costs_: Sequence[str], *, sampler: str, pruner: str, optuna_storage: str | None) -> None:
    """Refuse what a multi-objective search cannot do (nothing when ``costs_`` is empty).

    Raises:
        ConfigError: a pruner other than ``none`` (Optuna prunes single-objective studies only), the
            ``cmaes`` sampler (one objective), or an Optuna mirror (one value per trial).
    """
    if not costs_:
        return
    if pruner != "none":
        raise ConfigError("search.pruner", pruner, f"none with several {FIELD} (Optuna cannot prune a "
                                                   "multi-objective study)")
    if sampler == "cmaes":
        raise ConfigError("search.sampler", sampler, f"nsga2, tpe, random, qmc or gp with several {FIELD} "
                                                     "(CMA-ES optimizes one objective)")
    if optuna_storage is not None:
        raise ConfigError("search.optuna_storage", "set", f"none with several {FIELD}")


def check_recorded(costs_: Sequence[str], recipe: Recipe) -> None:
    """Check that runs of ``recipe`` record every cost of ``costs_`` (FLOPs and latency need a technique
    that measures the model).

    Raises:
        ConfigError: (field ``search.objectives``) a measured cost without such a technique.
    """
    measured = [c for c in costs_ if costs.get(c).measured]
    if not measured:
        return
    from optbench.techniques.registry import make_component

    if not any(getattr(make_component(spec), "measures_model", False) for spec in recipe.techniques):
        raise ConfigError(FIELD, measured[0], "a recipe with a technique that measures the model "
                                              "(techniques = [\"model_cost\"]) for flops and latency")


def cost_value(result: RunResult, name: str) -> float:
    """The cost ``name`` recorded by ``result`` (NaN when it is not recorded)."""
    entry = costs.get(name)
    record = result.environment.get(entry.record)
    value = record.get(entry.key) if isinstance(record, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return math.nan
    return float(value)


def non_dominated(values: Sequence[Sequence[float]], directions: Sequence[Direction]) -> list[bool]:
    """Per point, whether it is on the Pareto front: no other point is at least as good in every
    objective and better in one (Deb et al. 2002, "A fast and elitist multiobjective genetic algorithm:
    NSGA-II", the first front of non-dominated sorting). Equal points are all on the front.

    Args:
        values: ``(n, k)`` finite objective values.
        directions: the ``k`` objectives' directions.

    Raises:
        ValueError: a row whose length is not ``k``, or a non-finite value.
    """
    if not len(values):
        return []
    v = np.asarray(values, dtype=float)
    if v.ndim != 2 or v.shape[1] != len(directions) or not np.isfinite(v).all():
        raise ValueError(f"values must be finite and shaped (n, {len(directions)})")
    v = v * np.array([1.0 if d is Direction.MINIMIZE else -1.0 for d in directions])  # all minimized
    no_worse = (v[:, None, :] <= v[None, :, :]).all(axis=2)  # [i, j]: i is nowhere worse than j
    better = (v[:, None, :] < v[None, :, :]).any(axis=2)
    return [bool(x) for x in ~(no_worse & better).any(axis=0)]


__all__ = ["ALLOWED", "CostObjective", "Objectives", "check_multi_objective", "check_recorded", "cost_value",
           "costs", "non_dominated", "parse_objectives"]
