"""A study plan: the runs of Task x Recipes x seeds, with deterministic ids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from optbench.core.errors import ConfigError
from optbench.core.spec import Recipe, run_id


@dataclass(frozen=True)
class RunSpec:
    """One planned run.

    Attributes:
        task_ref: how to build the task (a registry name or ``module:factory``).
        task: the task's name (what is stored).
        recipe: how to train.
        seed: the run's seed.
    """

    task_ref: str
    task: str
    recipe: Recipe
    seed: int

    @property
    def run_id(self) -> str:
        """The content hash of (task, recipe, seed); see :func:`optbench.core.spec.run_id`."""
        return run_id(self.task, self.recipe, self.seed)


def plan_runs(task_ref: str, task: str, recipes: Sequence[Recipe], seeds: Sequence[int]) -> list[RunSpec]:
    """All (recipe, seed) runs of one task, seed-major, so that an interrupted study has every
    recipe's first seeds before any recipe's last ones.

    Raises:
        ConfigError: when two recipes are identical (e.g. an alias and its name) or a seed repeats.
    """
    specs = [RunSpec(task_ref, task, recipe, seed) for seed in seeds for recipe in recipes]
    ids = [s.run_id for s in specs]
    if len(set(ids)) != len(ids):
        raise ConfigError("recipes", ", ".join(r.optimizer for r in recipes),
                          "distinct recipes (two names or aliases denote the same optimizer)")
    return specs
