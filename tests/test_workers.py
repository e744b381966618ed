"""Concurrent execution on both backends: worker processes and independent "machines" on one store
execute every run exactly once; the Worker API (claims, pruned runs, annotations, errors)."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from optbench.core.errors import OptbenchError
from optbench.core.spec import Recipe, RunStatus
from optbench.engine import Pruned
from optbench.runs.executor import EpochDone, RunDone, RunStarted, Worker, execute_plan, run_workers
from optbench.runs.plan import plan_runs
from optbench.runs.store import WorkerId, open_store

CHILD = Path(__file__).with_name("_study_child.py")
CPU = torch.device("cpu")


def _plan(epochs: int = 1, failing: bool = False):
    recipes = [Recipe(name, {"lr": 0.01}, batch_size=64, epochs=epochs, train_size=200)
               for name in ("adam", "sgd", "momentum")]
    if failing:  # an unknown hyperparameter: the run is stored as failed
        recipes.append(Recipe("adam", {"lr": 0.01, "no_such_hp": 1.0}, batch_size=64, epochs=epochs, train_size=200))
    return plan_runs("digits_mlp", "digits_mlp", recipes, range(2))


def test_two_workers_run_each_run_once_and_a_failed_run_is_not_retried(store_url: str) -> None:
    specs = _plan(failing=True)
    with open_store(store_url) as store:
        store.ensure_study("s", {})
    events: list[object] = []
    results = execute_plan(store_url, "s", specs, workers=2, device=CPU, on_event=events.append)
    assert [r.run_id for r in results] == [s.run_id for s in specs]
    started = collections.Counter(e.spec.run_id for e in events if isinstance(e, RunStarted))
    done = collections.Counter(e.spec.run_id for e in events if isinstance(e, RunDone) and not e.skipped)
    assert started == done == collections.Counter({s.run_id: 1 for s in specs})
    assert sum(isinstance(e, EpochDone) for e in events) == 6  # one epoch of each good run
    statuses = collections.Counter(r.status for r in results)
    assert statuses == {RunStatus.FINISHED: 6, RunStatus.FAILED: 2}
    pids = {r.environment["worker"]["pid"] for r in results}
    assert os.getpid() not in pids and len(pids) <= 2
    with open_store(store_url) as store:
        assert store.claims() == []
        (info,) = store.studies()
        assert (info.n_runs, info.n_finished, info.n_failed) == (8, 6, 2)
    # the next call retries the failed runs only (here in this process)
    events.clear()
    again = execute_plan(store_url, "s", specs, workers=1, device=CPU, on_event=events.append)
    failed = {r.run_id for r in results if r.status is RunStatus.FAILED}
    assert {e.spec.run_id for e in events if isinstance(e, RunStarted)} == failed
    assert sorted(e.skipped for e in events if isinstance(e, RunDone)) == [False] * 2 + [True] * 6
    assert [r.run_id for r in again] == [s.run_id for s in specs]
    for before, after in zip(results, again, strict=True):
        if before.status is RunStatus.FINISHED:
            assert after == before  # untouched


def test_two_machines_started_at_the_same_instant_share_the_plan(store_url: str, tmp_path: Path) -> None:
    logs = [tmp_path / f"m{i}.log" for i in range(2)]
    ready = [tmp_path / f"ready{i}" for i in range(2)]
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, str(CHILD), store_url, str(log), "--study", "shared",
                               "--workers", "1", "--threads", "1", "--seeds", "2", "--epochs", "2",
                               "--train-size", "200", "--ready-file", str(r), "--go-file", str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for log, r in zip(logs, ready, strict=True)]
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in ready) and time.monotonic() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.01)
    go.touch()  # both start execute_plan now
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-2000:]
    lines = [line.split() for log in logs for line in log.read_text().splitlines()]
    started = collections.Counter(parts[1] for parts in lines if parts[0] == "started")
    executed = collections.Counter(parts[1] for parts in lines if parts[0] == "done" and parts[3] == "0")
    assert len(started) == 8 and set(started.values()) == {1}  # no run started twice
    assert started == executed
    ends = [parts for parts in lines if parts[0] == "end"]
    assert [parts[1] for parts in ends] == ["8", "8"]  # each machine returned the whole plan
    with open_store(store_url) as store:
        runs = store.load_runs(study="shared")
        assert len(runs) == 8 and all(r.status is RunStatus.FINISHED for r in runs)
        assert store.claims() == []


def test_worker_try_run_claims_prunes_and_annotates(tmp_path: Path) -> None:
    url = str(tmp_path / "w.db")
    a, b = _plan(epochs=2)[:2]
    with open_store(url) as store:
        store.ensure_study("s", {})
        events: list[object] = []
        worker = Worker(store, "s", device=CPU, index=3, emit=events.append)
        assert worker.id == WorkerId.current("w3")
        other = WorkerId.current("elsewhere")  # a live worker (this process) holds a
        assert store.claim_run(a.run_id, other)
        assert worker.try_run(a) is None and events == []
        store.release_run(a.run_id, other)

        def prune(record) -> None:
            raise Pruned("below the median")

        pruned = worker.try_run(a, on_epoch=prune, annotate={"trial": 7})
        assert pruned.status is RunStatus.PRUNED and len(pruned.epochs) == 1
        assert pruned.environment["trial"] == 7 and pruned.environment["worker"]["name"] == "w3"
        assert store.get_run(a.run_id) == pruned
        assert [type(e).__name__ for e in events] == ["RunStarted", "EpochDone", "RunDone"]
        assert worker.try_run(a, accept_pruned=True) is None  # a search study keeps the pruned trial
        full = worker.try_run(a)  # any other study redoes it to its full budget
        assert full.status is RunStatus.FINISHED and len(full.epochs) == 2
        assert full.epochs[0].metrics == pruned.epochs[0].metrics
        assert worker.try_run(a) is None
        assert worker.try_run(b).status is RunStatus.FINISHED
        assert store.claims() == [] and store.studies()[0].n_finished == 2


def _emit_then_crash(worker: Worker, payload: str) -> None:
    worker.emit(RunStarted(_plan()[0], worker.index))
    if worker.index == 1 or payload == "always":
        raise RuntimeError(f"boom from {worker.id.name} (pid {os.getpid()})")


def test_run_workers_forwards_events_and_reports_a_crash(tmp_path: Path) -> None:
    url = str(tmp_path / "r.db")
    with open_store(url) as store:
        store.ensure_study("s", {})
    events: list[RunStarted] = []
    with pytest.raises(OptbenchError, match=r"worker 1 failed: RuntimeError: boom from w1 \(pid (\d+)\)") as info:
        run_workers(_emit_then_crash, "w1", store_url=url, study="s", workers=2, device=CPU,
                    on_event=events.append)
    assert 1 in {e.worker for e in events}  # its event came before its error
    assert str(os.getpid()) not in str(info.value)
    events.clear()
    with pytest.raises(RuntimeError, match=f"boom from w0 \\(pid {os.getpid()}\\)"):  # in-process: itself
        run_workers(_emit_then_crash, "always", store_url=url, study="s", workers=1, device=CPU,
                    on_event=events.append)
    assert [e.worker for e in events] == [0]


def test_a_spec_whose_task_name_differs_from_the_built_task_is_refused_not_retried(tmp_path: Path) -> None:
    """A RunSpec naming ``digits_mlp`` for ``digits_mlp[dropout=0.2]`` would store its result under
    another run id, and the plan would retrain it forever: refused before training, claim released."""
    from optbench.core.errors import ConfigError

    recipe = Recipe("sgd", {"lr": 0.01}, batch_size=64, epochs=1, train_size=200)
    (spec,) = plan_runs("digits_mlp[dropout=0.2]", "digits_mlp", [recipe], [0])
    with open_store(str(tmp_path / "w.db")) as store:
        store.ensure_study("s", {})
        with pytest.raises(ConfigError, match="digits_mlp"):
            Worker(store, "s", device=CPU).try_run(spec)
        assert store.claims() == [] and store.load_runs() == []
