"""``ddp``: DistributedDataParallel, bucketed ring all-reduce overlapped with the backward pass.

Every process is a worker with a model replica and its own optimizer; DDP broadcasts rank 0's
initial parameters, and during ``backward`` each gradient bucket is all-reduced (averaged) as soon
as its gradients are ready. The communication is timed with a DDP communication hook that wraps
PyTorch's default all-reduce hook (:func:`~torch.distributed.algorithms.ddp_comm_hooks.default_hooks.allreduce_hook`,
documented to give the same result as no hook) and records when each bucket's all-reduce was
launched and when it completed.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from optbench.engine.distributed.common import RankContext, UpdateSide, build_rank_run, now, sync, train_metrics
from optbench.engine.distributed.compression import Communicator
from optbench.engine.distributed.failures import Collective, crash_if_planned
from optbench.engine.distributed.records import StepRecord


class CommTimer:
    """Launch and completion times (``perf_counter`` s) of one step's bucket all-reduces.

    Written by the communication hook (completion callbacks run on the process group's thread),
    read by the training loop after ``backward`` returned (DDP waits for every bucket by then)."""

    def __init__(self) -> None:
        self.intervals: list[list[float]] = []
        self.lock = threading.Lock()

    def reset(self) -> None:
        """Forget the previous step's intervals."""
        with self.lock:
            self.intervals = []

    def launched(self) -> list[float]:
        """Record a launch now; returns the ``[start, end]`` entry whose end the completion sets."""
        entry = [now(), math.nan]
        with self.lock:
            self.intervals.append(entry)
        return entry

    def last_launch(self, default: float) -> float:
        """Time of the last launch of the step (``default`` when nothing was launched)."""
        with self.lock:
            return max((start for start, _ in self.intervals), default=default)

    def busy_seconds(self, until: float) -> float:
        """Length of the union of the step's ``[launch, completion]`` intervals (s); an interval not
        completed is counted until ``until``."""
        with self.lock:
            spans = sorted((s, e if math.isfinite(e) else until) for s, e in self.intervals)
        total, current_start, current_end = 0.0, None, None
        for s, e in spans:
            if current_end is None or s > current_end:
                if current_end is not None:
                    total += current_end - current_start
                current_start, current_end = s, e
            else:
                current_end = max(current_end, e)
        if current_end is not None:
            total += current_end - current_start
        return total


def timed_hook(state, bucket):  # unannotated on purpose: see docstring
    """DDP communication hook: ``state`` = ``(timer, communicator)``; the communicator launches the bucket's
    communication (PyTorch's default averaging all-reduce, or a ``ddp+METHOD`` mode's compressed one:
    :class:`~optbench.engine.distributed.compression.Communicator`) and ``timer`` records its launch and
    completion; returns a ``torch.futures.Future[Tensor]``. Left unannotated on purpose: DDP compares the
    runtime annotations with ``dist.GradBucket``, and this module's postponed annotations would be strings."""
    timer, communicator = state
    entry = timer.launched()
    future = communicator.launch(bucket)

    def completed(fut: torch.futures.Future[Tensor]) -> Tensor:
        entry[1] = now()
        return fut.value()

    return future.then(completed)


def _local(tensor: Tensor) -> Tensor:
    """The rank's own part of a (possibly sharded) tensor."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def _bytes(tensors: Any) -> int:
    return sum(_local(t).numel() * _local(t).element_size() for t in tensors if isinstance(t, Tensor))


def memory_per_worker(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> dict[str, int]:
    """Bytes this rank holds: ``parameters``, ``gradients`` (those allocated) and ``optimizer_state`` (every
    tensor in the optimizer's state); of a sharded tensor (``fsdp``) only the local shard counts."""
    params = list(model.parameters())
    state = [] if optimizer is None else [v for s in optimizer.state.values() for v in s.values()]
    return {"parameters": _bytes(params), "gradients": _bytes(p.grad for p in params if p.grad is not None),
            "optimizer_state": _bytes(state)}


class DdpTrainer(UpdateSide):
    """One ``ddp`` process: a DDP-wrapped replica running the one step (both halves on every rank; the
    all-reduce happens inside ``backward``), and per-step records."""

    def __init__(self, ctx: RankContext) -> None:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None

        def wrap(model: nn.Module) -> DistributedDataParallel:
            ddp = DistributedDataParallel(model, device_ids=device_ids)
            ddp.register_comm_hook((self.timer, self.communicator), timed_hook)
            return ddp

        self._build(ctx, ctx.make_model(), wrap, ctx.mode.compression)

    def _build(self, ctx: RankContext, model: nn.Module, wrap: Any, compression: Any) -> None:
        """The run of this rank with the forward ``wrap`` makes (DDP here, ``fully_shard`` in ``fsdp``), its
        communicator for ``compression`` (None: plain all-reduce), metrics and records."""
        self.ctx = ctx
        self.timer = CommTimer()
        self.communicator = Communicator(compression, ctx.world_size)
        self.setup = build_rank_run(ctx, model, engine="ddp", wrap_forward=wrap)
        self.model = self.setup.model
        self.ddp = self.setup.step.forward
        self.metrics = train_metrics(ctx, group=32 if ctx.device.type == "cpu" else 64,  # as the loop
                                     loss_is_task_loss=self.setup.step.loss_is_task_loss)
        self.steps: list[StepRecord] = []
        self.clock = 0
        self.memory: dict[str, int] | None = None  # measured after the first epoch
        self.coordination = Collective()  # the epoch protocol: collectives over every rank
        self.communicator.start(self.model)

    def train_epoch(self, epoch: int, perm: Tensor) -> None:
        """One epoch: ``steps_per_epoch`` steps on this worker's shards of the permutation ``perm``."""
        ctx, device, train = self.ctx, self.ctx.device, self.ctx.data.train
        step, controller = self.setup.step, self.setup.controller
        closure = step.caps.needs_closure or step.caps.two_pass
        self.ddp.train()
        self.metrics.reset()
        for c in range(ctx.steps_per_epoch):
            crash_if_planned(ctx, self.clock)
            sync(device)
            t0 = now()
            index = ctx.shard(perm, c)
            x, y = train.gather(index)
            if controller is not None:
                controller.apply(self.clock)
            self.timer.reset()
            if closure:  # the optimizer re-evaluates (all-reducing each time): no separate update side
                step(x, y, self.metrics)
                sync(device)
                t_backward = now()
            else:
                step.gradients(x, y, self.metrics)
                sync(device)
                t_backward = now()
                step.update()
            self.communicator.after_update(self.model, self.clock + 1)  # local SGD / DiLoCo averaging
            sync(device)
            t_end = now()
            wait = max(0.0, t_backward - self.timer.last_launch(default=t_backward))
            self.steps.append(StepRecord(
                worker=ctx.worker, epoch=epoch, step=self.clock, samples=int(index.numel()),
                compute_seconds=(t_end - t0) - wait, comm_seconds=self.timer.busy_seconds(t_backward),
                wait_seconds=wait, step_seconds=t_end - t0, comm_bytes=self.communicator.take_bytes()))
            self.clock += 1
        if self.memory is None:
            self.memory = memory_per_worker(self.model, self.setup.optimizer)

    def progress_state(self) -> dict[str, int]:
        """The step clock (for a checkpoint; :mod:`.elastic`)."""
        return {"clock": self.clock}

    def load_progress_state(self, state: dict[str, int]) -> None:
        """Restore :meth:`progress_state`."""
        self.clock = int(state["clock"])

    def epoch_metrics(self) -> dict[str, float]:
        """Train metrics of the epoch averaged over all workers' batches (an all-reduce: call on every
        rank); the values are meaningful on every rank."""
        values = self.metrics.vector().to(self.ctx.comm_device)
        dist.all_reduce(values)
        return self.metrics.averages(values)

    def server_stats(self) -> tuple[list[int], dict | None]:
        """No server in ``ddp``: no staleness, no server statistics."""
        return [], None


__all__ = ["CommTimer", "DdpTrainer", "memory_per_worker", "timed_hook"]
