"""Protocol results as data (no formatting): the DeepOBS best-lr table, the crowded-valley
comparison, AlgoPerf-lite scores and search outcomes.

Which runs count follows :mod:`optbench.analysis.summary`: a run's value is its metric at its last
recorded epoch (a diverged run counts with the epoch before it diverged); failed runs and runs
without any epoch have no value (NaN) and are counted as lost, never silently dropped.

Sources: DeepOBS (Schneider, Balles & Hennig 2019, sec. 3: lr grid on the validation metric, best
setting re-run on 10 seeds); Crowded Valley (Schmidt, Schneider & Hennig 2021, sec. 3-4: one-shot
defaults versus random-search budgets, crossed with schedules); AlgoPerf (Dahl et al. 2023, sec.
4: external tuning, median over studies of the fastest trial's time-to-target, performance
profiles and their integral over tau in [1, 4]).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from optbench.analysis.report_data import Profiles, performance_profiles
from optbench.analysis.stats import Summary, summarize, welch_p_value
from optbench.analysis.summary import RecipeSummary, summarize_runs
from optbench.core.spec import Direction, RunResult, RunStatus, Task


@dataclass(frozen=True)
class TaskKeys:
    """What a protocol measures on one task.

    Attributes:
        name: task name as stored.
        directions: metric key -> Direction (``"test_accuracy"`` -> maximize ...).
        valid_key / test_key: the task's target metric on the validation split (tuning, selection)
            and on the test split (what is reported).
        target: ``(metric key, value)`` of time-to-target.
    """

    name: str
    directions: Mapping[str, Direction]
    valid_key: str
    test_key: str
    target: tuple[str, float]

    @classmethod
    def from_task(cls, task: Task, target_value: float | None = None) -> TaskKeys:
        """The keys of ``task``; ``target_value`` overrides the task's target value."""
        directions = {f"{s}_{m.name}": m.direction for s in ("train", "valid", "test")
                      for m in (*task.metrics, *task.derived)}
        value = task.target.value if target_value is None else float(target_value)
        metric = task.target.metric
        return cls(task.name, directions, f"valid_{metric}", f"test_{metric}", (task.target.key, value))

    @property
    def direction(self) -> Direction:
        """Direction of the target metric."""
        return self.directions[self.valid_key]


def run_value(run: RunResult, key: str) -> float:
    """``key`` at the run's last recorded epoch; NaN for a failed run or one without epochs."""
    if run.status is RunStatus.FAILED or not run.epochs:
        return math.nan
    return run.final(key)


def _summary(values: Iterable[float]) -> Summary:
    return summarize([v for v in values if math.isfinite(v)])


def _better(direction: Direction, a: float, b: float) -> bool:
    """``a`` strictly better than ``b``, NaN never better."""
    return not math.isnan(a) and (math.isnan(b) or direction.better(a, b))


# ----------------------------------------------------------------------------------- seed004
@dataclass(frozen=True)
class Seed004Result:
    """Same hyperparameters for every optimizer: per task, the ranked summaries over seeds."""

    keys: Mapping[str, TaskKeys]
    summaries: Mapping[str, tuple[RecipeSummary, ...]]
    protocol: str = "seed004"


def seed004_result(runs: Mapping[str, Sequence[RunResult]], keys: Mapping[str, TaskKeys]) -> Seed004Result:
    """Rank the recipes of each task (``runs``: task -> its runs) with :func:`summarize_runs`."""
    out = {}
    for task, task_runs in runs.items():
        k = keys[task]
        out[task] = tuple(summarize_runs(task_runs, k.directions, final_key=k.test_key, best_key=k.valid_key,
                                         target=k.target))
    return Seed004Result(dict(keys), out)


# ----------------------------------------------------------------------------------- deepobs
@dataclass(frozen=True)
class GridPoint:
    """One learning rate of the grid: the mean final validation metric over its tuning seeds.

    ``valid`` is NaN when no tuning run has a value; ``n_lost`` counts failed runs and runs without epochs."""

    lr: float
    valid: float
    n: int
    n_lost: int


@dataclass(frozen=True)
class DeepobsRow:
    """One (task, optimizer) of the DeepOBS protocol.

    Attributes:
        best_lr / best_valid: the grid point with the best mean final validation metric (None/NaN
            when every grid point was lost).
        grid: every grid point, ascending lr.
        test / valid: final test and validation metric of the best setting over the seeds.
        run_ids: the re-runs of the best setting.
    """

    task: str
    label: str
    best_lr: float | None
    best_valid: float
    grid: tuple[GridPoint, ...]
    test: Summary
    valid: Summary
    run_ids: tuple[str, ...]


@dataclass(frozen=True)
class DeepobsResult:
    """The DeepOBS table: best lr per (task, optimizer) and test metric over seeds."""

    keys: Mapping[str, TaskKeys]
    rows: tuple[DeepobsRow, ...]
    protocol: str = "deepobs"


