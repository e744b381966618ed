"""One optimizer step of a recipe: augmentation, precision, loss + penalty, accumulation,
clipping, and the optimizer's own protocol (closure, second-order, two passes).

The step dispatches on the optimizer's :class:`~optbench.optim.Capabilities`, never on its
name: L-BFGS, SAM and Sophia go through the same code as Adam.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from optbench.optim import create_graph_now
from optbench.techniques import accumulation_steps, micro_batches
from optbench.core.spec import Recipe, Task
from optbench.engine.metrics import TrainMetrics


class TrainStep:
    """Callable ``(x, y, metrics) -> None`` doing one optimizer step on a batch.

    Order of operations (Goyal et al. 2017 for accumulation; Micikevicius et al. 2018 for
    loss scaling): augment the batch -> for each micro-batch: autocast forward, task loss
    (label-smoothed if asked) x micro-batch weight + penalty (the recipe's and the task's own
    ``Task.l2``), (scaled) backward -> unscale ->
    clip by value / by norm -> optimizer step (with a closure if the optimizer needs one) ->
    update the gradient scaler.

    Args:
        task: loss and metrics.
        recipe: the techniques to apply.
        model: the model being trained.
        optimizer: built for ``model``'s parameters.
        device: where training runs (precision support depends on it).
        generator: random source of the augmentations (seeded by the harness).

    Raises:
        ConfigError / UnknownNameError: for an invalid technique, at construction.
    """

    def __init__(self, task: Task, recipe: Recipe, model: nn.Module, optimizer: torch.optim.Optimizer,
                 device: torch.device, generator: torch.Generator) -> None:
        from optbench.optim import capabilities
        from optbench.techniques import (
            make_augmentation,
            make_clipper,
            make_penalty,
            precision_context,
            smoothed_cross_entropy,
        )

        self.model, self.optimizer, self.generator = model, optimizer, generator
        self.caps = capabilities(recipe.optimizer)
        self.loss_fn = smoothed_cross_entropy(recipe.label_smoothing) if recipe.label_smoothing else task.loss
        self.loss_is_task_loss = not recipe.label_smoothing
        penalties = [make_penalty(recipe.penalty, model, exclude_bias_and_norm=not recipe.decay_bias_and_norm,
                                  **recipe.penalty_params),
                     make_penalty("l2", model, strength=task.l2) if task.l2 else None]  # the problem's own L2
        live = [p for p in penalties if p is not None]
        self.penalty: Callable[[], Tensor] | None = (
            None if not live else live[0] if len(live) == 1 else (lambda: live[0]() + live[1]()))
        self.augment = make_augmentation(recipe.augmentation) if recipe.augmentation else None
        self.autocast, self.scaler = precision_context(recipe.precision, device)
        clippers = [make_clipper("value", model.parameters(), clip_value=recipe.clip_value)
                    if recipe.clip_value is not None else None,
                    make_clipper("norm", model.parameters(), max_norm=recipe.clip_norm)
                    if recipe.clip_norm is not None else None]
        self.clippers: list[Callable[[], Tensor | None]] = [c for c in clippers if c is not None]
        self.micro_batch_size = recipe.batch_size // recipe.accumulation_steps
        accumulation_steps(recipe.batch_size, self.micro_batch_size)  # validates the split once
        if (self.caps.needs_closure or self.caps.two_pass) and (self.scaler is not None or recipe.accumulation_steps > 1):
            from optbench.core.errors import ConfigError

            raise ConfigError("optimizer", recipe.optimizer,
                              "an optimizer without a closure when using fp16 or gradient accumulation")

    def _objective(self, x: Tensor, y: Tensor, weight: float, *, with_penalty: bool = True
                   ) -> tuple[Tensor, Tensor, Tensor]:
        """Forward pass: (objective to differentiate, data loss, output). The penalty is added
        whole to one micro-batch's objective: the accumulated gradient is the same."""
        with self.autocast():
            output = self.model(x)
            loss = self.loss_fn(output, y)
        objective = loss * weight if weight != 1.0 else loss
        if self.penalty is not None and with_penalty:
            objective = objective + self.penalty()
        return objective, loss, output

    def _backward(self, objective: Tensor) -> None:
        # second-order methods need the graph only on the steps that estimate curvature
        create_graph = self.caps.create_graph and create_graph_now(self.optimizer)
        if self.scaler is not None:
            self.scaler.scale(objective).backward(create_graph=create_graph)
        else:
            objective.backward(create_graph=create_graph)

    def _clip(self) -> None:
        if self.clippers:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            for clip in self.clippers:
                clip()

    def __call__(self, x: Tensor, y: Tensor, metrics: TrainMetrics) -> None:
        if self.augment is not None:
            x = self.augment(x, self.generator)
        if self.caps.needs_closure or self.caps.two_pass:
            self._closure_step(x, y, metrics)
            return
        self.optimizer.zero_grad(set_to_none=True)
        whole = x.shape[0] <= self.micro_batch_size  # no accumulation: skip the split (hot path)
        parts = ((x, y, 1.0),) if whole else micro_batches(x, y, self.micro_batch_size)
        for i, (xi, yi, weight) in enumerate(parts):
            objective, loss, output = self._objective(xi, yi, weight, with_penalty=i == 0)
            self._backward(objective)
            metrics.add(loss, output, yi)
        self._clip()
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()

    def _closure_step(self, x: Tensor, y: Tensor, metrics: TrainMetrics) -> None:
        """Optimizers that re-evaluate the loss (L-BFGS's line search, SAM's second pass)."""
        first: list[tuple[Tensor, Tensor]] = []

        def closure() -> Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            with torch.enable_grad():
                objective, loss, output = self._objective(x, y, 1.0)
                self._backward(objective)
            self._clip()
            if not first:
                first.append((loss, output))
            return objective

        self.optimizer.step(closure)  # SAM calls it twice (at w, then at w + eps), L-BFGS per line-search point
        loss, output = first[0]
        metrics.add(loss, output, y)
