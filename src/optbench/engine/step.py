"""The one training step of every engine: single process, each DDP rank, the parameter server and its
workers (docs/architecture.md, "The step").

It has two halves, like torch's ``optim/adam.py`` has one math core and several execution strategies:

* the **gradient side** (:meth:`TrainStep.gradients`): the components transform the batch, the model
  runs forward under the recipe's precision, the objective is the (possibly wrapped) loss per
  micro-batch plus the components' penalties, and it is backpropagated (scaled under fp16);
* the **update side** (:meth:`TrainStep.update`): unscale, the components' ``after_backward`` hooks
  (clipping, gradient masks), the optimizer step, the components' ``after_step`` hooks (averaging).

Engines differ only in what happens between the halves: nothing (single process), the DDP
all-reduce inside ``backward`` (every rank runs both halves), or a push of the gradient to the
parameter server, which runs the update side (workers run the gradient side only). The step
dispatches on the optimizer's :class:`~optbench.optim.Capabilities`, never on its name: L-BFGS, SAM
and Sophia go through the same code as Adam.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from optbench.core.component import Component, overriding
from optbench.core.errors import ConfigError
from optbench.core.spec import Task
from optbench.engine.cost import OptimizerCost
from optbench.engine.metrics import TrainMetrics
from optbench.optim import Capabilities, create_graph_now
from optbench.techniques import micro_batches, precision_context


class TrainStep:
    """Callable ``(x, y, metrics) -> None`` doing one optimizer step on a batch, or its halves.

    Order of operations (Goyal et al. 2017 for accumulation; Micikevicius et al. 2018 for loss
    scaling): transform the batch -> for each micro-batch: autocast forward, loss x micro-batch weight
    (+ the penalties, once per step), (scaled) backward -> [reduction by the engine] -> unscale ->
    ``after_backward`` hooks -> optimizer step (with a closure if the optimizer needs one) -> update
    the gradient scaler -> ``after_step`` hooks.

    Args:
        task: loss and metrics.
        model: the module whose parameters are trained (penalties and hooks act on it).
        forward: what computes the output (the DDP wrapper of ``model``, or ``model``).
        optimizer: built over ``model``'s parameters; None on a parameter-server worker.
        components: the run's components, in order.
        precision: ``fp32``, ``bf16`` or ``fp16`` (see :mod:`optbench.techniques.precision`).
        device: where training runs.
        caps: the optimizer's capabilities.
        batch_size: examples per step on this process (micro-batches split it).
        cost: times ``optimizer.step()`` on a sample of steps and measures its state
            (:mod:`optbench.engine.cost`); None: not measured.

    Raises:
        ConfigError: a closure optimizer with fp16 or gradient accumulation; accumulation steps that
            do not divide the batch size.
    """

    def __init__(self, *, task: Task, model: nn.Module, forward: Callable[[Tensor], Tensor],
                 optimizer: torch.optim.Optimizer | None, components: Sequence[Component], precision: str,
                 device: torch.device, caps: Capabilities, batch_size: int,
                 cost: OptimizerCost | None = None) -> None:
        self.model, self.forward, self.optimizer, self.caps, self.cost = model, forward, optimizer, caps, cost
        loss_fn = task.loss
        for c in overriding(components, "wrap_loss"):
            loss_fn = c.wrap_loss(loss_fn)
        self.loss_fn = loss_fn
        self.loss_is_task_loss = loss_fn is task.loss
        self.transforms = overriding(components, "transform_batch")
        self.penalties = overriding(components, "penalty")
        self.loss_terms = overriding(components, "loss_term")
        if self.loss_terms:
            self.loss_is_task_loss = False  # the objective is no longer the task's loss alone
        self.after_backward_hooks = overriding(components, "after_backward")
        self.after_step_hooks = overriding(components, "after_step")
        self.autocast, self.scaler = precision_context(precision, device)
        splits = max((c.micro_batches for c in components), default=1)
        if batch_size % splits:
            raise ConfigError("accumulation steps", splits, f"a divisor of batch_size {batch_size}")
        self.micro_batch_size = batch_size // splits
        if (caps.needs_closure or caps.two_pass) and (self.scaler is not None or splits > 1):
            raise ConfigError("optimizer", type(optimizer).__name__ if optimizer is not None else "closure optimizer",
                              "an optimizer without a closure when using fp16 or gradient accumulation")

    # ------------------------------------------------------------------ gradient side
    def _objective(self, x: Tensor, y: Tensor, weight: float, *, with_penalty: bool = True
                   ) -> tuple[Tensor, Tensor, Tensor]:
        """Forward pass: (objective to differentiate, data loss, output). The penalties are added
        whole to one micro-batch's objective: the accumulated gradient is the same."""
        with self.autocast():
            output = self.forward(x)
            loss = self.loss_fn(output, y)
            if self.loss_terms:
                loss = loss + sum(c.loss_term(x, output, y) for c in self.loss_terms)
        objective = loss * weight if weight != 1.0 else loss
        if with_penalty and self.penalties:
            total = self.penalties[0].penalty()
            for c in self.penalties[1:]:
                total = total + c.penalty()
            objective = objective + total
        return objective, loss, output

    def _backward(self, objective: Tensor) -> None:
        # second-order methods need the graph only on the steps that estimate curvature
        create_graph = self.caps.create_graph and (self.optimizer is None or create_graph_now(self.optimizer))
        if self.scaler is not None:
            self.scaler.scale(objective).backward(create_graph=create_graph)
        else:
            objective.backward(create_graph=create_graph)

    def _transform(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        for c in self.transforms:
            x, y = c.transform_batch(x, y)
        return x, y

    def gradients(self, x: Tensor, y: Tensor, metrics: TrainMetrics) -> None:
        """The gradient side: fresh gradients of the objective on ``(x, y)`` in ``model``'s ``.grad``
        (scaled under fp16); the data loss and output go to ``metrics``."""
        if self.transforms:
            x, y = self._transform(x, y)
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.model.zero_grad(set_to_none=True)
        if x.shape[0] <= self.micro_batch_size:  # no accumulation: skip the split (hot path)
            objective, loss, output = self._objective(x, y, 1.0)
            self._backward(objective)
            metrics.add(loss, output, y)
            return
        for i, (xi, yi, weight) in enumerate(micro_batches(x, y, self.micro_batch_size)):
            objective, loss, output = self._objective(xi, yi, weight, with_penalty=i == 0)
            self._backward(objective)
            metrics.add(loss, output, yi)

    # ------------------------------------------------------------------ update side
    def _after_backward(self) -> None:
        if self.after_backward_hooks:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            for c in self.after_backward_hooks:
                c.after_backward()

    def update(self) -> None:
        """The update side: unscale, ``after_backward`` hooks, optimizer step, ``after_step`` hooks."""
        self._after_backward()
        timed = self.cost is not None and self.cost.due()
        if timed:
            self.cost.start()
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if timed:
            self.cost.stop()
        for c in self.after_step_hooks:
            c.after_step()

    # ------------------------------------------------------------------ both
    def __call__(self, x: Tensor, y: Tensor, metrics: TrainMetrics) -> None:
        if self.caps.needs_closure or self.caps.two_pass:
            self._closure_step(x, y, metrics)
            return
        self.gradients(x, y, metrics)
        self.update()

    def _closure_step(self, x: Tensor, y: Tensor, metrics: TrainMetrics) -> None:
        """Optimizers that re-evaluate the loss (L-BFGS's line search, SAM's second pass)."""
        if self.transforms:
            x, y = self._transform(x, y)
        first: list[tuple[Tensor, Tensor]] = []

        def closure() -> Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            with torch.enable_grad():
                objective, loss, output = self._objective(x, y, 1.0)
                self._backward(objective)
            self._after_backward()
            if not first:
                first.append((loss, output))
            return objective

        timed = self.cost is not None and self.cost.due()
        if timed:
            self.cost.start()
        self.optimizer.step(closure)  # SAM calls it twice (at w, then at w + eps), L-BFGS per line-search point
        if timed:
            self.cost.stop()
        for c in self.after_step_hooks:
            c.after_step()
        loss, output = first[0]
        metrics.add(loss, output, y)


__all__ = ["TrainStep"]
