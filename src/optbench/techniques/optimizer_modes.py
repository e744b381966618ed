"""Train/eval switching of optimizers that train at one point and are evaluated at another.

Schedule-free methods (Defazio et al. 2024, "The road less scheduled", Algorithm 1) take gradients
at ``y`` and return the averaged iterate ``x`` as their answer; their optimizers switch the model's
parameters with ``optimizer.eval()`` (to ``x``) and ``optimizer.train()`` (back to ``y``). The
engine adds :class:`OptimizerModes` to every run whose optimizer has the ``train_eval_modes``
capability (:class:`optbench.optim.Capabilities`), so evaluation, early stopping, best-epoch
selection, checkpoints and the final weights all see ``x``, and training continues at ``y``.
Batch-norm statistics are recomputed at ``x`` before it is evaluated, as the authors' README
describes (a pass over the training inputs in train mode, ``torch.optim.swa_utils.update_bn``).

Not a user technique (it is not listed in ``COMPONENTS``): it follows from the optimizer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from torch import Tensor, nn
from torch.optim.swa_utils import update_bn

from optbench.core.component import Component, RunContext


class OptimizerModes(Component):
    """Evaluate at the optimizer's evaluation point (``optimizer.eval()``) and train at its training
    point (``optimizer.train()`` before each epoch's steps).

    Only the single-process engine runs it: in DDP only rank 0 evaluates, and switching one replica
    would let the replicas drift apart; the parameter server would have to switch its weights
    before every pull. Such optimizers are refused there before anything starts.
    """

    name = "optimizer_modes"
    family = "optimizer"
    engines = ("single",)
    source = "Defazio et al. 2024 (schedule-free), Alg. 1; the authors' optimizer.train()/optimizer.eval() protocol"
    description = "Evaluate and save at the optimizer's averaged iterate x; train at y."

    def __init__(self) -> None:
        self._optimizer: Any = None
        self._has_batch_norm = False

    def setup(self, run: RunContext) -> None:
        self._optimizer = run.optimizer
        self._has_batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in run.model.modules())

    def before_train_epoch(self, epoch: int) -> None:
        if self._optimizer is not None:
            self._optimizer.train()

    def eval_model(self, model: nn.Module, train_inputs: Callable[[], Iterable[Tensor]]) -> nn.Module:
        if self._optimizer is not None:
            self._optimizer.eval()
            if self._has_batch_norm:
                was_training = model.training
                update_bn(train_inputs(), model)
                model.train(was_training)
        return model


__all__ = ["OptimizerModes"]
