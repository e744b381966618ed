"""Data for the sections of the HTML report that go beyond the ranking (data only, never plots).

* :func:`study_overview` — what ran, where, how long, and which runs went wrong.
* :func:`lr_sensitivity` — final metric versus learning rate per optimizer (grid/random studies).
* :func:`performance_profiles` — Dolan & Moré (2002) performance profiles and their
  integrated score over ``tau in [1, 4]`` (Dahl et al. 2023, "Benchmarking Neural Network
  Training Algorithms", AlgoPerf), plus the mean rank across tasks.
* :func:`applied_schedules` — the learning rate actually applied per recipe: recorded at the
  end of every epoch (:attr:`EpochRecord.lr`) and reconstructed per step the way the engine
  builds it (:func:`optbench.engine.build.build_schedule`, learning-rate scaling included).
* :func:`distributed_points` — throughput and scaling efficiency of distributed runs.

Which runs count follows :mod:`optbench.analysis.summary`: failed runs are excluded from
statistics but listed in :attr:`StudyOverview.problems`; nothing is hidden.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optbench.analysis.scaling import MeasuredPoint, measured_efficiency
from optbench.analysis.stats import Summary, summarize
from optbench.core.errors import ConfigError
from optbench.core.spec import Direction, RunResult, RunStatus

#: Environment keys shown in the summary, in display order.
ENV_KEYS = ("optbench", "python", "torch", "platform", "cpu", "cpu_count", "threads", "device", "gpu", "cuda")
#: Default tau range of the integrated performance-profile score (Dahl et al. 2023).
TAU_MAX = 4.0


@dataclass(frozen=True)
class Problem:
    """A diverged or failed run: where, which recipe and seed, how far it got, and why."""

    task: str
    label: str
    seed: int
    run_id: str
    status: str
    epochs_completed: int
    error: str


@dataclass(frozen=True)
class StudyOverview:
    """What a study ran.

    Attributes:
        study: study name ("" when runs were loaded without one).
        config: the study's stored configuration (may be empty).
        tasks / labels / seeds: sorted distinct values over the runs.
        optimizers / batch_sizes / epochs / lrs: sorted distinct recipe values.
        n_runs / n_by_status: run counts (``{"finished": 4, "diverged": 1, "failed": 0}``; ``"pruned"``
            only when some run was pruned).
        total_seconds: summed wall time of all runs (s); per_run_seconds: Summary over runs.
        environment: ``{key: sorted distinct values}`` over runs, keys of :data:`ENV_KEYS` first.
        problems: every diverged and failed run, never hidden.
    """

    study: str
    config: Mapping[str, Any]
    tasks: tuple[str, ...]
    labels: tuple[str, ...]
    seeds: tuple[int, ...]
    optimizers: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    epochs: tuple[int, ...]
    lrs: tuple[float, ...]
    n_runs: int
    n_by_status: Mapping[str, int]
    total_seconds: float
    per_run_seconds: Summary
    environment: Mapping[str, tuple[str, ...]]
    problems: tuple[Problem, ...]


def _env_value(value: Any) -> str:
    return str(value)


def study_overview(results: Sequence[RunResult], *, study: str = "",
                   config: Mapping[str, Any] | None = None) -> StudyOverview:
    """Summarize what ``results`` ran (any tasks and statuses).

    Returns:
        A :class:`StudyOverview`; ``problems`` lists diverged and failed runs sorted by task,
        label and seed. Distributed bookkeeping (``environment["distributed"]``) is left out of
        ``environment``.
    """
    env: dict[str, set[str]] = {}
    for run in results:
        for key, value in run.environment.items():
            if key != "distributed" and not isinstance(value, Mapping | list):
                env.setdefault(key, set()).add(_env_value(value))
    ordered = [k for k in ENV_KEYS if k in env] + sorted(k for k in env if k not in ENV_KEYS)
    problems = sorted((Problem(r.task, r.recipe.label, r.seed, r.run_id, r.status.value, len(r.epochs),
                               r.error or "") for r in results if r.status is not RunStatus.FINISHED),
                      key=lambda p: (p.task, p.label, p.seed, p.run_id))
    counts = {s.value: sum(1 for r in results if r.status is s) for s in RunStatus}
    if not counts.get(RunStatus.PRUNED.value):  # only tuning studies prune: no "0 pruned" elsewhere
        counts.pop(RunStatus.PRUNED.value, None)
    seconds = [r.total_seconds for r in results if math.isfinite(r.total_seconds)]
    lrs = {float(r.recipe.hyperparams["lr"]) for r in results if "lr" in r.recipe.hyperparams}
    return StudyOverview(
        study=study, config=dict(config or {}),
        tasks=tuple(sorted({r.task for r in results})),
        labels=tuple(sorted({r.recipe.label for r in results})),
        seeds=tuple(sorted({r.seed for r in results})),
        optimizers=tuple(sorted({r.recipe.optimizer for r in results})),
        batch_sizes=tuple(sorted({r.recipe.batch_size for r in results})),
        epochs=tuple(sorted({r.recipe.epochs for r in results})),
        lrs=tuple(sorted(lrs)), n_runs=len(results), n_by_status=counts,
        total_seconds=float(sum(seconds)), per_run_seconds=summarize(seconds, n_resamples=1000),
        environment={k: tuple(sorted(env[k])) for k in ordered}, problems=tuple(problems))


# ----------------------------------------------------------------------- lr sensitivity
@dataclass(frozen=True)
class LrCurve:
    """Final metric versus learning rate for one optimizer; arrays of shape ``(L,)``, lr ascending.

    ``mean`` / ``low`` / ``high``: mean, min and max over the counted runs (seeds and any
    other recipe differences) at that lr; ``n``: counted runs; ``n_lost``: failed runs and
    diverged runs without an epoch at that lr (no value, shown as a marker, never dropped).
    """

    optimizer: str
    key: str
    lr: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: np.ndarray
    n_lost: np.ndarray


def _without_lr(run: RunResult) -> dict:
    recipe = run.recipe.to_dict()
    recipe["hyperparams"] = {k: v for k, v in recipe["hyperparams"].items() if k != "lr"}
    return recipe


def _curve_names(keys: Mapping[str, dict]) -> dict[str, str]:
    """A display name per recipe-without-lr: the optimizer, plus the fields that tell apart
    recipes of the same optimizer (``"adam schedule=cosine"``)."""
    by_optimizer: dict[str, list[str]] = {}
    for key, recipe in keys.items():
        by_optimizer.setdefault(recipe["optimizer"], []).append(key)
    names = {}
    for optimizer, group in by_optimizer.items():
        if len(group) == 1:
            names[group[0]] = optimizer
            continue
        flat = [{k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in keys[g].items()}
                for g in group]
        differing = sorted({k for f in flat for k in f if len({g.get(k) for g in flat}) > 1})
        for key, f in zip(group, flat, strict=True):
            names[key] = optimizer + " " + ",".join(f"{k}={f.get(k, '-')}" for k in differing)
    return names


def lr_sensitivity(results: Sequence[RunResult], key: str) -> dict[str, LrCurve]:
    """Per recipe apart from its learning rate, ``key`` at the last recorded epoch versus ``lr``.

    Runs are grouped by their whole recipe except ``lr`` (so recipes that differ in schedule,
    batch size or any other field are separate curves, named by optimizer plus the differing
    fields). Only groups tried at two or more learning rates are returned (a study that shares
    one lr, like ``seed004``, gives ``{}``). Pruned runs (stopped by a tuner) are left out.
    Runs of a single task.

    Raises:
        ConfigError: runs of several tasks.
    """
    tasks = sorted({r.task for r in results})
    if len(tasks) > 1:
        raise ConfigError("results task", ", ".join(tasks), "runs of a single task (filter by task first)")
    groups: dict[str, dict[float, list[float]]] = {}
    lost: dict[str, dict[float, int]] = {}
    recipes: dict[str, dict] = {}
    for r in results:
        if "lr" not in r.recipe.hyperparams or r.status is RunStatus.PRUNED:  # a tuner's partial run
            continue
        rest = _without_lr(r)
        group = json.dumps(rest, sort_keys=True)
        recipes[group] = rest
        lr = float(r.recipe.hyperparams["lr"])
        values = groups.setdefault(group, {}).setdefault(lr, [])
        value = r.final(key) if r.status is not RunStatus.FAILED else math.nan
        if math.isfinite(value):
            values.append(value)
        else:
            lost.setdefault(group, {})[lr] = lost.get(group, {}).get(lr, 0) + 1
    names = _curve_names(recipes)
    out: dict[str, LrCurve] = {}
    for group in sorted(groups, key=lambda g: names[g]):
        by_lr = groups[group]
        if len(by_lr) < 2:
            continue
        lrs = sorted(by_lr)
        stats = [(np.mean(v), np.min(v), np.max(v)) if v else (math.nan,) * 3 for v in (by_lr[x] for x in lrs)]
        mean, low, high = (np.asarray(c, dtype=np.float64) for c in zip(*stats, strict=True))
        name = names[group]
        out[name] = LrCurve(name, key, np.asarray(lrs), mean, low, high,
                            np.asarray([len(by_lr[x]) for x in lrs], dtype=np.int64),
                            np.asarray([lost.get(group, {}).get(x, 0) for x in lrs], dtype=np.int64))
    return out


# ----------------------------------------------------------------- performance profiles
@dataclass(frozen=True)
class Profiles:
    """Performance profiles of labels over tasks (Dolan & Moré 2002).

    Attributes:
        tasks / labels: the rows and columns of ``ratios``.
        ratios: shape ``(T, S)``, performance ratio ``r >= 1`` of label s on task t (1 = best;
            ``inf`` when the label has no value on the task).
        taus: shape ``(K,)``, ascending grid over ``[1, tau_max]`` (for plotting ``rho``).
        rho: ``{label: (K,)}`` fraction of tasks with ``r <= tau``.
        score: ``{label: integral of rho over [1, tau_max] / (tau_max - 1)}`` in [0, 1]
            (Dahl et al. 2023, their benchmark score with tau_max = 4), computed exactly by
            :func:`integrated_score` (not on the grid).
        mean_rank: ``{label: mean per-task rank}`` (1 = best; no value ranks last).
        quantity: what the ratio is computed on, in words.
    """

    tasks: tuple[str, ...]
    labels: tuple[str, ...]
    ratios: np.ndarray
    taus: np.ndarray
    rho: Mapping[str, np.ndarray]
    score: Mapping[str, float]
    mean_rank: Mapping[str, float]
    quantity: str


def performance_profiles(values: Mapping[str, Mapping[str, float]], directions: Mapping[str, Direction], *,
                         tau_max: float = TAU_MAX, points: int = 301,
                         quantity: str = "final metric") -> Profiles:
    """Performance profiles and the integrated score from per-task values.

    The ratio compares each label with the best on the task: ``value / best`` for a metric
    to minimize (a loss, a time-to-target), ``best / value`` for one to maximize (an
    accuracy). Both need positive values; a non-positive or missing value gives ``inf``
    (never within any tau). ``rho_s(tau) = |{t : r_{t,s} <= tau}| / T`` (Dolan & Moré
    2002, eq. 1); the score is the normalized area under the profile over ``[1, tau_max]``
    (Dahl et al. 2023, sec. 4.4), exact (:func:`integrated_score`).

    Args:
        values: ``{task: {label: value}}``; NaN or absent = no value.
        directions: ``{task: Direction}`` of the compared quantity.
        tau_max: upper end of tau (> 1).
        points: grid size (>= 2).

    Raises:
        ConfigError: no tasks, a task without a direction, ``tau_max <= 1`` or ``points < 2``.
    """
    if not values:
        raise ConfigError("values", "{}", "at least one task with values")
    if not (isinstance(tau_max, int | float) and tau_max > 1):
        raise ConfigError("tau_max", tau_max, "a number > 1")
    if points < 2:
        raise ConfigError("points", points, "an integer >= 2")
    tasks = tuple(sorted(values))
    labels = tuple(sorted({label for per in values.values() for label in per}))
    ratios = np.full((len(tasks), len(labels)), np.inf)
    ranks = np.zeros((len(tasks), len(labels)))
    for i, task in enumerate(tasks):
        if task not in directions:
            raise ConfigError("direction of task", task, sorted(directions) or "none")
        maximize = directions[task] is Direction.MAXIMIZE
        row = np.asarray([values[task].get(s, math.nan) for s in labels], dtype=np.float64)
        ok = np.isfinite(row) & (row > 0)
        if ok.any():
            best = row[ok].max() if maximize else row[ok].min()
            ratios[i, ok] = best / row[ok] if maximize else row[ok] / best
        valued = np.where(np.isfinite(row), -row if maximize else row, np.inf)
        order = np.argsort(valued, kind="stable")
        ranks[i, order] = np.arange(1, len(labels) + 1)
        for j in range(1, len(labels)):  # equal values share the better rank
            if valued[order[j]] == valued[order[j - 1]] and np.isfinite(valued[order[j]]):
                ranks[i, order[j]] = ranks[i, order[j - 1]]
    taus = np.linspace(1.0, float(tau_max), points)
    rho = {s: (ratios[:, j][None, :] <= taus[:, None]).mean(axis=1) for j, s in enumerate(labels)}
    score = {s: integrated_score(ratios[:, j], tau_max) for j, s in enumerate(labels)}
    return Profiles(tasks, labels, ratios, taus, rho, score,
                    {s: float(ranks[:, j].mean()) for j, s in enumerate(labels)}, quantity)


def integrated_score(ratios: Sequence[float] | np.ndarray, tau_max: float = TAU_MAX) -> float:
    """Area under one label's performance profile over ``[1, tau_max]``, divided by ``tau_max - 1``.

    This is AlgoPerf's benchmark score (Dahl et al. 2023, "Benchmarking Neural Network Training
    Algorithms", sec. 4.4, with ``tau_max = 4``). The profile ``rho(tau)`` is a step function, so
    the integral is exact: each task contributes ``max(0, tau_max - r_t)`` (the part of
    ``[1, tau_max]`` where ``r_t <= tau``), giving
    ``score = mean_t max(0, tau_max - r_t) / (tau_max - 1)``; 1 = best on every task, 0 = never
    within ``tau_max`` of the best.

    Args:
        ratios: shape ``(T,)``, performance ratios ``r_t >= 1`` on each task (``inf`` = no value).
        tau_max: upper end of tau (> 1).

    Returns:
        The score in [0, 1]; NaN for no tasks.

    Raises:
        ConfigError: ``tau_max <= 1`` or a ratio below 1 or NaN.
    """
    if isinstance(tau_max, bool) or not (isinstance(tau_max, int | float) and tau_max > 1):
        raise ConfigError("tau_max", tau_max, "a number > 1")
    r = np.asarray(ratios, dtype=np.float64).reshape(-1)
    if np.any(np.isnan(r)) or np.any(r < 1.0):
        raise ConfigError("performance ratios", r.tolist(), "numbers >= 1 (inf for no value)")
    if r.size == 0:
        return math.nan
    return float(np.mean(np.clip(tau_max - r, 0.0, None)) / (tau_max - 1.0))


# ------------------------------------------------------------------- applied schedules
@dataclass(frozen=True)
class AppliedSchedule:
    """The learning rate one recipe used (from its first counted run, by seed).

    Attributes:
        label / schedule: recipe label and schedule name.
        epoch_steps / epoch_lr: shape ``(E,)``: optimizer steps at the end of each recorded
            epoch and the lr recorded there (:attr:`EpochRecord.lr`, first parameter group).
        steps / lr: shape ``(N,)``: every step ``0..N-1`` and the lr the schedule gives it,
            reconstructed from the recipe; empty when it cannot be (metric-driven
            ``reduce_on_plateau``, no ``lr`` hyperparameter, or no recorded epoch).
        note: why there is no reconstruction, or "".
    """

    label: str
    schedule: str
    epoch_steps: np.ndarray
    epoch_lr: np.ndarray
    steps: np.ndarray
    lr: np.ndarray
    note: str = ""


class _LrOnly:
    """What :func:`optbench.engine.build.build_components` and ``build_schedule`` read of a task when
    only the learning rate is rebuilt: no task L2 (it never changes the lr), and no metric directions
    (metric-driven schedules are not rebuilt)."""

    l2 = 0.0

    def direction(self, key: str) -> Direction:
        raise ConfigError("schedule metric", key, "a schedule that does not read metrics")


def _reconstruct(run: RunResult) -> tuple[np.ndarray, np.ndarray, str]:
    """The lr of every step of ``run`` as the engine builds it (:mod:`optbench.engine.build`: the
    recipe's techniques scale the lr, then the schedule), or a note why it cannot be rebuilt."""
    from optbench.engine.build import build_components, build_schedule, optimizer_hyperparams
    from optbench.schedules import schedule_values

    recipe = run.recipe
    empty = np.empty(0)
    if "lr" not in recipe.hyperparams:
        return empty, empty, "no lr hyperparameter: only the recorded values are shown"
    if recipe.schedule in ("reduce_on_plateau", "plateau"):
        return empty, empty, "metric-driven schedule: only the recorded values are shown"
    spe = run.epochs[0].step
    if spe < 1:
        return empty, empty, "no optimizer step recorded"
    total = recipe.epochs * spe
    record = run.environment.get("distributed")
    batch = int(record.get("global_batch", recipe.batch_size)) if isinstance(record, Mapping) else recipe.batch_size
    task: Any = _LrOnly()
    try:
        lr = float(optimizer_hyperparams(recipe, build_components(task, recipe), batch)["lr"])
        schedule = build_schedule(recipe, lr, steps_per_epoch=spe, task=task)
    except ConfigError as exc:
        return empty, empty, f"could not rebuild the schedule: {exc}"
    if schedule is None:
        return np.arange(total), np.full(total, lr), ""
    return np.arange(total), schedule_values(schedule, total), ""


def applied_schedules(results: Sequence[RunResult]) -> dict[str, AppliedSchedule]:
    """Per recipe label of one task's runs, the lr recorded per epoch and reconstructed per step.

    Labels whose runs recorded no epoch are absent.
    """
    out: dict[str, AppliedSchedule] = {}
    for run in sorted(results, key=lambda r: (r.recipe.label, r.seed, r.run_id)):
        label = run.recipe.label
        if label in out or not run.epochs or run.status is RunStatus.FAILED:
            continue
        steps, lr, note = _reconstruct(run)
        out[label] = AppliedSchedule(label, run.recipe.schedule,
                                     np.asarray([e.step for e in run.epochs], dtype=np.int64),
                                     np.asarray([e.lr for e in run.epochs], dtype=np.float64), steps, lr, note)
    return out


# ------------------------------------------------------------------------ distributed
@dataclass(frozen=True)
class DistributedData:
    """Measured distributed jobs: one :class:`MeasuredPoint` per stored run with
    ``environment["distributed"]`` (mode, nproc, samples/s, training seconds to target or None),
    their scaling efficiencies ``{(mode, nproc): efficiency}`` and the baseline sentence."""

    points: tuple[MeasuredPoint, ...]
    efficiency: Mapping[tuple[str, int], float] = field(default_factory=dict)
    baseline: str = ""


def distributed_points(results: Sequence[RunResult], target: tuple[str, float] | None = None,
                       direction: Direction = Direction.MAXIMIZE) -> DistributedData | None:
    """Throughput and scaling of the runs that were distributed jobs; None when there are none.

    Several runs of one (mode, nproc) are averaged (samples/s; time-to-target over the runs
    that reached it).
    """
    groups: dict[tuple[str, int], list[tuple[float, float | None]]] = {}
    for run in results:
        record = run.environment.get("distributed")
        if not isinstance(record, Mapping) or "mode" not in record or "nproc" not in record:
            continue
        sps = float(record.get("samples_per_second", math.nan))
        reached = run.time_to_target(target[0], target[1], direction) if target is not None else None
        ttt = None if reached is None else reached[2]
        groups.setdefault((str(record["mode"]), int(record["nproc"])), []).append((sps, ttt))
    if not groups:
        return None
    points = []
    for (mode, nproc), items in sorted(groups.items()):
        finite = [s for s, _ in items if math.isfinite(s)]
        reached = [t for _, t in items if t is not None]
        points.append(MeasuredPoint(mode, nproc, float(np.mean(finite)) if finite else math.nan,
                                    float(np.mean(reached)) if reached else None))
    efficiency, baseline = measured_efficiency(points)
    return DistributedData(tuple(points), efficiency, baseline)


__all__ = ["AppliedSchedule", "DistributedData", "LrCurve", "Problem", "Profiles", "StudyOverview",
           "applied_schedules", "distributed_points", "integrated_score", "lr_sensitivity", "performance_profiles",
           "study_overview"]
