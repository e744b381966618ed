"""Execute planned runs with workers that claim runs atomically in the store (see docs/architecture.md).

* A :class:`Worker` is one process's executor: it claims a run in the store
  (:meth:`Store.claim_run`), trains it, and saves it while releasing the claim in one
  transaction. No run is executed by two workers, whether they are processes on this machine
  (:func:`run_workers`) or other machines pointed at the same PostgreSQL store.
* Resume: a study killed at any moment (SIGKILL included) leaves every saved run intact and its
  in-progress runs claimed by dead processes; started again, its workers take those claims over
  at once (same host, process gone) and redo those runs from their start, or, with per-epoch
  checkpoints on (``checkpoint_dir``), from their last finished epoch. Runs are deterministic
  on CPU for a given thread count, so the final numbers equal an uninterrupted study's.
* Stored weights (``weights``, :class:`optbench.runs.weights.WeightsDir`): runs that start from or
  learn from another run (``init_from``, ``lwf``, ``ewc``) load its final weights there, and with
  ``weights.saving`` every finished run saves its own. A plan naming a run whose weights are not
  stored is refused before anything runs.
* :func:`execute_plan` runs every not-completed run of a plan exactly once (a run that fails is
  not retried within the same call) and waits for runs that live workers elsewhere execute.

Worker processes are started with ``spawn``; each gets ``max(1, threads // N)`` torch threads,
opens its own Store and loads a task's data once. Progress events travel back to the caller.
The store URL (with any password in it) reaches a worker process through the spawn pipe, never its
command line (``/proc/<pid>/cmdline`` holds only the interpreter and ``spawn_main``); an error a
worker reports has every credential hidden (:func:`optbench.core.urls.redact_text`).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import torch
from sqlalchemy.exc import SQLAlchemyError

from optbench.core.errors import ConfigError, OptbenchError
from optbench.core.spec import Dataset, EpochRecord, RunResult, Task, default_device
from optbench.core.urls import passwords, redact_text
from optbench.engine.checkpoint import Checkpointer
from optbench.runs.plan import RunSpec
from optbench.runs.store import Store, WorkerId, open_store
from optbench.runs.weights import WeightsDir, check_available

HEARTBEAT_S = 30.0
"""Seconds between heartbeats of a running claim (besides one per epoch); well below the
600 s after which a claim of a worker on another host counts as stale."""
POLL_S = 0.5
"""Seconds a worker waits before looking again when every remaining run is claimed elsewhere."""
PARENT_CHECK_S = 1.0
"""Seconds between a worker process's checks that its parent is still alive."""


@dataclass(frozen=True)
class RunStarted:
    """Worker ``worker`` began ``spec``."""

    spec: RunSpec
    worker: int


@dataclass(frozen=True)
class EpochDone:
    """A run measured an epoch."""

    spec: RunSpec
    record: EpochRecord
    worker: int


@dataclass(frozen=True)
class RunDone:
    """``spec`` is stored as ``result``: executed now by ``worker`` (``skipped`` False), or found
    completed in the store (``skipped`` True; ``worker`` -1 unless a worker executed it but another
    stored it first after taking over a claim it thought stale)."""

    spec: RunSpec
    result: RunResult
    worker: int
    skipped: bool


Event = RunStarted | EpochDone | RunDone
EventCallback = Callable[[Event], None]


def _ignore(event: Event) -> None:
    return None


