"""``search``: a plain Optuna search (any sampler and pruner of :mod:`optbench.search`) over one
recipe's ``[search.space]`` per task, on the validation metric; reports every trial and the best,
and re-runs the best on every seed of the study (test metric over seeds) unless
``[protocol] rerun = false``. ``baselines`` (task references, e.g. hand-designed networks beside an
architecture search) are trained with the best trial's recipe on the same seeds, at the same budget, and
compared with the best's re-runs by Welch's t-test.

With several ``[search] objectives`` (:mod:`optbench.search.objectives`) the search is multi-objective
and every architecture of its Pareto front (or the ``[protocol] rerun_front = k`` best by the first
objective; the best is always among them) is retrained from scratch on every seed at the full budget and
tested; Kendall's tau between their search-time and retrained validation scores says how well the search
ranked them (:func:`optbench.analysis.search_trials.fidelity_tau`). ``[protocol] search_epochs`` trains the
trials for fewer epochs than ``[budget] epochs`` (a cheaper, lower-fidelity search); re-runs and baselines
train ``[budget] epochs``. The search reads only the validation split; only re-runs are tested.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from optbench.analysis.protocols import BaselineRow, SearchResult, SearchTaskResult, run_value, trial_row
from optbench.analysis.search_trials import Retrained, fidelity_tau
from optbench.analysis.stats import summarize
from optbench.core.errors import ConfigError
from optbench.runs.plan import plan_runs
from optbench.study.config import StudyConfig
from optbench.study.protocols import (
    ProtocolSpec,
    Reporter,
    StudyContext,
    canonical_recipes,
    prepared_tasks,
    take_bool,
    take_int,
    unknown_keys,
)


def parse_options(table: Mapping[str, Any], report: Reporter) -> dict[str, Any]:
    """``rerun`` (default true): re-run the best trial on every seed; ``baselines`` (default none): task
    references trained with the best trial's recipe on the same seeds and compared with it (needs rerun);
    ``rerun_front`` (default: the whole front): re-run the k best trials of a multi-objective search's
    Pareto front by the first objective; ``search_epochs`` (default ``[budget] epochs``): epochs of a trial."""
    from optbench.core.errors import OptbenchError
    from optbench.tasks import get_task

    unknown_keys(table, ("rerun", "baselines", "rerun_front", "search_epochs"), report)
    rerun = take_bool(table, "rerun", True, report)
    counts = {key: take_int(table, key, 1, report) if key in table else None
              for key in ("rerun_front", "search_epochs")}
    baselines = table.get("baselines", [])
    if not isinstance(baselines, list) or not all(isinstance(b, str) for b in baselines):
        report("baselines", f"a list of task references, got {baselines!r}")
        baselines = []
    for i, ref in enumerate(baselines):
        try:
            get_task(ref)
        except OptbenchError as exc:
            report(f"baselines[{i}]", str(exc))
    if baselines and not rerun:
        report("baselines", "needs rerun = true (the baselines are compared with the best's re-runs)")
    if counts["rerun_front"] is not None and not rerun:
        report("rerun_front", "needs rerun = true")
    return {"rerun": rerun, "baselines": tuple(baselines), **counts}


def check(config: StudyConfig) -> list[tuple[str, str]]:
    """A search tunes exactly one recipe; its objectives fit the tasks, sampler, pruner and recipe
    (:mod:`optbench.search.objectives`); ``rerun_front`` needs several objectives; ``search_epochs`` is at
    most ``[budget] epochs``."""
    from optbench.analysis.protocols import TaskKeys
    from optbench.search.objectives import check_multi_objective, check_recorded, parse_objectives
    from optbench.tasks import get_task

    if len(config.recipes) != 1:
        return [("recipes", f"exactly one [[recipes]] table for protocol search, got {len(config.recipes)}")]
    out = []
    search = config.search
    try:
        objectives = parse_objectives(list(search.objectives)) if search is not None else None
    except ConfigError as exc:  # a definition built in Python, not read from a file
        return [(exc.field, str(exc))]
    if objectives is not None and search is not None:
        for ref in config.tasks:
            keys = TaskKeys.from_task(get_task(ref))
            if objectives.metric is not None and objectives.metric not in keys.directions:
                out.append(("search.objectives[0]", f"a validation metric of task {keys.name!r}; allowed: "
                            + ", ".join(k for k in keys.directions if k.startswith("valid_"))))
        try:
            check_multi_objective(objectives.costs, sampler=search.sampler, pruner=search.pruner,
                                  optuna_storage=search.optuna_storage)
            check_recorded(objectives.costs, config.recipes[0])
        except ConfigError as exc:
            out.append((exc.field, str(exc)))
    if config.options.get("rerun_front") is not None and not (objectives and objectives.costs):
        out.append(("protocol.rerun_front", "needs several [search] objectives (one objective re-runs its best)"))
    epochs = config.options.get("search_epochs")
    if epochs is not None and epochs > config.budget.epochs:
        out.append(("protocol.search_epochs", f"an integer in [1, {config.budget.epochs}] ([budget] epochs), "
                                              f"got {epochs}"))
    return out


def planned_runs(config: StudyConfig) -> int:
    """Per task: the trials, plus the re-run trials (the best, or up to ``rerun_front`` or every trial of a
    multi-objective front) and every baseline on every seed."""
    from optbench.search.objectives import parse_objectives

    rerun = 0
    if config.options["rerun"]:
        rerun = 1
        if config.search is not None and parse_objectives(list(config.search.objectives)).costs:
            rerun = min(config.options.get("rerun_front") or config.budget.trials, config.budget.trials)
    reruns = (rerun + len(config.options.get("baselines", ()))) * len(config.seeds)
    return len(config.tasks) * (config.budget.trials + reruns)


def run(config: StudyConfig, context: StudyContext) -> SearchResult:
    """One search per task, then (optionally) its best, or its Pareto front, on every seed."""
    from optbench.search.objectives import parse_objectives

    assert config.search is not None
    (recipe,) = canonical_recipes(config.recipes)
    epochs = config.options.get("search_epochs")
    searched = recipe if epochs is None else replace(recipe, epochs=epochs)  # the trials' (lower) fidelity
    declared = parse_objectives(list(config.search.objectives))
    out = []
    objective = ""
    prepared = prepared_tasks(config, context)
    for ref, task, keys in prepared:
        objective = declared.metric or keys.valid_key
        search = config.search.search_config(n_trials=config.budget.trials, objective=objective,
                                             direction=declared.direction or keys.directions[objective])
        outcome = context.search(ref, searched, search, run_seed=config.seeds[0])
        multi = search.multi_objective
        trials = tuple(trial_row(t.number, t.params, t.value, t.result, t.values if multi else ())
                       for t in outcome.trials)
        best = None if outcome.best is None else trial_row(outcome.best.number, outcome.best.params,
                                                           outcome.best.value, outcome.best.result)
        rerun = None
        baselines: list[BaselineRow] = []
        front: list[Retrained] = []
        if outcome.best is not None and config.options["rerun"]:
            chosen = outcome.front[:config.options.get("rerun_front") or len(outcome.front)] if multi else []
            chosen += [] if any(t is outcome.best for t in chosen) else [outcome.best]
            tests = {}
            for t in chosen:  # each retrained from scratch on every seed at the full budget, and tested
                row, tests[t.number] = _retrain(context, ref, task.name, recipe, t, config.seeds, objective)
                front.append(row)
            rerun = summarize(tests[outcome.best.number])
            best_recipe = _trial_spec(ref, task.name, recipe, outcome.best.params)[2]
            for baseline_ref in config.options.get("baselines", ()):
                baselines.append(_baseline(context, baseline_ref, best_recipe, config.seeds, _test_key(objective),
                                           tests[outcome.best.number]))
        out.append(SearchTaskResult(keys.name, recipe.label, trials, best, int(outcome.epochs_spent), rerun,
                                    tuple(baselines), (objective, *search.costs) if multi else (),
                                    tuple(front) if multi else (), fidelity_tau(front) if multi else None))
    return SearchResult({k.name: k for _, _, k in prepared}, tuple(out), objective)


def _test_key(valid_key: str) -> str:
    return "test_" + valid_key.removeprefix("valid_")


def _trial_spec(ref: str, name: str, recipe: Any, params: Mapping[str, Any]) -> tuple[str, str, Any]:
    """``(task ref, task name, recipe)`` of a trial's point at the full budget: its architecture (task
    parameters) and ``recipe`` with its other values."""
    from optbench.search import apply_params
    from optbench.search.space import split_values, trial_task

    task_values, recipe_values = split_values(params)
    trial_ref, trial_name = trial_task(ref, name, task_values)
    return trial_ref, trial_name, apply_params(recipe, recipe_values)


def _retrain(context: StudyContext, ref: str, name: str, recipe: Any, trial: Any, seeds: Any,
             valid_key: str) -> tuple[Retrained, list[float]]:
    """Train ``trial``'s point from scratch on ``seeds``: its :class:`Retrained` row and the finite test values."""
    trial_ref, trial_name, trial_recipe = _trial_spec(ref, name, recipe, trial.params)
    runs = context.execute(plan_runs(trial_ref, trial_name, [trial_recipe], seeds))
    valid = [v for r in runs if math.isfinite(v := run_value(r, valid_key))]
    test = [v for r in runs if math.isfinite(v := run_value(r, _test_key(valid_key)))]
    cost = trial.result.environment.get("optimizer_cost")
    parameters = cost.get("trained_parameters") if isinstance(cost, Mapping) else None
    return Retrained(trial.number, trial_name, run_value(trial.result, valid_key), summarize(valid), summarize(test),
                     None if parameters is None else int(parameters)), test


def _baseline(context: StudyContext, ref: str, recipe: Any, seeds: Any, key: str, best: list[float]) -> BaselineRow:
    """Train the baseline ``ref`` with ``recipe`` on ``seeds``; its test metric ``key`` against ``best``."""
    from optbench.analysis.stats import welch_p_value_samples
    from optbench.tasks import get_task

    task = get_task(ref)
    values = [v for v in (run_value(r, key) for r in context.execute(plan_runs(ref, task.name, [recipe], seeds)))
              if math.isfinite(v)]
    return BaselineRow(task.name, summarize(values), welch_p_value_samples(best, values))


PROTOCOL = ProtocolSpec(
    name="search", summary="an Optuna search of one recipe's space on the validation metric (or several "
    "objectives); best (or Pareto front) re-run on seeds",
    source="Akiba et al. 2019 (Optuna); samplers and pruners of optbench.search",
    parse_options=parse_options, check=check, planned_runs=planned_runs, run=run, needs_space=True)
