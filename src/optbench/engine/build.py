"""Build one run from a recipe, the same way in every engine: the components of its techniques (and
of the task's own L2), the optimizer over their parameter groups and hyperparameters, the
learning-rate schedule (built here and nowhere else), and the one step (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from optbench.core.component import Component, ModelContext, RunContext, overriding
from optbench.core.errors import ConfigError
from optbench.core.spec import Recipe, Task
from optbench.engine.cost import OptimizerCost
from optbench.engine.model_cost import measure_model
from optbench.engine.step import TrainStep
from optbench.optim import capabilities, create_optimizer, resolved_hyperparams
from optbench.optim.partition import Partition, make_partition, partition_groups
from optbench.schedules import LRController, Schedule, make_schedule
from optbench.techniques.optimizer_modes import OptimizerModes
from optbench.techniques.penalties import L2Penalty
from optbench.techniques.registry import make_component


def build_components(task: Task, recipe: Recipe) -> list[Component]:
    """The components of ``recipe.techniques`` in order, then the task's own L2 (``Task.l2``:
    ``l2 / 2 * sum w^2`` over weights, biases and normalization weights left out, DeepOBS), then,
    for an optimizer with train/eval modes (schedule-free), the switch between them
    (:class:`~optbench.techniques.optimizer_modes.OptimizerModes`: evaluated last, after any
    averaging swap).

    Raises:
        UnknownNameError / ConfigError: an unknown technique or a bad parameter.
    """
    components = [make_component(spec) for spec in recipe.techniques]
    if task.l2:
        components.append(L2Penalty(strength=task.l2, exclude_bias_and_norm=True))
    if capabilities(recipe.optimizer).train_eval_modes:
        components.append(OptimizerModes())
    return components


def build_schedule(recipe: Recipe, base_lr: float | None, *, steps_per_epoch: int, task: Task) -> Schedule | None:
    """The recipe's learning-rate schedule for ``steps_per_epoch`` steps per epoch, or None when the
    learning rate stays constant (or the optimizer has no learning rate).

    Raises:
        UnknownNameError / ConfigError: as :func:`optbench.schedules.make_schedule`.
    """
    if base_lr is None or (recipe.schedule == "constant" and not recipe.schedule_params):
        return None
    return make_schedule(recipe.schedule, float(base_lr), total_steps=recipe.epochs * steps_per_epoch,
                         steps_per_epoch=steps_per_epoch, direction_of=task.direction, **recipe.schedule_params)


def optimizer_hyperparams(recipe: Recipe, components: list[Component], batch_size: int) -> dict[str, Any]:
    """The optimizer's keyword arguments: the recipe's, adjusted by the components (learning-rate
    scaling with ``batch_size``, the examples of one optimizer step)."""
    hyperparams = dict(recipe.hyperparams)
    adjusting = overriding(components, "adjust_hyperparams")
    if adjusting:
        lr = resolved_hyperparams(recipe.optimizer, **hyperparams).get("lr")
        if lr is not None:
            hyperparams["lr"] = lr
        for c in adjusting:
            hyperparams = c.adjust_hyperparams(hyperparams, batch_size)
    return hyperparams


@dataclass
class RunSetup:
    """Everything one run (or one process of a distributed run) builds before its first step.

    Attributes:
        model: the trained module (never a DDP wrapper).
        optimizer: over ``model``'s trainable parameters; None on a parameter-server worker.
        step: the one step (gradient side and update side).
        components: the techniques' components in order (task L2 last).
        controller: writes the schedule's learning rate before each update; None for a constant lr.
        hyperparams: the optimizer's keyword arguments as built (after learning-rate scaling).
        generator: the random source of the data-side components (checkpointed).
        partition: how the optimizer's parameter-partition contract split the model (Muon), or None.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    step: TrainStep
    components: list[Component]
    controller: LRController | None
    hyperparams: dict[str, Any]
    generator: torch.Generator
    partition: Partition | None = None

    def records(self) -> dict[str, Any]:
        """What the run records about its optimizer in ``RunResult.environment``:
        ``optimizer_cost`` (:mod:`optbench.engine.cost`) and ``param_partition``
        (:meth:`optbench.optim.partition.Partition.record`) when there is one; ``model_cost``
        (:func:`optbench.engine.model_cost.measure_model`) when a component declares
        ``measures_model`` (pruning, 2:4 sparsity, low rank) and has seen an input example: the model
        measured is the one its ``model_to_measure`` returns (structured pruning: the physically
        shrunk model; ``model_cost["shrunk"]`` says whether shrinking succeeded). A measurement that
        fails records ``{"error": message}`` instead."""
        out: dict[str, Any] = {}
        if self.step.cost is not None:
            out["optimizer_cost"] = self.step.cost.record()
        if self.partition is not None:
            out["param_partition"] = self.partition.record()
        measuring = [c for c in self.components if getattr(c, "measures_model", False)]
        example = next((c.example_input for c in measuring if getattr(c, "example_input", None) is not None), None)
        if example is not None:
            try:
                model = self.model
                for c in measuring:
                    model = c.model_to_measure(model)
                cost = measure_model(model, example)
                for c in measuring:
                    if hasattr(c, "shrunk"):
                        cost["shrunk"] = c.shrunk
                out["model_cost"] = cost
            except Exception as exc:  # a measurement never fails the finished run
                out["model_cost"] = {"error": f"{type(exc).__name__}: {exc}"}
        return out

    @property
    def needs_epoch_end(self) -> bool:
        """Whether anything reads the epoch's metrics (a metric-driven schedule, a component's
        ``on_epoch_end``): the distributed engines then send rank 0's metrics to every rank."""
        return (self.controller is not None and bool(self.controller.monitors)) \
            or bool(overriding(self.components, "on_epoch_end"))

    def before_train_epoch(self, epoch: int) -> None:
        """Run the components' hook before an epoch's steps (back to the training point)."""
        for c in overriding(self.components, "before_train_epoch"):
            c.before_train_epoch(epoch)

    def after_train_epoch(self, epoch: int) -> None:
        """Run the components' per-epoch update-side hook (SWA's average)."""
        for c in overriding(self.components, "after_train_epoch"):
            c.after_train_epoch(epoch)

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> dict[str, dict[str, Any]]:
        """Feed the epoch's train/valid metrics to the schedule and the components; returns the stop
        reasons ``{component name: reason}`` (empty: go on). Test metrics are never passed on."""
        seen = {k: v for k, v in metrics.items() if not k.startswith("test_")}
        if self.controller is not None:
            self.controller.on_epoch_end(seen)
        reasons = {}
        for c in overriding(self.components, "on_epoch_end"):
            reason = c.on_epoch_end(epoch, seen)
            if reason is not None:
                reasons[c.name] = reason
        return reasons

    def eval_model(self, train_inputs: Callable[[], Any]) -> nn.Module:
        """The module to evaluate: the trained one, or what a component swaps in (averaged weights)."""
        model = self.model
        for c in overriding(self.components, "eval_model"):
            model = c.eval_model(model, train_inputs)
        return model

    def extra_metrics(self) -> dict[str, float]:
        """The components' extra per-epoch numbers."""
        out: dict[str, float] = {}
        for c in overriding(self.components, "metrics"):
            out.update(c.metrics())
        return out

    def lr(self) -> float:
        """Learning rate of the first parameter group (NaN without an optimizer)."""
        return float(self.optimizer.param_groups[0]["lr"]) if self.optimizer is not None else float("nan")


