"""What an architecture search found and what it cost: every trial's validation metric against its
trainable parameters with the Pareto front, the best so far against trials and seconds, and how well
the search's low-fidelity scores ranked the architectures it retrained (Kendall's tau between a trial's
validation score and the mean over seeds of its retrained validation score; docs/architecture.md,
"Architecture search"). Returns data only; the report draws it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from optbench.analysis.costs import pareto_front
from optbench.analysis.stats import Summary, summarize
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
class Retrained:
    """A trial retrained from scratch on every seed at the full budget (an architecture of the front, or the
    best one) and tested.

    Attributes:
        number / task: the trial and its architecture.
        search_value: the trial's validation metric after its last epoch (the search's low fidelity).
        valid / test: the retrained runs' validation and test metric after their last epoch, over seeds.
        parameters: trainable parameters (None when not recorded).
    """

    number: int
    task: str
    search_value: float
    valid: Summary
    test: Summary
    parameters: int | None = None


@dataclass(frozen=True)
class Baseline:
    """A hand-designed task trained with the best retrained architecture's recipe on its seeds: its
    ``task``, ``test`` metric over seeds and Welch's p-value against the best's test values (``p_value``;
    Welch 1947, :func:`optbench.analysis.stats.welch_p_value`)."""

    task: str
    test: Summary
    p_value: float


@dataclass(frozen=True)
class FidelityTau:
    """Kendall's tau-b (``scipy.stats.kendalltau``) between the search-time validation scores of the
    retrained architectures and their retrained mean validation scores: 1 when the cheap search ranked
    them as the full retraining does; ``tau`` and the two-sided ``p_value`` are nan below 2 architectures
    (or when a side is constant); ``n`` architectures."""

    tau: float
    p_value: float
    n: int


def fidelity_tau(retrained: Sequence[Retrained]) -> FidelityTau:
    """:class:`FidelityTau` of ``retrained`` (rows without a finite search value or retrained mean are left out)."""
    from scipy.stats import kendalltau

    pairs = [(r.search_value, r.valid.mean) for r in retrained
             if math.isfinite(r.search_value) and math.isfinite(r.valid.mean)]
    if len(pairs) < 2:
        return FidelityTau(math.nan, math.nan, len(pairs))
    low, full = zip(*pairs, strict=True)
    result = kendalltau(low, full)
    return FidelityTau(float(result.statistic), float(result.pvalue), len(pairs))


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
        retrained: the trials retrained on seeds (:func:`retrained_trials`), best search value first.
        tau: Kendall's tau of the retrained trials' search-time and retrained scores.
        baselines: hand-designed tasks trained like the best retrained one (:func:`baselines_of`).
    """

    base: str
    metric: str
    direction: Direction
    points: tuple[TrialPoint, ...]
    front: tuple[bool, ...]
    best_so_far: tuple[float, ...]
    cumulative_seconds: tuple[float, ...]
    retrained: tuple[Retrained, ...] = ()
    tau: FidelityTau = FidelityTau(math.nan, math.nan, 0)
    baselines: tuple[Baseline, ...] = ()

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
        retrained = retrained_trials(runs, results, metric, direction)
        out.append(ArchitectureSearch(base, metric, direction, points, tuple(front), tuple(best_so_far),
                                      tuple(seconds), retrained, fidelity_tau(retrained),
                                      baselines_of(retrained, results, base, metric)))
    return out


def baselines_of(retrained: Sequence[Retrained], results: Sequence[RunResult], base: str,
                 metric: str) -> tuple[Baseline, ...]:
    """The hand-designed baselines among ``results``: finished runs of another task than the searched
    ``base``, not search trials, with exactly the recipe (epochs included) and on the seeds of the best
    retrained architecture's runs (``retrained[0]``), as the search protocol's ``baselines`` trains them;
    grouped by task, in task order. Empty when nothing was retrained."""
    from optbench.analysis.stats import welch_p_value
    from optbench.tasks import parse_task_ref

    if not retrained:
        return ()
    test_key = "test_" + metric.removeprefix("valid_")
    best = retrained[0]
    runs = [r for r in results if r.task == best.task and r.status is RunStatus.FINISHED]
    most = max((r.recipe.epochs for r in runs), default=0)
    recipes = [r.recipe for r in runs if r.recipe.epochs == most]
    seeds = {r.seed for r in runs if r.recipe.epochs == most}
    groups: dict[str, list[float]] = {}
    for r in results:
        if (r.status is RunStatus.FINISHED and "trial" not in r.environment and r.recipe in recipes
                and r.seed in seeds and parse_task_ref(r.task)[0] != base and math.isfinite(_final(r, test_key))):
            groups.setdefault(r.task, []).append(_final(r, test_key))
    return tuple(Baseline(task, summary, welch_p_value(best.test, summary))
                 for task, values in sorted(groups.items()) for summary in (summarize(values),))


def _final(run: RunResult, key: str) -> float:
    if run.status is not RunStatus.FINISHED or not run.epochs:
        return math.nan
    return float(run.epochs[-1].metrics.get(key, math.nan))


def retrained_trials(trials: Sequence[RunResult], results: Sequence[RunResult], metric: str,
                     direction: Direction) -> tuple[Retrained, ...]:
    """The finished ``trials`` retrained among ``results``: a trial's retraining is the finished runs of its
    architecture (task) and recipe, the epochs aside, at the most epochs found, when one of them is not a
    search trial (the trial itself counts as its seed's run when it has those epochs, as the search protocol
    plans it: the same run id). ``metric`` is a ``valid_<metric>`` key; the test key is ``test_<metric>``.
    Best search value first (``direction``), then trial number."""
    test_key = "test_" + metric.removeprefix("valid_")
    out = []
    for trial in trials:
        if trial.status is not RunStatus.FINISHED or not math.isfinite(_final(trial, metric)):
            continue
        shape = replace(trial.recipe, epochs=1)
        same = [r for r in results if r.task == trial.task and r.status is RunStatus.FINISHED
                and replace(r.recipe, epochs=1) == shape]
        most = max(r.recipe.epochs for r in same)
        runs = [r for r in same if r.recipe.epochs == most]
        if all("trial" in r.environment for r in runs):
            continue  # trained by the search only
        parameters = _point(trial, metric).parameters
        out.append(Retrained(int(trial.environment["trial"]), trial.task, _final(trial, metric),
                             summarize([v for r in runs if math.isfinite(v := _final(r, metric))]),
                             summarize([v for r in runs if math.isfinite(v := _final(r, test_key))]), parameters))
    sign = -1.0 if direction is Direction.MAXIMIZE else 1.0
    return tuple(sorted(out, key=lambda r: (sign * r.search_value, r.number)))


def _point(run: RunResult, metric: str) -> TrialPoint:
    value = run.epochs[-1].metrics.get(metric, math.nan) if run.epochs and run.status is RunStatus.FINISHED \
        else math.nan
    cost = run.environment.get("optimizer_cost")
    parameters = cost.get("trained_parameters") if isinstance(cost, dict) else None
    return TrialPoint(int(run.environment["trial"]), run.task, float(value),
                      int(parameters) if parameters is not None else None, float(run.total_seconds),
                      run.status.value)


__all__ = ["ArchitectureSearch", "Baseline", "FidelityTau", "Retrained", "TrialPoint", "architecture_searches",
           "baselines_of", "fidelity_tau", "retrained_trials"]
