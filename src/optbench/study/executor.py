"""Execute planned runs in this process or in N worker processes, streaming progress events.

Workers are separate processes (``spawn``) that each load a task's data once and then take
runs from a shared queue, so that the faster worker takes the next run. Threads are split
between workers (``torch.set_num_threads``) so that N workers do not oversubscribe the cores.
Results are sent back to the calling process, which alone writes the store.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from optbench.errors import OptbenchError
from optbench.spec import Dataset, EpochRecord, RunResult, Task, default_device
from optbench.study.plan import RunSpec


@dataclass(frozen=True)
class RunStarted:
    """A worker began ``spec``."""

    spec: RunSpec
    worker: int


@dataclass(frozen=True)
class EpochDone:
    """A run measured an epoch."""

    spec: RunSpec
    record: EpochRecord
    worker: int


Event = RunStarted | EpochDone
EventCallback = Callable[[Event], None]


class RunContext:
    """Per-process cache of built tasks and loaded datasets (data are loaded once per task)."""

    def __init__(self) -> None:
        self.tasks: dict[str, Task] = {}
        self.datasets: dict[str, Dataset] = {}

    def task(self, ref: str) -> Task:
        from optbench.tasks import get_task

        if ref not in self.tasks:
            self.tasks[ref] = get_task(ref)
        return self.tasks[ref]

    def dataset(self, ref: str) -> Dataset:
        if ref not in self.datasets:
            self.datasets[ref] = self.task(ref).load_data()
        return self.datasets[ref]

    def run(self, spec: RunSpec, device: torch.device, emit: Callable[[EpochRecord], None]) -> RunResult:
        from optbench.train import split_data, train

        task = self.task(spec.task_ref)
        data = split_data(self.dataset(spec.task_ref), task.valid_size, spec.seed, spec.recipe.train_size)
        return train(task, data, spec.recipe, spec.seed, device=device, on_epoch=emit)


def _worker_main(worker: int, threads: int, device: str, inbox: mp.Queue, outbox: mp.Queue) -> None:
    torch.set_num_threads(threads)
    context = RunContext()
    while (spec := inbox.get()) is not None:
        outbox.put(("started", worker, spec))
        try:
            result = context.run(spec, torch.device(device),
                                 lambda record, s=spec: outbox.put(("epoch", worker, (s, record))))
        except Exception as exc:  # setup failure (e.g. data unavailable): stop the study with its message
            outbox.put(("error", worker, f"{exc}\n{traceback.format_exc(limit=5)}"))
            return
        outbox.put(("result", worker, result))


def execute(specs: Sequence[RunSpec], *, workers: int = 1, device: torch.device | None = None,
            on_event: EventCallback | None = None, context: RunContext | None = None) -> Iterator[RunResult]:
    """Run ``specs`` and yield each :class:`RunResult` as soon as it is done.

    Args:
        specs: the runs to execute (already filtered for finished ones).
        workers: 1 runs in this process; N > 1 starts N worker processes with
            ``max(1, torch.get_num_threads() // N)`` threads each.
        device: where runs train (CUDA when available by default).
        on_event: receives :class:`RunStarted` and :class:`EpochDone` events.

    Raises:
        OptbenchError: when a worker cannot set up a run (e.g. its data cannot be loaded) or dies.
    """
    device = device or default_device()
    emit = on_event or (lambda event: None)
    if workers <= 1 or len(specs) <= 1:
        context = context or RunContext()
        for spec in specs:
            emit(RunStarted(spec, 0))
            yield context.run(spec, device, lambda record, s=spec: emit(EpochDone(s, record, 0)))
        return
    yield from _execute_in_workers(specs, min(workers, len(specs)), device, emit)


def _execute_in_workers(specs: Sequence[RunSpec], workers: int, device: torch.device,
                        emit: EventCallback) -> Iterator[RunResult]:
    ctx = mp.get_context("spawn")
    inbox, outbox = ctx.Queue(), ctx.Queue()
    for spec in specs:
        inbox.put(spec)
    for _ in range(workers):
        inbox.put(None)
    threads = max(1, torch.get_num_threads() // workers)
    procs = [ctx.Process(target=_worker_main, args=(i, threads, str(device), inbox, outbox), daemon=True)
             for i in range(workers)]
    for p in procs:
        p.start()
    remaining = len(specs)
    try:
        while remaining:
            try:
                kind, worker, payload = outbox.get(timeout=1.0)
            except queue.Empty:
                if not any(p.is_alive() for p in procs):
                    raise OptbenchError(f"all workers exited with {remaining} runs left "
                                        f"(exit codes {[p.exitcode for p in procs]})") from None
                continue
            if kind == "started":
                emit(RunStarted(payload, worker))
            elif kind == "epoch":
                emit(EpochDone(payload[0], payload[1], worker))
            elif kind == "result":
                remaining -= 1
                yield payload
            else:
                raise OptbenchError(f"worker {worker} failed: {payload.splitlines()[0]}")
        for p in procs:
            p.join(timeout=10)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
