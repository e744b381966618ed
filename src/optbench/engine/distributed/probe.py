"""Latency and bandwidth of the transport the distributed modes use (gloo point-to-point), measured
by ping-pong between two local processes: the alpha and beta of the cost model
(:mod:`optbench.analysis.scaling`) for *this* machine.

Method (the classic ping-pong benchmark, e.g. Hockney 1994): rank 0 sends a message, rank 1 sends it
back; half the median round trip is the one-way time ``t(m)`` of ``m`` bytes. ``alpha = t(4 bytes)``
and ``beta = m / (t(m) - alpha)`` for a large ``m``.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from optbench.core.errors import require_positive
from optbench.engine.distributed.launcher import spawn_job


@dataclass(frozen=True)
class LinkEstimate:
    """Measured one-way ``latency`` (s), ``bandwidth`` (bytes/s) and the message size used (bytes)."""

    latency: float
    bandwidth: float
    nbytes: int


def _one_way(rank: int, tensor: torch.Tensor, repeats: int) -> float:
    """Median one-way time (s) of ``tensor`` between ranks 0 and 1, after 3 warm-up round trips."""
    times = []
    for i in range(repeats + 3):
        t0 = time.perf_counter()
        if rank == 0:
            dist.send(tensor, dst=1)
            dist.recv(tensor, src=1)
        else:
            dist.recv(tensor, src=0)
            dist.send(tensor, dst=0)
        if i >= 3:
            times.append((time.perf_counter() - t0) / 2)
    return statistics.median(times)


def _probe_target(rank: int, world_size: int, store: dist.Store, out_dir: Path, nbytes: int, repeats: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world_size, timeout=timedelta(seconds=60))
    small = _one_way(rank, torch.zeros(1, dtype=torch.float32), repeats)
    large = _one_way(rank, torch.zeros(max(1, nbytes // 4), dtype=torch.float32), repeats)
    dist.barrier()
    dist.destroy_process_group()
    if rank == 0:
        (out_dir / "probe.json").write_text(json.dumps({"small": small, "large": large}), encoding="utf-8")


def probe_link(nbytes: int = 1 << 22, repeats: int = 20, timeout: float = 120.0) -> LinkEstimate:
    """Measure the local gloo transport with two processes (one thread each).

    Args:
        nbytes: size of the large message (bytes), e.g. the model's gradient size.
        repeats: timed round trips per size (the median is used).
        timeout: limit of the whole measurement (s).

    Raises:
        DistributedError: a process failed or the measurement timed out.
    """
    require_positive("nbytes", nbytes, integer=True)
    require_positive("repeats", repeats, integer=True)
    result = spawn_job(_probe_target, (nbytes, repeats), 2, timeout=timeout, comm_timeout=60.0,
                       read=lambda out: json.loads((out / "probe.json").read_text(encoding="utf-8")))
    latency = result["small"]
    return LinkEstimate(latency=latency, bandwidth=(nbytes / max(result["large"] - latency, 1e-12)), nbytes=nbytes)


__all__ = ["LinkEstimate", "probe_link"]
