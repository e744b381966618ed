"""The results database schema (SQLAlchemy 2.0 Core tables), version :data:`SCHEMA_VERSION`.

Tables (all names carry the prefix ``optbench_`` so that one database can also hold an
Optuna RDB storage, whose own tables are called ``studies``, ``trials`` ...):

``optbench_schema``
    One row (``id = 1``): the schema ``version`` and when the store was created. A later
    optbench that changes the schema reads it to decide which migrations to apply; an older
    optbench refuses a newer store instead of corrupting it.
``optbench_studies``
    ``id``, ``name`` (unique), ``config`` (JSON: the study definition), ``created_at`` (UTC).
``optbench_runs``
    One row per run, keyed by ``run_id`` (:func:`optbench.core.spec.run_id`, 16 hex chars):
    ``task``, ``optimizer`` (copied out of the recipe for queries), ``recipe`` (JSON of
    :meth:`Recipe.to_dict`), ``seed``, ``status`` (``finished``/``diverged``/``failed``/``pruned``),
    ``error``, ``steps``, ``train_seconds``/``eval_seconds``/``total_seconds`` (s),
    ``hyperparams`` and ``environment`` (JSON), ``started_at``/``finished_at`` (UTC) and
    ``attempts`` (how many times the run was saved: a failed or pruned run redone later counts 2).
``optbench_study_runs``
    The study <-> run link (a run can belong to several studies). ``run_id`` has no foreign
    key on purpose: a study may list its *planned* runs before they are stored, so that
    ``n_runs`` is the plan's size and progress is ``stored / planned``.
``optbench_epochs``
    One row per (run, epoch): ``step``, ``train_seconds``, ``eval_seconds`` (s),
    ``samples_per_second``, ``lr``.
``optbench_epoch_metrics``
    Per-epoch metrics in long format: (``run_id``, ``epoch``, ``name``, ``value``).
``optbench_run_claims`` (version 2)
    Runs in progress: ``run_id`` (primary key, so only one worker can hold a run), ``study``,
    the worker's ``worker`` name, ``host`` and ``pid``, ``claimed_at`` and ``heartbeat_at``
    (UTC). A row is inserted when a worker claims a run and deleted in the transaction that
    saves the run (see :mod:`optbench.runs.store.claims`).

Credentials: a run's ``error`` and ``environment`` are stored with every URL password and every
password this process connected with hidden (:mod:`optbench.core.urls`).

Non-finite floats: every float column stores NaN as SQL ``NULL`` (a float column is never
otherwise NULL: an absent metric simply has no row), so ``AVG``/``MIN`` in SQL skip NaN;
+-inf are stored as IEEE infinities, which SQLite ``REAL`` and PostgreSQL ``double
precision`` both hold. Reading maps ``NULL`` back to ``nan``, so values round-trip exactly.

Besides the tables, this module holds the mapping between rows and the spec dataclasses
(:func:`upsert_run`, :func:`insert_epochs`, :func:`load_results` ...), each run inside the
caller's transaction; :mod:`optbench.runs.store.sql` owns connections and transactions.

Versions: 1 had no claims table and no ``pruned`` status; opening a version 1 store adds the
claims table (``create_all`` creates missing tables) and sets the version to 2, in the same
transaction. ``status`` has no CHECK constraint so that new states need no table rebuild on
SQLite. Statuses: ``finished``/``diverged`` are final (never overwritten); ``failed`` and
``pruned`` are replaced by the next save of the same run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    Text,
    TypeDecorator,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.postgresql import JSONB

from optbench.core.errors import ConfigError
from optbench.core.spec import EpochRecord, Recipe, RunResult, RunStatus
from optbench.core.urls import redact_json, redact_text

SCHEMA_VERSION = 2
"""Version of the tables below; stored in ``optbench_schema`` (2: run claims, pruned runs)."""

PREFIX = "optbench_"
STORE_ALLOWED = "a writable SQLite file path or a SQLAlchemy URL"
COMPLETED = (RunStatus.FINISHED.value, RunStatus.DIVERGED.value)
"""Statuses of a run that is final: never redone, never overwritten."""
COMPLETED_OR_PRUNED = (*COMPLETED, RunStatus.PRUNED.value)
"""Statuses a search study counts as done (a pruned trial is not redone there)."""
CHUNK = 500
"""Ids per ``IN (...)`` list; below every backend's bound-parameter limit."""


