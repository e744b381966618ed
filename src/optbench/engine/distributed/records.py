"""Measurements of a distributed job: per-step records, staleness, time-to-target.

Per step and worker (:class:`StepRecord`), in seconds of wall clock (``time.perf_counter``):

* ``compute_seconds`` — local computation: forward, backward, and the optimizer step where it is
  local (``ddp``); in the server modes also copying received weights into the model.
* ``comm_seconds`` — time communication was in progress. ``ddp``: the union of the intervals from
  launching each gradient bucket's all-reduce to its completion, which overlaps the backward pass;
  server modes: the round trip of the request (push, pull) minus the time the server reported the
  request waited, i.e. the transfers of the gradient and the weights.
* ``wait_seconds`` — blocked with nothing to do. ``ddp``: from the end of the local backward
  computation (the last bucket launched) until every bucket is reduced: exposed communication and
  waiting for slower peers. Server modes: the time the server held the request back once it had
  received it whole: waiting for the other workers' gradients (``ps-sync``/``ps-ssp``), the server's
  optimizer step, requests queued before it, the staleness bound.
* ``step_seconds`` — the step's wall time. Server modes: compute + comm + wait = step.
  ``ddp``: compute + wait = step (communication is partly hidden behind compute).

Staleness (server modes): for each applied gradient, the number of server updates between the
version the worker read and the version it was applied to (0 in ``ps-sync``; at most ``S`` in
``ps-ssp:S``; about N - 1 in ``ps-async`` with N equally fast workers).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from torch import Tensor

from optbench.core.spec import Direction, RunResult
from optbench.engine.distributed.config import DistributedConfig


@dataclass(frozen=True)
class StepRecord:
    """One worker's step: ``worker`` index (0..N-1), 1-based ``epoch``, 0-based global ``step``
    (the clock), ``samples`` (examples), the times described in the module docstring (s), and
    ``comm_bytes``, the bytes this worker handed to collectives in the step (``ddp`` modes; 0 where not
    counted)."""

    worker: int
    epoch: int
    step: int
    samples: int
    compute_seconds: float
    comm_seconds: float
    wait_seconds: float
    step_seconds: float
    comm_bytes: int = 0

    @property
    def samples_per_second(self) -> float:
        """This worker's throughput over the step: samples / step_seconds."""
        return self.samples / self.step_seconds if self.step_seconds > 0 else math.inf


_STEP_FIELDS = tuple(f.name for f in fields(StepRecord))


def steps_to_columns(records: Iterable[StepRecord], digits: int = 7) -> dict[str, list]:
    """Column form for JSON (``{"worker": [...], "compute_seconds": [...], ...}``); times rounded
    to ``digits`` decimals (0.1 us by default)."""
    columns: dict[str, list] = {name: [] for name in _STEP_FIELDS}
    for r in records:
        for name in _STEP_FIELDS:
            value = getattr(r, name)
            columns[name].append(round(value, digits) if isinstance(value, float) else value)
    return columns


def steps_from_columns(columns: Mapping[str, list]) -> list[StepRecord]:
    """The inverse of :func:`steps_to_columns`."""
    n = len(columns.get("step", []))
    present = [name for name in _STEP_FIELDS if name in columns]  # records stored before comm_bytes existed
    return [StepRecord(**{name: columns[name][i] for name in present}) for i in range(n)]


def staleness_histogram(values: Iterable[int]) -> dict[int, int]:
    """``{staleness: count}`` sorted by staleness."""
    return dict(sorted(Counter(int(v) for v in values).items()))


@dataclass(frozen=True)
class TimeToTarget:
    """When the target was first reached: cumulative training ``seconds`` (evaluation excluded),
    ``epoch`` and optimizer ``steps`` (global steps) at that point."""

    seconds: float
    epoch: int
    steps: int


