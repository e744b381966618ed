"""The Store contract on both backends (SQLite file, PostgreSQL): round trips, resume semantics,
pruned runs, schema migration, and atomic run claims under contention."""

from __future__ import annotations

import math
import multiprocessing
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, inspect, text, update
from test_store import make_result, normalized

from optbench.core.spec import RunStatus
from optbench.runs.store import SCHEMA_VERSION, WorkerId, open_store
from optbench.runs.store.schema import run_claims

N_CONTENDERS = 4
CONTESTED_RUNS = 12


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --------------------------------------------------------------------------- results


def test_round_trip_load_and_nan(store_url: str) -> None:
    with open_store(store_url) as store:
        store.ensure_study("s", {"protocol": "x"})
        a = make_result(seed=0)
        b = make_result(seed=1, status=RunStatus.DIVERGED)
        b.epochs[-1].metrics.update(train_loss=math.nan, valid_accuracy=math.inf, test_accuracy=-math.inf)
        b.total_seconds = math.nan
        assert store.save_run(a, study="s") and store.save_run(b, study="s")
        assert store.get_run(a.run_id) == a
        assert normalized(store.get_run(b.run_id)) == normalized(b)
        assert [r.run_id for r in store.load_runs(study="s")] == [a.run_id, b.run_id]
        assert set(store.get_runs([a.run_id, "0" * 16])) == {a.run_id}
        assert store.get_run("0" * 16) is None


def test_finished_is_final_failed_and_pruned_are_replaced(store_url: str) -> None:
    with open_store(store_url) as store:
        store.ensure_study("s", {})
        failed = make_result(seed=0, status=RunStatus.FAILED)
        pruned = make_result(seed=1, status=RunStatus.PRUNED)
        pruned.epochs = pruned.epochs[:1]
        finished = make_result(seed=2)
        for r in (failed, pruned, finished):
            store.save_run(r, study="s")
        ids = [failed.run_id, pruned.run_id, finished.run_id]
        assert store.completed_run_ids(ids) == {finished.run_id}
        assert store.completed_run_ids(ids, accept_pruned=True) == {pruned.run_id, finished.run_id}
        (info,) = store.studies()
        assert (info.n_failed, info.n_pruned, info.n_finished, info.n_pending) == (1, 1, 1, 0)
        later = make_result(seed=2, status=RunStatus.FAILED)
        assert store.save_run(later) is False  # finished is final
        assert store.get_run(finished.run_id) == finished
        full = make_result(seed=1)  # the pruned run redone to its full budget
        assert store.save_run(full) is True
        assert store.get_run(pruned.run_id) == full
        again = make_result(seed=0)
        assert store.save_run(again) is True
        assert store.completed_run_ids(ids) == set(ids)
        engine = create_engine(store_url if "://" in store_url else f"sqlite:///{store_url}")
        with engine.connect() as conn:
            attempts = dict(conn.execute(text("SELECT run_id, attempts FROM optbench_runs")).all())
        engine.dispose()
        assert attempts == {failed.run_id: 2, pruned.run_id: 2, finished.run_id: 1}


def test_old_store_gains_the_claims_table(store_url: str) -> None:
    open_store(store_url).close()
    engine = create_engine(store_url if "://" in store_url else f"sqlite:///{store_url}")
    with engine.begin() as conn:  # make it a version 1 store
        conn.execute(text("DROP TABLE optbench_run_claims"))
        conn.execute(text("UPDATE optbench_schema SET version = 1"))
    with open_store(store_url) as store:
        assert store.claim_run("a" * 16, WorkerId.current()) is True
    with engine.connect() as conn:
        assert "optbench_run_claims" in inspect(conn).get_table_names()
        assert conn.scalar(text("SELECT version FROM optbench_schema")) == SCHEMA_VERSION == 2
    engine.dispose()


# --------------------------------------------------------------------------- claims


def test_claim_release_heartbeat_and_save_releases(store_url: str) -> None:
    with open_store(store_url) as store:
        store.ensure_study("s", {})
        result = make_result()
        rid = result.run_id
        a, b = WorkerId.current("w0"), WorkerId.current("w1")
        assert store.claim_run(rid, a, study="s") is True
        assert store.claim_run(rid, b, study="s") is False  # a is alive (this process)
        assert store.claim_run(rid, a, study="s") is True  # renewing one's own claim
        (claim,) = store.claims("s")
        assert (claim.run_id, claim.study, claim.worker) == (rid, "s", a)
        first_beat = claim.heartbeat_at
        time.sleep(0.02)
        store.heartbeat(rid, a)
        store.heartbeat(rid, b)  # not b's: no-op
        (claim,) = store.claims()
        assert claim.heartbeat_at > first_beat and claim.worker == a
        store.release_run(rid, b)  # not b's: kept
        assert len(store.claims()) == 1
        store.release_run(rid, a)
        assert store.claims() == []
        assert store.claim_run(rid, b, study="s") is True
        assert store.save_run(result, study="s", release=b) is True
        assert store.claims("s") == []
        assert store.claim_run(rid, a) is False  # completed runs are never claimed again
        pruned = make_result(seed=4, status=RunStatus.PRUNED)
        store.save_run(pruned)
        assert store.claim_run(pruned.run_id, a, accept_pruned=True) is False
        assert store.claim_run(pruned.run_id, a) is True


