"""The SQL store: run results in a SQL database through SQLAlchemy (SQLite file or any URL).

:class:`SQLStore` implements the :class:`~optbench.runs.store.base.Store` protocol, whose
docstring states the promises (atomic runs, finished is final, exactly-once claims, what readers
see, what is never lost). How this backend keeps them:

* **Atomic runs.** :meth:`SQLStore.save_run` runs in one database transaction; a process killed
  at any moment leaves the whole run or nothing of it (SQLite's journal / PostgreSQL's MVCC
  roll an unfinished transaction back). Claims are deleted in that same transaction.
* **Claims.** :mod:`optbench.runs.store.claims` holds the rules; every claim and save of a run
  is serialized per run (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an advisory lock keyed by
  the run id), and ``run_id`` is the claims table's primary key.
* **Readers and writers.** On SQLite the file runs in WAL mode (readers never wait for a
  writer), every write transaction starts with ``BEGIN IMMEDIATE`` (writers queue instead of
  failing on a lock upgrade) and waits up to :data:`BUSY_TIMEOUT_S` for the lock. PostgreSQL
  reads under READ COMMITTED (MVCC: readers never wait either). On any backend a write that
  loses an insert race (``IntegrityError``) is retried.

Create a store with :func:`open_store`; one per process (do not pass it across ``fork``); it may
be shared by threads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, func, insert, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError

import optbench.runs.store.claims as claims_sql
from optbench.core.errors import ConfigError
from optbench.core.spec import RunResult, RunStatus
from optbench.core.urls import passwords, redact_json, redact_text, redact_url
from optbench.runs.store.base import ClaimInfo, Store, StudyInfo, WorkerId
from optbench.runs.store.schema import (
    COMPLETED,
    COMPLETED_OR_PRUNED,
    STORE_ALLOWED,
    chunks,
    create_or_check,
    insert_epochs,
    json_dumps,
    link_runs,
    load_results,
    runs,
    studies,
    study_id,
    study_runs,
    upsert_run,
)

T = TypeVar("T")

BUSY_TIMEOUT_S = 30.0
"""How long a SQLite writer waits for another writer's lock before failing (seconds)."""
_SQLITE_HEADER = b"SQLite format 3\x00"
_WRITE_ATTEMPTS = 3
_PG_INIT_LOCK = 0x6F707462656E6368 >> 1  # "optbench", fits a signed bigint


# ----------------------------------------------------------------------------- opening


def _check_sqlite_file(path: Path, shown: object) -> None:
    """Raise ConfigError unless ``path`` can hold a SQLite database, touching nothing."""
    error = ConfigError("store", shown, STORE_ALLOWED)
    parent = path.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise error  # the -wal and -shm files live next to the database
    if path.exists() or path.is_symlink():
        if not path.is_file() or not os.access(path, os.R_OK | os.W_OK):
            raise error
        with path.open("rb") as f:
            header = f.read(len(_SQLITE_HEADER))
        if header and header != _SQLITE_HEADER:  # an empty file is a valid new database
            raise error


def _is_url(url_or_path: str | Path) -> bool:
    return not isinstance(url_or_path, Path) and "://" in url_or_path


def _shown(url_or_path: str | Path) -> object:
    """What error messages show of the user's store argument (never a password: :func:`redact_url`)."""
    if not _is_url(url_or_path):
        return url_or_path
    return redact_url(url_or_path)


def _file_database(url: URL) -> Path | None:
    """The database file of a SQLite URL, as written in it; None for other backends and in-memory
    or ``file:`` URI databases."""
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def sqlite_file(url_or_path: str | Path) -> Path | None:
    """The database file of a SQLite store given as a path or a ``sqlite:///`` URL, as given (not
    resolved, not checked); None for any other store (PostgreSQL, in-memory SQLite, a URL that does
    not parse)."""
    if not _is_url(url_or_path):
        return Path(os.fspath(url_or_path))
    try:
        return _file_database(make_url(str(url_or_path)))
    except ArgumentError:
        return None


