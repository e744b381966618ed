"""Worker failures: an injected crash, which workers are still there, and the epoch protocol of the
parameter-server modes on point-to-point messages so that it survives a lost worker.

What happens when a worker dies (docs/distributed.md, "Failures"):

* ``ps-async`` and ``ps-ssp:S`` go on with the remaining workers. The server learns of the loss when
  a message to or from the dead worker fails: it receives from one named worker whenever that worker
  is the only one it can still hear from (gloo reports a closed connection to a named peer at once,
  while a receive from any source would wait for ever), and every reply and every epoch message goes
  to a named worker. The lost worker is recorded (:class:`LostWorker`); a ``ps-ssp`` clock is complete
  once every remaining worker's gradient is in; an epoch ends when every remaining worker pushed its
  quota. When no worker is left the job fails.
* ``ps-sync``, ``ddp`` and ``fsdp`` need every worker in every step: the job fails with an error that
  names the lost worker (:class:`WorkerLost`), never a hang (every wait has the process-group timeout
  ``comm_timeout``), and the launcher stops the other processes.

The epoch protocol of the server modes (:class:`PeerToPeer`): the server sends the go-on flag to each
remaining worker, and at the end each remaining worker sends its step records to the server, which
answers with a last message before both leave the process group (what a barrier guarantees the other
modes: nobody tears down a connection a peer still uses). ``ddp``/``fsdp`` use collectives
(:class:`Collective`).

A crash is injected with ``DistributedConfig.kill_worker = (worker, step)``: that worker sends itself
SIGKILL just before computing its global step ``step``, as a machine or process failure would end it
(no Python cleanup, connections closed by the operating system).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.distributed as dist

from optbench.engine.distributed.common import RankContext, agree, gather_json

TAG_CONTROL, TAG_GATHER_SIZE, TAG_GATHER, TAG_BYE = 21, 22, 23, 24


class WorkerLost(RuntimeError):
    """A worker's connection failed in a mode that cannot continue without it, or no worker is left."""


def restart_count() -> int:
    """Which attempt of a job this process belongs to: ``TORCHELASTIC_RESTART_COUNT`` (set by ``torchrun``
    and by the local launcher's restarts; 0 for the first attempt)."""
    try:
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    except ValueError:
        return 0


def crash_if_planned(ctx: RankContext, clock: int) -> None:
    """SIGKILL this process when ``ctx.config.kill_worker`` is ``(ctx.worker, clock)`` in the first attempt
    of the job (the failure injection of :mod:`.failures`; a restarted job is not killed again); nothing
    otherwise."""
    plan = ctx.config.kill_worker
    if plan is not None and not ctx.is_server and plan == (ctx.worker, clock) and restart_count() == 0:
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class LostWorker:
    """A worker the server lost: ``worker`` index, ``rank``, the ``epoch`` and the number of its
    gradients the server had received (``pushes``) when it noticed, ``detected`` (``time.time()``, s)
    and the transport's ``error`` (one line)."""

    worker: int
    rank: int
    epoch: int
    pushes: int
    detected: float
    error: str


