"""``deepobs``: a learning-rate grid tuned on the validation metric, the best setting re-run on
several seeds, test metrics reported (Schneider, Balles & Hennig 2019, "DeepOBS", sec. 3).

Options (``[protocol]``):

* ``grid = { low, high, points }``: the log-spaced lr grid (DeepOBS: 36 points from 1e-5 to 1e2).
* ``tuning_seeds``: how many of the study's seeds each grid point runs on (DeepOBS: 1).

Each recipe's other hyperparameters stay as written; its ``lr`` is replaced by the grid. The best
grid point has the best mean *final validation* metric over the tuning seeds (ties: the smaller
lr); it is then run on every seed of the study, and the final test metric over those seeds is
reported. Tuning seeds are the study's first seeds, so their re-runs are the same stored runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from optbench.analysis.protocols import DeepobsResult, best_grid_point, deepobs_row, grid_points
from optbench.optim.lr_semantics import lr_grid
from optbench.runs.plan import plan_runs
from optbench.study.config import StudyConfig
from optbench.study.protocols import (
    ProtocolSpec,
    Reporter,
    StudyContext,
    canonical_recipes,
    log_grid,
    prepared_tasks,
    recipe_labels,
    take_int,
    take_log_grid,
    unknown_keys,
)

#: DeepOBS's default grid: 36 log-spaced learning rates in [1e-5, 1e2].
DEFAULT_GRID = (1e-5, 1e2, 36)


def parse_options(table: Mapping[str, Any], report: Reporter) -> dict[str, Any]:
    """``grid`` (low, high, points) and ``tuning_seeds`` (>= 1), defaults filled in."""
    unknown_keys(table, ("grid", "tuning_seeds"), report)
    return {"grid": take_log_grid(table, "grid", DEFAULT_GRID, report),
            "tuning_seeds": take_int(table, "tuning_seeds", 1, report)}


def check(config: StudyConfig) -> list[tuple[str, str]]:
    """The tuning seeds must be among the study's seeds."""
    n = config.options["tuning_seeds"]
    if n > len(config.seeds):
        return [("protocol.tuning_seeds", f"at most the study's {len(config.seeds)} seeds, got {n}")]
    return []


def planned_runs(config: StudyConfig) -> int:
    """Per task and recipe: grid points x tuning seeds, plus the re-runs on the other seeds."""
    points, n_tune = config.options["grid"][2], config.options["tuning_seeds"]
    return len(config.tasks) * len(config.recipes) * (points * n_tune + len(config.seeds) - n_tune)


def run(config: StudyConfig, context: StudyContext) -> DeepobsResult:
    """Phase 1: every grid point on the tuning seeds; phase 2: each best point on every seed. A
    learning-rate-free optimizer's grid spans its step-size multiplier around 1
    (:func:`optbench.optim.lr_semantics.lr_grid`)."""
    grid = log_grid(*config.options["grid"])
    tuning_seeds = config.seeds[:config.options["tuning_seeds"]]
    prepared = prepared_tasks(config, context)
    recipes = canonical_recipes(config.recipes)
    labels = recipe_labels(recipes)
    phase1 = {(ref, i): plan_runs(ref, task.name, [replace(r, hyperparams={**r.hyperparams, "lr": lr})
                                                   for lr in lr_grid(r.optimizer, grid)], tuning_seeds)
              for ref, task, _ in prepared for i, r in enumerate(recipes)}
    done = {res.run_id: res for res in context.execute([s for specs in phase1.values() for s in specs])}
    phase2 = {}
    for ref, task, keys in prepared:
        for i, recipe in enumerate(recipes):
            best = best_grid_point(grid_points([done[s.run_id] for s in phase1[ref, i]], keys.valid_key),
                                   keys.direction)
            if best is not None:
                final = replace(recipe, hyperparams={**recipe.hyperparams, "lr": best.lr})
                phase2[ref, i] = plan_runs(ref, task.name, [final], config.seeds)
    done.update({res.run_id: res for res in context.execute([s for specs in phase2.values() for s in specs])})
    rows = [deepobs_row(keys, labels[i], [done[s.run_id] for s in phase1[ref, i]],
                        [done[s.run_id] for s in phase2.get((ref, i), [])])
            for ref, _, keys in prepared for i in range(len(recipes))]
    return DeepobsResult({keys.name: keys for _, _, keys in prepared}, tuple(rows))


PROTOCOL = ProtocolSpec(
    name="deepobs", summary="lr grid on the validation metric, the best setting re-run on every seed",
    source="Schneider, Balles & Hennig 2019 (DeepOBS), sec. 3", parse_options=parse_options, check=check,
    planned_runs=planned_runs, run=run)