def _resolve(url_or_path: str | Path) -> URL:
    """The SQLAlchemy URL for a path or URL string; SQLite files are checked (see open_store)."""
    if not _is_url(url_or_path):
        path = Path(os.fspath(url_or_path)).expanduser().absolute()
        _check_sqlite_file(path, url_or_path)
        return URL.create("sqlite", database=str(path))
    try:
        url = make_url(str(url_or_path))
    except ArgumentError as err:
        raise ConfigError("store", _shown(url_or_path), STORE_ALLOWED) from err
    database = _file_database(url)
    if database is not None:
        path = database.expanduser().absolute()
        _check_sqlite_file(path, _shown(url_or_path))
        url = url.set(database=str(path))
    return url


def _make_engine(url: URL) -> Engine:
    if url.get_backend_name() != "sqlite":
        return create_engine(url, json_serializer=json_dumps, json_deserializer=json.loads, pool_pre_ping=True)
    engine = create_engine(url, json_serializer=json_dumps, json_deserializer=json.loads,
                           connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy, not the sqlite3 module, emits BEGIN (see _on_begin), so that DDL is
        # transactional and writers can take the lock up front.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("optbench_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def open_store(url_or_path: str | Path) -> SQLStore:
    """Open (creating tables if missing) the results database.

    Args:
        url_or_path: a file path (a SQLite database, created if absent) or any SQLAlchemy
            URL (``sqlite:///abs/path.db``, ``postgresql+psycopg://user@host/db``). A PostgreSQL
            URL needs no password: psycopg (libpq) takes it from ``PGPASSWORD``, ``~/.pgpass``
            or the ``PGSERVICE`` service file, as any libpq client does.

    SQLite files run in WAL mode with foreign keys on and a busy timeout of
    :data:`BUSY_TIMEOUT_S` seconds. The path is checked before anything is written. A password
    in the URL is used to connect and never shown: error messages and :attr:`SQLStore.url` show
    the URL through :func:`optbench.core.urls.redact_url`, and the store hides it in every text it
    stores or raises (run errors, study metadata) wherever it appears.

    Raises:
        ConfigError: (field ``store``) when the path's directory is missing or not
            writable, the path is a directory, an existing file is not a SQLite database
            (it is never modified), the URL is malformed, its driver is not installed or
            the database cannot be reached, or the store's schema is newer than this
            optbench understands.
    """
    secrets = frozenset(passwords(url_or_path))
    url = _resolve(url_or_path)
    shown = _shown(url_or_path)
    try:
        engine = _make_engine(url)
    except (NoSuchModuleError, ModuleNotFoundError) as err:
        raise ConfigError("store", shown, f"a SQLAlchemy URL whose driver is installed ({err})") from err
    try:
        _initialize(engine, shown)
    except DBAPIError as err:
        engine.dispose()
        if url.get_backend_name() == "sqlite":
            raise ConfigError("store", shown, STORE_ALLOWED) from err
        reason = str(err.orig).strip().splitlines()[0] if err.orig else type(err).__name__
        reason = redact_text(reason, secrets)
        raise ConfigError("store", shown, f"a SQLAlchemy URL of a reachable database ({reason})") from err
    except BaseException:
        engine.dispose()
        raise
    return SQLStore(engine, secrets)


@contextmanager
def _write_txn(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        conn.execution_options(optbench_write=True)
        with conn.begin():
            yield conn


def _initialize(engine: Engine, shown: object) -> None:
    """Create missing tables and the schema row in one transaction (see create_or_check)."""
    for attempt in range(_WRITE_ATTEMPTS):
        try:
            with _write_txn(engine) as conn:
                if conn.dialect.name == "postgresql":  # serialize concurrent first opens
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_INIT_LOCK})
                create_or_check(conn, shown)
            return
        except IntegrityError:  # another process created the tables at the same moment
            if attempt == _WRITE_ATTEMPTS - 1:
                raise


