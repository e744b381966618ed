"""Per-recipe summaries over seeds and the ranking of recipes (statistics: see docs/architecture.md).

Which runs count (the same rule everywhere in :mod:`optbench.analysis`):

* ``finished`` runs count with their last epoch.
* ``diverged`` runs count with their **last recorded epoch** (the model before the loss
  became non-finite, i.e. what per-epoch checkpointing would keep). A diverged run with no
  recorded epoch has no value: it is excluded from the means but counted in
  ``n_diverged``, censored for time-to-target, and listed in :attr:`RecipeSummary.problems`.
* ``failed`` runs (an exception, usually not the method's fault) are excluded from every
  statistic, counted in ``n_failed`` and listed in :attr:`RecipeSummary.problems`.
* ``pruned`` runs (stopped early by a tuning pruner: a study decision, and their last epoch is
  not the budget's) are excluded likewise, counted in ``n_pruned`` and listed in ``problems``.

Nothing is silently dropped: ``n_runs == n_finished + n_diverged + n_failed + n_pruned`` and
every diverged, failed or pruned run appears in ``problems`` with its error message.

Significance (see :mod:`optbench.analysis.pairwise`): every pair of recipes is compared with
Welch's t-test and the Mann-Whitney U test, each Holm-corrected over all ``k (k - 1) / 2``
pairs; the p-values against the best and the tie-aware rank come from that one family.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from optbench.analysis.costs import cost_summaries
from optbench.analysis.pairwise import TESTS, pairwise_comparisons, rank_with_ties
from optbench.analysis.stats import Summary, censored_median, summarize
from optbench.core.errors import ConfigError
from optbench.core.spec import Direction, RunResult, RunStatus, TechniqueSpec


@dataclass(frozen=True)
class RunProblem:
    """A run that diverged, failed or was pruned, kept for the report.

    Attributes:
        run_id / seed: which run.
        status: ``diverged``, ``failed`` or ``pruned``.
        epochs_completed: recorded epochs before it stopped.
        error: the stored message ("" when none was stored).
    """

    run_id: str
    seed: int
    status: RunStatus
    epochs_completed: int
    error: str


@dataclass(frozen=True)
class RecipeSummary:
    """Everything the ranking table shows about one recipe (one label), over its seeds.

    Attributes:
        label: display name (``Recipe.label`` unless the caller grouped otherwise).
        n_runs / n_finished / n_diverged / n_failed / n_pruned: run counts by status.
        final_test: :class:`Summary` of ``final_key`` at each counted run's last epoch.
        best_valid: :class:`Summary` of the best ``best_key`` over each counted run's epochs.
        epochs_to_target / steps_to_target: Summaries over the runs that reached the target
            only (epochs are 1-based; steps are optimizer steps).
        seconds_to_target: Summary of cumulative **training** seconds up to and including
            the epoch that reached the target (evaluation time excluded: its cost is the
            harness's choice, not the method's).
        n_reached / n_censored: runs that reached the target / non-failed runs that did not
            (censored, never dropped; includes diverged runs without any epoch). The means
            above are over reached runs only, so read them together with
            ``n_reached / (n_reached + n_censored)``.
        median_epochs_to_target / median_steps_to_target / median_seconds_to_target: the
            censoring-aware central value over all non-failed runs
            (:func:`~optbench.analysis.stats.censored_median`, Kaplan-Meier median): ``inf``
            when fewer than half reached the target ("> budget"), NaN without non-failed runs.
        samples_per_second: Summary of each counted run's mean training samples/s.
        rank: 1 = best mean of ``final_key`` under its direction; equal means share a rank;
            a recipe without any value ranks last.
        tied_with_best: True for the best recipe and for every recipe whose confidence
            interval of ``final_key`` overlaps the best one's. A simple marker, not a test
            (see :meth:`Summary.overlaps`).
        p_vs_best: Holm-adjusted two-sided Welch t-test p-value of ``final_key`` against the
            best recipe (Holm over all pairs of recipes with values); NaN for the best itself
            or when undefined (fewer than 2 values, or both samples constant).
        p_mann_whitney_vs_best: the same for the Mann-Whitney U test (NaN for the best itself
            or a recipe without values).
        tie_rank / tie_group: the tie-aware rank ("1=", "1=", "3") and 1-based tie group from
            :func:`~optbench.analysis.pairwise.rank_with_ties` on ``final_key`` (recipes without
            values share the last rank).
        n_comparisons: size of the Holm family (pairs of recipes with values).
        alpha / tie_test: level and test ("welch" or "mann_whitney") of the tie-aware rank.
        final_key / best_key / final_direction / best_direction: what was summarized.
        target_key / target_value / target_direction: the time-to-target definition.
        run_ids: every run of the recipe, in seed order.
        final_run_ids / final_values: the counted runs and their ``final_key`` values, so
            every number can be traced to its runs.
        problems: the diverged and failed runs, with their errors.
        costs: ``{"optimizer_cost.step_us_median": Summary, "model_cost.parameters": Summary, ...}``
            over the counted runs that recorded each cost (:mod:`optbench.analysis.costs`).
    """

    label: str
    n_runs: int
    n_finished: int
    n_diverged: int
    n_failed: int
    final_test: Summary
    best_valid: Summary
    epochs_to_target: Summary
    steps_to_target: Summary
    seconds_to_target: Summary
    n_reached: int
    n_censored: int
    samples_per_second: Summary
    rank: int
    tied_with_best: bool
    p_vs_best: float
    final_key: str
    best_key: str
    final_direction: Direction
    best_direction: Direction
    target_key: str
    target_value: float
    target_direction: Direction
    run_ids: tuple[str, ...]
    final_run_ids: tuple[str, ...]
    final_values: tuple[float, ...]
    problems: tuple[RunProblem, ...]
    median_epochs_to_target: float = math.nan
    median_steps_to_target: float = math.nan
    median_seconds_to_target: float = math.nan
    p_mann_whitney_vs_best: float = math.nan
    tie_rank: str = ""
    tie_group: int = 0
    n_comparisons: int = 0
    alpha: float = 0.05
    tie_test: str = "welch"
    n_pruned: int = 0
    costs: Mapping[str, Summary] = field(default_factory=dict)


def _direction(directions: Mapping[str, Direction], key: str, field: str) -> Direction:
    if key not in directions:
        raise ConfigError(f"{field} (no direction given for it)", key, sorted(directions) or "none")
    direction = directions[key]
    if not isinstance(direction, Direction):
        raise ConfigError(f"direction of {key}", direction, [d.value for d in Direction])
    return direction


def _counted(runs: Sequence[RunResult]) -> list[RunResult]:
    """Runs whose metrics count: finished or diverged, at least one recorded epoch."""
    return [r for r in runs if r.status in (RunStatus.FINISHED, RunStatus.DIVERGED) and r.epochs]


def _value(run: RunResult, key: str, value: float) -> float:
    if math.isnan(value):
        available = sorted(run.epochs[-1].metrics) if run.epochs else []
        raise ConfigError(f"metric key of run {run.run_id}", key, available or "none recorded")
    return value


def _group(results: Sequence[RunResult],
           group_by: Callable[[RunResult], str] | None) -> dict[str, list[RunResult]]:
    """Runs by label, checking one task and unique run ids; by default the label is
    :func:`recipe_labels`' (the optimizer name, told apart by what differs when one optimizer ran with
    several recipes)."""
    tasks = sorted({r.task for r in results})
    if len(tasks) > 1:
        raise ConfigError("results task", ", ".join(tasks), "runs of a single task (filter by task first)")
    seen: set[str] = set()
    groups: dict[str, list[RunResult]] = {}
    for run in results:
        if run.run_id in seen:
            raise ValueError(f"run {run.run_id} appears twice in the results")
        seen.add(run.run_id)
    labels = recipe_labels(results) if group_by is None else {}
    for run in results:
        label = group_by(run) if group_by is not None else labels[run.run_id]
        groups.setdefault(label, []).append(run)
    return {label: sorted(runs, key=lambda r: (r.seed, r.run_id)) for label, runs in groups.items()}


def _flat(recipe_dict: Mapping[str, object]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in recipe_dict.items():
        if key == "techniques":
            out[key] = "+".join(str(TechniqueSpec.coerce(t)) for t in value)  # type: ignore[union-attr]
        elif isinstance(value, Mapping):
            out.update({f"{k}" if key == "hyperparams" else f"{key}.{k}": repr(v) for k, v in value.items()})
        else:
            out[key] = repr(value)
    return out


def recipe_labels(results: Sequence[RunResult]) -> dict[str, str]:
    """``{run_id: label}``: the optimizer name, or, when one optimizer was run with several recipes
    (an lr grid, or several techniques), the name followed by the recipe fields that differ, e.g.
    ``"sgd lr=0.1"`` or ``"momentum techniques=label_smoothing:epsilon=0.1"``."""
    by_opt: dict[str, dict[str, dict[str, str]]] = {}
    for r in results:
        by_opt.setdefault(r.recipe.label, {})[repr(sorted(r.recipe.to_dict().items()))] = _flat(r.recipe.to_dict())
    labels = {}
    for r in results:
        recipes = by_opt[r.recipe.label]
        if len(recipes) == 1:
            labels[r.run_id] = r.recipe.label
            continue
        mine = _flat(r.recipe.to_dict())
        keys = sorted({k for f in recipes.values() for k in f if len({g.get(k) for g in recipes.values()}) > 1})
        labels[r.run_id] = r.recipe.label + " " + ",".join(f"{k}={mine.get(k, '-')}".replace("'", "") for k in keys)
    return labels


def _summarize_group(label: str, runs: list[RunResult], *, final_key: str, best_key: str,
                     target: tuple[str, float], directions: Mapping[str, Direction],
                     confidence: float) -> RecipeSummary:
    """The summary of one label's runs, before ranking (rank 0, no comparison yet)."""
    final_dir = _direction(directions, final_key, "final_key")
    best_dir = _direction(directions, best_key, "best_key")
    target_key, target_value = target
    target_dir = _direction(directions, target_key, "target key")
    counted = _counted(runs)
    finals = [_value(r, final_key, r.final(final_key)) for r in counted]
    bests = [_value(r, best_key, r.best(best_key, best_dir)) for r in counted]
    times = [r.time_to_target(target_key, target_value, target_dir) for r in counted]
    reached = [t for t in times if t is not None]
    n_reachable = sum(1 for r in runs if r.status in (RunStatus.FINISHED, RunStatus.DIVERGED))
    times += [None] * (n_reachable - len(counted))  # diverged before any epoch: never reached

    def median(i: int) -> float:
        return censored_median([None if t is None else float(t[i]) for t in times])
    throughput = [sum(e.samples_per_second for e in r.epochs) / len(r.epochs) for r in counted]
    problems = tuple(
        RunProblem(r.run_id, r.seed, r.status, len(r.epochs), r.error or "")
        for r in runs if r.status is not RunStatus.FINISHED
    )
    return RecipeSummary(
        label=label,
        n_runs=len(runs),
        n_finished=sum(1 for r in runs if r.status is RunStatus.FINISHED),
        n_diverged=sum(1 for r in runs if r.status is RunStatus.DIVERGED),
        n_failed=sum(1 for r in runs if r.status is RunStatus.FAILED),
        final_test=summarize(finals, confidence),
        best_valid=summarize(bests, confidence),
        epochs_to_target=summarize([float(t[0]) for t in reached], confidence),
        steps_to_target=summarize([float(t[1]) for t in reached], confidence),
        seconds_to_target=summarize([t[2] for t in reached], confidence),
        n_reached=len(reached),
        n_censored=n_reachable - len(reached),
        samples_per_second=summarize(throughput, confidence),
        rank=0, tied_with_best=False, p_vs_best=math.nan,
        final_key=final_key, best_key=best_key,
        final_direction=final_dir, best_direction=best_dir,
        target_key=target_key, target_value=float(target_value), target_direction=target_dir,
        run_ids=tuple(r.run_id for r in runs),
        final_run_ids=tuple(r.run_id for r in counted),
        final_values=tuple(finals),
        problems=problems,
        median_epochs_to_target=median(0), median_steps_to_target=median(1),
        median_seconds_to_target=median(2),
        n_pruned=sum(1 for r in runs if r.status is RunStatus.PRUNED),
        costs=cost_summaries(counted, confidence),
    )


