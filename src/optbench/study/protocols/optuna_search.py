"""``search``: a plain Optuna search (any sampler and pruner of :mod:`optbench.search`) over one
recipe's ``[search.space]`` per task, on the validation metric; reports every trial and the best,
and re-runs the best on every seed of the study (test metric over seeds) unless
``[protocol] rerun = false``. ``baselines`` (task references, e.g. hand-designed networks beside an
architecture search) are trained with the best trial's recipe on the same seeds, at the same budget, and
compared with the best's re-runs by Welch's t-test.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from optbench.analysis.protocols import BaselineRow, SearchResult, SearchTaskResult, run_value, trial_row
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
    """``rerun`` (default true): re-run the best trial on every seed; ``baselines`` (default none): task
    references trained with the best trial's recipe on the same seeds and compared with it (needs rerun)."""
    from optbench.core.errors import OptbenchError
    from optbench.tasks import get_task

    unknown_keys(table, ("rerun", "baselines"), report)
    rerun = take_bool(table, "rerun", True, report)
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
    return {"rerun": rerun, "baselines": tuple(baselines)}


def check(config: StudyConfig) -> list[tuple[str, str]]:
    """A search tunes exactly one recipe."""
    if len(config.recipes) != 1:
        return [("recipes", f"exactly one [[recipes]] table for protocol search, got {len(config.recipes)}")]
    return []


def planned_runs(config: StudyConfig) -> int:
    """Per task: the trials, plus the best and every baseline on every seed."""
    reruns = (1 + len(config.options.get("baselines", ()))) * len(config.seeds) if config.options["rerun"] else 0
    return len(config.tasks) * (config.budget.trials + reruns)


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
        baselines: list[BaselineRow] = []
        if best is not None and config.options["rerun"]:
            task_values, recipe_values = split_values(outcome.best.params)  # an architecture search's best
            best_ref, best_name = trial_task(ref, task.name, task_values)  # trains the best architecture
            best_recipe = apply_params(recipe, recipe_values)
            specs = plan_runs(best_ref, best_name, [best_recipe], config.seeds)
            values = [v for v in (run_value(r, keys.test_key) for r in context.execute(specs)) if math.isfinite(v)]
            rerun = summarize(values)
            for baseline_ref in config.options.get("baselines", ()):
                baselines.append(_baseline(context, baseline_ref, best_recipe, config.seeds, keys.test_key, values))
        out.append(SearchTaskResult(keys.name, recipe.label, trials, best, int(outcome.epochs_spent), rerun,
                                    tuple(baselines)))
    return SearchResult({k.name: k for _, _, k in prepared}, tuple(out), objective)


def _baseline(context: StudyContext, ref: str, recipe: Any, seeds: Any, key: str, best: list[float]) -> BaselineRow:
    """Train the baseline ``ref`` with ``recipe`` on ``seeds``; its test metric ``key`` against ``best``."""
    from optbench.analysis.stats import welch_p_value_samples
    from optbench.tasks import get_task

    task = get_task(ref)
    values = [v for v in (run_value(r, key) for r in context.execute(plan_runs(ref, task.name, [recipe], seeds)))
              if math.isfinite(v)]
    return BaselineRow(task.name, summarize(values), welch_p_value_samples(best, values))


PROTOCOL = ProtocolSpec(
    name="search", summary="an Optuna search of one recipe's space on the validation metric; best re-run on seeds",
    source="Akiba et al. 2019 (Optuna); samplers and pruners of optbench.search",
    parse_options=parse_options, check=check, planned_runs=planned_runs, run=run, needs_space=True)
