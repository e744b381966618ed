"""The parameter-server modes ``ps-sync``, ``ps-async`` and ``ps-ssp:S`` on point-to-point messages.

Rank 0 is the server: it holds the weights and the optimizer, evaluates, and never computes a
training gradient. Ranks 1..N are workers. Messages (gloo, CPU tensors; tags keep the kinds apart):

* worker -> server ``REQ`` header (float64): ``[kind, push_clock, version_read, want_clock,
  metric sums..., count]``; ``kind`` has bit ``PUSH`` (a gradient follows with tag ``GRAD``, computed
  on weights of version ``version_read`` for clock ``push_clock``) and/or bit ``PULL`` (the worker
  wants weights to compute clock ``want_clock``).
* server -> worker ``REPLY`` header ``[version, wait_seconds]`` then the flat weights (``PARAMS``);
  ``wait_seconds`` is how long the server held the request back after it had received it whole
  (gradient included): other workers' gradients, the update, other requests, the staleness bound
  (see :mod:`.records`).

The server receives requests from any worker (``recv`` with no source), so it handles them in
arrival order and never polls. Protocols:

* ``ps-sync``: each step the server sends its weights to every worker, receives N gradients,
  averages them in worker order and steps once (version += 1).
* ``ps-async``: every push is applied at once as one optimizer step (version += 1 per gradient) and a
  pull is answered at once with the current weights (Dean et al. 2012, Downpour SGD).
* ``ps-ssp:S``: gradients of clock ``c`` are collected, averaged in worker order and applied as one
  step once all N arrived, in clock order (version = clocks applied); a pull for clock ``c`` is
  answered once ``version >= c - S`` (Ho et al. 2013, "More effective distributed ML via a stale
  synchronous parallel parameter server"; unlike their cache, a worker reads only whole clocks, not
  its own newer updates). With ``S = 0`` every gradient of clock ``c`` is computed on version ``c``:
  exactly ``ps-sync``. The slowest worker is always served (every clock below its own is complete),
  so the protocol cannot deadlock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from optbench.engine.distributed.common import (
    FlatParams,
    RankContext,
    UpdateSide,
    average_into,
    build_rank_run,
    now,
    sync,
    train_metrics,
)
from optbench.engine.distributed.failures import Membership, PeerToPeer, WorkerLost, crash_if_planned
from optbench.engine.distributed.records import StepRecord
from optbench.engine.metrics import TrainMetrics

TAG_REQ, TAG_GRAD, TAG_REPLY, TAG_PARAMS = 11, 12, 13, 14
PULL, PUSH = 1, 2
_FIXED = 4  # kind, push_clock, version_read, want_clock


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


@dataclass
class _Request:
    src: int
    kind: int
    push_clock: int
    version_read: int
    want_clock: int
    received: float
    grad: Tensor | None


class PsServer(UpdateSide):
    """Rank 0 of a server mode: weights, optimizer, the mode's protocol, staleness and update timing."""

    def __init__(self, ctx: RankContext) -> None:
        self.ctx = ctx
        self.setup = build_rank_run(ctx, ctx.make_model(), engine="ps")  # the update side of the one step
        self.model = self.setup.model
        self.flat = FlatParams(_trainable(self.model), list(self.model.buffers()))
        self.optimizer = self.setup.optimizer
        # schedule step of an update: one per global step (ps-async applies N updates per global step)
        self.updates_per_step = ctx.n_workers if ctx.mode.kind == "ps-async" else 1
        self.weights = self.flat.params_into(self.flat.empty())  # the message buffer, always current
        self.average = self.flat.empty_message()
        self.header = torch.zeros(_FIXED + TrainMetrics.vector_length(ctx.task), dtype=torch.float64)
        self.metrics = train_metrics(ctx)  # only its averages(): the sums arrive in the push headers
        self.sums = torch.zeros(TrainMetrics.vector_length(ctx.task), dtype=torch.float64)
        self.version = 0
        self.staleness: list[int] = []
        self.updates = 0
        self.update_seconds = 0.0
        self.steps: list[StepRecord] = []  # the server is not a worker
        self.members = Membership(ctx, tolerant=ctx.mode.survives_worker_loss)
        self.coordination = PeerToPeer(self.members)
        self.epoch_pushes = 0
        self.epochs = 0

    # ------------------------------------------------------------------ messages
    def _receive(self, candidates: list[int]) -> _Request | None:
        """The next request from one of ``candidates`` (the ranks that may send now): from any source
        when several may, from the named rank when only it can, so that a dead worker's closed
        connection is noticed instead of waited for (:mod:`.failures`). None when the sender was lost
        on the way (recorded in :attr:`members`).

        Raises:
            WorkerLost: a loss the mode cannot continue without, or no candidate at all.
        """
        if not candidates:
            raise WorkerLost(f"the server can hear from no remaining worker (workers {self.members.live}) "
                             "although the epoch is not complete")
        src = candidates[0] if len(candidates) == 1 else None
        try:
            if src is None:
                src = dist.recv(self.header, tag=TAG_REQ)
            else:
                dist.recv(self.header, src=src, tag=TAG_REQ)
        except RuntimeError as exc:
            if src is None:
                raise
            self.members.lose(src, exc)
            return None
        kind, push_clock, version_read, want_clock = (int(v) for v in self.header[:_FIXED].tolist())
        grad = None
        if kind & PUSH:
            grad = self.flat.empty_message()
            try:
                dist.recv(grad, src=src, tag=TAG_GRAD)
            except RuntimeError as exc:
                self.members.lose(src, exc)
                return None
            self.sums += self.header[_FIXED:]
            self.members.pushes[src] += 1
            self.epoch_pushes += 1
        # the worker waits from here on: the transfers before count as its communication
        return _Request(src, kind, push_clock, version_read, want_clock, now(), grad)

    def _reply(self, rank: int, wait: float) -> None:
        """Send the current weights to ``rank``; a failed send loses the worker."""
        try:
            dist.send(torch.tensor([float(self.version), wait], dtype=torch.float64), dst=rank, tag=TAG_REPLY)
            dist.send(self.weights, dst=rank, tag=TAG_PARAMS)
        except RuntimeError as exc:
            self.members.lose(rank, exc)

    def _apply(self, grad: Tensor) -> None:
        """One optimizer step with the flat gradient ``grad``; refreshes the weights buffer."""
        t0 = now()
        self.flat.load_grads(grad)
        if self.setup.controller is not None:
            self.setup.controller.apply(self.version // self.updates_per_step)
        self.setup.step.update()
        self.flat.params_into(self.weights)
        sync(self.ctx.device)
        self.update_seconds += now() - t0
        self.updates += 1
        self.version += 1

    # ------------------------------------------------------------------ protocols
    def train_epoch(self, epoch: int, perm: Tensor) -> None:
        """Serve one epoch of the mode's protocol (``perm`` is the workers' business)."""
        self.sums.zero_()
        self.members.epoch = epoch
        self.epoch_pushes = 0
        self.epochs += 1
        if self.ctx.mode.kind == "ps-sync":
            self._epoch_sync()
        else:
            self._epoch_bounded(None if self.ctx.mode.kind == "ps-async" else self.ctx.mode.staleness)

    @property
    def epoch_samples(self) -> int:
        """Examples whose gradients the server received in the last epoch."""
        return self.epoch_pushes * self.ctx.batch_size

    def _epoch_sync(self) -> None:
        pushed_at: dict[int, float] = {}
        for _ in range(self.ctx.steps_per_epoch):
            sent = now()
            works = []
            for rank in self.members.live:
                header = torch.tensor([float(self.version), sent - pushed_at[rank] if rank in pushed_at else 0.0],
                                      dtype=torch.float64)
                works.append((rank, header, dist.isend(header, dst=rank, tag=TAG_REPLY)))
                works.append((rank, None, dist.isend(self.weights, dst=rank, tag=TAG_PARAMS)))
            for rank, _, work in works:
                try:
                    work.wait()
                except RuntimeError as exc:
                    self.members.lose(rank, exc)  # raises: ps-sync needs every worker
            grads: dict[int, Tensor] = {}
            while len(grads) < len(self.members.live):
                request = self._receive([r for r in self.members.live if r not in grads])
                if request is None:
                    continue
                grads[request.src] = request.grad  # type: ignore[assignment]
                pushed_at[request.src] = request.received
                self.staleness.append(self.version - request.version_read)
            self._apply(average_into([grads[r] for r in sorted(grads)], self.average))

    def _epoch_bounded(self, bound: int | None) -> None:
        """``ps-async`` (``bound`` None) or ``ps-ssp`` with staleness bound ``bound``; continues without a
        lost worker (a clock is complete once every remaining worker's gradient is in)."""
        quota = self.ctx.steps_per_epoch
        pushed = dict.fromkeys(self.members.live, 0)
        pending: list[tuple[int, int, float]] = []  # (rank, version required, time requested)
        clocks: dict[int, dict[int, tuple[Tensor, int]]] = {}
        while any(pushed[r] < quota for r in self.members.live):
            asked = {rank for rank, _, _ in pending}
            request = self._receive([r for r in self.members.live if pushed[r] < quota and r not in asked])
            if request is not None:
                if request.grad is not None:
                    pushed[request.src] += 1
                    if bound is None:
                        self.staleness.append(self.version - request.version_read)
                        self._apply(request.grad)
                    else:
                        clocks.setdefault(request.push_clock, {})[request.src] = (request.grad, request.version_read)
                if request.kind & PULL:
                    required = 0 if bound is None else request.want_clock - bound
                    pending.append((request.src, required, request.received))
            while self.version in clocks and all(r in clocks[self.version] for r in self.members.live):
                complete = [item for _, item in sorted(clocks.pop(self.version).items())]  # worker order
                self.staleness.extend(self.version - read for _, read in complete)
                self._apply(average_into([g for g, _ in complete], self.average))
            still = []
            for rank, required, requested in pending:
                if rank not in self.members.live:
                    continue
                if self.version >= required:
                    self._reply(rank, now() - requested)
                else:
                    still.append((rank, required, requested))
            pending = still

    # ------------------------------------------------------------------ results
    def epoch_metrics(self) -> dict[str, float]:
        """Train metrics of the epoch averaged over every pushed batch (from the push headers)."""
        return self.metrics.averages(self.sums)

    def progress_state(self) -> dict[str, Any]:
        """Version, update statistics, staleness and gradients received (for a checkpoint; :mod:`.elastic`)."""
        return {"version": self.version, "updates": self.updates, "update_seconds": self.update_seconds,
                "staleness": list(self.staleness), "epochs": self.epochs,
                "pushes": {str(k): v for k, v in self.members.pushes.items()}}

    def load_progress_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`progress_state` and refresh the weights message from the restored model."""
        self.version, self.updates = int(state["version"]), int(state["updates"])
        self.update_seconds, self.staleness = float(state["update_seconds"]), list(state["staleness"])
        self.epochs = int(state["epochs"])
        self.members.pushes = {int(k): int(v) for k, v in state["pushes"].items()}
        self.flat.params_into(self.weights)

    def server_stats(self) -> tuple[list[int], dict]:
        """Staleness of every applied gradient and ``{"updates", "update_seconds", "gradients_received",
        "gradients_planned", "lost_workers"}`` (planned: every worker's gradient of every epoch served;
        lost workers: :class:`~.failures.LostWorker` records)."""
        planned = self.ctx.n_workers * self.ctx.steps_per_epoch * self.epochs
        return self.staleness, {"updates": self.updates, "update_seconds": self.update_seconds,
                                "gradients_received": sum(self.members.pushes.values()),
                                "gradients_planned": planned, "lost_workers": self.members.records()}


class PsWorker:
    """Ranks 1..N of a server mode: pull weights, compute a gradient on the shard, push it."""

    def __init__(self, ctx: RankContext) -> None:
        self.ctx = ctx
        self.setup = build_rank_run(ctx, ctx.make_model(), engine="ps", with_optimizer=False)  # the gradient side
        self.model = self.setup.model
        self.flat = FlatParams(_trainable(self.model), list(self.model.buffers()))
        self.weights = self.flat.empty()
        self.grad = self.flat.empty_message()
        self.reply = torch.zeros(2, dtype=torch.float64)
        self.header = torch.zeros(_FIXED + TrainMetrics.vector_length(ctx.task), dtype=torch.float64)
        self.step_metrics = train_metrics(ctx, group=1,  # one step's sums per push
                                          loss_is_task_loss=self.setup.step.loss_is_task_loss)
        self.steps: list[StepRecord] = []
        self.clock = 0
        self.coordination = PeerToPeer(None)

    def _send(self, kind: int, push_clock: int, version_read: int, want_clock: int) -> None:
        self.header[:_FIXED] = torch.tensor([kind, push_clock, version_read, want_clock], dtype=torch.float64)
        self.header[_FIXED:] = self.step_metrics.vector().cpu() if kind & PUSH else 0.0
        dist.send(self.header, dst=0, tag=TAG_REQ)
        if kind & PUSH:
            dist.send(self.grad, dst=0, tag=TAG_GRAD)

    def train_epoch(self, epoch: int, perm: Tensor) -> None:
        """One epoch of this worker's steps (``steps_per_epoch``), timed per step."""
        ctx, device, train = self.ctx, self.ctx.device, self.ctx.data.train
        synchronous = ctx.mode.kind == "ps-sync"
        self.model.train()
        requested = now()
        if not synchronous:
            self._send(PULL, -1, -1, self.clock)
        steps = ctx.steps_per_epoch
        for c in range(steps):
            dist.recv(self.reply, src=0, tag=TAG_REPLY)
            dist.recv(self.weights, src=0, tag=TAG_PARAMS)
            crash_if_planned(ctx, self.clock)
            received = now()
            version, wait = int(self.reply[0].item()), float(self.reply[1].item())
            self.flat.load_params(self.weights)
            index = ctx.shard(perm, c)
            x, y = train.gather(index)
            self.step_metrics.reset()
            self.setup.step.gradients(x, y, self.step_metrics)
            self.flat.grads_into(self.grad)
            sync(device)
            computed = now()
            last = c + 1 == steps
            self._send(PUSH if synchronous or last else PUSH | PULL, self.clock, version, self.clock + 1)
            extra = now() - computed if last else 0.0  # the last push belongs to no later round trip
            comm = max(0.0, received - requested - wait)
            self.steps.append(StepRecord(
                worker=ctx.worker, epoch=epoch, step=self.clock, samples=int(index.numel()),
                compute_seconds=computed - received, comm_seconds=comm + extra,
                wait_seconds=min(wait, received - requested), step_seconds=computed - requested + extra))
            requested = computed
            self.clock += 1

    def progress_state(self) -> dict[str, int]:
        """The step clock (for a checkpoint; :mod:`.elastic`)."""
        return {"clock": self.clock}

    def load_progress_state(self, state: dict[str, int]) -> None:
        """Restore :meth:`progress_state`."""
        self.clock = int(state["clock"])

    def epoch_metrics(self) -> None:
        """Workers report their metrics in the push headers; the server has them."""

    def before_train_epoch(self, epoch: int) -> None:
        """Nothing: the server holds the optimizer."""

    def after_train_epoch(self, epoch: int) -> None:
        """Nothing: the server holds the weights that are averaged."""

    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> dict[str, dict]:
        """Nothing: the server decides."""
        return {}

    def server_stats(self) -> tuple[list[int], None]:
        """Workers keep no server statistics."""
        return [], None


__all__ = ["PULL", "PUSH", "PsServer", "PsWorker"]
