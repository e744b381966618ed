"""Check every name and parameter of a recipe before anything runs or is stored."""

from __future__ import annotations

from dataclasses import replace

import torch

from optbench.core.errors import ConfigError
from optbench.core.spec import Recipe, Task, default_device


def check_recipe(recipe: Recipe, task: Task, device: torch.device | None = None) -> None:
    """Raise the first problem of ``recipe`` as a one-line error, without side effects.

    Checks the optimizer and its hyperparameters, the schedule and its parameters, the
    penalty, augmentations, weight averaging, precision on ``device``, the batch-size rule and
    early stopping (whose monitored metric is the task's target, on the validation split).

    Raises:
        UnknownNameError: an unknown name (lists the known ones).
        ConfigError: an unknown parameter or a value out of range.
    """
    from optbench.optim import optimizers, resolved_hyperparams
    from optbench.techniques import (
        EarlyStopping,
        averagers,
        lr_scaling,
        make_augmentation,
        penalties,
        precision_context,
    )
    from optbench.schedules import check_params

    device = device or default_device()
    optimizers.canonical(recipe.optimizer)
    resolved_hyperparams(recipe.optimizer, **recipe.hyperparams)
    params = dict(recipe.schedule_params)
    if recipe.warmup_steps:
        params["warmup_steps"] = recipe.warmup_steps
    check_params(recipe.schedule, params)
    penalties.get(recipe.penalty).validate(recipe.penalty_params)
    make_augmentation(recipe.augmentation)
    for name in recipe.augmentation:
        if name not in task.augmentations:
            raise ConfigError(f"augmentation for task {task.name}", name, task.augmentations)
    averagers.get(recipe.averaging).validate(recipe.averaging_params)
    precision_context(recipe.precision, device)
    lr_scaling.get(recipe.batch_rule)
    if recipe.early_stopping:
        try:
            EarlyStopping(direction=task.direction(f"valid_{task.target.metric}"), **recipe.early_stopping)
        except TypeError:
            raise ConfigError("early_stopping", dict(recipe.early_stopping),
                              "keys patience (int >= 1) and min_delta (>= 0)") from None


def canonical_recipe(recipe: Recipe) -> Recipe:
    """``recipe`` with registry aliases replaced by the registered names (``adamw`` ->
    ``torch.adamw``, ``sgdr`` -> ``cosine_warm_restarts``), so one experiment has one run id.

    Raises:
        UnknownNameError: for an unknown optimizer or schedule name.
    """
    from optbench.optim import optimizers
    from optbench.schedules import schedules

    return replace(recipe, optimizer=optimizers.canonical(recipe.optimizer),
                   schedule=schedules.canonical(recipe.schedule))