def transport_error(exc: BaseException) -> str:
    """One line of a transport error: gloo's source location and advice removed, e.g. ``"Connection
    closed by peer [127.0.0.1]:4321"``."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"^\[[^\]]*\]\s*", "", text)  # "[/path/gloo/.../pair.cc:553] "
    return text.split(". This is typically")[0].rstrip(".")


class Membership:
    """The server's view of its workers: which ranks are still there and the lost ones.

    Args:
        ctx: the server's context.
        tolerant: True when the mode continues without a lost worker (``ps-async``, ``ps-ssp``).
    """

    def __init__(self, ctx: RankContext, *, tolerant: bool) -> None:
        self.ctx = ctx
        self.tolerant = tolerant
        self.live = list(range(1, ctx.world_size))
        self.lost: list[LostWorker] = []
        self.epoch = 0
        self.pushes = dict.fromkeys(self.live, 0)

    def lose(self, rank: int, exc: BaseException) -> None:
        """Record that ``rank`` is gone (its message failed with ``exc``).

        Raises:
            WorkerLost: in a mode that needs every worker, or when no worker is left.
        """
        error = transport_error(exc)
        worker = rank - 1
        if not self.tolerant:
            raise WorkerLost(f"worker {worker} (rank {rank}) was lost in epoch {self.epoch} after "
                             f"{self.pushes.get(rank, 0)} gradients ({error}); mode {self.ctx.mode.name} needs every "
                             "worker in every step (ps-async and ps-ssp continue without it)") from exc
        if rank in self.live:
            self.live.remove(rank)
            self.lost.append(LostWorker(worker, rank, self.epoch, self.pushes.get(rank, 0), time.time(), error))
        if not self.live:
            raise WorkerLost(f"every worker was lost (the last: worker {worker}, rank {rank}, in epoch "
                             f"{self.epoch}: {error})") from exc

    def records(self) -> list[dict[str, Any]]:
        """The lost workers as JSON-ready dicts."""
        return [asdict(w) for w in self.lost]


class Collective:
    """The epoch protocol of ``ddp``/``fsdp``: a broadcast, a gather and a barrier over every rank."""

    def agree(self, ctx: RankContext, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank."""
        return agree(ctx, flag)

    def gather(self, ctx: RankContext, obj: object) -> list[object] | None:
        """Every rank's ``obj`` on rank 0 (None elsewhere)."""
        return gather_json(ctx, obj)

    def finish(self, ctx: RankContext) -> None:
        """Wait until every rank is done with the process group."""
        dist.barrier()


def _send_json(obj: object, dst: int) -> None:
    payload = json.dumps(obj, allow_nan=True).encode()
    dist.send(torch.tensor([len(payload)], dtype=torch.int64), dst=dst, tag=TAG_GATHER_SIZE)
    dist.send(torch.frombuffer(bytearray(payload), dtype=torch.uint8), dst=dst, tag=TAG_GATHER)


def _recv_json(src: int) -> object:
    size = torch.zeros(1, dtype=torch.int64)
    dist.recv(size, src=src, tag=TAG_GATHER_SIZE)
    buf = torch.zeros(int(size.item()), dtype=torch.uint8)
    dist.recv(buf, src=src, tag=TAG_GATHER)
    return json.loads(buf.numpy().tobytes().decode())


class PeerToPeer:
    """The epoch protocol of the server modes on messages between the server and each remaining
    worker (see the module docstring). ``members`` is the server's :class:`Membership` (None on workers)."""

    def __init__(self, members: Membership | None) -> None:
        self.members = members

    def _each_live(self, action: Any) -> None:
        assert self.members is not None
        for rank in list(self.members.live):
            try:
                action(rank)
            except RuntimeError as exc:
                if isinstance(exc, WorkerLost):
                    raise
                self.members.lose(rank, exc)

    def agree(self, ctx: RankContext, flag: bool) -> bool:
        """The server's ``flag`` on every remaining worker."""
        message = torch.tensor([1 if flag else 0], dtype=torch.int64)
        if ctx.rank == 0:
            self._each_live(lambda rank: dist.send(message, dst=rank, tag=TAG_CONTROL))
            return flag
        dist.recv(message, src=0, tag=TAG_CONTROL)
        return bool(message.item())

    def gather(self, ctx: RankContext, obj: object) -> list[object] | None:
        """Every remaining rank's ``obj`` on the server (the server's own first); None on workers."""
        if ctx.rank != 0:
            _send_json(obj, 0)
            return None
        out: list[object] = [obj]
        self._each_live(lambda rank: out.append(_recv_json(rank)))
        return out

    def finish(self, ctx: RankContext) -> None:
        """The server says goodbye to each remaining worker; a worker waits for it."""
        message = torch.zeros(1, dtype=torch.int64)
        if ctx.rank == 0:
            self._each_live(lambda rank: dist.send(message, dst=rank, tag=TAG_BYE))
        else:
            dist.recv(message, src=0, tag=TAG_BYE)


__all__ = ["Collective", "LostWorker", "Membership", "PeerToPeer", "WorkerLost", "crash_if_planned", "restart_count",
           "transport_error"]
