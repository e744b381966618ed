"""``crowded-valley``: several optimizers at their defaults versus one optimizer tuned with a
random-search budget, crossed with learning-rate schedules (Schmidt, Schneider & Hennig 2021,
"Descending through a Crowded Valley", sec. 3-4).

Options (``[protocol]``): ``schedules``, a list of ``constant``, ``cosine``,
``cosine_warm_restarts`` and ``trapezoidal`` (default: all four), mapped to optbench schedules by
:data:`SCHEDULES`. Phases, per task and (recipe x schedule) setting:

1. one-shot: the setting at the recipe's hyperparameters (its defaults), on every seed;
2. tuning: ``[budget] trials`` random-search trials over ``[search.space]`` on the validation
   metric (run on the study's first seed; the same sampler seed for every setting, so every
   optimizer sees the same random points);
3. the best trial re-run on every seed.

The answer: each tuned setting's final test metric over seeds versus the best one-shot setting
(selected by mean validation metric), with CIs and a Welch test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from optbench.analysis.protocols import CrowdedValleyResult, TaskKeys, setting, valley_comparisons
from optbench.core.spec import Recipe
from optbench.runs.plan import plan_runs
from optbench.study.config import StudyConfig
from optbench.study.protocols import (
    ProtocolSpec,
    Reporter,
    StudyContext,
    canonical_recipes,
    prepared_tasks,
    recipe_labels,
    unknown_keys,
)

#: The paper's schedules as optbench recipe fields. ``cosine_warm_restarts``: SGDR with a first
#: period of one epoch doubling after each restart; ``trapezoidal``: linear warmup over the first
#: 10% of the epochs, then linear decay to 0 (the paper's trapezoid without its constant middle
#: phase, which optbench's schedules do not have).
SCHEDULES: dict[str, dict[str, Any]] = {
    "constant": {"schedule": "constant", "schedule_params": {}},
    "cosine": {"schedule": "cosine", "schedule_params": {}},
    "cosine_warm_restarts": {"schedule": "cosine_warm_restarts", "schedule_params": {"t0_epochs": 1, "t_mult": 2}},
    "trapezoidal": {"schedule": "polynomial", "schedule_params": {"power": 1.0}},
}


def parse_options(table: Mapping[str, Any], report: Reporter) -> dict[str, Any]:
    """``schedules``: a non-empty list of distinct names of :data:`SCHEDULES`."""
    unknown_keys(table, ("schedules",), report)
    value = table.get("schedules", list(SCHEDULES))
    if not isinstance(value, list) or not value or len(set(map(str, value))) != len(value):
        report("schedules", f"a non-empty list of distinct names of {', '.join(SCHEDULES)}, got {value!r}")
        return {"schedules": list(SCHEDULES)}
    for j, name in enumerate(value):
        if name not in SCHEDULES:
            report(f"schedules[{j}]", f"unknown schedule {name!r}; allowed: {', '.join(SCHEDULES)}")
    return {"schedules": [n for n in value if n in SCHEDULES]}


def check(config: StudyConfig) -> list[tuple[str, str]]:
    """Recipes leave the schedule to the protocol (name and parameters, warmup included); the space tunes
    recipes only (architectures are searched by the search protocol)."""
    from optbench.search.space import is_task_path

    problems = [(f"recipes[{i}].schedule", "crowded-valley sets the schedule itself ([protocol] schedules); remove it")
                for i, r in enumerate(config.recipes) if r.schedule != "constant" or r.schedule_params]
    if config.search is not None:
        problems += [(f"search.space.{p.path}", "crowded-valley tunes recipes; search task parameters with the "
                      "search protocol") for p in config.search.space if is_task_path(p.path)]
    return problems


def planned_runs(config: StudyConfig) -> int:
    """Per task and setting: the defaults and the tuned best on every seed, plus the trials."""
    settings = len(config.recipes) * len(config.options["schedules"])
    return len(config.tasks) * settings * (2 * len(config.seeds) + config.budget.trials)


def with_schedule(recipe: Recipe, name: str) -> Recipe:
    """``recipe`` with the crowded-valley schedule ``name`` (:data:`SCHEDULES`)."""
    fields = SCHEDULES[name]
    params = dict(fields["schedule_params"])
    if name == "trapezoidal":
        params["warmup_epochs"] = round(0.1 * recipe.epochs, 6)
    return replace(recipe, schedule=fields["schedule"], schedule_params=params)


def _tune(context: StudyContext, config: StudyConfig, ref: str, keys: TaskKeys, base: Recipe) -> Recipe | None:
    from optbench.search import apply_params

    assert config.search is not None
    search = config.search.search_config(n_trials=config.budget.trials, objective=keys.valid_key,
                                         direction=keys.direction, sampler="random", pruner="none")
    outcome = context.search(ref, base, search, run_seed=config.seeds[0])
    return None if outcome.best is None else apply_params(base, outcome.best.params)


def run(config: StudyConfig, context: StudyContext) -> CrowdedValleyResult:
    """Defaults on every seed, a random search per setting, the best of each on every seed."""
    prepared = prepared_tasks(config, context)
    recipes = canonical_recipes(config.recipes)
    labels = recipe_labels(recipes)
    settings = [(i, s) for i in range(len(recipes)) for s in config.options["schedules"]]
    defaults_plan, tuned_plan = {}, {}
    for ref, task, _ in prepared:
        for i, s in settings:
            defaults_plan[ref, i, s] = plan_runs(ref, task.name, [with_schedule(recipes[i], s)], config.seeds)
    done = {r.run_id: r for r in context.execute([x for specs in defaults_plan.values() for x in specs])}
    for ref, task, keys in prepared:
        for i, s in settings:
            tuned = _tune(context, config, ref, keys, with_schedule(recipes[i], s))
            if tuned is not None:
                tuned_plan[ref, i, s] = plan_runs(ref, task.name, [tuned], config.seeds)
    done.update({r.run_id: r for r in context.execute([x for specs in tuned_plan.values() for x in specs])})
    defaults, tuned_settings, comparisons = {}, {}, {}
    for ref, _, keys in prepared:
        d = tuple(setting(keys, f"{labels[i]}/{s}", recipes[i].optimizer, s, False,
                          [done[x.run_id] for x in defaults_plan[ref, i, s]]) for i, s in settings)
        t = tuple(setting(keys, f"{labels[i]}/{s}", recipes[i].optimizer, s, True,
                          [done[x.run_id] for x in tuned_plan[ref, i, s]]) for i, s in settings
                  if (ref, i, s) in tuned_plan)
        defaults[keys.name], tuned_settings[keys.name] = d, t
        comparisons[keys.name] = valley_comparisons(keys, d, t)
    return CrowdedValleyResult({k.name: k for _, _, k in prepared}, defaults, tuned_settings, comparisons,
                               config.budget.trials)


PROTOCOL = ProtocolSpec(
    name="crowded-valley",
    summary="several optimizers at their defaults versus one tuned by random search, crossed with schedules",
    source="Schmidt, Schneider & Hennig 2021 (Descending through a Crowded Valley), sec. 3-4",
    parse_options=parse_options, check=check, planned_runs=planned_runs, run=run, needs_space=True)