def grid_points(runs: Sequence[RunResult], key: str) -> tuple[GridPoint, ...]:
    """Runs grouped by ``recipe.hyperparams["lr"]``, each with the mean final ``key`` (ascending lr)."""
    by_lr: dict[float, list[float]] = {}
    for run in runs:
        by_lr.setdefault(float(run.recipe.hyperparams["lr"]), []).append(run_value(run, key))
    points = []
    for lr in sorted(by_lr):
        values = [v for v in by_lr[lr] if math.isfinite(v)]
        points.append(GridPoint(lr, float(np.mean(values)) if values else math.nan, len(by_lr[lr]),
                                len(by_lr[lr]) - len(values)))
    return tuple(points)


def best_grid_point(points: Sequence[GridPoint], direction: Direction) -> GridPoint | None:
    """The point with the best ``valid`` (the smaller lr on ties); None when every point is NaN."""
    best = None
    for point in points:
        if _better(direction, point.valid, math.nan if best is None else best.valid):
            best = point
    return best


def deepobs_row(keys: TaskKeys, label: str, tuning: Sequence[RunResult], final: Sequence[RunResult]) -> DeepobsRow:
    """The row of one optimizer: its grid (from ``tuning``) and its best setting's re-runs (``final``)."""
    points = grid_points(tuning, keys.valid_key)
    best = best_grid_point(points, keys.direction)
    return DeepobsRow(keys.name, label, None if best is None else best.lr, math.nan if best is None else best.valid,
                      points, _summary(run_value(r, keys.test_key) for r in final),
                      _summary(run_value(r, keys.valid_key) for r in final), tuple(r.run_id for r in final))


# ---------------------------------------------------------------------------- crowded valley
@dataclass(frozen=True)
class Setting:
    """One optimizer x schedule, at its defaults (``tuned=False``) or tuned with the budget.

    Attributes:
        label: ``"optimizer/schedule"``.
        hyperparams: the hyperparameters used for the seeds (the best trial's when tuned).
        valid / test: final validation / test metric over the seeds.
    """

    label: str
    optimizer: str
    schedule: str
    tuned: bool
    hyperparams: Mapping[str, Any]
    valid: Summary
    test: Summary
    test_values: tuple[float, ...]


@dataclass(frozen=True)
class ValleyComparison:
    """Tuning one setting versus the best of several settings at their defaults.

    Attributes:
        gain: ``tuned.test.mean - best_default.test.mean``, signed so that > 0 means tuning is
            better (for a metric to minimize the sign is flipped).
        p_value: two-sided Welch t-test of the two test samples (NaN when undefined).
    """

    tuned: Setting
    best_default: Setting
    gain: float
    p_value: float


@dataclass(frozen=True)
class CrowdedValleyResult:
    """Per task: every default and tuned setting, the best default (selected on validation) and the
    comparison of each tuned setting with it (Schmidt et al. 2021)."""

    keys: Mapping[str, TaskKeys]
    defaults: Mapping[str, tuple[Setting, ...]]
    tuned: Mapping[str, tuple[Setting, ...]]
    comparisons: Mapping[str, tuple[ValleyComparison, ...]]
    trials: int
    protocol: str = "crowded-valley"


def setting(keys: TaskKeys, label: str, optimizer: str, schedule: str, tuned: bool,
            runs: Sequence[RunResult]) -> Setting:
    """A :class:`Setting` from its runs over seeds."""
    tests = [run_value(r, keys.test_key) for r in runs]
    hyperparams = dict(runs[0].recipe.hyperparams) if runs else {}
    return Setting(label, optimizer, schedule, tuned, hyperparams,
                   _summary(run_value(r, keys.valid_key) for r in runs), _summary(tests),
                   tuple(v for v in tests if math.isfinite(v)))


def valley_comparisons(keys: TaskKeys, defaults: Sequence[Setting],
                       tuned: Sequence[Setting]) -> tuple[ValleyComparison, ...]:
    """Each tuned setting against the default setting with the best mean validation metric."""
    best = None
    for s in defaults:
        if _better(keys.direction, s.valid.mean, math.nan if best is None else best.valid.mean):
            best = s
    if best is None:
        return ()
    sign = 1.0 if keys.direction is Direction.MAXIMIZE else -1.0
    return tuple(ValleyComparison(t, best, sign * (t.test.mean - best.test.mean), welch_p_value(t.test, best.test))
                 for t in tuned)


# ---------------------------------------------------------------------------------- algoperf
@dataclass(frozen=True)
class AlgoperfStudy:
    """One tuning study of a submission: its fastest trial to the target.

    ``seconds`` / ``steps`` are ``inf`` when no trial reached the target (censored)."""

    index: int
    seconds: float
    steps: float
    n_trials: int
    n_reached: int
    run_ids: tuple[str, ...]


@dataclass(frozen=True)
class AlgoperfEntry:
    """A submission (optimizer) on a task: the median over studies of the fastest trial."""

    task: str
    submission: str
    studies: tuple[AlgoperfStudy, ...]
    seconds: float
    steps: float


