"""How long the runs still to do will take, from the wall time of the runs already finished."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Remaining:
    """An estimate of the time left.

    Attributes:
        seconds: wall-clock seconds until the last pending run ends.
        runs: runs still to do.
        per_run: mean wall time of a finished run (s).
        workers: runs executed at the same time (at most ``runs``).
    """

    seconds: float
    runs: int
    per_run: float
    workers: int


def estimate_remaining(durations: Sequence[float], pending: int, workers: int = 1) -> Remaining | None:
    """The time left for ``pending`` runs on ``workers`` parallel workers, each taking the mean of
    ``durations`` (wall seconds of the runs finished so far): ``ceil(pending / workers)`` rounds of
    one mean run. None before any run has finished or when nothing is pending.

    Runs of unequal length and runs already under way make this a rough figure; it is updated as
    runs finish.
    """
    finite = [d for d in durations if math.isfinite(d) and d >= 0]
    if pending <= 0 or not finite:
        return None
    parallel = max(1, min(int(workers), pending))
    per_run = statistics.fmean(finite)
    return Remaining(seconds=per_run * math.ceil(pending / parallel), runs=pending, per_run=per_run,
                     workers=parallel)


__all__ = ["Remaining", "estimate_remaining"]
