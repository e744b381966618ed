"""``seed004``: the same hyperparameters for every optimizer, several seeds (the protocol of
``optbench compare``; the reference experiment: seven optimizers with one shared learning rate and
batch size on one task).

Every recipe runs on every task and seed; the answer per task is the ranking of
:func:`optbench.analysis.summarize_runs` (mean, std and bootstrap CI over seeds, Welch tests with
Holm correction, time-to-target). Nothing is tuned.
"""

from __future__ import annotations

from typing import Any

from optbench.analysis.protocols import Seed004Result, seed004_result
from optbench.runs.plan import plan_runs
from optbench.study.config import StudyConfig
from optbench.study.protocols import (
    ProtocolSpec,
    StudyContext,
    canonical_recipes,
    no_check,
    no_options,
    prepared_tasks,
)


def planned_runs(config: StudyConfig) -> int:
    """tasks x recipes x seeds."""
    return len(config.tasks) * len(config.recipes) * len(config.seeds)


def run(config: StudyConfig, context: StudyContext) -> Seed004Result:
    """Run every (task, recipe, seed) in one plan, then rank per task."""
    prepared = prepared_tasks(config, context)
    recipes = canonical_recipes(config.recipes)
    specs = [s for ref, task, _ in prepared for s in plan_runs(ref, task.name, recipes, config.seeds)]
    results = context.execute(specs)
    by_task: dict[str, list[Any]] = {task.name: [] for _, task, _ in prepared}
    for result in results:
        by_task[result.task].append(result)
    return seed004_result(by_task, {task.name: keys for _, task, keys in prepared})


PROTOCOL = ProtocolSpec(
    name="seed004", summary="the same hyperparameters for every optimizer; results over seeds",
    source="the optbench reference protocol (seven optimizers, one shared lr and batch size)",
    parse_options=no_options, check=no_check, planned_runs=planned_runs, run=run)
