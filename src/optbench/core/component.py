"""The component contract: every training technique is a small stateful object with optional hooks
at fixed points of one step and one epoch (docs/architecture.md, "Components").

The idea is optax's ``chain`` of gradient transformations and Lightning's ``Callback`` hooks, in
PyTorch form. One step of every engine (single process, each DDP rank, the parameter server and its
workers) runs the hooks in this order::

    build      prepare_model(model, context)             load weights, freeze, factorize, QAT
               adjust_hyperparams(hp, batch_size)        lr scaling with the batch size
               param_groups(model, hp)                   weight-decay groups
               setup(run)                                model and optimizer exist
    gradient   transform_batch(x, y)                     augmentation          (worker side)
     side      wrap_loss(loss_fn)  (once, at setup)      label smoothing, distillation
               loss_term(x, output, y)  (per micro-batch) distillation, feature matching
               penalty()                                 task L2, L1/L2/elastic net
               micro_batches                             gradient accumulation
    update     after_backward()                          unscale, clip, mask gradients   (the
     side      after_step()                              averaging, pruning masks, projections  side
                                                                          holding the optimizer)
    epoch      before_train_epoch(epoch)                 back to the training point (schedule-free)
               after_train_epoch(epoch)                  per-epoch averaging (SWA)
               on_epoch_end(epoch, metrics) -> stop reason | None    early stopping, gradual pruning
               eval_model(model, train_inputs)           evaluated weights: EMA/SWA, averaged iterate
               metrics()                                 extra per-epoch numbers
    state      state_dict() / load_state_dict(state)     checkpoints

A component declares the engines it supports in :attr:`Component.engines`; a recipe naming a
component an engine cannot run is refused before anything starts. Hooks a component does not
override cost nothing: the step collects, once at construction, only the components that override
each hook (:func:`overriding`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

#: The engines: ``single`` (one process), ``ddp`` (DistributedDataParallel, every rank steps),
#: ``ps`` (a parameter server: workers compute gradients, the server updates).
ENGINES: tuple[str, ...] = ("single", "ddp", "ps")

LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass
class RunContext:
    """What a component may use once the run is built (passed to :meth:`Component.setup`).

    Attributes:
        model: the module being trained (the bare module, never a DDP wrapper).
        optimizer: the optimizer over ``model``'s parameters (None on a parameter-server worker,
            which computes gradients only).
        task: the test problem (its metrics, directions, target).
        device: where training runs.
        generator: the run's random source for data-side randomness (augmentations), seeded by
            the engine; its state is checkpointed by the engine.
        steps_per_epoch: optimizer steps per epoch.
        total_steps: optimizer steps of the whole budget.
        engine: one of :data:`ENGINES`.
        seed: the run's seed (the same on every process of a distributed run: update-side randomness
            seeded from it stays identical on every DDP replica).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    task: Any  # optbench.core.spec.Task (not imported: spec imports nothing from here either)
    device: torch.device
    generator: torch.Generator
    steps_per_epoch: int
    total_steps: int
    engine: str
    seed: int = 0


@dataclass
class ModelContext:
    """What a component may use to prepare the model (passed to :meth:`Component.prepare_model`).

    Attributes:
        task: the test problem.
        device: where training runs (the model is already there).
        seed: the run's seed.
        engine: one of :data:`ENGINES`.
        load_weights: ``run_id -> state_dict`` of a stored run's final weights (a teacher, a
            pre-trained model), or None when the run was started without access to stored weights.
            Raises :class:`~optbench.core.errors.ConfigError` for a run without stored weights.
    """

    task: Any
    device: torch.device
    seed: int = 0
    engine: str = "single"
    load_weights: Callable[[str], Mapping[str, Tensor]] | None = None


