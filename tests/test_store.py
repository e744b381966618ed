"""The SQLite side of the store: the file (WAL mode, schema row, on-disk formats) and the checks
that keep open_store from touching anything that is not a SQLite database. The Store contract
itself (round trips, resume semantics, atomicity, claims, concurrency) is checked on SQLite and
PostgreSQL alike in test_store_contract.py."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from optbench.core.errors import ConfigError
from optbench.core.spec import RunStatus
from optbench.runs.store import SCHEMA_VERSION, open_store, sqlite_file
from test_store_contract import make_result


def raw(path: Path, query: str) -> list[tuple[Any, ...]]:
    """Rows of ``query`` on the SQLite file ``path``, read with the sqlite3 module."""
    with sqlite3.connect(path) as conn:
        return conn.execute(query).fetchall()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "results.db"


def test_open_creates_sqlite_in_wal_mode_with_schema_version(db: Path) -> None:
    with open_store(str(db)) as s:
        assert s.url == f"sqlite:///{db}"
        assert s.studies() == []
    assert db.read_bytes()[:16] == b"SQLite format 3\x00"
    assert raw(db, "PRAGMA journal_mode") == [("wal",)]
    assert raw(db, "SELECT version FROM optbench_schema") == [(SCHEMA_VERSION,)]
    tables = {t for (t,) in raw(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"optbench_studies", "optbench_runs", "optbench_study_runs", "optbench_epochs",
            "optbench_epoch_metrics", "optbench_run_claims"} <= tables
    with open_store(f"sqlite:///{db}") as again:  # reopening keeps the schema row single
        assert again.studies() == []
    assert raw(db, "SELECT count(*) FROM optbench_schema") == [(1,)]


def test_times_are_stored_as_utc_wall_time_without_offset(db: Path) -> None:
    result = make_result(status=RunStatus.FAILED)
    with open_store(db) as store:
        store.save_run(result, started_at=datetime(2024, 5, 1, 14, 0, tzinfo=UTC).astimezone())
        assert store.get_run(result.run_id) == result
    assert raw(db, "SELECT started_at FROM optbench_runs") == [("2024-05-01 14:00:00.000000",)]


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


def test_empty_file_is_a_usable_store(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    with open_store(empty) as s:
        assert s.save_run(make_result()) is True
    assert empty.read_bytes()[:16] == b"SQLite format 3\x00"