class SQLStore(Store):
    """The :class:`~optbench.runs.store.base.Store` on a SQL database through SQLAlchemy (see
    the module doc for how it keeps the protocol's promises). Create it with :func:`open_store`.

    Args:
        engine: a SQLAlchemy engine whose database :func:`open_store` initialized.
        secrets: the credentials of the store's URL (:func:`~optbench.core.urls.passwords`), hidden
            in whatever the store writes or raises.
    """

    def __init__(self, engine: Engine, secrets: frozenset[str] = frozenset()) -> None:
        self._engine = engine
        self._secrets = secrets

    @property
    def url(self) -> str:
        """The database URL (password hidden: :func:`~optbench.core.urls.redact_url`), e.g.
        ``sqlite:////abs/results.db``."""
        return redact_url(self._engine.url)

    def close(self) -> None:
        """Close every pooled connection; the Store must not be used afterwards."""
        self._engine.dispose()

    def __repr__(self) -> str:
        return f"SQLStore({self.url!r})"

    def _write(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` in one write transaction, retrying a lost insert race (IntegrityError)."""
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                with _write_txn(self._engine) as conn:
                    return fn(conn)
            except IntegrityError:
                if attempt == _WRITE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A connection in one read transaction that sees a single snapshot of the database for
        all its statements (SQLite: a WAL read transaction; PostgreSQL: REPEATABLE READ, since
        READ COMMITTED would give each statement its own snapshot, and a run read in several
        statements could mix epochs from before and a row from after a concurrent save)."""
        with self._engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    def ensure_study(self, name: str, config: Mapping[str, Any]) -> None:
        """See :meth:`Store.ensure_study`. Credentials in ``config`` (a URL's password, say) are
        stored hidden (:func:`~optbench.core.urls.redact_json`)."""
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise ConfigError("study", name, "a non-empty name of at most 200 characters")
        config = redact_json(dict(config), self._secrets)

        def create(conn: Connection) -> None:
            if conn.scalar(select(studies.c.id).where(studies.c.name == name)) is None:
                conn.execute(insert(studies).values(name=name, config=dict(config), created_at=datetime.now(UTC)))

        self._write(create)

    def add_runs_to_study(self, study: str, run_ids: Iterable[str]) -> None:
        """See :meth:`Store.add_runs_to_study`."""
        ids = list(run_ids)
        self._write(lambda conn: link_runs(conn, study_id(conn, study), ids))

    def save_run(self, result: RunResult, study: str | None = None, *,
                 started_at: datetime | None = None, release: WorkerId | None = None) -> bool:
        """See :meth:`Store.save_run`. One write transaction: run row, epochs, study link and
        claim release, on PostgreSQL under the run's advisory lock (as :meth:`claim_run`)."""
        numbers = [e.epoch for e in result.epochs]
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"run {result.run_id}: duplicate epoch numbers {numbers}")

        def save(conn: Connection) -> bool:
            sid = study_id(conn, study) if study is not None else None
            claims_sql.lock_run(conn, result.run_id)
            written = upsert_run(conn, result, started_at, self._secrets)
            if written:
                insert_epochs(conn, result)
            if sid is not None:
                link_runs(conn, sid, [result.run_id])
            if release is not None:
                claims_sql.release(conn, result.run_id, release)
            return written

        return self._write(save)

    def completed_run_ids(self, run_ids: Iterable[str] | None = None, *,
                          accept_pruned: bool = False) -> set[str]:
        """See :meth:`Store.completed_run_ids`."""
        done = runs.c.status.in_(COMPLETED_OR_PRUNED if accept_pruned else COMPLETED)
        with self._read() as conn:
            if run_ids is None:
                return set(conn.scalars(select(runs.c.run_id).where(done)))
            found: set[str] = set()
            for chunk in chunks(list(dict.fromkeys(run_ids))):
                found.update(conn.scalars(select(runs.c.run_id).where(done, runs.c.run_id.in_(chunk))))
            return found

    def attempted_run_ids(self, run_ids: Iterable[str], since: datetime) -> set[str]:
        """See :meth:`Store.attempted_run_ids`."""
        with self._read() as conn:
            found: set[str] = set()
            for chunk in chunks(list(dict.fromkeys(run_ids))):
                found.update(conn.scalars(select(runs.c.run_id).where(
                    runs.c.run_id.in_(chunk), runs.c.finished_at >= since)))
            return found

    def get_runs(self, run_ids: Iterable[str]) -> dict[str, RunResult]:
        """See :meth:`Store.get_runs`."""
        out: dict[str, RunResult] = {}
        with self._read() as conn:
            for chunk in chunks(list(dict.fromkeys(run_ids))):
                out.update((r.run_id, r) for r in load_results(conn, select(runs.c.run_id)
                                                              .where(runs.c.run_id.in_(chunk))))
        return out

    # ------------------------------------------------------------------ claims (concurrent workers)

    def claim_run(self, run_id: str, worker: WorkerId, *, stale_after: float = 600.0,
                  study: str | None = None, accept_pruned: bool = False,
                  attempted_since: datetime | None = None) -> bool:
        """See :meth:`Store.claim_run`. One write transaction under the run's lock (rules in
        :mod:`optbench.runs.store.claims`)."""
        return self._write(lambda conn: claims_sql.claim(
            conn, run_id, worker, study=study, stale_after=stale_after, accept_pruned=accept_pruned,
            attempted_since=attempted_since))

    def heartbeat(self, run_id: str, worker: WorkerId) -> None:
        """See :meth:`Store.heartbeat`."""
        self._write(lambda conn: claims_sql.heartbeat(conn, run_id, worker))

    def release_run(self, run_id: str, worker: WorkerId) -> None:
        """See :meth:`Store.release_run`."""
        self._write(lambda conn: claims_sql.release(conn, run_id, worker))

    def claims(self, study: str | None = None) -> list[ClaimInfo]:
        """See :meth:`Store.claims`."""
        with self._read() as conn:
            sid = study_id(conn, study) if study is not None else None
            return claims_sql.list_claims(conn, sid, study)

    def get_run(self, run_id: str) -> RunResult | None:
        """See :meth:`Store.get_run`."""
        with self._read() as conn:
            found = load_results(conn, select(runs.c.run_id).where(runs.c.run_id == run_id))
        return found[0] if found else None

    def load_runs(self, study: str | None = None, task: str | None = None) -> list[RunResult]:
        """See :meth:`Store.load_runs`."""
        ids = select(runs.c.run_id)
        with self._read() as conn:
            if study is not None:
                ids = ids.join(study_runs, study_runs.c.run_id == runs.c.run_id).where(
                    study_runs.c.study_id == study_id(conn, study))
            if task is not None:
                ids = ids.where(runs.c.task == task)
            return load_results(conn, ids)

    def studies(self) -> list[StudyInfo]:
        """See :meth:`Store.studies`."""
        with self._read() as conn:
            counts: dict[int, dict[str | None, int]] = {}
            for sid, status, n in conn.execute(
                    select(study_runs.c.study_id, runs.c.status, func.count())
                    .select_from(study_runs.outerjoin(runs, runs.c.run_id == study_runs.c.run_id))
                    .group_by(study_runs.c.study_id, runs.c.status)):
                counts.setdefault(sid, {})[status] = n
            rows = conn.execute(select(studies).order_by(studies.c.created_at, studies.c.id)).all()
        infos = []
        for row in rows:
            c = counts.get(row.id, {})
            infos.append(StudyInfo(
                name=row.name, created_at=row.created_at, config=dict(row.config), n_runs=sum(c.values()),
                n_finished=c.get(RunStatus.FINISHED.value, 0), n_diverged=c.get(RunStatus.DIVERGED.value, 0),
                n_failed=c.get(RunStatus.FAILED.value, 0), n_pruned=c.get(RunStatus.PRUNED.value, 0)))
        return infos
