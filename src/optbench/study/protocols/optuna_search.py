"""``search``: a plain Optuna search (any sampler and pruner of :mod:`optbench.search`) over one
recipe's ``[search.space]`` per task, on the validation metric; reports every trial and the best,
and re-runs the best on every seed of the study (test metric over seeds) unless
``[protocol] rerun = false``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from optbench.analysis.protocols import SearchResult, SearchTaskResult, run_value, trial_row
from optbench.analysis.stats import summarize
from optbench.runs.plan import plan_runs
from optbench.study.config import StudyConfig
from optbench.study.protocols import (
    ProtocolSpec,
    Reporter,
    StudyContext,
    canonical_recipes,
    prepared_tasks,
    take_bool,
    unknown_keys,
)


def parse_options(table: Mapping[str, Any], report: Reporter) -> dict[str, Any]:
    """``rerun`` (default true): re-run the best trial on every seed."""
    unknown_keys(table, ("rerun",), report)
    return {"rerun": take_bool(table, "rerun", True, report)}


def check(config: StudyConfig) -> list[tuple[str, str]]:
    """A search tunes exactly one recipe."""
    if len(config.recipes) != 1:
        return [("recipes", f"exactly one [[recipes]] table for protocol search, got {len(config.recipes)}")]
    return []


def planned_runs(config: StudyConfig) -> int:
    """Per task: the trials, plus the best on every seed."""
    return len(config.tasks) * (config.budget.trials + (len(config.seeds) if config.options["rerun"] else 0))


def run(config: StudyConfig, context: StudyContext) -> SearchResult:
    """One search per task, then (optionally) its best on every seed."""
    from optbench.search import apply_params
    from optbench.search.space import split_values, trial_task

    assert config.search is not None
    (recipe,) = canonical_recipes(config.recipes)
    out = []
    objective = ""
    prepared = prepared_tasks(config, context)
    for ref, task, keys in prepared:
        objective = keys.valid_key
        search = config.search.search_config(n_trials=config.budget.trials, objective=keys.valid_key,
                                             direction=keys.direction)
        outcome = context.search(ref, recipe, search, run_seed=config.seeds[0])
        trials = tuple(trial_row(t.number, t.params, t.value, t.result) for t in outcome.trials)
        best = None if outcome.best is None else trial_row(outcome.best.number, outcome.best.params,
                                                           outcome.best.value, outcome.best.result)
        rerun = None
        if best is not None and config.options["rerun"]:
            task_values, recipe_values = split_values(outcome.best.params)  # an architecture search's best
            best_ref, best_name = trial_task(ref, task.name, task_values)  # trains the best architecture
            specs = plan_runs(best_ref, best_name, [apply_params(recipe, recipe_values)], config.seeds)
            values = [run_value(r, keys.test_key) for r in context.execute(specs)]
            rerun = summarize([v for v in values if math.isfinite(v)])
        out.append(SearchTaskResult(keys.name, recipe.label, trials, best, int(outcome.epochs_spent), rerun))
    return SearchResult({k.name: k for _, _, k in prepared}, tuple(out), objective)


PROTOCOL = ProtocolSpec(
    name="search", summary="an Optuna search of one recipe's space on the validation metric; best re-run on seeds",
    source="Akiba et al. 2019 (Optuna); samplers and pruners of optbench.search",
    parse_options=parse_options, check=check, planned_runs=planned_runs, run=run, needs_space=True)