class Component:
    """Base class of training techniques: every hook is optional and does nothing here.

    Subclasses take their user parameters as keyword arguments of ``__init__`` (validated there,
    raising :class:`~optbench.core.errors.ConfigError` with the field and the allowed values) and
    get the run's objects in :meth:`setup`. ``name`` is the registry name; ``engines`` the engines
    the component can run in (all by default).
    """

    name: ClassVar[str] = "component"
    engines: ClassVar[tuple[str, ...]] = ENGINES
    #: micro-batches per step (gradient accumulation); the step uses the largest requested.
    micro_batches: int = 1

    # ---------------------------------------------------------------- build
    def check_task(self, task: Any) -> None:
        """Refuse a task this component cannot work with (ConfigError); called before any run."""

    def check_recipe(self, recipe: Any) -> None:
        """Refuse a recipe this component cannot work with (ConfigError), e.g. an epoch of the
        component beyond the recipe's ``epochs``; called before any run."""

    def prepare_model(self, model: nn.Module, context: ModelContext) -> nn.Module:
        """The module to train in place of ``model`` (built, initialized under the run's seed and on
        the run's device; before the optimizer and any DDP wrapper exist): load weights, freeze
        layers, factorize or prepare layers. Every process of a distributed run calls it alike."""
        return model

    def adjust_hyperparams(self, hyperparams: dict[str, Any], batch_size: int) -> dict[str, Any]:
        """The optimizer hyperparameters to use (``batch_size``: examples per optimizer step)."""
        return hyperparams

    def param_groups(self, model: nn.Module, hyperparams: Mapping[str, Any]) -> list[dict[str, Any]] | None:
        """Optimizer parameter groups for ``model``, or None to leave the parameters whole."""
        return None

    def extra_parameters(self) -> list[nn.Parameter]:
        """Parameters the run's optimizer trains beside the model's (created in
        :meth:`prepare_model`; e.g. a FitNets regressor): one more parameter group with the recipe's
        hyperparameters. They are not part of the model (not evaluated, exported or measured); the
        component checkpoints them in its own ``state_dict``."""
        return []

    def setup(self, run: RunContext) -> None:
        """Bind to the built run (model, optimizer, task, device, generator)."""

    # ---------------------------------------------------------------- gradient side
    def transform_batch(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The batch the model sees this step (augmentation, mixup)."""
        return x, y

    def wrap_loss(self, loss_fn: LossFn) -> LossFn:
        """The loss differentiated in place of ``loss_fn`` (a mean over the batch); the reported
        ``loss`` metric stays the task's own loss."""
        return loss_fn

    def loss_term(self, x: Tensor, output: Tensor, y: Tensor) -> Tensor | None:
        """A 0-d term added to the objective of each (micro-)batch and weighted like its loss
        (``x``: the inputs the model saw, ``output``: its output): distillation, feature matching.
        The reported ``loss`` metric stays the task's own loss."""
        return None

    def penalty(self) -> Tensor | None:
        """A 0-d term added once per step to the objective (parameter penalties)."""
        return None

    # ---------------------------------------------------------------- update side
    def after_backward(self) -> None:
        """Act on the (reduced, unscaled) gradients before the optimizer step (clipping, masks)."""

    def after_step(self) -> None:
        """Act on the parameters after the optimizer step (averaging, masks, projections)."""

    # ---------------------------------------------------------------- epoch
    def before_train_epoch(self, epoch: int) -> None:
        """Before the training steps of epoch ``epoch`` (update side: undo an evaluation swap, e.g.
        a schedule-free optimizer back to its training point)."""

    def after_train_epoch(self, epoch: int) -> None:
        """After the training steps of epoch ``epoch``, before it is evaluated (update side: per-epoch
        weight averaging)."""

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> dict[str, Any] | None:
        """After epoch ``epoch`` was measured (train/valid metrics; never test metrics): return a
        stop reason (a JSON-ready dict recorded in the run's environment) to end the run."""
        return None

    def eval_model(self, model: nn.Module, train_inputs: Callable[[], Iterable[Tensor]]) -> nn.Module:
        """The module to evaluate and report (``train_inputs()`` iterates training inputs, for
        recomputing normalization statistics)."""
        return model

    def metrics(self) -> dict[str, float]:
        """Extra numbers recorded with each epoch (e.g. sparsity)."""
        return {}

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """The component's state for checkpoints (tensors, numbers, strings, lists, dicts)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""


_HOOKS = ("prepare_model", "adjust_hyperparams", "param_groups", "extra_parameters", "setup", "transform_batch",
          "wrap_loss", "loss_term", "penalty",
          "after_backward", "after_step", "before_train_epoch", "after_train_epoch", "on_epoch_end", "eval_model",
          "metrics", "state_dict")


def overriding(components: Sequence[Component], hook: str) -> list[Component]:
    """The components whose class overrides ``hook`` (in order), so that the hot path calls only
    hooks that do something.

    Raises:
        ValueError: ``hook`` is not a hook of :class:`Component`.
    """
    if hook not in _HOOKS:
        raise ValueError(f"unknown hook {hook!r}; hooks: {', '.join(_HOOKS)}")
    base = getattr(Component, hook)
    return [c for c in components if getattr(type(c), hook) is not base]


def iter_state(components: Sequence[Component]) -> Iterator[tuple[str, Component]]:
    """``(key, component)`` pairs with keys unique per position (``"0:l2"``), for checkpoints."""
    for i, c in enumerate(components):
        yield f"{i}:{c.name}", c


__all__ = ["ENGINES", "Component", "LossFn", "ModelContext", "RunContext", "iter_state", "overriding"]
