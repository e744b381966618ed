"""What communication bought: a metric against the bytes each worker communicated and against training
seconds, per distributed mode (docs/distributed.md, "Communication-efficient training").

Returns data only; :func:`optbench.report.figures.plot_communication` draws it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from optbench.core.spec import RunResult


@dataclass(frozen=True)
class CommunicationCurve:
    """One ``(mode, workers)`` group's mean curve over its runs (seeds), one point per epoch.

    Attributes:
        mode: e.g. ``"ddp+powersgd:4"``.
        nproc: workers.
        bytes: cumulative bytes one worker handed to collectives by the end of each epoch.
        seconds: cumulative training wall seconds by the end of each epoch.
        values: the metric after each epoch (mean over the runs).
        runs: how many runs were averaged.
        bytes_per_step: mean bytes one worker handed to collectives per step (over the runs).
    """

    mode: str
    nproc: int
    bytes: tuple[float, ...]
    seconds: tuple[float, ...]
    values: tuple[float, ...]
    runs: int
    bytes_per_step: float


def communication_curves(results: Sequence[RunResult], metric: str) -> list[CommunicationCurve]:
    """The curves of the distributed runs that recorded their bytes per step (``environment["distributed"]
    ["comm_bytes_per_step"]``), grouped by (mode, workers) and averaged over the runs' common epochs;
    empty when fewer than two groups have bytes (nothing to compare)."""
    groups: dict[tuple[str, int], list[RunResult]] = {}
    for run in results:
        record = run.environment.get("distributed")
        if not isinstance(record, Mapping) or not record.get("comm_bytes_per_step") or not run.epochs:
            continue
        groups.setdefault((str(record["mode"]), int(record["nproc"])), []).append(run)
    if len(groups) < 2:
        return []
    curves = []
    for (mode, nproc), runs in sorted(groups.items()):
        epochs = min(len(r.epochs) for r in runs)
        cumulative_bytes = np.zeros(epochs)
        seconds = np.zeros(epochs)
        values = np.zeros(epochs)
        per_step = [float(run.environment["distributed"]["comm_bytes_per_step"]) for run in runs]
        for run, step_bytes in zip(runs, per_step, strict=True):
            cumulative_bytes += [step_bytes * e.step for e in run.epochs[:epochs]]
            seconds += np.cumsum([e.train_seconds for e in run.epochs[:epochs]])
            values += [e.metrics.get(metric, math.nan) for e in run.epochs[:epochs]]
        n = len(runs)
        curves.append(CommunicationCurve(mode, nproc, tuple(cumulative_bytes / n), tuple(seconds / n),
                                         tuple(values / n), n, float(np.mean(per_step))))
    return curves


@dataclass(frozen=True)
class WorkerMemory:
    """Bytes one worker held in a ``(mode, workers)`` group (rank 0, after the first epoch; the first run
    of the group): ``parameters``, ``gradients``, ``optimizer_state``."""

    mode: str
    nproc: int
    parameters: int
    gradients: int
    optimizer_state: int

    @property
    def total(self) -> int:
        """Parameters + gradients + optimizer state (bytes)."""
        return self.parameters + self.gradients + self.optimizer_state


def worker_memory(results: Sequence[RunResult]) -> list[WorkerMemory]:
    """The memory per worker the ``ddp``/``fsdp`` runs recorded (``environment["memory_per_worker"]``), one
    entry per (mode, workers); empty when none did."""
    found: dict[tuple[str, int], WorkerMemory] = {}
    for run in results:
        record, memory = run.environment.get("distributed"), run.environment.get("memory_per_worker")
        if not isinstance(record, Mapping) or not isinstance(memory, Mapping):
            continue
        key = (str(record["mode"]), int(record["nproc"]))
        found.setdefault(key, WorkerMemory(*key, int(memory["parameters"]), int(memory["gradients"]),
                                           int(memory["optimizer_state"])))
    return [found[k] for k in sorted(found)]


__all__ = ["CommunicationCurve", "WorkerMemory", "communication_curves", "worker_memory"]