@dataclass(frozen=True)
class AlgoperfResult:
    """Time-to-target scores, performance profiles over tasks and their integrated score."""

    keys: Mapping[str, TaskKeys]
    entries: tuple[AlgoperfEntry, ...]
    profiles: Profiles
    steps_profiles: Profiles
    protocol: str = "algoperf-lite"


def algoperf_study(keys: TaskKeys, index: int, trials: Sequence[RunResult]) -> AlgoperfStudy:
    """The fastest of ``trials`` to reach the target (training seconds; steps of that trial too)."""
    key, value = keys.target
    direction = keys.directions[key]
    reached = [t for t in (r.time_to_target(key, value, direction) for r in trials
                           if r.status is not RunStatus.FAILED) if t is not None]
    fastest = min(reached, key=lambda t: t[2]) if reached else None
    return AlgoperfStudy(index, math.inf if fastest is None else fastest[2],
                         math.inf if fastest is None else float(fastest[1]), len(trials), len(reached),
                         tuple(r.run_id for r in trials))


def algoperf_entry(task: str, submission: str, studies: Sequence[AlgoperfStudy]) -> AlgoperfEntry:
    """The median over studies (``inf`` when at least half never reached the target)."""
    return AlgoperfEntry(task, submission, tuple(studies), float(np.median([s.seconds for s in studies])),
                         float(np.median([s.steps for s in studies])))


def algoperf_result(keys: Mapping[str, TaskKeys], entries: Sequence[AlgoperfEntry]) -> AlgoperfResult:
    """Performance profiles (tau in [1, 4]) of the median seconds and steps to target."""
    seconds: dict[str, dict[str, float]] = {}
    steps: dict[str, dict[str, float]] = {}
    for e in entries:
        seconds.setdefault(e.task, {})[e.submission] = e.seconds
        steps.setdefault(e.task, {})[e.submission] = e.steps
    directions = dict.fromkeys(seconds, Direction.MINIMIZE)
    return AlgoperfResult(dict(keys), tuple(entries),
                          performance_profiles(seconds, directions, tau_max=4.0, quantity="seconds to target"),
                          performance_profiles(steps, directions, tau_max=4.0, quantity="steps to target"))


# ------------------------------------------------------------------------------------ search
@dataclass(frozen=True)
class TrialRow:
    """One trial: its parameters, objective value (NaN when none) and run status; ``values``: every
    objective's value in a multi-objective search (else empty)."""

    number: int
    params: Mapping[str, Any]
    value: float
    status: str
    run_id: str
    values: tuple[float, ...] = ()


@dataclass(frozen=True)
class BaselineRow:
    """A hand-designed baseline trained with the best trial's recipe on the same seeds: its task, the test
    metric over seeds, and Welch's two-sided p-value against the best's re-runs (nan below 2 runs each)."""

    task: str
    test: Summary
    p_value: float


@dataclass(frozen=True)
class SearchTaskResult:
    """A search on one task: its trials, the best one, epochs spent, the best's re-runs and the baselines
    compared with them; with several objectives, the ``objectives`` (names), the trials of the Pareto
    ``front`` retrained on every seed (:class:`~optbench.analysis.search_trials.Retrained`) and Kendall's
    ``tau`` between their search-time and retrained validation scores."""

    task: str
    label: str
    trials: tuple[TrialRow, ...]
    best: TrialRow | None
    epochs_spent: int
    rerun_test: Summary | None
    baselines: tuple[BaselineRow, ...] = ()
    objectives: tuple[str, ...] = ()
    front: tuple[Any, ...] = ()
    tau: Any = None


@dataclass(frozen=True)
class SearchResult:
    """The ``search`` protocol's outcome per task."""

    keys: Mapping[str, TaskKeys]
    tasks: tuple[SearchTaskResult, ...]
    objective: str
    protocol: str = "search"


def trial_row(number: int, params: Mapping[str, Any], value: float | None, result: RunResult | None,
              values: tuple[float, ...] = ()) -> TrialRow:
    """A :class:`TrialRow` from a search trial (``result`` None when the trial has no run)."""
    return TrialRow(number, dict(params), math.nan if value is None else float(value),
                    "none" if result is None else result.status.value, "" if result is None else result.run_id,
                    tuple(values))


__all__ = ["BaselineRow", 
    "AlgoperfEntry", "AlgoperfResult", "AlgoperfStudy", "CrowdedValleyResult", "DeepobsResult", "DeepobsRow",
    "GridPoint", "SearchResult", "SearchTaskResult", "Seed004Result", "Setting", "TaskKeys", "TrialRow",
    "ValleyComparison", "algoperf_entry", "algoperf_result", "algoperf_study", "best_grid_point", "deepobs_row",
    "grid_points", "run_value", "seed004_result", "setting", "trial_row", "valley_comparisons",
]
