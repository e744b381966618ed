"""What an architecture search found and what it cost: every trial's validation metric against its
trainable parameters with the Pareto front, and the best so far against trials and seconds
(docs/architecture.md, "Architecture search"). Returns data only; the report draws it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from optbench.analysis.costs import pareto_front
from optbench.core.spec import Direction, RunResult, RunStatus


@dataclass(frozen=True)
class TrialPoint:
    """One trial: its recorded ``number``, ``task`` (the architecture, e.g. ``nas_cnn[block=plain,...]``),
    the metric ``value`` after its last epoch (nan when it did not finish), its trainable ``parameters``
    (None when not recorded), ``seconds`` (its total wall time) and ``status``."""

    number: int
    task: str
    value: float
    parameters: int | None
    seconds: float
    status: str


@dataclass(frozen=True)
class ArchitectureSearch:
    """The trials of one base task's architecture search, in trial order.

    Attributes:
        base: the searched task (e.g. ``nas_cnn``).
        metric: the metric compared (the task's validation target metric).
        direction: its direction.
        points: the trials.
        front: per point, whether it is on the Pareto front of (parameters, value) among finished trials.
        best_so_far: per point, the best value among trials up to it (nan before the first finished one).
        cumulative_seconds: per point, the seconds of trials up to it.
    """

    base: str
    metric: str
    direction: Direction
    points: tuple[TrialPoint, ...]
    front: tuple[bool, ...]
    best_so_far: tuple[float, ...]
    cumulative_seconds: tuple[float, ...]

    @property
    def failed(self) -> int:
        """Trials that did not finish (unrealizable architectures included)."""
        return sum(p.status != RunStatus.FINISHED.value for p in self.points)


def architecture_searches(results: Sequence[RunResult], metric: str, direction: Direction
                          ) -> list[ArchitectureSearch]:
    """The architecture searches among ``results``: search trials (``environment["trial"]``) of one base
    task under at least two parameterisations; empty when there are none."""
    from optbench.tasks import parse_task_ref

    groups: dict[str, list[RunResult]] = {}
    for run in results:
        if "trial" in run.environment:
            groups.setdefault(parse_task_ref(run.task)[0], []).append(run)
    out = []
    for base, runs in sorted(groups.items()):
        if len({r.task for r in runs}) < 2:
            continue
        runs = sorted(runs, key=lambda r: (int(r.environment["trial"]), r.run_id))
        points = tuple(_point(r, metric) for r in runs)
        done = [i for i, p in enumerate(points) if p.status == RunStatus.FINISHED.value and math.isfinite(p.value)
                and p.parameters is not None]
        on_front = pareto_front([float(points[i].parameters or 0) for i in done], [points[i].value for i in done],
                                direction)
        front = [False] * len(points)
        for i, flag in zip(done, on_front, strict=True):
            front[i] = flag
        best, best_so_far, seconds, total = math.nan, [], [], 0.0
        for p in points:
            if math.isfinite(p.value) and (math.isnan(best) or direction.better(p.value, best)):
                best = p.value
            total += p.seconds
            best_so_far.append(best)
            seconds.append(total)
        out.append(ArchitectureSearch(base, metric, direction, points, tuple(front), tuple(best_so_far),
                                      tuple(seconds)))
    return out


def _point(run: RunResult, metric: str) -> TrialPoint:
    value = run.epochs[-1].metrics.get(metric, math.nan) if run.epochs and run.status is RunStatus.FINISHED \
        else math.nan
    cost = run.environment.get("optimizer_cost")
    parameters = cost.get("trained_parameters") if isinstance(cost, dict) else None
    return TrialPoint(int(run.environment["trial"]), run.task, float(value),
                      int(parameters) if parameters is not None else None, float(run.total_seconds),
                      run.status.value)


__all__ = ["ArchitectureSearch", "TrialPoint", "architecture_searches"]
