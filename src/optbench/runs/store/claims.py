"""Atomic run claims: which worker executes which run (table ``optbench_run_claims``).

A worker *claims* a run before executing it and the claim is deleted in the same transaction
that saves the run, so that a run is executed by one worker at a time and never again once it
is stored as completed. The rules (all inside one write transaction, see :func:`claim`):

* a run stored as completed (``finished``/``diverged``; ``pruned`` too for a search study) is
  never claimed;
* no claim row: the worker inserts one and wins (``run_id`` is the primary key, so of two
  workers inserting at the same instant exactly one succeeds);
* a claim held by a live worker is respected; a *stale* claim is taken over: its worker ran on
  this host and its process is gone (a SIGKILLed study: stale at once), or its last heartbeat
  is older than ``stale_after`` seconds (a dead machine; hosts' clocks are assumed to agree to
  well within ``stale_after``).

SQLite serializes these transactions with ``BEGIN IMMEDIATE``; on PostgreSQL every claim and
save of a run first takes a transaction-scoped advisory lock keyed by the run id
(``pg_advisory_xact_lock``), so that the status check and the claim row change see each other's
committed writes (READ COMMITTED takes a fresh snapshot after the lock is granted).
"""

from __future__ import annotations

import hashlib
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, insert, select, text, update

from optbench.runs.store.base import ClaimInfo, WorkerId
from optbench.runs.store.schema import COMPLETED, COMPLETED_OR_PRUNED, run_claims, runs, study_runs


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host and is not a zombie (a killed process that
    nobody reaped yet, common in containers whose init does not reap)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    except OSError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        state = stat.read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no procfs (macOS): os.kill said it exists
    return state not in ("Z", "X")


def lock_run(conn: Connection, run_id: str) -> None:
    """On PostgreSQL, take the transaction-scoped advisory lock of ``run_id`` (no-op elsewhere:
    SQLite write transactions are serialized already)."""
    if conn.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:8], "big", signed=True)
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _owner(worker: WorkerId) -> Any:
    return (run_claims.c.worker == worker.name) & (run_claims.c.host == worker.host) & \
        (run_claims.c.pid == worker.pid)


def _stale(row: Any, stale_after: float, now: datetime) -> bool:
    if row.host == socket.gethostname() and not pid_alive(int(row.pid)):
        return True
    return (now - row.heartbeat_at).total_seconds() > stale_after


def claim(conn: Connection, run_id: str, worker: WorkerId, *, study: str | None, stale_after: float,
          accept_pruned: bool, attempted_since: datetime | None = None) -> bool:
    """In the caller's write transaction: claim ``run_id`` for ``worker`` (rules in the module
    doc; with ``attempted_since``, a run stored at or after that time, in any status, is not
    claimed either). Returns True when ``worker`` holds the claim afterwards."""
    lock_run(conn, run_id)
    done = COMPLETED_OR_PRUNED if accept_pruned else COMPLETED
    stored = conn.execute(select(runs.c.status, runs.c.finished_at).where(runs.c.run_id == run_id)).first()
    if stored is not None and (stored.status in done or (
            attempted_since is not None and stored.finished_at is not None and stored.finished_at >= attempted_since)):
        return False
    now = datetime.now(UTC)
    row = conn.execute(select(run_claims).where(run_claims.c.run_id == run_id).with_for_update()).first()
    values = {"study": study, "worker": worker.name, "host": worker.host, "pid": worker.pid,
              "claimed_at": now, "heartbeat_at": now}
    if row is None:
        conn.execute(insert(run_claims).values(run_id=run_id, **values))
        return True
    if (row.worker, row.host, int(row.pid)) == (worker.name, worker.host, worker.pid):
        conn.execute(update(run_claims).where(run_claims.c.run_id == run_id).values(heartbeat_at=now))
        return True
    if not _stale(row, stale_after, now):
        return False
    conn.execute(update(run_claims).where(run_claims.c.run_id == run_id).values(**values))
    return True


def heartbeat(conn: Connection, run_id: str, worker: WorkerId) -> None:
    """Set the heartbeat of ``worker``'s claim on ``run_id`` to now (nothing when not held)."""
    conn.execute(update(run_claims).where(run_claims.c.run_id == run_id, _owner(worker))
                 .values(heartbeat_at=datetime.now(UTC)))


def release(conn: Connection, run_id: str, worker: WorkerId) -> None:
    """Delete ``worker``'s claim on ``run_id`` (nothing when not held)."""
    conn.execute(delete(run_claims).where(run_claims.c.run_id == run_id, _owner(worker)))


def list_claims(conn: Connection, sid: int | None, study: str | None) -> list[ClaimInfo]:
    """Claims of runs linked to study id ``sid`` or claimed for ``study`` (all when None), oldest first."""
    query = select(run_claims).order_by(run_claims.c.claimed_at, run_claims.c.run_id)
    if sid is not None:
        linked = select(study_runs.c.run_id).where(study_runs.c.study_id == sid)
        query = query.where(run_claims.c.run_id.in_(linked) | (run_claims.c.study == study))
    return [ClaimInfo(run_id=r.run_id, study=r.study, worker=WorkerId(r.worker, r.host, int(r.pid)),
                      claimed_at=r.claimed_at, heartbeat_at=r.heartbeat_at)
            for r in conn.execute(query)]


__all__ = ["ClaimInfo", "WorkerId", "claim", "heartbeat", "list_claims", "lock_run", "pid_alive", "release"]