def optimizer_params(recipe: Recipe, components: list[Component], model: nn.Module,
                     hyperparams: dict[str, Any]) -> tuple[Any, Partition | None]:
    """The parameters (or groups) the optimizer gets: its own partition when its capabilities
    declare one (Muon: hidden matrices and the rest), else the first component's parameter groups,
    else every trainable parameter; the components' :meth:`~optbench.core.component.Component.extra_parameters`
    (a FitNets regressor) as one more group each.

    Raises:
        ConfigError: a component's parameter groups or extra parameters together with an optimizer
            that partitions the model itself (the parameter-partition contract), or a model the
            partition cannot split.
    """
    rule = capabilities(recipe.optimizer).partition
    grouping = overriding(components, "param_groups")
    extra = [c for c in overriding(components, "extra_parameters") if c.extra_parameters()]
    if rule is not None:
        for c in (*grouping, *extra):
            raise ConfigError(f"technique {c.name} with optimizer {recipe.optimizer}", c.name,
                              f"no technique that sets parameter groups or trains extra parameters (the "
                              f"optimizer's parameter-partition contract '{rule}' sets the groups)")
        partition = make_partition(rule, model)
        return partition_groups(partition), partition
    extra_groups = [{"params": list(c.extra_parameters())} for c in extra]
    for c in grouping:
        groups = c.param_groups(model, hyperparams)
        if groups is not None:
            return [*groups, *extra_groups], None
    params = [p for p in model.parameters() if p.requires_grad]
    return ([{"params": params}, *extra_groups] if extra_groups else params), None