def test_claims_of_a_study_include_its_linked_runs(store_url: str) -> None:
    with open_store(store_url) as store:
        store.ensure_study("s", {})
        store.ensure_study("t", {})
        store.add_runs_to_study("s", ["1" * 16])
        me = WorkerId.current()
        store.claim_run("1" * 16, me)  # no study given, but linked to s
        store.claim_run("2" * 16, me, study="t")
        assert [c.run_id for c in store.claims("s")] == ["1" * 16]
        assert [c.run_id for c in store.claims("t")] == ["2" * 16]
        assert len(store.claims()) == 2


def test_failure_in_save_keeps_the_claim_and_writes_nothing(store_url: str, monkeypatch) -> None:
    from optbench.runs.store import sql as store_sql

    with open_store(store_url) as store:
        store.ensure_study("s", {})
        result = make_result()
        me = WorkerId.current()
        store.claim_run(result.run_id, me)

        def crash(conn, result):
            raise RuntimeError("simulated crash")

        monkeypatch.setattr(store_sql, "insert_epochs", crash)
        with pytest.raises(RuntimeError):
            store.save_run(result, study="s", release=me)
        assert store.get_run(result.run_id) is None
        assert [c.run_id for c in store.claims()] == [result.run_id]  # neither saved nor released


def test_stale_claims_are_taken_over(store_url: str) -> None:
    with open_store(store_url) as store:
        me = WorkerId.current("w0")
        dead = WorkerId(name="w0", host=me.host, pid=_dead_pid())
        assert store.claim_run("a" * 16, dead) is True
        assert store.claim_run("a" * 16, me) is True  # same host, process gone: stale at once
        assert store.claims()[0].worker == me
        elsewhere = WorkerId(name="w0", host="another-machine.example", pid=12345)
        assert store.claim_run("b" * 16, elsewhere) is True
        assert store.claim_run("b" * 16, me) is False  # fresh heartbeat on another host: alive
        engine = create_engine(store_url if "://" in store_url else f"sqlite:///{store_url}")
        with engine.begin() as conn:
            conn.execute(update(run_claims).where(run_claims.c.run_id == "b" * 16)
                         .values(heartbeat_at=datetime.now(UTC) - timedelta(seconds=700)))
        engine.dispose()
        assert store.claim_run("b" * 16, me, stale_after=800) is False
        assert store.claim_run("b" * 16, me) is True  # older than 600 s: taken over
        assert {c.run_id: c.worker for c in store.claims()} == {"a" * 16: me, "b" * 16: me}


def test_threads_claiming_at_the_same_instant_have_one_winner_per_run(store_url: str) -> None:
    ids = [f"{i:016x}" for i in range(CONTESTED_RUNS)]
    barrier = threading.Barrier(N_CONTENDERS)
    wins: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def contend(i: int) -> None:
        try:
            with open_store(store_url) as store:  # one Store each, like separate processes
                me = WorkerId.current(f"t{i}")
                barrier.wait()
                wins[i] = [rid for rid in ids if store.claim_run(rid, me)]
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(N_CONTENDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    won = [rid for got in wins.values() for rid in got]
    assert sorted(won) == ids  # every run claimed, none twice


def _claim_all(url: str, name: str, ids: list[str], barrier, out) -> None:
    with open_store(url) as store:
        me = WorkerId.current(name)
        barrier.wait()
        out.put((name, [rid for rid in ids if store.claim_run(rid, me)]))


def test_processes_claiming_at_the_same_instant_have_one_winner_per_run(store_url: str) -> None:
    open_store(store_url).close()
    ids = [f"{i:016x}" for i in range(CONTESTED_RUNS)]
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(N_CONTENDERS), ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(store_url, f"p{i}", list(reversed(ids)) if i % 2 else ids,
                                                  barrier, out)) for i in range(N_CONTENDERS)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0] * N_CONTENDERS
    won = [rid for got in results.values() for rid in got]
    assert sorted(won) == ids