@dataclass
class DistributedRun:
    """The outcome of one distributed job.

    Attributes:
        config: the job.
        result: a :class:`RunResult` (epochs measured by rank 0: train metrics averaged over all
            workers, validation/test metrics of the server's or rank 0's model; ``train_seconds``
            per epoch is the wall time of the training phase; ``samples_per_second`` counts the
            examples of all workers). ``result.environment["distributed"]`` holds
            :meth:`environment_record`.
        steps: every worker's :class:`StepRecord`, ordered by worker then step.
        staleness: histogram ``{staleness: gradients}`` of the applied gradients (server modes).
        server: server statistics (``updates``, ``update_seconds``: time in optimizer steps) or None.
        final_state: rank 0's final parameters when ``config.keep_state`` (name -> tensor).
    """

    config: DistributedConfig
    result: RunResult
    steps: list[StepRecord] = field(default_factory=list)
    staleness: dict[int, int] = field(default_factory=dict)
    server: dict[str, Any] | None = None
    final_state: dict[str, Tensor] | None = None

    @property
    def train_seconds(self) -> float:
        """Summed wall time of the training phases (s)."""
        return sum(e.train_seconds for e in self.result.epochs)

    @property
    def comm_bytes_per_step(self) -> float:
        """Mean bytes one worker handed to collectives per step (``ddp`` modes; 0 where not counted)."""
        counts = [s.comm_bytes for s in self.steps if s.worker == 0]
        return sum(counts) / len(counts) if counts else 0.0

    @property
    def samples(self) -> int:
        """Training examples processed by all workers."""
        return sum(r.samples for r in self.steps)

    @property
    def samples_per_second(self) -> float:
        """Job throughput: all workers' examples / training wall time (NaN before any epoch)."""
        seconds = self.train_seconds
        return self.samples / seconds if seconds > 0 else math.nan

    def time_to_target(self, key: str, target: float, direction: Direction) -> TimeToTarget | None:
        """First epoch whose ``key`` (e.g. ``"valid_accuracy"``) reached ``target``, with the training
        seconds spent until then; None when never reached (censored)."""
        reached = self.result.time_to_target(key, target, direction)
        if reached is None:
            return None
        epoch, step, seconds = reached
        return TimeToTarget(seconds=seconds, epoch=epoch, steps=step)

    def step_summary(self) -> dict[str, float]:
        """Medians over all workers' steps: ``compute_seconds``, ``comm_seconds``, ``wait_seconds``,
        ``step_seconds`` and per-worker ``samples_per_second`` (NaN without steps)."""
        if not self.steps:
            return {name: math.nan for name in ("compute_seconds", "comm_seconds", "wait_seconds", "step_seconds",
                                                "samples_per_second")}
        summary = {name: statistics.median(getattr(r, name) for r in self.steps)
                   for name in ("compute_seconds", "comm_seconds", "wait_seconds", "step_seconds")}
        summary["samples_per_second"] = statistics.median(r.samples_per_second for r in self.steps)
        return summary

    def describe(self, key: str, target: float, direction: Direction) -> list[str]:
        """Summary lines: throughput, per-step medians (ms), time-to-target of ``key`` >= ``target`` (or <=,
        by ``direction``), staleness histogram and server statistics."""
        config, s = self.config, self.step_summary()

        def ms(seconds: float) -> str:
            return f"{seconds * 1e3:.2f}" if math.isfinite(seconds) else "-"

        reached = self.time_to_target(key, target, direction)
        lines = [
            f"mode {config.mode}: {config.nproc} workers, {config.world_size} processes, {config.threads} thread(s) "
            f"each, batch {config.recipe.batch_size} per worker ({config.global_batch} per step)",
            f"samples/s: {self.samples_per_second:,.0f} (all workers, training time only); status "
            f"{self.result.status.value}" + (f" ({self.result.error})" if self.result.error else ""),
            f"per step (median over workers and steps, ms): compute {ms(s['compute_seconds'])}, communication "
            f"{ms(s['comm_seconds'])}, waiting {ms(s['wait_seconds'])}, step {ms(s['step_seconds'])}",
            f"time-to-target ({key} {'>=' if direction is Direction.MAXIMIZE else '<='} {target:g}): "
            + (f"{reached.seconds:.2f} s of training (epoch {reached.epoch}, {reached.steps} steps)" if reached
               else "not reached"),
        ]
        if self.staleness:
            total = sum(self.staleness.values())
            mean = sum(k * v for k, v in self.staleness.items()) / total
            histogram = ", ".join(f"{k}: {v}" for k, v in self.staleness.items())
            lines.append(f"staleness of applied gradients (server updates behind: count): {histogram}; mean {mean:.2f}")
        if self.server:
            lines.append(f"server: {self.server['updates']} updates, {self.server['update_seconds']:.3f} s in "
                         "optimizer steps")
            for lost in self.server.get("lost_workers", []):
                noticed = f", noticed {lost['detect_seconds']:.2f} s after it ended" if "detect_seconds" in lost else ""
                lines.append(f"lost worker {lost['worker']} in epoch {lost['epoch']} after {lost['pushes']} gradients "
                             f"({lost.get('exit', lost['error'])}{noticed}); the others went on")
            if self.server.get("lost_workers"):
                lines.append(f"gradients received {self.server['gradients_received']} of "
                             f"{self.server['gradients_planned']} planned")
        elastic = self.result.environment.get("elastic", {})
        if elastic.get("attempt") and not elastic.get("restarts"):  # restarted by torchrun
            lines.append(f"attempt {elastic['attempt']} of the job (restarted): resumed after epoch "
                         f"{elastic['resumed_epoch']}")
        if elastic.get("restarts"):
            lines.append(f"restarted {elastic['restarts']} time(s) after: {elastic['failures'][-1]['error']}; resumed "
                         f"after epoch {elastic['resumed_epoch']}, {elastic.get('recover_seconds', math.nan):.2f} s "
                         f"to recover" + (f", {elastic['steps_redone']} steps computed again"
                                          if "steps_redone" in elastic else ""))
        return lines

    def environment_record(self, include_steps: bool = True) -> dict[str, Any]:
        """JSON-ready description stored in ``RunResult.environment["distributed"]``: mode, workers,
        world size, per-worker and global batch, throughput, step medians, staleness histogram
        (keys as strings), server statistics, bytes communicated per step and worker and, with
        ``include_steps``, every step as columns."""
        record: dict[str, Any] = {
            "mode": self.config.mode,
            "nproc": self.config.nproc,
            "world_size": self.config.world_size,
            "batch_size_per_worker": self.config.recipe.batch_size,
            "global_batch": self.config.global_batch,
            "threads_per_process": self.config.threads,
            "samples_per_second": self.samples_per_second,
            "step_medians": self.step_summary(),
            "staleness": {str(k): v for k, v in self.staleness.items()},
            "server": self.server,
            "comm_bytes_per_step": self.comm_bytes_per_step,
        }
        if self.config.kill_worker is not None:  # the injected failure (a disturbed run)
            record["kill_worker"] = list(self.config.kill_worker)
        if include_steps:
            record["steps"] = steps_to_columns(self.steps)
        return record


def run_from_record(config: DistributedConfig, result: RunResult) -> DistributedRun:
    """Rebuild a :class:`DistributedRun` from a stored :class:`RunResult` (the inverse of storing
    :meth:`DistributedRun.environment_record` in its environment)."""
    record = result.environment.get("distributed", {})
    return DistributedRun(config=config, result=result, steps=steps_from_columns(record.get("steps", {})),
                          staleness={int(k): int(v) for k, v in record.get("staleness", {}).items()},
                          server=record.get("server"))


__all__ = ["DistributedRun", "StepRecord", "TimeToTarget", "run_from_record", "staleness_histogram",
           "steps_from_columns", "steps_to_columns"]
