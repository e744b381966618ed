"""``fsdp``: fully sharded data parallelism (ZeRO-3 style) with PyTorch's ``fully_shard`` (FSDP2).

Every process is a worker as in ``ddp``, but holds only its ``1/N`` shard of every parameter, gradient
and optimizer state (Rajbhandari et al., "ZeRO: memory optimizations toward training trillion parameter
models", SC 2020, stage 3; Zhao et al., "PyTorch FSDP", VLDB 2023). Each module with parameters is its
own FSDP unit (its parameters are all-gathered just before its forward and again before its backward,
and freed after), and the root holds the rest; gradients are reduce-scattered, so each rank's optimizer
updates its shard. The math is DDP's: the averaged gradient of the global batch, so per-epoch numbers
equal ``ddp``'s to float tolerance (tests/test_fsdp.py).

Evaluation and the stored final weights use the full parameters: after every epoch all ranks gather
them (``DTensor.full_tensor``) into an unsharded replica on rank 0, which evaluates while the others wait,
as in every mode. Memory per worker (bytes of the local parameters, gradients and optimizer state after
the first step) is recorded beside what an unsharded replica would hold.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from optbench.engine.distributed.common import RankContext
from optbench.engine.distributed.ddp import DdpTrainer


class FsdpTrainer(DdpTrainer):
    """One ``fsdp`` process: the model sharded with ``fully_shard`` (every module with parameters a unit,
    then the root), the one step, per-step records, and an unsharded replica on rank 0 for evaluation."""

    def __init__(self, ctx: RankContext) -> None:  # noqa: D107 - see the class docstring
        from torch.distributed.fsdp import fully_shard

        model = ctx.make_model()
        self.replica = copy.deepcopy(model) if ctx.rank == 0 else None

        def shard(prepared: nn.Module) -> nn.Module:
            for module in list(prepared.modules())[1:]:
                if any(True for _ in module.parameters(recurse=False)):
                    fully_shard(module)
            fully_shard(prepared)
            return prepared

        # FSDP's collectives have no hook: its communication is counted in compute, its bytes are not counted
        self._build(ctx, model, shard, None)

    def after_train_epoch(self, epoch: int) -> None:
        """The components' hook, then every rank's part of gathering the full parameters and buffers into
        rank 0's replica (a collective: called on every rank)."""
        super().after_train_epoch(epoch)
        full = {name: value.full_tensor() if hasattr(value, "full_tensor") else value
                for name, value in self.model.state_dict().items()}
        if self.replica is not None:
            self.replica.load_state_dict(full)

    def eval_model(self, train_inputs: Any) -> nn.Module:
        """Rank 0's unsharded replica (as of the last :meth:`after_train_epoch`)."""
        assert self.replica is not None, "only rank 0 evaluates"
        return self.replica

    def final_model(self) -> nn.Module:
        """Rank 0's unsharded replica of the trained model."""
        assert self.replica is not None, "only rank 0 holds the full model"
        return self.replica


__all__ = ["FsdpTrainer"]
