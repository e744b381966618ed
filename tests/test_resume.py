"""Resume after SIGKILL: a study with two worker processes is
killed (its whole process group, SIGKILL) at random moments and started again; every run finished
before a kill stays unchanged, none is saved twice, and the final numbers equal an uninterrupted
study's bitwise (CPU, same thread count per worker)."""

from __future__ import annotations

import collections
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from optbench.core.spec import RunStatus
from optbench.runs.store import open_store
from optbench.runs.store.claims import pid_alive
from store_rows import kill_group, stored_rows

CHILD = Path(__file__).with_name("_study_child.py")
CHILD_ARGS = ["--workers", "2", "--threads", "2", "--seeds", "2", "--epochs", "12"]
N_RUNS = 8  # 4 optimizers x 2 seeds
STUDY = "resume"


def _start(url: str, log: Path) -> subprocess.Popen[str]:
    """The study as a child process in its own process group (so that a kill takes its workers too)."""
    return subprocess.Popen([sys.executable, str(CHILD), url, str(log), "--study", STUDY, *CHILD_ARGS],
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen[str]) -> None:
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-2000:]




def _curves(url: str) -> dict[str, list[dict[str, float]]]:
    with open_store(url) as store:
        runs = store.load_runs(study=STUDY)
    assert all(r.status is RunStatus.FINISHED for r in runs), [r.error for r in runs]
    return {r.run_id: [e.metrics for e in r.epochs] for r in runs}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, list[dict[str, float]]], float]:
    """The uninterrupted study's curves and its wall time (seconds)."""
    tmp = tmp_path_factory.mktemp("reference")
    start = time.perf_counter()
    _finish(_start(str(tmp / "ref.db"), tmp / "ref.log"))
    duration = time.perf_counter() - start
    curves = _curves(str(tmp / "ref.db"))
    assert len(curves) == N_RUNS
    return curves, duration


def _check_resumed(url: str, log: Path, snapshots: list[dict[str, tuple[Any, ...]]],
                   reference: dict[str, list[dict[str, float]]]) -> None:
    final = stored_rows(url)
    for snapshot in snapshots:  # a run finished before a kill is never changed afterwards
        for run_id, row in snapshot.items():
            assert final[run_id] == row
    assert len(final) == N_RUNS
    assert all(row[1] == "finished" and row[6] == 1 for row in final.values())  # saved once each
    executed = collections.Counter(line.split()[1] for line in log.read_text().splitlines()
                                   if line.startswith("done ") and line.split()[3] == "0")
    assert set(executed.values()) <= {1}  # no run executed to completion twice
    assert _curves(url) == reference  # bitwise: the same floats as without interruption


def test_sigkill_at_random_moments_then_resume(store_url: str, tmp_path: Path, reference) -> None:
    """Three SIGKILLs of the whole process group at seeded random moments, then a run to the end;
    on SQLite and on PostgreSQL (``store_url``)."""
    curves, duration = reference
    rng = random.Random(20261121)
    url, log = store_url, tmp_path / "child.log"
    snapshots = []
    for _ in range(3):
        proc = _start(url, log)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=rng.uniform(0.5, duration))
        kill_group(proc)
        snapshots.append(stored_rows(url))
        if snapshots[-1]:  # the store exists: a saved run is never still claimed (saved + released at once)
            with open_store(url) as store:
                assert not {c.run_id for c in store.claims()} & set(snapshots[-1])
    _finish(_start(url, log))
    _check_resumed(url, log, snapshots, curves)


def _wait_for_done_lines(proc: subprocess.Popen[str], log: Path, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and sum(line.startswith("done ") for line in log.read_text().splitlines()) >= count:
            return
        time.sleep(0.05)


def _children(pid: int) -> set[int]:
    """Direct child processes of ``pid`` (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found.update(int(c) for c in (task / "children").read_text().split())
    return found


def test_sigkill_of_the_study_process_only_then_resume_postgresql(postgres_url: str, tmp_path: Path,
                                                                 reference) -> None:
    """One kill while runs are in progress (after two are saved), of the study's main process only:
    its worker processes notice and exit by themselves, their claims stay until taken over."""
    curves, duration = reference
    log = tmp_path / "child.log"
    proc = _start(postgres_url, log)
    try:
        _wait_for_done_lines(proc, log, 2, timeout=duration * 3)
        workers = _children(proc.pid)  # the worker processes (and multiprocessing's helpers)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        assert workers and proc.pid not in workers
        with open_store(postgres_url) as store:  # claims left are held by the workers, never the parent
            assert {c.worker.pid for c in store.claims(STUDY)} <= workers
        deadline = time.monotonic() + 20
        while any(pid_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(pid_alive(pid) for pid in workers)  # orphaned workers exit on their own
    finally:
        kill_group(proc)
    snapshot = stored_rows(postgres_url)
    assert 1 <= len(snapshot) < N_RUNS
    with open_store(postgres_url) as store:
        stale = store.claims(STUDY)  # runs in progress at the kill, held by dead processes
    assert not {c.run_id for c in stale} & set(snapshot)  # claims only of runs in progress
    _finish(_start(postgres_url, log))
    _check_resumed(postgres_url, log, [snapshot], curves)
    with open_store(postgres_url) as store:
        assert store.claims() == []