def build_run(task: Task, recipe: Recipe, model: nn.Module, *, device: torch.device, generator: torch.Generator,
              engine: str, batch_size: int, steps_per_epoch: int, seed: int,
              wrap_forward: Callable[[nn.Module], Callable[[Tensor], Tensor]] | None = None,
              with_optimizer: bool = True,
              load_weights: Callable[[str], Any] | None = None) -> RunSetup:
    """Build a run around ``model`` (already on ``device``, initialized under the run's seed).

    The components' ``prepare_model`` hooks may replace the module (load weights, freeze,
    factorize): the returned :attr:`RunSetup.model` is the one to train, and ``wrap_forward`` (the
    DDP wrapper) is applied to it, not to ``model``.

    Args:
        task, recipe: the problem and how to train it.
        model: the module to train.
        device: where it trains.
        generator: the random source of data-side components (augmentations).
        engine: ``single``, ``ddp`` or ``ps`` (see :data:`optbench.core.component.ENGINES`).
        batch_size: examples of one optimizer step (all workers together), for learning-rate scaling.
        steps_per_epoch: optimizer steps per epoch (schedule horizon).
        seed: the run's seed (components seed their own update-side randomness from it).
        wrap_forward: builds what the step calls for the forward pass from the prepared model (the
            DDP wrapper); the model itself by default.
        with_optimizer: False on a parameter-server worker (it computes gradients only).
        load_weights: ``run_id -> state_dict`` of stored runs' final weights, for components that
            start from or learn from another run (:class:`~optbench.core.component.ModelContext`).

    Raises:
        UnknownNameError / ConfigError: a bad technique, optimizer, hyperparameter or schedule, or a
            broken optimizer contract (named in the message).
    """
    components = build_components(task, recipe)
    preparing = overriding(components, "prepare_model")
    if preparing:
        context = ModelContext(task=task, device=device, seed=seed, engine=engine, load_weights=load_weights)
        for c in preparing:
            model = c.prepare_model(model, context)
    forward = wrap_forward(model) if wrap_forward is not None else model
    hyperparams = optimizer_hyperparams(recipe, components, batch_size)
    optimizer = None
    controller = None
    partition = None
    caps = capabilities(recipe.optimizer)
    if with_optimizer:
        params, partition = optimizer_params(recipe, components, model, hyperparams)
        optimizer = create_optimizer(recipe.optimizer, params, device=device, **hyperparams)
        schedule = build_schedule(recipe, resolved_hyperparams(recipe.optimizer, **hyperparams).get("lr"),
                                  steps_per_epoch=steps_per_epoch, task=task)
        controller = LRController(optimizer, schedule) if schedule is not None else None
    run = RunContext(model=model, optimizer=optimizer, task=task, device=device, generator=generator,
                     steps_per_epoch=steps_per_epoch, total_steps=recipe.epochs * steps_per_epoch, engine=engine,
                     seed=seed)
    for c in overriding(components, "setup"):
        c.setup(run)
    cost = OptimizerCost(optimizer, device, includes_closure=caps.needs_closure or caps.two_pass) \
        if optimizer is not None else None
    step = TrainStep(task=task, model=model, forward=forward, optimizer=optimizer, components=components,
                     precision=recipe.precision, device=device, caps=caps, batch_size=recipe.batch_size, cost=cost)
    return RunSetup(model, optimizer, step, components, controller, hyperparams, generator, partition)


def check_engine(recipe: Recipe, task: Task, engine: str) -> None:
    """Refuse, before anything starts, what ``engine`` cannot run: a technique whose component does
    not declare the engine, and in ``ps`` an optimizer that re-evaluates the loss (closure, two
    passes) or fp16 loss scaling (the scaler must sit beside the optimizer).

    Raises:
        ConfigError: naming the technique or setting and the engines that can run it.
    """
    from optbench.techniques.registry import engines_of

    for spec in recipe.techniques:
        engines = engines_of(spec.name)
        if engine not in engines:
            raise ConfigError(f"technique {spec.name} in engine {engine}", spec.name,
                              f"engines {', '.join(engines)}")
    caps = capabilities(recipe.optimizer)
    if caps.train_eval_modes and engine != "single":
        raise ConfigError(f"optimizer in engine {engine}", recipe.optimizer,
                          "an optimizer without train/eval modes (engine single runs schedule-free ones)")
    if engine == "ps":
        if caps.needs_closure or caps.two_pass:
            raise ConfigError(f"optimizer in engine {engine}", recipe.optimizer,
                              "an optimizer without a closure (engines single, ddp run this one)")
        if recipe.precision == "fp16":
            raise ConfigError(f"precision in engine {engine}", recipe.precision,
                              "fp32, bf16 (engines single, ddp run fp16)")
    if engine != "single" and caps.full_batch_only:
        raise ConfigError(f"optimizer in engine {engine}", recipe.optimizer, "a mini-batch optimizer (engine single "
                          "runs full-batch ones)")


__all__ = ["RunSetup", "build_components", "build_run", "build_schedule", "check_engine", "optimizer_hyperparams",
           "optimizer_params"]