class NanFloat(TypeDecorator[float]):
    """A float column that stores NaN as NULL and reads NULL back as NaN (see module doc)."""

    impl = Float
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> float | None:
        if value is None:
            return None
        value = float(value)
        return None if math.isnan(value) else value

    def process_result_value(self, value: Any, dialect: Dialect) -> float:
        return math.nan if value is None else float(value)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (UTC).

    SQLite has no time zone type, so the UTC wall time is stored without offset there;
    PostgreSQL uses ``timestamp with time zone``. Naive inputs are taken to be UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json() -> JSON:
    # JSONB on PostgreSQL: comparable and indexable; plain JSON text elsewhere.
    return JSON().with_variant(JSONB(), "postgresql")


metadata = MetaData()

schema_table = Table(
    f"{PREFIX}schema",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

studies = Table(
    f"{PREFIX}studies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("config", _json(), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

runs = Table(
    f"{PREFIX}runs",
    metadata,
    Column("run_id", String(16), primary_key=True),
    Column("task", String(200), nullable=False),
    Column("optimizer", String(200), nullable=False),
    Column("recipe", _json(), nullable=False),
    Column("seed", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("error", Text, nullable=True),
    Column("steps", BigInteger, nullable=False),
    Column("train_seconds", NanFloat),
    Column("eval_seconds", NanFloat),
    Column("total_seconds", NanFloat),
    Column("hyperparams", _json(), nullable=False),
    Column("environment", _json(), nullable=False),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("attempts", Integer, nullable=False, default=1),
    Index(f"ix_{PREFIX}runs_task", "task"),
    Index(f"ix_{PREFIX}runs_optimizer", "optimizer"),
    Index(f"ix_{PREFIX}runs_status", "status"),
)

study_runs = Table(
    f"{PREFIX}study_runs",
    metadata,
    Column("study_id", Integer, ForeignKey(studies.c.id, ondelete="CASCADE"), primary_key=True),
    Column("run_id", String(16), primary_key=True),
    Index(f"ix_{PREFIX}study_runs_run_id", "run_id"),
)

epochs = Table(
    f"{PREFIX}epochs",
    metadata,
    Column("run_id", String(16), ForeignKey(runs.c.run_id, ondelete="CASCADE"), primary_key=True),
    Column("epoch", Integer, primary_key=True, autoincrement=False),
    Column("step", BigInteger, nullable=False),
    Column("train_seconds", NanFloat),
    Column("eval_seconds", NanFloat),
    Column("samples_per_second", NanFloat),
    Column("lr", NanFloat),
)

epoch_metrics = Table(
    f"{PREFIX}epoch_metrics",
    metadata,
    Column("run_id", String(16), primary_key=True),
    Column("epoch", Integer, primary_key=True, autoincrement=False),
    Column("name", String(100), primary_key=True),
    Column("value", NanFloat),
    ForeignKeyConstraint(["run_id", "epoch"], [epochs.c.run_id, epochs.c.epoch], ondelete="CASCADE"),
    Index(f"ix_{PREFIX}epoch_metrics_name", "name"),
)

run_claims = Table(
    f"{PREFIX}run_claims",
    metadata,
    Column("run_id", String(16), primary_key=True),
    Column("study", String(200), nullable=True),
    Column("worker", String(200), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", BigInteger, nullable=False),
    Column("claimed_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
    Index(f"ix_{PREFIX}run_claims_study", "study"),
)

TABLE_NAMES = tuple(t.name for t in metadata.sorted_tables)
"""Every table optbench creates (parents before children)."""


def _json_default(obj: Any) -> Any:
    """JSON fallback for values in ``environment``/``hyperparams``: scalars of numpy/torch
    via ``.item()``, arrays via ``.tolist()``, anything else as its ``str``."""
    for method in ("item", "tolist"):
        fn = getattr(obj, method, None)
        if callable(fn):
            try:
                return fn()
            except (TypeError, ValueError, RuntimeError):
                continue
    return str(obj)


def json_dumps(value: Any) -> str:
    """How JSON columns are written: sorted keys, numpy/torch scalars as numbers, other
    non-JSON objects as strings. Tuples come back as lists (JSON has no tuple)."""
    return json.dumps(value, sort_keys=True, default=_json_default)


def create_or_check(conn: Connection, shown: object) -> None:
    """Inside the caller's write transaction: create missing tables and the schema row, or
    check the stored version (later versions migrate here, keyed by the stored version).

    Args:
        conn: a connection in a write transaction (SQLite: ``BEGIN IMMEDIATE``).
        shown: the store argument, for error messages.

    Raises:
        ConfigError: when ``optbench_*`` tables exist without the schema row (not ours),
            or the stored version is newer than :data:`SCHEMA_VERSION`.
    """
    existing = set(sa_inspect(conn).get_table_names())
    version = None
    if schema_table.name in existing:
        version = conn.scalar(select(schema_table.c.version).where(schema_table.c.id == 1))
    elif existing & set(TABLE_NAMES):
        raise ConfigError("store", shown, f"{STORE_ALLOWED} (its {PREFIX}* tables lack {schema_table.name})")
    if version is not None and version > SCHEMA_VERSION:
        raise ConfigError("store schema version", version,
                          f"at most {SCHEMA_VERSION} (the store was written by a newer optbench)")
    metadata.create_all(conn, checkfirst=True)  # migration 1 -> 2: adds optbench_run_claims
    if version is None:
        conn.execute(insert(schema_table).values(id=1, version=SCHEMA_VERSION, created_at=datetime.now(UTC)))
    elif version < SCHEMA_VERSION:
        conn.execute(update(schema_table).where(schema_table.c.id == 1).values(version=SCHEMA_VERSION))


# --------------------------------------------- rows <-> spec dataclasses (in the caller's transaction)


def chunks(items: list[str]) -> Iterator[list[str]]:
    """``items`` in slices of at most :data:`CHUNK`, for ``IN (...)`` lists."""
    for i in range(0, len(items), CHUNK):
        yield items[i:i + CHUNK]


def study_id(conn: Connection, name: str) -> int:
    """The id of study ``name``.

    Raises:
        ConfigError: when no such study exists (lists the known ones).
    """
    found = conn.scalar(select(studies.c.id).where(studies.c.name == name))
    if found is None:
        known = conn.scalars(select(studies.c.name)).all()
        raise ConfigError("study", name,
                          f"a study created with Store.ensure_study (known: {', '.join(known) or 'none'})")
    return int(found)


def link_runs(conn: Connection, sid: int, run_ids: Iterable[str]) -> None:
    """Link ``run_ids`` to the study with id ``sid``, skipping links that exist."""
    for chunk in chunks(list(dict.fromkeys(run_ids))):
        have = set(conn.scalars(select(study_runs.c.run_id).where(
            study_runs.c.study_id == sid, study_runs.c.run_id.in_(chunk))))
        rows = [{"study_id": sid, "run_id": r} for r in chunk if r not in have]
        if rows:
            conn.execute(insert(study_runs), rows)


def _run_values(result: RunResult, started_at: datetime | None, secrets: frozenset[str]) -> dict[str, Any]:
    finished_at = datetime.now(UTC)
    total = float(result.total_seconds)
    if started_at is None and math.isfinite(total) and total >= 0:
        started_at = finished_at - timedelta(seconds=total)
    recipe = result.recipe.to_dict()
    return {
        "task": result.task, "optimizer": recipe["optimizer"], "recipe": recipe, "seed": int(result.seed),
        "status": RunStatus(result.status).value,
        "error": None if result.error is None else redact_text(result.error, secrets), "steps": int(result.steps),
        "train_seconds": result.train_seconds, "eval_seconds": result.eval_seconds, "total_seconds": total,
        "hyperparams": dict(result.hyperparams), "environment": redact_json(dict(result.environment), secrets),
        "started_at": started_at, "finished_at": finished_at,
    }


def upsert_run(conn: Connection, result: RunResult, started_at: datetime | None,
               secrets: frozenset[str] = frozenset()) -> bool:
    """Insert the run row or replace a failed or pruned one (deleting its epochs, counting the
    attempt); False, writing nothing, when a finished or diverged run is stored."""
    previous = conn.execute(select(runs.c.status, runs.c.attempts).where(runs.c.run_id == result.run_id)
                            .with_for_update()).first()
    values = _run_values(result, started_at, secrets)
    if previous is None:
        conn.execute(insert(runs).values(run_id=result.run_id, attempts=1, **values))
        return True
    if previous.status in COMPLETED:
        return False
    conn.execute(delete(epoch_metrics).where(epoch_metrics.c.run_id == result.run_id))
    conn.execute(delete(epochs).where(epochs.c.run_id == result.run_id))
    conn.execute(update(runs).where(runs.c.run_id == result.run_id)
                 .values(attempts=previous.attempts + 1, **values))
    return True


def insert_epochs(conn: Connection, result: RunResult) -> None:
    """Insert the epoch rows and the long-format metric rows of ``result``."""
    if not result.epochs:
        return
    conn.execute(insert(epochs), [
        {"run_id": result.run_id, "epoch": e.epoch, "step": e.step, "train_seconds": e.train_seconds,
         "eval_seconds": e.eval_seconds, "samples_per_second": e.samples_per_second, "lr": e.lr}
        for e in result.epochs])
    metric_rows = [{"run_id": result.run_id, "epoch": e.epoch, "name": name, "value": value}
                   for e in result.epochs for name, value in e.metrics.items()]
    if metric_rows:
        conn.execute(insert(epoch_metrics), metric_rows)


def load_results(conn: Connection, ids: Select[Any]) -> list[RunResult]:
    """Rebuild the RunResults whose run_id is selected by ``ids``, in a deterministic order."""
    metric_map: dict[tuple[str, int], dict[str, float]] = {}
    for m in conn.execute(select(epoch_metrics).where(epoch_metrics.c.run_id.in_(ids))
                          .order_by(epoch_metrics.c.run_id, epoch_metrics.c.epoch, epoch_metrics.c.name)):
        metric_map.setdefault((m.run_id, m.epoch), {})[m.name] = m.value
    epoch_map: dict[str, list[EpochRecord]] = {}
    for e in conn.execute(select(epochs).where(epochs.c.run_id.in_(ids)).order_by(epochs.c.run_id, epochs.c.epoch)):
        epoch_map.setdefault(e.run_id, []).append(EpochRecord(
            epoch=e.epoch, step=e.step, metrics=metric_map.get((e.run_id, e.epoch), {}),
            train_seconds=e.train_seconds, eval_seconds=e.eval_seconds,
            samples_per_second=e.samples_per_second, lr=e.lr))
    results = [
        RunResult(run_id=r.run_id, task=r.task, recipe=Recipe.from_dict(r.recipe), seed=r.seed,
                  status=RunStatus(r.status), epochs=epoch_map.get(r.run_id, []), error=r.error,
                  train_seconds=r.train_seconds, eval_seconds=r.eval_seconds, total_seconds=r.total_seconds,
                  steps=r.steps, environment=dict(r.environment), hyperparams=dict(r.hyperparams))
        for r in conn.execute(select(runs).where(runs.c.run_id.in_(ids)))]
    results.sort(key=lambda r: (r.task, json_dumps(r.recipe.to_dict()), r.seed, r.run_id))
    return results
