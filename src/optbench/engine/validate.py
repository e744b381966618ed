"""Check every name and parameter of a recipe before anything runs or is stored."""

from __future__ import annotations

from dataclasses import replace

import torch

from optbench.core.errors import ConfigError
from optbench.core.spec import Recipe, Task, default_device
from optbench.engine.build import build_components, check_engine
from optbench.optim import optimizers, resolved_hyperparams
from optbench.schedules import check_params, schedules
from optbench.techniques import precision_context


def check_recipe(recipe: Recipe, task: Task, device: torch.device | None = None, *, engine: str = "single") -> None:
    """Raise the first problem of ``recipe`` as a one-line error, without side effects.

    Checks the optimizer and its hyperparameters, the schedule and its parameters, precision on
    ``device``, every technique (name, parameters, whether it fits the task, e.g. augmentations valid
    for its inputs, and the recipe, e.g. a pruning epoch within its budget) and whether ``engine``
    can run all of it.

    Raises:
        UnknownNameError: an unknown name (lists the known ones).
        ConfigError: an unknown parameter, a value out of range, or something ``engine`` cannot run
            (naming the engines that can).
    """
    device = device or default_device()
    optimizers.canonical(recipe.optimizer)
    resolved_hyperparams(recipe.optimizer, **recipe.hyperparams)
    check_params(recipe.schedule, dict(recipe.schedule_params))
    precision_context(recipe.precision, device)
    components = build_components(task, recipe)
    for c in components:
        c.check_task(task)
        c.check_recipe(recipe)
    splits = max((c.micro_batches for c in components), default=1)
    if recipe.batch_size % splits:
        raise ConfigError("accumulation steps", splits, f"a divisor of batch_size {recipe.batch_size}")
    check_engine(recipe, task, engine)


def canonical_recipe(recipe: Recipe) -> Recipe:
    """``recipe`` with registry aliases replaced by the registered names (``adamw`` ->
    ``torch.adamw``, ``sgdr`` -> ``cosine_warm_restarts``), so one experiment has one run id.

    Raises:
        UnknownNameError: for an unknown optimizer or schedule name.
    """
    return replace(recipe, optimizer=optimizers.canonical(recipe.optimizer),
                   schedule=schedules.canonical(recipe.schedule))


__all__ = ["canonical_recipe", "check_recipe"]
