"""Store contract tests on SQLite files: round trips, resume semantics, atomicity, concurrency."""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import signal
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from optbench.core.errors import ConfigError
from optbench.core.spec import EpochRecord, Recipe, RunResult, RunStatus, run_id
from optbench.runs.store import SCHEMA_VERSION, Store, StudyInfo, open_store, sqlite_file
from optbench.runs.store import sql as store_sql


def make_result(task: str = "digits_mlp", optimizer: str = "adam", seed: int = 0,
                status: RunStatus = RunStatus.FINISHED, n_epochs: int = 3, lr: float = 1e-3) -> RunResult:
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


def raw(path: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(query).fetchall()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "results.db"


@pytest.fixture
def store(db: Path) -> Store:
    with open_store(db) as s:
        yield s


# --------------------------------------------------------------------------- basics


def test_open_creates_sqlite_in_wal_mode_with_schema_version(db: Path) -> None:
    with open_store(str(db)) as s:
        assert s.url == f"sqlite:///{db}"
        assert s.studies() == []
    assert db.read_bytes()[:16] == b"SQLite format 3\x00"
    assert raw(db, "PRAGMA journal_mode") == [("wal",)]
    assert raw(db, "SELECT version FROM optbench_schema") == [(SCHEMA_VERSION,)]
    tables = {t for (t,) in raw(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"optbench_studies", "optbench_runs", "optbench_study_runs", "optbench_epochs",
            "optbench_epoch_metrics"} <= tables
    with open_store(f"sqlite:///{db}") as again:  # reopening keeps the schema row single
        assert again.studies() == []
    assert raw(db, "SELECT count(*) FROM optbench_schema") == [(1,)]


def test_round_trip_restores_every_field(store: Store, db: Path) -> None:
    result = make_result()
    assert store.save_run(result) is True
    loaded = store.get_run(result.run_id)
    assert loaded == result
    assert isinstance(loaded.status, RunStatus) and isinstance(loaded.recipe, Recipe)
    assert store.get_run("0" * 16) is None
    # long format: one row per (epoch, metric); the optimizer is denormalized for queries
    assert raw(db, "SELECT count(*) FROM optbench_epoch_metrics") == [(9,)]
    assert raw(db, "SELECT optimizer, seed, status FROM optbench_runs") == [("adam", 0, "finished")]


def test_nan_and_inf_round_trip(store: Store, db: Path) -> None:
    result = make_result(status=RunStatus.DIVERGED)
    result.epochs[-1].metrics.update(train_loss=math.nan, valid_accuracy=math.inf, test_accuracy=-math.inf)
    result.epochs[-1].samples_per_second = math.inf
    result.epochs[-1].lr = math.nan
    result.total_seconds = math.nan
    store.save_run(result)
    assert normalized(store.get_run(result.run_id)) == normalized(result)
    # NaN is stored as NULL so SQL aggregates skip it
    assert raw(db, "SELECT value FROM optbench_epoch_metrics WHERE epoch = 3 AND name = 'train_loss'") == [(None,)]


def test_run_without_epochs_and_started_at(store: Store, db: Path) -> None:
    result = make_result(status=RunStatus.FAILED, n_epochs=1)
    result.epochs = []
    start = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    store.save_run(result, started_at=start)
    assert store.get_run(result.run_id) == result
    assert raw(db, "SELECT started_at FROM optbench_runs") == [("2024-05-01 12:00:00.000000",)]


def test_numpy_and_torch_values_in_json_columns_are_stored_as_numbers(store: Store) -> None:
    import numpy as np
    import torch

    result = make_result()
    result.environment = {"np_float": np.float32(0.5), "np_int": np.int64(3), "tensor": torch.tensor(2.0),
                          "array": np.arange(3), "device": torch.device("cpu")}
    store.save_run(result)
    assert store.get_run(result.run_id).environment == {
        "np_float": 0.5, "np_int": 3, "tensor": 2.0, "array": [0, 1, 2], "device": "cpu"}


def test_duplicate_epoch_numbers_are_rejected(store: Store) -> None:
    result = make_result()
    result.epochs[1].epoch = 1
    with pytest.raises(ValueError, match="duplicate epoch"):
        store.save_run(result)
    assert store.get_run(result.run_id) is None


# --------------------------------------------------------------------------- resume semantics


def test_completed_run_ids_counts_finished_and_diverged_only(store: Store) -> None:
    finished = make_result(seed=0)
    diverged = make_result(seed=1, status=RunStatus.DIVERGED)
    failed = make_result(seed=2, status=RunStatus.FAILED)
    for r in (finished, diverged, failed):
        store.save_run(r)
    assert store.completed_run_ids() == {finished.run_id, diverged.run_id}
    asked = [failed.run_id, diverged.run_id, "ffffffffffffffff", diverged.run_id]
    assert store.completed_run_ids(asked) == {diverged.run_id}
    assert store.completed_run_ids([]) == set()
    many = [f"{i:016x}" for i in range(1200)] + [finished.run_id]  # more ids than one IN list
    assert store.completed_run_ids(iter(many)) == {finished.run_id}


def test_failed_run_is_replaced_by_a_later_save(store: Store, db: Path) -> None:
    failed = make_result(status=RunStatus.FAILED, n_epochs=5)
    failed.epochs = failed.epochs[:2]
    store.save_run(failed)
    finished = make_result(n_epochs=5)
    assert finished.run_id == failed.run_id
    assert store.save_run(finished) is True
    assert store.get_run(finished.run_id) == finished
    assert raw(db, "SELECT count(*), max(attempts) FROM optbench_runs") == [(1, 2)]
    assert raw(db, "SELECT count(*) FROM optbench_epochs") == [(5,)]
    assert store.completed_run_ids() == {finished.run_id}


@pytest.mark.parametrize("first_status", [RunStatus.FINISHED, RunStatus.DIVERGED])
def test_completed_run_is_never_overwritten(store: Store, db: Path, first_status: RunStatus) -> None:
    first = make_result(status=first_status)
    assert store.save_run(first) is True
    before = raw(db, "SELECT * FROM optbench_runs")
    for later_status in RunStatus:
        later = make_result(status=later_status, n_epochs=3)
        later.epochs[0].metrics["test_accuracy"] = 0.0
        later.total_seconds = 99.0
        assert store.save_run(later) is False
    assert store.get_run(first.run_id) == first
    assert raw(db, "SELECT * FROM optbench_runs") == before


# --------------------------------------------------------------------------- studies


def test_studies_report_counts_config_and_pending(store: Store) -> None:
    store.ensure_study("alpha", {"protocol": "seed004", "seeds": [0, 1, 2]})
    store.ensure_study("alpha", {"protocol": "changed"})  # existing study keeps its config
    store.ensure_study("beta", {})
    results = [make_result(seed=0), make_result(seed=1, status=RunStatus.DIVERGED),
               make_result(seed=2, status=RunStatus.FAILED)]
    planned = make_result(seed=3)
    store.add_runs_to_study("alpha", [r.run_id for r in results] + [planned.run_id])
    store.add_runs_to_study("alpha", [results[0].run_id])  # idempotent
    for r in results:
        store.save_run(r, study="alpha")
    store.save_run(results[0], study="beta")  # already finished: not rewritten, but linked
    alpha, beta = store.studies()
    assert alpha == StudyInfo(name="alpha", created_at=alpha.created_at,
                              config={"protocol": "seed004", "seeds": [0, 1, 2]},
                              n_runs=4, n_finished=1, n_diverged=1, n_failed=1)
    assert alpha.n_pending == 1
    assert (beta.name, beta.n_runs, beta.n_finished, beta.n_pending) == ("beta", 1, 1, 0)
    assert alpha.created_at.tzinfo is not None
    assert abs((datetime.now(UTC) - alpha.created_at).total_seconds()) < 60


def test_unknown_study_is_a_config_error_and_writes_nothing(store: Store) -> None:
    result = make_result()
    with pytest.raises(ConfigError, match="study 'nope'"):
        store.save_run(result, study="nope")
    assert store.get_run(result.run_id) is None
    with pytest.raises(ConfigError):
        store.add_runs_to_study("nope", [result.run_id])
    with pytest.raises(ConfigError):
        store.load_runs(study="nope")
    with pytest.raises(ConfigError):
        store.ensure_study("", {})


def test_load_runs_filters_by_study_and_task_in_a_stable_order(store: Store) -> None:
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


# --------------------------------------------------------------------------- bad paths


def test_sqlite_file_of_paths_and_urls() -> None:
    assert sqlite_file("runs/results.db") == Path("runs/results.db")
    assert sqlite_file(Path("/a/b.db")) == Path("/a/b.db")
    assert sqlite_file("sqlite:////abs/r.db") == Path("/abs/r.db")
    assert sqlite_file("sqlite:///rel/r.db?timeout=5") == Path("rel/r.db")
    assert sqlite_file("sqlite://") is None and sqlite_file("sqlite:///:memory:") is None
    assert sqlite_file("postgresql+psycopg://u@localhost/db") is None and sqlite_file("not a url://") is None


def test_bad_paths_raise_config_error_before_writing(tmp_path: Path) -> None:
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    bad = [tmp_path / "missing" / "r.db", tmp_path, a_file / "r.db", str(tmp_path / "no" / "r.db"),
           f"sqlite:///{tmp_path}/missing/r.db", "not a url ://"]
    for path in bad:
        with pytest.raises(ConfigError) as info:
            open_store(path)
        assert info.value.field == "store"
        assert info.value.value == path
        assert "allowed: a writable SQLite file path or a SQLAlchemy URL" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.txt"]
    with pytest.raises(ConfigError, match="driver"):
        open_store("nosuchdialect://host/db")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to any directory")
def test_read_only_directory_is_rejected(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(ConfigError):
            open_store(ro / "r.db")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("content", [b"a,b\n1,2\n", b"SQLite format 2 but not really", b"\x00" * 4096, b"x"])
def test_non_sqlite_file_is_never_touched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "results.csv"
    path.write_bytes(content)
    mtime = path.stat().st_mtime_ns
    for arg in (path, str(path), f"sqlite:///{path}"):
        with pytest.raises(ConfigError):
            open_store(arg)
    assert path.read_bytes() == content
    assert path.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]


def test_empty_file_and_foreign_sqlite_database_are_usable(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    with open_store(empty) as s:
        s.save_run(make_result())
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE studies (study_id INTEGER PRIMARY KEY, name TEXT)")  # e.g. Optuna's
        conn.execute("INSERT INTO studies VALUES (7, 'theirs')")
    with open_store(foreign) as s:
        s.ensure_study("ours", {})
        assert [i.name for i in s.studies()] == ["ours"]
    assert raw(foreign, "SELECT * FROM studies") == [(7, "theirs")]


def test_newer_schema_version_is_refused(db: Path) -> None:
    open_store(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE optbench_schema SET version = 99")
    with pytest.raises(ConfigError, match="schema version"):
        open_store(db)


def test_our_tables_without_schema_row_are_refused(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE optbench_runs (x INTEGER)")
    with pytest.raises(ConfigError):
        open_store(db)
    assert raw(db, "SELECT name FROM sqlite_master WHERE type = 'table'") == [("optbench_runs",)]


# --------------------------------------------------------------------------- atomicity


def test_failure_in_the_middle_of_save_run_leaves_nothing(store: Store, db: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    store.ensure_study("s", {})
    previous = make_result(status=RunStatus.FAILED)
    previous.epochs = previous.epochs[:1]
    store.save_run(previous, study="s")
    original = store_sql.insert_epochs

    def insert_then_crash(conn: Any, result: RunResult) -> None:
        original(conn, result)  # the run row and epochs are written inside the transaction ...
        raise RuntimeError("simulated crash")  # ... and then the process "dies"

    monkeypatch.setattr(store_sql, "insert_epochs", insert_then_crash)
    fresh = make_result(seed=5)
    with pytest.raises(RuntimeError, match="simulated crash"):
        store.save_run(fresh, study="s")
    replacement = make_result()  # same run_id as `previous`, which must survive intact
    with pytest.raises(RuntimeError):
        store.save_run(replacement, study="s")
    assert store.get_run(fresh.run_id) is None
    assert store.get_run(previous.run_id) == previous
    assert raw(db, f"SELECT count(*) FROM optbench_epoch_metrics WHERE run_id = '{fresh.run_id}'") == [(0,)]
    assert raw(db, "SELECT run_id FROM optbench_study_runs") == [(previous.run_id,)]
    assert store.studies()[0].n_runs == 1


def _kill_inside_save(path: str) -> None:
    """Child process: SIGKILL itself after the run row and epochs were written, before commit."""
    original = store_sql.insert_epochs

    def insert_then_die(conn: Any, result: RunResult) -> None:
        original(conn, result)
        os.kill(os.getpid(), signal.SIGKILL)

    store_sql.insert_epochs = insert_then_die
    store = open_store(path)
    store.save_run(make_result(seed=9), study="s")


def test_sigkill_during_save_leaves_no_half_written_run(db: Path) -> None:
    with open_store(db) as store:
        store.ensure_study("s", {})
    child = multiprocessing.get_context("spawn").Process(target=_kill_inside_save, args=(str(db),))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    with open_store(db) as store:
        assert store.load_runs() == []
        assert store.studies()[0].n_runs == 0
        store.save_run(make_result(seed=9), study="s")  # the store is healthy afterwards
        assert store.completed_run_ids() == {make_result(seed=9).run_id}
    assert raw(db, "PRAGMA integrity_check") == [("ok",)]


# --------------------------------------------------------------------------- concurrency


def test_two_stores_on_one_file_lose_nothing(db: Path) -> None:
    stores = [open_store(db), open_store(db)]
    stores[0].ensure_study("shared", {})
    expected: set[str] = set()
    errors: list[BaseException] = []

    def work(store: Store, offset: int) -> None:
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
    for i in range(2):
        expected |= {make_result(seed=s, n_epochs=2).run_id for s in range(100 * i, 100 * i + 25)}
    assert errors == []
    assert stores[1].completed_run_ids() == expected
    assert stores[0].studies()[0].n_finished == 50
    assert len(stores[0].load_runs(study="shared")) == 50
    for s in stores:
        s.close()


def _save_many(path: str, offset: int, count: int) -> None:
    with open_store(path) as store:
        store.ensure_study("mp", {"workers": 2})
        for seed in range(offset, offset + count):
            store.save_run(make_result(seed=seed, n_epochs=2), study="mp")


def test_two_processes_save_twenty_runs_each(db: Path) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_save_many, args=(str(db), 1000 * i, 20)) for i in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    with open_store(db) as store:
        (info,) = store.studies()
        assert (info.name, info.n_runs, info.n_finished) == ("mp", 40, 40)
        seeds = sorted(r.seed for r in store.load_runs(study="mp"))
        assert seeds == list(range(20)) + list(range(1000, 1020))
        assert all(len(r.epochs) == 2 for r in store.load_runs())
