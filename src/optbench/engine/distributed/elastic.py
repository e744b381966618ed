"""Elastic restart of the synchronous modes (``ddp``, ``ps-sync``) from their last per-epoch checkpoint.

A synchronous job cannot go on without a worker (:mod:`.failures`); it can start again. With
``DistributedConfig.checkpoint_dir`` every process saves, after each epoch, what its next epoch
depends on (:func:`trainer_state`: the single engine's model, optimizer, schedule, components, step
generator and RNG state; the step clock, on the server its version and statistics; the data-order
generator; on rank 0 the epoch records) to ``<checkpoint_dir>/<run id>.rank<r>.pt`` through the
single-process engine's atomic, ``weights_only`` :class:`~optbench.engine.checkpoint.Checkpointer`.
A restarted job (``torchrun --max-restarts N``, which restarts every process and sets
``TORCHELASTIC_RESTART_COUNT``, or the local launcher's ``max_restarts``, which does the same) loads
them, provided every rank holds the same epoch (an all-reduce of the epochs at start; otherwise it
starts over with a warning), and continues with the next epoch: the epochs before the failure are
kept, the steps after the last checkpoint are computed again. An injected crash (``kill_worker``)
happens only in the first attempt.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from optbench.engine.checkpoint import Checkpointer, CheckpointWarning, load_setup_state, setup_state
from optbench.engine.distributed.common import RankContext
from optbench.engine.distributed.failures import restart_count


def trainer_state(trainer: Any, device: torch.device) -> dict[str, Any]:
    """What a rank's next epoch depends on: its run's state (the single engine's
    :func:`~optbench.engine.checkpoint.setup_state`) and the trainer's progress (its ``progress_state()``:
    the step clock; on the server its version and statistics)."""
    return {"setup": setup_state(trainer.setup, device), "progress": trainer.progress_state()}


def load_trainer_state(trainer: Any, state: dict[str, Any], device: torch.device) -> None:
    """Put a freshly built rank back into ``state`` (from :func:`trainer_state`)."""
    load_setup_state(trainer.setup, state["setup"], device)
    trainer.load_progress_state(state["progress"])


@dataclasses.dataclass
class LoopState:
    """The epoch loop's own state on a rank: epochs recorded (rank 0), global steps, training seconds,
    stop reasons and the data-order generator."""

    epochs: list[Any]
    global_steps: int
    train_seconds: float
    stop_reasons: dict[str, Any]
    generator: torch.Generator


class RankCheckpoint:
    """The per-epoch checkpoint of one rank of a job (see the module docstring).

    Args:
        ctx: the rank's context (``ctx.config.checkpoint_dir`` must be set).
        run_id: the job's run id (a file of another run is ignored).
    """

    def __init__(self, ctx: RankContext, run_id: str) -> None:
        self.ctx = ctx
        directory = Path(ctx.config.checkpoint_dir or ".")
        self.checkpointer = Checkpointer(directory / f"{run_id}.rank{ctx.rank}.pt", run_id)

    def save(self, epoch: int, trainer: Any, loop: LoopState) -> None:
        """Write this rank's state after ``epoch`` (atomically)."""
        self.checkpointer.save({"epoch": epoch, "trainer": trainer_state(trainer, self.ctx.device),
                                "loop": {"epochs": [dataclasses.asdict(e) for e in loop.epochs],
                                         "global_steps": loop.global_steps, "train_seconds": loop.train_seconds,
                                         "stop_reasons": loop.stop_reasons,
                                         "generator": loop.generator.get_state()}})

    def resume(self, trainer: Any, loop: LoopState) -> int:
        """Restore the last epoch every rank saved; returns it (0: start from the beginning).

        A collective over every rank (all alive at the start of an attempt)."""
        from optbench.core.spec import EpochRecord

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CheckpointWarning)  # reported below when it matters
            state = self.checkpointer.load()
        epoch = int(state["epoch"]) if state is not None else 0
        bounds = torch.tensor([epoch, -epoch], dtype=torch.int64, device=self.ctx.comm_device)
        dist.all_reduce(bounds, op=dist.ReduceOp.MIN)
        if int(bounds[0]) != -int(bounds[1]):  # the ranks hold different epochs: start over
            if self.ctx.rank == 0:
                self.checkpointer.warn_ignored(f"the ranks saved epochs {int(bounds[0])}..{-int(bounds[1])}")
            return 0
        if state is None:
            return 0
        load_trainer_state(trainer, state["trainer"], self.ctx.device)
        saved = state["loop"]
        loop.epochs[:] = [EpochRecord(**e) for e in saved["epochs"]]
        loop.global_steps, loop.train_seconds = int(saved["global_steps"]), float(saved["train_seconds"])
        loop.stop_reasons.update(saved["stop_reasons"])
        loop.generator.set_state(saved["generator"])
        return epoch

    def delete(self) -> None:
        """Remove this rank's checkpoint (after the job finished)."""
        self.checkpointer.delete()


def elastic_record(resumed_epoch: int, steps_per_epoch: int) -> dict[str, Any]:
    """Rank 0's part of ``environment["elastic"]``: ``attempt``, ``resumed_epoch``, ``steps_per_epoch`` and
    ``resumed_at`` (``time.time()`` when training went on, s)."""
    return {"attempt": restart_count(), "resumed_epoch": resumed_epoch, "steps_per_epoch": steps_per_epoch,
            "resumed_at": time.time()}


__all__ = ["LoopState", "RankCheckpoint", "elastic_record", "load_trainer_state", "trainer_state"]