def summarize_runs(results: Sequence[RunResult], directions: Mapping[str, Direction], *,
                   final_key: str = "test_accuracy", best_key: str = "valid_accuracy",
                   target: tuple[str, float] = ("valid_accuracy", 0.85),
                   confidence: float = 0.95,
                   group_by: Callable[[RunResult], str] | None = None,
                   alpha: float = 0.05, tie_test: str = "welch") -> list[RecipeSummary]:
    """Summarize runs of one task per recipe over seeds and rank the recipes.

    Args:
        results: runs of a single task (any statuses; see the module docstring for which
            count). Each run id may appear once.
        directions: metric key -> :class:`Direction`; must hold ``final_key``, ``best_key``
            and the target key. Directions are never guessed from names.
        final_key: metric ranked on, at each run's last recorded epoch.
        best_key: metric whose best value over epochs is reported.
        target: ``(metric key, value)`` defining time-to-target; reached when the value is
            met under the key's direction (>= for maximize, <= for minimize).
        confidence: coverage of the bootstrap confidence intervals, in (0, 1).
        group_by: ``run -> label``; default ``run.recipe.label``. With the default, all
            runs sharing a label must share one recipe.
        alpha: family-wise error rate of the pairwise tests behind ``tie_rank``, in (0, 1).
        tie_test: ``"welch"`` (default) or ``"mann_whitney"``, the test of ``tie_rank``.

    Returns:
        One :class:`RecipeSummary` per label, sorted by rank (best first, ties by label).

    Raises:
        ConfigError: a key without a direction, runs of several tasks, several recipes
            under one label, a target value that is not finite, a counted run lacking a
            metric key, a confidence or alpha outside (0, 1), an unknown ``tie_test``.
        ValueError: the same run id twice.
    """
    target_key, target_value = target
    if isinstance(target_value, bool) or not isinstance(target_value, int | float) \
            or not math.isfinite(target_value):
        raise ConfigError("target value", target_value, "a finite number")
    if tie_test not in TESTS:
        raise ConfigError("tie_test", tie_test, TESTS)
    groups = _group(results, group_by)
    rows = [_summarize_group(label, runs, final_key=final_key, best_key=best_key,
                             target=(target_key, target_value), directions=directions,
                             confidence=confidence)
            for label, runs in groups.items()]
    direction = _direction(directions, final_key, "final_key")
    sign = -1.0 if direction is Direction.MAXIMIZE else 1.0

    def order(row: RecipeSummary) -> tuple[int, float, str]:
        mean = row.final_test.mean
        return (1, 0.0, row.label) if math.isnan(mean) else (0, sign * mean, row.label)

    rows.sort(key=order)
    values = {row.label: row.final_values for row in rows}
    table = pairwise_comparisons(values, direction, alpha=alpha)
    ties = {t.label: t for t in rank_with_ties(values, direction, alpha=alpha, test=tie_test, comparisons=table)}
    n_valued = sum(1 for r in rows if not math.isnan(r.final_test.mean))
    best = rows[0] if n_valued else None
    ranked: list[RecipeSummary] = []
    for i, row in enumerate(rows):
        mean = row.final_test.mean
        if math.isnan(mean):
            rank = n_valued + 1
        elif i and mean == rows[i - 1].final_test.mean:
            rank = ranked[-1].rank
        else:
            rank = i + 1
        tied = best is not None and (i == 0 or row.final_test.overlaps(best.final_test))
        pair = table.get(best.label, row.label) if best is not None and i and not math.isnan(mean) else None
        tie = ties[row.label]
        ranked.append(replace(
            row, rank=rank, tied_with_best=tied,
            p_vs_best=math.nan if pair is None else pair.welch_p_holm,
            p_mann_whitney_vs_best=math.nan if pair is None else pair.mann_whitney_p_holm,
            tie_rank=tie.rank_label, tie_group=tie.group, n_comparisons=len(table.rows),
            alpha=float(alpha), tie_test=tie_test))
    return ranked
