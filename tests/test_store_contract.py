"""The Store contract, on both backends: every promise of the :class:`optbench.runs.store.Store`
protocol's docstring, checked on a SQLite file and on PostgreSQL (the ``store_url`` fixture of
conftest.py; the PostgreSQL half is skipped outside CI, and fails in CI, when no server can start).

Sections follow the protocol's docstring: the protocol itself, round trips and resume semantics
(finished is final), studies, schema versions, atomic runs, what readers see, exactly-once claims
and stale claims, and what is never lost under concurrent writers. SQLite-only behaviour (file
checks, WAL mode, the on-disk format) is in test_store.py.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, event, select, text, update
from sqlalchemy import inspect as sa_inspect

from optbench.core.errors import ConfigError
from optbench.core.spec import EpochRecord, Recipe, RunResult, RunStatus, run_id
from optbench.runs.store import SCHEMA_VERSION, SQLStore, Store, StudyInfo, WorkerId, open_store
from optbench.runs.store import sql as store_sql
from optbench.runs.store.schema import run_claims, runs

N_CONTENDERS = 4
CONTESTED_RUNS = 12
READ_WITHOUT_WAITING_S = 5.0
"""A read that takes longer waited for a writer (SQLite's busy timeout alone is 30 s)."""


def make_result(task: str = "digits_mlp", optimizer: str = "adam", seed: int = 0,
                status: RunStatus = RunStatus.FINISHED, n_epochs: int = 3, lr: float = 1e-3) -> RunResult:
    """A run result with ``n_epochs`` epochs of three metrics each (its run id from task, recipe, seed)."""
    recipe = Recipe(optimizer, {"lr": lr, "betas": [0.9, 0.999]}, batch_size=64, epochs=n_epochs)
    records = [
        EpochRecord(epoch=e, step=10 * e,
                    metrics={"test_accuracy": 0.5 + 0.1 * e, "train_loss": 1.0 / e, "valid_accuracy": 0.4 + 0.1 * e},
                    train_seconds=0.25 * e, eval_seconds=0.125, samples_per_second=2560.0 + e, lr=lr / e)
        for e in range(1, n_epochs + 1)]
    return RunResult(
        run_id=run_id(task, recipe, seed), task=task, recipe=recipe, seed=seed, status=status, epochs=records,
        error=None if status is RunStatus.FINISHED else f"{status.value} at epoch {n_epochs + 1}",
        train_seconds=1.5, eval_seconds=0.375, total_seconds=2.0, steps=10 * n_epochs,
        environment={"torch": "2.13.0", "threads": 2, "device": "cpu", "cpu_count": 2},
        hyperparams={"lr": lr, "betas": [0.9, 0.999], "eps": 1e-8, "foreach": None, "fused": True})


def normalized(value: Any) -> Any:
    """A comparable form of a RunResult in which NaN equals NaN."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return normalized(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {k: normalized(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalized(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


@contextmanager
def raw(store_url: str) -> Iterator[Connection]:
    """A plain SQLAlchemy connection (one committed transaction) to the store's database."""
    engine = create_engine(store_url if "://" in store_url else f"sqlite:///{store_url}")
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    """Start ``fn()`` in a thread; the list gets its return value or the exception it raised."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as err:  # noqa: BLE001 - handed to the test
            out.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


# --------------------------------------------------------------------------- the protocol


def _members(cls: type) -> dict[str, inspect.Signature | None]:
    """Public methods and properties of ``cls`` (and ``__enter__``/``__exit__``) with signatures."""
    out: dict[str, inspect.Signature | None] = {}
    for name, value in inspect.getmembers(cls):
        if name.startswith("_") and name not in ("__enter__", "__exit__"):
            continue
        if isinstance(value, property):
            out[name] = None
        elif inspect.isfunction(value):
            out[name] = inspect.signature(value)
    return out


def test_sql_store_implements_every_member_of_the_protocol() -> None:
    protocol = _members(Store)
    assert {"save_run", "claim_run", "load_runs", "claims", "studies", "url", "close"} <= set(protocol)
    assert not SQLStore.__abstractmethods__  # every abstract member is implemented
    implemented = _members(SQLStore)
    for name, signature in protocol.items():
        assert name in implemented, name
        assert implemented[name] == signature, f"{name}: {implemented[name]} != protocol's {signature}"
        assert inspect.getdoc(getattr(Store, name)), f"Store.{name} has no docstring"
    assert set(implemented) - set(protocol) == set()  # callers can use nothing beyond the contract


def test_open_store_returns_a_store(store_url: str) -> None:
    with open_store(store_url) as store:
        assert isinstance(store, Store)
        assert store.url.startswith("sqlite:///" if "://" not in store_url else "postgresql")


# --------------------------------------------------------------------------- round trips


def test_round_trip_restores_every_field(store_url: str) -> None:
    with open_store(store_url) as store:
        result = make_result()
        assert store.save_run(result) is True
        loaded = store.get_run(result.run_id)
        assert loaded == result
        assert isinstance(loaded.status, RunStatus) and isinstance(loaded.recipe, Recipe)
        assert set(store.get_runs([result.run_id, "0" * 16])) == {result.run_id}
        assert store.get_run("0" * 16) is None and store.get_runs([]) == {}
        loaded.epochs[0].metrics["test_accuracy"] = -1.0  # a returned value is the caller's copy
        loaded.environment["threads"] = 99
        assert store.get_run(result.run_id) == result
    with raw(store_url) as conn:  # long format: one row per (epoch, metric); the optimizer is denormalized
        assert conn.scalar(text("SELECT count(*) FROM optbench_epoch_metrics")) == 9
        rows = conn.execute(text("SELECT optimizer, seed, status FROM optbench_runs")).all()
        assert rows == [("adam", 0, "finished")]


def test_nan_and_inf_round_trip(store_url: str) -> None:
    with open_store(store_url) as store:
        result = make_result(status=RunStatus.DIVERGED)
        result.epochs[-1].metrics.update(train_loss=math.nan, valid_accuracy=math.inf, test_accuracy=-math.inf)
        result.epochs[-1].samples_per_second = math.inf
        result.epochs[-1].lr = math.nan
        result.total_seconds = math.nan
        store.save_run(result)
        assert normalized(store.get_run(result.run_id)) == normalized(result)
    with raw(store_url) as conn:  # NaN is stored as NULL so that SQL aggregates skip it
        assert conn.execute(text("SELECT value FROM optbench_epoch_metrics WHERE epoch = 3 AND name = 'train_loss'")
                            ).all() == [(None,)]


def test_run_without_epochs_and_given_start_time(store_url: str) -> None:
    with open_store(store_url) as store:
        result = make_result(status=RunStatus.FAILED, n_epochs=1)
        result.epochs = []
        start = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
        store.save_run(result, started_at=start)
        assert store.get_run(result.run_id) == result
    with raw(store_url) as conn:
        assert conn.execute(select(runs.c.started_at)).scalar_one() == start


def test_numpy_and_torch_values_in_json_columns_are_stored_as_numbers(store_url: str) -> None:
    import numpy as np
    import torch

    with open_store(store_url) as store:
        result = make_result()
        result.environment = {"np_float": np.float32(0.5), "np_int": np.int64(3), "tensor": torch.tensor(2.0),
                              "array": np.arange(3), "device": torch.device("cpu")}
        store.save_run(result)
        assert store.get_run(result.run_id).environment == {
            "np_float": 0.5, "np_int": 3, "tensor": 2.0, "array": [0, 1, 2], "device": "cpu"}


def test_duplicate_epoch_numbers_are_rejected_and_nothing_is_written(store_url: str) -> None:
    with open_store(store_url) as store:
        result = make_result()
        result.epochs[1].epoch = 1
        with pytest.raises(ValueError, match="duplicate epoch"):
            store.save_run(result)
        assert store.get_run(result.run_id) is None


# --------------------------------------------------------------------------- resume semantics


def test_completed_run_ids_counts_finished_and_diverged_only(store_url: str) -> None:
    with open_store(store_url) as store:
        finished = make_result(seed=0)
        diverged = make_result(seed=1, status=RunStatus.DIVERGED)
        failed = make_result(seed=2, status=RunStatus.FAILED)
        pruned = make_result(seed=3, status=RunStatus.PRUNED)
        for r in (finished, diverged, failed, pruned):
            store.save_run(r)
        assert store.completed_run_ids() == {finished.run_id, diverged.run_id}
        assert store.completed_run_ids(accept_pruned=True) == {finished.run_id, diverged.run_id, pruned.run_id}
        asked = [failed.run_id, diverged.run_id, "ffffffffffffffff", diverged.run_id]
        assert store.completed_run_ids(asked) == {diverged.run_id}
        assert store.completed_run_ids([]) == set()
        many = [f"{i:016x}" for i in range(1200)] + [finished.run_id]  # more ids than one IN list
        assert store.completed_run_ids(iter(many)) == {finished.run_id}
        assert set(store.get_runs(iter(many))) == {finished.run_id}


def test_attempted_run_ids_are_runs_stored_since(store_url: str) -> None:
    with open_store(store_url) as store:
        before = make_result(seed=0, status=RunStatus.FAILED)
        store.save_run(before)
        since = datetime.now(UTC)
        time.sleep(0.01)
        after = make_result(seed=1, status=RunStatus.FAILED)
        store.save_run(after)
        ids = [before.run_id, after.run_id, "0" * 16]
        assert store.attempted_run_ids(ids, since) == {after.run_id}
        assert store.attempted_run_ids(ids, since - timedelta(hours=1)) == {before.run_id, after.run_id}
        assert store.claim_run(after.run_id, WorkerId.current(), attempted_since=since) is False
        assert store.claim_run(before.run_id, WorkerId.current(), attempted_since=since) is True


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
        (info,) = store.studies()
        assert (info.n_failed, info.n_pruned, info.n_finished, info.n_pending) == (1, 1, 1, 0)
        full = make_result(seed=1)  # the pruned run redone to its full budget
        assert store.save_run(full) is True
        assert store.get_run(pruned.run_id) == full
        assert store.save_run(make_result(seed=0)) is True
        assert store.completed_run_ids(ids) == set(ids)
    with raw(store_url) as conn:
        attempts = dict(conn.execute(text("SELECT run_id, attempts FROM optbench_runs")).all())
        assert conn.scalar(text(f"SELECT count(*) FROM optbench_epochs WHERE run_id = '{pruned.run_id}'")) == 3
    assert attempts == {failed.run_id: 2, pruned.run_id: 2, finished.run_id: 1}


@pytest.mark.parametrize("first_status", [RunStatus.FINISHED, RunStatus.DIVERGED])
def test_completed_run_is_never_overwritten(store_url: str, first_status: RunStatus) -> None:
    with open_store(store_url) as store:
        first = make_result(status=first_status)
        assert store.save_run(first) is True
        with raw(store_url) as conn:
            before = conn.execute(text("SELECT * FROM optbench_runs")).all()
        for later_status in RunStatus:
            later = make_result(status=later_status)
            later.epochs[0].metrics["test_accuracy"] = 0.0
            later.total_seconds = 99.0
            assert store.save_run(later) is False
        assert store.get_run(first.run_id) == first
    with raw(store_url) as conn:
        assert conn.execute(text("SELECT * FROM optbench_runs")).all() == before


# --------------------------------------------------------------------------- studies


def test_studies_report_counts_config_and_pending(store_url: str) -> None:
    with open_store(store_url) as store:
        store.ensure_study("alpha", {"protocol": "seed004", "seeds": [0, 1, 2]})
        store.ensure_study("alpha", {"protocol": "changed"})  # an existing study keeps its config
        store.ensure_study("beta", {})
        results = [make_result(seed=0), make_result(seed=1, status=RunStatus.DIVERGED),
                   make_result(seed=2, status=RunStatus.FAILED)]
        planned = make_result(seed=3)
        store.add_runs_to_study("alpha", [r.run_id for r in results] + [planned.run_id])
        store.add_runs_to_study("alpha", [results[0].run_id])  # idempotent
        for r in results:
            store.save_run(r, study="alpha")
        assert store.save_run(results[0], study="beta") is False  # finished: not rewritten, but linked
        alpha, beta = store.studies()
        assert alpha == StudyInfo(name="alpha", created_at=alpha.created_at,
                                  config={"protocol": "seed004", "seeds": [0, 1, 2]},
                                  n_runs=4, n_finished=1, n_diverged=1, n_failed=1)
        assert alpha.n_pending == 1
        assert (beta.name, beta.n_runs, beta.n_finished, beta.n_pending) == ("beta", 1, 1, 0)
        assert alpha.created_at.tzinfo is not None
        assert abs((datetime.now(UTC) - alpha.created_at).total_seconds()) < 60


def test_unknown_study_is_a_config_error_and_writes_nothing(store_url: str) -> None:
    with open_store(store_url) as store:
        store.ensure_study("known", {})
        result = make_result()
        with pytest.raises(ConfigError, match="study 'nope'") as info:
            store.save_run(result, study="nope")
        assert "known" in str(info.value)  # lists the known studies
        assert store.get_run(result.run_id) is None
        with pytest.raises(ConfigError):
            store.add_runs_to_study("nope", [result.run_id])
        with pytest.raises(ConfigError):
            store.load_runs(study="nope")
        with pytest.raises(ConfigError):
            store.claims("nope")
        for bad in ("", "   ", "x" * 201):
            with pytest.raises(ConfigError):
                store.ensure_study(bad, {})
        assert [s.name for s in store.studies()] == ["known"]


def test_load_runs_filters_by_study_and_task_in_a_stable_order(store_url: str) -> None:
    with open_store(store_url) as store:
        store.ensure_study("s1", {})
        store.ensure_study("s2", {})
        a = [make_result(task="mnist1d_mlp", optimizer=o, seed=s) for o in ("sgd", "adam") for s in (1, 0)]
        b = [make_result(task="digits_mlp", optimizer="adam", seed=s) for s in (0, 1)]
        for r in a:
            store.save_run(r, study="s1")
        for r in b:
            store.save_run(r, study="s2")
        store.add_runs_to_study("s2", [a[0].run_id])  # a run can belong to several studies
        everything = store.load_runs()
        assert [(r.task, r.recipe.optimizer, r.seed) for r in everything] == [
            ("digits_mlp", "adam", 0), ("digits_mlp", "adam", 1), ("mnist1d_mlp", "adam", 0),
            ("mnist1d_mlp", "adam", 1), ("mnist1d_mlp", "sgd", 0), ("mnist1d_mlp", "sgd", 1)]
        assert {r.run_id for r in store.load_runs(study="s1")} == {r.run_id for r in a}
        assert {r.run_id for r in store.load_runs(study="s2")} == {r.run_id for r in b} | {a[0].run_id}
        assert {r.run_id for r in store.load_runs(task="digits_mlp")} == {r.run_id for r in b}
        assert [r.run_id for r in store.load_runs(study="s2", task="mnist1d_mlp")] == [a[0].run_id]
        assert store.load_runs(task="unknown") == []
        assert all(r == store.get_run(r.run_id) for r in everything)


# --------------------------------------------------------------------------- schema versions


def test_old_store_gains_the_claims_table(store_url: str) -> None:
    open_store(store_url).close()
    with raw(store_url) as conn:  # make it a version 1 store
        conn.execute(text("DROP TABLE optbench_run_claims"))
        conn.execute(text("UPDATE optbench_schema SET version = 1"))
    with open_store(store_url) as store:
        assert store.claim_run("a" * 16, WorkerId.current()) is True
    with raw(store_url) as conn:
        assert "optbench_run_claims" in sa_inspect(conn).get_table_names()
        assert conn.scalar(text("SELECT version FROM optbench_schema")) == SCHEMA_VERSION == 2
        assert conn.scalar(text("SELECT count(*) FROM optbench_schema")) == 1


def test_newer_schema_version_is_refused(store_url: str) -> None:
    open_store(store_url).close()
    with raw(store_url) as conn:
        conn.execute(text("UPDATE optbench_schema SET version = 99"))
    with pytest.raises(ConfigError, match="schema version"):
        open_store(store_url)


def test_our_tables_without_schema_row_are_refused_untouched(store_url: str) -> None:
    with raw(store_url) as conn:
        conn.execute(text("CREATE TABLE optbench_runs (x INTEGER)"))
    with pytest.raises(ConfigError):
        open_store(store_url)
    with raw(store_url) as conn:
        assert [t for t in sa_inspect(conn).get_table_names() if t.startswith("optbench_")] == ["optbench_runs"]


def test_foreign_tables_are_left_alone(store_url: str) -> None:
    with raw(store_url) as conn:  # e.g. an Optuna RDB storage in the same database
        conn.execute(text("CREATE TABLE studies (study_id INTEGER PRIMARY KEY, name TEXT)"))
        conn.execute(text("INSERT INTO studies VALUES (7, 'theirs')"))
    with open_store(store_url) as store:
        store.ensure_study("ours", {})
        assert [i.name for i in store.studies()] == ["ours"]
    with raw(store_url) as conn:
        assert conn.execute(text("SELECT * FROM studies")).all() == [(7, "theirs")]


# --------------------------------------------------------------------------- atomic runs


def test_failure_in_the_middle_of_save_run_leaves_nothing_and_keeps_the_claim(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_store(store_url) as store:
        store.ensure_study("s", {})
        previous = make_result(status=RunStatus.FAILED)
        previous.epochs = previous.epochs[:1]
        store.save_run(previous, study="s")
        me = WorkerId.current()
        fresh = make_result(seed=5)
        assert store.claim_run(fresh.run_id, me)
        original = store_sql.insert_epochs

        def insert_then_crash(conn: Any, result: RunResult) -> None:
            original(conn, result)  # the run row and epochs are written inside the transaction ...
            raise RuntimeError("simulated crash")  # ... and then the process "dies"

        monkeypatch.setattr(store_sql, "insert_epochs", insert_then_crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            store.save_run(fresh, study="s", release=me)
        replacement = make_result()  # same run_id as `previous`, which must survive intact
        with pytest.raises(RuntimeError):
            store.save_run(replacement, study="s")
        assert store.get_run(fresh.run_id) is None
        assert store.get_run(previous.run_id) == previous
        assert [c.run_id for c in store.claims()] == [fresh.run_id]  # neither saved nor released
        assert store.studies()[0].n_runs == 1
    with raw(store_url) as conn:
        assert conn.scalar(text(f"SELECT count(*) FROM optbench_epoch_metrics WHERE run_id = '{fresh.run_id}'")) == 0
        assert conn.execute(text("SELECT run_id FROM optbench_study_runs")).all() == [(previous.run_id,)]


def _kill_inside_save(url: str) -> None:
    """Child process: claim a run, then SIGKILL itself inside save_run, after the run row and its
    epochs were written and before the commit."""
    original = store_sql.insert_epochs

    def insert_then_die(conn: Any, result: RunResult) -> None:
        original(conn, result)
        os.kill(os.getpid(), signal.SIGKILL)

    store_sql.insert_epochs = insert_then_die
    store = open_store(url)
    me = WorkerId.current("killed")
    assert store.claim_run(make_result(seed=9).run_id, me, study="s")
    store.save_run(make_result(seed=9), study="s", release=me)


def test_sigkill_during_save_leaves_no_half_written_run(store_url: str) -> None:
    with open_store(store_url) as store:
        store.ensure_study("s", {})
    child = multiprocessing.get_context("spawn").Process(target=_kill_inside_save, args=(store_url,))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    result = make_result(seed=9)
    with open_store(store_url) as store:
        assert store.load_runs() == []
        assert store.studies()[0].n_runs == 0
        (claim,) = store.claims()  # the dead worker's claim is still there ...
        assert (claim.run_id, claim.worker.name) == (result.run_id, "killed")
        me = WorkerId.current()
        assert store.claim_run(result.run_id, me) is True  # ... and stale at once (same host, process gone)
        assert store.save_run(result, study="s", release=me) is True  # the store is healthy afterwards
        assert store.completed_run_ids() == {result.run_id}
        assert store.claims() == []
    with raw(store_url) as conn:
        assert conn.scalar(text("SELECT count(*) FROM optbench_epochs")) == 3


# --------------------------------------------------------------------------- what readers see


def test_readers_see_committed_writes_only_and_do_not_wait(store_url: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    inside, proceed = threading.Event(), threading.Event()
    original = store_sql.insert_epochs

    def insert_then_pause(conn: Any, result: RunResult) -> None:
        original(conn, result)
        inside.set()
        proceed.wait(60)

    with open_store(store_url) as writer, open_store(store_url) as reader, open_store(store_url) as other:
        writer.ensure_study("s", {})
        result, me = make_result(), WorkerId.current("writer")
        assert writer.claim_run(result.run_id, me, study="s")
        monkeypatch.setattr(store_sql, "insert_epochs", insert_then_pause)
        saving, saved = _in_thread(lambda: writer.save_run(result, study="s", release=me))
        claiming, claimed = None, []
        try:
            assert inside.wait(60), saved
            start = time.monotonic()
            assert reader.get_run(result.run_id) is None  # the writer's transaction is still open
            assert reader.load_runs(study="s") == [] and reader.completed_run_ids() == set()
            assert [c.run_id for c in reader.claims("s")] == [result.run_id]  # not released yet
            assert reader.studies()[0].n_runs == 0
            assert time.monotonic() - start < READ_WITHOUT_WAITING_S  # reads did not wait for the writer
            claiming, claimed = _in_thread(lambda: other.claim_run("e" * 16, WorkerId.current("other")))
            time.sleep(0.2)  # a second writer meanwhile waits (SQLite) or proceeds (PostgreSQL), never fails
        finally:
            proceed.set()
            saving.join(60)
            if claiming is not None:
                claiming.join(60)
        assert saved == [True] and claimed == [True]
        assert reader.get_run(result.run_id) == result  # committed: visible to every store
        assert [c.run_id for c in reader.claims()] == ["e" * 16]


def test_a_read_overlapping_a_save_sees_the_run_whole_or_not_at_all(store_url: str) -> None:
    """A run is read in several statements (metrics, epochs, run rows); a save committed between
    two of them must not show through. White box: the reader is paused after its first statement
    through a SQLAlchemy event on :class:`SQLStore`'s engine."""
    with open_store(store_url) as writer, open_store(store_url) as reader:
        failed = make_result(status=RunStatus.FAILED, n_epochs=3)
        failed.epochs = failed.epochs[:1]
        writer.save_run(failed)
        replacement = make_result(n_epochs=3)  # same run id, replaces the failed run
        paused, resume = threading.Event(), threading.Event()

        def pause_after_first_read(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            if "optbench_epoch_metrics" in statement and not paused.is_set():
                paused.set()
                resume.wait(60)

        event.listen(reader._engine, "after_cursor_execute", pause_after_first_read)
        reading, seen = _in_thread(lambda: reader.get_run(failed.run_id))
        try:
            assert paused.wait(60)
            assert writer.save_run(replacement) is True
        finally:
            resume.set()
            reading.join(60)
        event.remove(reader._engine, "after_cursor_execute", pause_after_first_read)
        assert len(seen) == 1 and not isinstance(seen[0], BaseException), seen
        assert seen[0] in (failed, replacement)  # never the new row with the old epochs
        assert reader.get_run(failed.run_id) == replacement


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


def test_saving_a_completed_run_again_still_releases_the_claim(store_url: str) -> None:
    with open_store(store_url) as store:
        result, me = make_result(), WorkerId.current()
        store.save_run(result)
        elsewhere = WorkerId("w0", "another-machine.example", 7)
        store.claim_run("f" * 16, elsewhere)
        with raw(store_url) as conn:  # a claim on a run another worker completed meanwhile
            conn.execute(run_claims.insert().values(run_id=result.run_id, study=None, worker=me.name, host=me.host,
                                                    pid=me.pid, claimed_at=datetime.now(UTC),
                                                    heartbeat_at=datetime.now(UTC)))
        assert store.save_run(result, release=me) is False
        assert [c.run_id for c in store.claims()] == ["f" * 16]


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


def test_stale_claims_are_taken_over_live_ones_never(store_url: str) -> None:
    with open_store(store_url) as store:
        me = WorkerId.current("w0")
        dead = WorkerId(name="w0", host=me.host, pid=_dead_pid())
        assert store.claim_run("a" * 16, dead) is True
        assert store.claim_run("a" * 16, me) is True  # same host, process gone: stale at once
        assert store.claims()[0].worker == me
        elsewhere = WorkerId(name="w0", host="another-machine.example", pid=12345)
        assert store.claim_run("b" * 16, elsewhere) is True
        assert store.claim_run("b" * 16, me) is False  # fresh heartbeat on another host: alive
        with raw(store_url) as conn:
            conn.execute(update(run_claims).where(run_claims.c.run_id == "b" * 16)
                         .values(heartbeat_at=datetime.now(UTC) - timedelta(seconds=700)))
        assert store.claim_run("b" * 16, me, stale_after=800) is False
        assert store.claim_run("b" * 16, me) is True  # older than 600 s: taken over
        assert {c.run_id: c.worker for c in store.claims()} == {"a" * 16: me, "b" * 16: me}
        store.heartbeat("b" * 16, elsewhere)  # the old owner's heartbeat no longer touches it
        store.release_run("b" * 16, elsewhere)
        assert {c.run_id: c.worker for c in store.claims()}["b" * 16] == me


def test_machines_claiming_at_the_same_instant_have_one_winner_per_run(store_url: str) -> None:
    """Threads posing as workers on different machines (distinct hosts: no pid check, fresh
    heartbeats), one store each."""
    ids = [f"{i:016x}" for i in range(CONTESTED_RUNS)]
    barrier = threading.Barrier(N_CONTENDERS)
    wins: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def contend(i: int) -> None:
        try:
            with open_store(store_url) as store:
                me = WorkerId(f"w{i}", f"machine-{i}.example", 1000 + i)
                barrier.wait()
                wins[i] = [rid for rid in (ids if i % 2 else ids[::-1]) if store.claim_run(rid, me)]
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
    with open_store(store_url) as store:
        holders = {c.run_id: c.worker.host for c in store.claims()}
    assert holders == {rid: f"machine-{i}.example" for i, got in wins.items() for rid in got}


def _claim_all(url: str, name: str, ids: list[str], barrier: Any, out: Any) -> None:
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


# --------------------------------------------------------------------------- never lost


def test_two_stores_writing_at_once_lose_nothing(store_url: str) -> None:
    stores = [open_store(store_url), open_store(store_url)]
    stores[0].ensure_study("shared", {})
    errors: list[BaseException] = []

    def work(store: SQLStore, offset: int) -> None:
        try:
            for seed in range(offset, offset + 25):
                store.ensure_study("shared", {})
                store.save_run(make_result(seed=seed, n_epochs=2), study="shared")
                store.completed_run_ids()
        except BaseException as err:  # noqa: BLE001 - reported by the main thread
            errors.append(err)

    threads = [threading.Thread(target=work, args=(s, 100 * i)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = {make_result(seed=s, n_epochs=2).run_id for i in range(2) for s in range(100 * i, 100 * i + 25)}
    try:
        assert errors == []
        assert stores[1].completed_run_ids() == expected
        (info,) = stores[0].studies()
        assert (info.n_runs, info.n_finished) == (50, 50)
        assert len(stores[0].load_runs(study="shared")) == 50
    finally:
        for s in stores:
            s.close()


def _save_many(url: str, offset: int, count: int) -> None:
    with open_store(url) as store:
        store.ensure_study("mp", {"workers": 2})
        for seed in range(offset, offset + count):
            store.save_run(make_result(seed=seed, n_epochs=2), study="mp")


def test_two_processes_save_twenty_runs_each(store_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_save_many, args=(store_url, 1000 * i, 20)) for i in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    with open_store(store_url) as store:  # a store opened afterwards sees every committed write
        (info,) = store.studies()
        assert (info.name, info.n_runs, info.n_finished) == ("mp", 40, 40)
        seeds = sorted(r.seed for r in store.load_runs(study="mp"))
        assert seeds == list(range(20)) + list(range(1000, 1020))
        assert all(len(r.epochs) == 2 for r in store.load_runs())


# --------------------------------------------------------------------------- CI strictness (conftest)


@pytest.mark.parametrize("ci, outcome", [("true", pytest.fail.Exception), ("", pytest.skip.Exception),
                                         ("false", pytest.skip.Exception)])
def test_a_missing_server_fails_in_ci_and_skips_elsewhere(require_available: Any, monkeypatch: pytest.MonkeyPatch,
                                                          ci: str, outcome: type[BaseException]) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="no server here"):
        require_available("no server here")