class RunContext:
    """Per-process cache of built tasks and loaded datasets (data are loaded once per task)."""

    def __init__(self) -> None:
        self.tasks: dict[str, Task] = {}
        self.datasets: dict[str, Dataset] = {}

    def task(self, ref: str) -> Task:
        """The task ``ref`` (registry name or ``module:factory``), built once."""
        from optbench.tasks import get_task

        if ref not in self.tasks:
            self.tasks[ref] = get_task(ref)
        return self.tasks[ref]

    def dataset(self, ref: str) -> Dataset:
        """The data of task ``ref``, loaded (and checked, when the task checker exists) once.

        Raises:
            DataUnavailableError: the data cannot be obtained.
            ConfigError: the task's ``load_data`` raised another error, or the data fails its check.
        """
        if ref not in self.datasets:
            task = self.task(ref)
            try:
                dataset = task.load_data()
            except OptbenchError:
                raise
            except Exception as exc:  # a user's loader that raises: one line, exit 2, nothing stored
                raise ConfigError(f"task {task.name} load_data", f"{type(exc).__name__}: {exc}",
                                  "a function returning the task's Dataset") from exc
            try:
                from optbench.tasks.validate import check_task
            except ImportError:  # the task checker is optional
                check_task = None
            if check_task is not None:
                check_task(task, dataset)
            self.datasets[ref] = dataset
        return self.datasets[ref]

    def run(self, spec: RunSpec, device: torch.device, emit: Callable[[EpochRecord], None],
            checkpoint: Checkpointer | None = None, weights: WeightsDir | None = None) -> RunResult:
        """Train ``spec`` on ``device``; ``emit`` gets each epoch record (and may raise ``Pruned``);
        ``checkpoint``: per-epoch checkpoints of the run (resumed from when one exists); ``weights``:
        stored final weights of runs (loaded from; saved to when ``weights.saving``).

        Raises:
            ConfigError: ``spec.task`` is not the name of the task ``spec.task_ref`` builds (the
                result would be stored under another run id and the plan would never complete).
        """
        from optbench.engine import split_data, train

        task = self.task(spec.task_ref)
        if task.name != spec.task:
            raise ConfigError("task", spec.task, f"the name of the task {spec.task_ref!r} builds: {task.name!r}")
        data = split_data(self.dataset(spec.task_ref), task.valid_size, spec.seed, spec.recipe.train_size)
        return train(task, data, spec.recipe, spec.seed, device=device, on_epoch=emit, checkpoint=checkpoint,
                     weights=weights)


