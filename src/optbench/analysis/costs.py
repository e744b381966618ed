"""What a recipe costs besides accuracy, over seeds, and the accuracy-cost trade-off.

Runs record their costs in ``RunResult.environment``: ``optimizer_cost`` (state bytes per
parameter, median step time; :mod:`optbench.engine.cost`) and ``model_cost`` (parameters, nonzero
parameters, serialized bytes, FLOPs, inference latency of the trained model). This module flattens
them to ``"<section>.<key>"`` numbers (:func:`run_costs`), summarizes them over a recipe's seeds
(:func:`cost_summaries`), and finds the Pareto front of accuracy against one cost
(:func:`cost_points`): a recipe is on the front when no other recipe is at least as good on both
(cost no higher, metric no worse) and strictly better on one. Returns data only; the report draws it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optbench.analysis.stats import Summary, summarize
from optbench.core.spec import Direction, RunResult

if TYPE_CHECKING:
    from optbench.analysis.summary import RecipeSummary

#: The environment sections that hold costs.
COST_SECTIONS = ("optimizer_cost", "model_cost")


def run_costs(run: RunResult) -> dict[str, float]:
    """The numeric costs a run recorded, as ``{"optimizer_cost.step_us_median": 41.2, ...}``
    (booleans, None and non-numbers left out)."""
    out: dict[str, float] = {}
    for section in COST_SECTIONS:
        values = run.environment.get(section)
        if not isinstance(values, Mapping):
            continue
        for key, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                out[f"{section}.{key}"] = float(value)
    return out


def cost_summaries(runs: Iterable[RunResult], confidence: float = 0.95) -> dict[str, Summary]:
    """Each cost key's :class:`Summary` over the runs that recorded it (keys sorted)."""
    values: dict[str, list[float]] = {}
    for run in runs:
        for key, value in run_costs(run).items():
            values.setdefault(key, []).append(value)
    return {key: summarize(values[key], confidence) for key in sorted(values)}


def pareto_front(costs: Sequence[float], values: Sequence[float], direction: Direction) -> list[bool]:
    """Which points are Pareto-optimal: lower cost is better, ``values`` better under ``direction``.

    Raises:
        ValueError: when the sequences differ in length.
    """
    if len(costs) != len(values):
        raise ValueError(f"{len(costs)} costs but {len(values)} values")
    sign = 1.0 if direction is Direction.MAXIMIZE else -1.0
    front = []
    for i, (c, v) in enumerate(zip(costs, values, strict=True)):
        dominated = any(c2 <= c and sign * v2 >= sign * v and (c2 < c or sign * v2 > sign * v)
                        for j, (c2, v2) in enumerate(zip(costs, values, strict=True)) if j != i)
        front.append(not dominated)
    return front


@dataclass(frozen=True)
class CostPoint:
    """One recipe in an accuracy-cost plane: its cost and final metric over seeds.

    Attributes:
        label: the recipe's label.
        cost: the cost's :class:`Summary` (units of the cost key).
        value: the final metric's :class:`Summary`.
        on_front: whether the recipe is on the Pareto front (by the means).
    """

    label: str
    cost: Summary
    value: Summary
    on_front: bool


def cost_points(summaries: Sequence[RecipeSummary], key: str) -> list[CostPoint]:
    """The recipes that recorded cost ``key`` with a final metric, with their Pareto flags (the
    metric's direction is the summaries' ``final_direction``); empty when fewer than two have it."""
    rows = [r for r in summaries if key in r.costs and math.isfinite(r.costs[key].mean)
            and math.isfinite(r.final_test.mean)]
    if len(rows) < 2:
        return []
    front = pareto_front([r.costs[key].mean for r in rows], [r.final_test.mean for r in rows],
                         rows[0].final_direction)
    return [CostPoint(r.label, r.costs[key], r.final_test, f) for r, f in zip(rows, front, strict=True)]


def partitions(results: Iterable[RunResult]) -> dict[str, dict[str, Any]]:
    """``{recipe label: param_partition record}`` for the runs whose optimizer partitioned the model
    (one record per label: the partition is the same on every seed)."""
    out: dict[str, dict[str, Any]] = {}
    for run in results:
        record = run.environment.get("param_partition")
        if isinstance(record, Mapping):
            out.setdefault(run.recipe.label, dict(record))
    return out


__all__ = ["COST_SECTIONS", "CostPoint", "cost_points", "cost_summaries", "pareto_front", "partitions", "run_costs"]