class _Heartbeat:
    """Beats a claim every ``interval`` seconds in a background thread while a run trains."""

    def __init__(self, store: Store, run_id: str, worker: WorkerId, interval: float) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(store, run_id, worker, interval),
                                        name=f"heartbeat-{run_id}", daemon=True)

    def _loop(self, store: Store, run_id: str, worker: WorkerId, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                store.heartbeat(run_id, worker)
            except SQLAlchemyError:  # the database is briefly unreachable: the next beat retries
                continue

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Worker:
    """One process's executor: its Store, RunContext (task/data cache), device, WorkerId, event sink.

    Args:
        store: the open store (the study must exist in it).
        study: the study every run is linked to when saved.
        device: where runs train (CUDA when available by default).
        index: the worker's number in its process group; its :class:`WorkerId` is named ``w{index}``.
        emit: receives :class:`RunStarted`, :class:`EpochDone` and :class:`RunDone` events.
        context: a task/data cache to reuse (a new one by default).
        checkpoint_dir: per-epoch checkpoints of each run in ``<checkpoint_dir>/<run_id>.pt``
            (None: none; a run interrupted is then redone from its start). A run resumes from its
            checkpoint when one is there; the file is deleted once the result is stored.
        parent_pid: in a worker process, the pid of the study process that started it: once that
            process is gone, the worker exits before claiming another run. None: no such check.
        weights: stored final weights of runs (:class:`~optbench.runs.weights.WeightsDir`): loaded
            by runs that start from or learn from another run, saved by every finished run when
            ``weights.saving``. None: no access to stored weights.
    """

    def __init__(self, store: Store, study: str, *, device: torch.device | None = None, index: int = 0,
                 emit: EventCallback | None = None, context: RunContext | None = None,
                 checkpoint_dir: str | Path | None = None, parent_pid: int | None = None,
                 weights: WeightsDir | None = None) -> None:
        self.store = store
        self.study = study
        self.device = device or default_device()
        self.index = index
        self.emit = emit or _ignore
        self.context = context or RunContext()
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.id = WorkerId.current(f"w{index}")
        self.parent_pid = parent_pid
        self.weights = weights

    def try_run(self, spec: RunSpec, *, on_epoch: Callable[[EpochRecord], None] | None = None,
                accept_pruned: bool = False, annotate: Mapping[str, Any] | None = None,
                attempted_since: datetime | None = None) -> RunResult | None:
        """Execute ``spec`` unless it is done or another live worker has it.

        Claims the run, trains it (heartbeat each epoch and every :data:`HEARTBEAT_S` s), merges
        ``annotate`` and this worker's identity (``environment["worker"]``: name, host, pid) into
        ``result.environment``, saves it linked to the study while releasing the claim (one
        transaction), and emits :class:`RunStarted`, :class:`EpochDone`, :class:`RunDone`.

        Args:
            spec: the run.
            on_epoch: called with each epoch record; may raise :class:`optbench.engine.Pruned`
                to stop the run (stored with status ``pruned``).
            accept_pruned: a stored ``pruned`` run counts as done (search studies).
            annotate: extra JSON-ready entries for ``result.environment`` (e.g. a trial number).
            attempted_since: also skip a run stored (in any status) at or after this time (UTC).

        Returns:
            the stored result (another worker's when it stored the run first), or None when the run
            was completed already or is claimed by a live worker (nothing executed).

        Raises:
            DataUnavailableError / OptbenchError: the run could not be set up (e.g. its data
                cannot be loaded); the claim is released first. A run that fails while training is
                not an error: it is stored with status ``failed``.
        """
        rid = spec.run_id
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            os._exit(70)  # the study that started this worker is gone: claim nothing more
        if rid in self.store.completed_run_ids([rid], accept_pruned=accept_pruned):
            return None
        if not self.store.claim_run(rid, self.id, study=self.study, accept_pruned=accept_pruned,
                                    attempted_since=attempted_since):
            return None
        started_at = datetime.now(UTC)
        checkpoint = None if self.checkpoint_dir is None else Checkpointer(self.checkpoint_dir / f"{rid}.pt", rid)
        try:
            self.emit(RunStarted(spec, self.index))

            def epoch_done(record: EpochRecord) -> None:
                with contextlib.suppress(SQLAlchemyError):  # the background heartbeat retries
                    self.store.heartbeat(rid, self.id)
                self.emit(EpochDone(spec, record, self.index))
                if on_epoch is not None:
                    on_epoch(record)

            with _Heartbeat(self.store, rid, self.id, HEARTBEAT_S):
                result = self.context.run(spec, self.device, epoch_done, checkpoint, self.weights)
            result.environment["worker"] = {"name": self.id.name, "host": self.id.host, "pid": self.id.pid}
            result.environment.update(annotate or {})
            written = self.store.save_run(result, study=self.study, started_at=started_at, release=self.id)
        except BaseException:
            with contextlib.suppress(SQLAlchemyError):  # a stale claim of a dead process is taken over anyway
                self.store.release_run(rid, self.id)
            raise
        if checkpoint is not None:  # the result is stored: its checkpoint has served
            checkpoint.delete()
        if not written:  # a worker that took over a claim it thought stale stored it first: keep theirs
            result = self.store.get_run(rid) or result
        self.emit(RunDone(spec, result, self.index, not written))
        return result


# ----------------------------------------------------------------------------- worker processes


def _watch_parent(parent_pid: int) -> None:
    """Exit this process as soon as its parent is gone (a killed study leaves no workers)."""

    def loop() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(70)
            time.sleep(PARENT_CHECK_S)

    threading.Thread(target=loop, name="parent-watch", daemon=True).start()


def _worker_main(target: Callable[[Worker, Any], None], payload: Any, store_url: str, study: str, index: int,
                 threads: int, device: str, events: Any, parent_pid: int, checkpoint_dir: Path | None,
                 weights: WeightsDir | None = None) -> None:
    _watch_parent(parent_pid)
    torch.set_num_threads(threads)
    try:
        with open_store(store_url) as store:
            worker = Worker(store, study, device=torch.device(device), index=index,
                            emit=lambda event: events.put(("event", index, event)), checkpoint_dir=checkpoint_dir,
                            parent_pid=parent_pid, weights=weights)
            target(worker, payload)
    except BaseException as exc:  # noqa: BLE001 - reported to the caller, which stops the study
        message = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
        events.put(("error", index, redact_text(message, passwords(store_url))))
        return
    events.put(("exit", index, None))


def run_workers(target: Callable[[Worker, Any], None], payload: Any, *, store_url: str, study: str,
                workers: int = 1, device: torch.device | None = None, on_event: EventCallback | None = None,
                context: RunContext | None = None, checkpoint_dir: str | Path | None = None,
                weights: WeightsDir | None = None) -> None:
    """Call ``target(worker, payload)`` in ``workers`` workers on this machine and wait for all.

    Args:
        target: a module-level function (it is pickled for worker processes); it typically loops
            over runs calling :meth:`Worker.try_run`.
        payload: its picklable argument.
        store_url: SQLite path or SQLAlchemy URL; every worker opens its own Store.
        study: the (existing) study the workers save runs to.
        workers: 1 runs in this process; N > 1 starts N ``spawn`` processes with
            ``max(1, torch.get_num_threads() // N)`` threads each. A worker process exits when
            its parent dies.
        device: where runs train (CUDA when available by default).
        on_event: receives every worker's events, in this (the calling) process.
        context: task/data cache reused when ``workers == 1``.
        checkpoint_dir: every worker's ``checkpoint_dir`` (see :class:`Worker`); None: no checkpoints.
        weights: every worker's stored weights (see :class:`Worker`); None: none.

    Raises:
        OptbenchError: when a worker raises (with its message) or dies; the other workers are
            stopped. With ``workers == 1`` the target's own exception propagates.
    """
    device = device or default_device()
    emit = on_event or _ignore
    checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
    if workers <= 1:
        with open_store(store_url) as store:
            target(Worker(store, study, device=device, index=0, emit=emit, context=context,
                          checkpoint_dir=checkpoint_dir, weights=weights), payload)
        return
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    threads = max(1, torch.get_num_threads() // workers)
    procs = [ctx.Process(target=_worker_main, name=f"optbench-w{i}", daemon=True,
                         args=(target, payload, store_url, study, i, threads, str(device), events, os.getpid(),
                               checkpoint_dir, weights))
             for i in range(workers)]
    for p in procs:
        p.start()
    running = set(range(workers))
    suspects: set[int] = set()
    try:
        while running:
            try:
                kind, index, body = events.get(timeout=PARENT_CHECK_S)
            except queue.Empty:
                dead = {i for i in running if not procs[i].is_alive()}
                gone = dead & suspects  # dead and silent for two checks: no message is on its way
                if gone:
                    i = min(gone)
                    raise OptbenchError(f"worker {i} died (exit code {procs[i].exitcode})") from None
                suspects = dead
                continue
            if kind == "event":
                emit(body)
            elif kind == "exit":
                running.discard(index)
            else:
                raise OptbenchError(f"worker {index} failed: {redact_text(body.strip(), passwords(store_url))}")
        for p in procs:
            p.join(timeout=30)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=10)
        events.close()


# ----------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class _PlanPayload:
    specs: tuple[RunSpec, ...]
    accept_pruned: bool
    since: datetime


def _plan_target(worker: Worker, payload: _PlanPayload) -> None:
    """Run every not-completed spec not attempted since ``payload.since``; wait for claimed ones."""
    ids = [s.run_id for s in payload.specs]
    while True:
        done = worker.store.completed_run_ids(ids, accept_pruned=payload.accept_pruned)
        done |= worker.store.attempted_run_ids(ids, payload.since)
        todo = [s for s in payload.specs if s.run_id not in done]
        if not todo:
            return
        for spec in todo:
            if worker.try_run(spec, accept_pruned=payload.accept_pruned, attempted_since=payload.since) is not None:
                break  # look at the store again: other workers may have done the rest
        else:  # every remaining run is claimed by a live worker: wait for it (or for it to go stale)
            time.sleep(POLL_S)


def execute_plan(store_url: str, study: str, specs: Sequence[RunSpec], *, workers: int = 1,
                 device: torch.device | None = None, on_event: EventCallback | None = None,
                 accept_pruned: bool = False, context: RunContext | None = None,
                 checkpoint_dir: str | Path | None = None, weights: WeightsDir | None = None) -> list[RunResult]:
    """Run (or resume) a plan: every spec not completed in the store, exactly once.

    Links ``specs`` to ``study`` (which the caller created with :meth:`Store.ensure_study`),
    emits :class:`RunDone` (``skipped=True``) for runs completed before, runs the others with
    :func:`run_workers` (runs claimed by live workers elsewhere, e.g. other machines on the same
    PostgreSQL store, are waited for; stale claims are taken over), and emits ``skipped=True``
    for runs others completed meanwhile. A run that fails is stored as ``failed`` and not retried
    within this call (the next call retries it).

    Args:
        store_url: SQLite path or SQLAlchemy URL.
        study: the existing study.
        specs: the plan (see :func:`optbench.runs.plan.plan_runs`).
        workers: processes on this machine (threads split between them).
        device: where runs train (CUDA when available by default).
        on_event: progress events (:class:`RunStarted`, :class:`EpochDone`, :class:`RunDone`).
        accept_pruned: a stored ``pruned`` run counts as completed (search studies).
        context: task/data cache reused when ``workers == 1``.
        checkpoint_dir: save per-epoch checkpoints of every run in ``<checkpoint_dir>/<run_id>.pt``
            (created when missing); a run interrupted (e.g. by SIGKILL) continues from its last
            finished epoch at the next call. None (default): no checkpoints.
        weights: stored final weights of runs (:class:`~optbench.runs.weights.WeightsDir`): loaded
            by runs that start from or learn from another run, saved by every finished run when
            ``weights.saving``. None (default): no access to stored weights.

    Returns:
        the stored result of every spec, in plan order.

    Raises:
        ConfigError: the study does not exist or the store cannot be opened; a run of the plan
            starts from or learns from a run whose weights are not stored (before anything runs).
        OptbenchError: a worker could not set up a run (e.g. data unavailable) or died.
    """
    specs = list(specs)
    ids = [s.run_id for s in specs]
    emit = on_event or _ignore
    reported: set[str] = set()

    def forward(event: Event) -> None:
        if isinstance(event, RunDone):
            reported.add(event.spec.run_id)
        emit(event)

    with open_store(store_url) as store:
        store.add_runs_to_study(study, ids)
        since = datetime.now(UTC)
        done = store.completed_run_ids(ids, accept_pruned=accept_pruned)
        before = store.get_runs(done) if done else {}
        for spec in specs:
            if spec.run_id in before:
                forward(RunDone(spec, before[spec.run_id], -1, True))
        pending = tuple(s for s in specs if s.run_id not in done)
        check_weights(pending, weights)
        if pending:
            run_workers(_plan_target, _PlanPayload(pending, accept_pruned, since), store_url=str(store_url),
                        study=study, workers=min(workers, len(pending)), device=device, on_event=forward,
                        context=context, checkpoint_dir=checkpoint_dir, weights=weights)
        results = store.get_runs(ids)
    missing = [i for i in ids if i not in results]
    if missing:
        raise OptbenchError(f"{len(missing)} runs of study {study!r} were not stored (first: {missing[0]})")
    for spec in specs:
        if spec.run_id not in reported:
            forward(RunDone(spec, results[spec.run_id], -1, True))
    return [results[i] for i in ids]


def check_weights(specs: Sequence[RunSpec], weights: WeightsDir | None) -> None:
    """Refuse, before anything runs, specs that start from or learn from a run whose final weights
    are not stored in ``weights`` (or when there is no weights directory at all).

    Raises:
        ConfigError: (one line) naming the first such run id.
    """
    check_available((spec.recipe for spec in specs), weights)


__all__ = ["HEARTBEAT_S", "EpochDone", "Event", "EventCallback", "RunContext", "RunDone", "RunStarted",
           "Worker", "check_weights", "execute_plan", "run_workers"]
