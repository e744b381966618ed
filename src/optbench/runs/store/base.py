"""The results store's contract: the :class:`Store` protocol and the values it reads and writes.

Modelled on Optuna's ``BaseStorage``: what a store promises is written here, once, independent of
the backend; :class:`optbench.runs.store.sql.SQLStore` (SQLite file or PostgreSQL through
SQLAlchemy) implements it, and ``tests/test_store_contract.py`` checks every promise on both
backends. Code that reads or writes runs takes a :class:`Store`, never a backend class.

This module imports nothing of the backends (no SQLAlchemy), so that callers can name the type
without loading a database driver.
"""

from __future__ import annotations

import os
import socket
from abc import abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, Self, runtime_checkable

if TYPE_CHECKING:
    from optbench.core.spec import RunResult


@dataclass(frozen=True)
class WorkerId:
    """Who executes a run: a worker ``name`` (``"w0"``, ``"w1"`` ...), the ``host`` name and the
    process id ``pid``. Two workers are the same only when all three agree."""

    name: str
    host: str
    pid: int

    @classmethod
    def current(cls, name: str = "w0") -> WorkerId:
        """The worker ``name`` in this process on this host."""
        return cls(name=name, host=socket.gethostname(), pid=os.getpid())


@dataclass(frozen=True)
class ClaimInfo:
    """A run in progress: ``run_id`` claimed for ``study`` by ``worker`` at ``claimed_at``, last
    heartbeat at ``heartbeat_at`` (both UTC)."""

    run_id: str
    study: str | None
    worker: WorkerId
    claimed_at: datetime
    heartbeat_at: datetime


@dataclass(frozen=True)
class StudyInfo:
    """A study and its progress. ``n_runs`` counts the runs linked to the study (planned or
    stored); the other counts are stored runs by status; ``created_at`` is UTC."""

    name: str
    created_at: datetime
    config: dict[str, Any]
    n_runs: int
    n_finished: int
    n_diverged: int
    n_failed: int
    n_pruned: int = 0

    @property
    def n_pending(self) -> int:
        """Linked runs not stored yet (never started, or in progress)."""
        return self.n_runs - self.n_finished - self.n_diverged - self.n_failed - self.n_pruned


@runtime_checkable
class Store(Protocol):
    """The results database: studies, runs with their per-epoch metrics, and run claims.

    A store implementing this protocol must keep the following promises; every one is checked
    on SQLite and PostgreSQL by ``tests/test_store_contract.py``.

    **Atomic runs.** :meth:`save_run` writes the run, all its epochs and its study link, and
    (with ``release``) deletes the saving worker's claim, in ONE transaction: a process killed
    at any instant, or a save that raises, leaves all of it or none of it -- never a run without
    its epochs, and never a run saved but still claimed (or released but not saved).

    **Finished is final.** A run stored as ``finished`` or ``diverged`` (deterministic results)
    is never overwritten; a ``failed`` or ``pruned`` run is replaced, epochs included, by the
    next save of the same ``run_id``, which counts one more attempt.

    **Exactly-once claims.** Of any number of workers calling :meth:`claim_run` for the same run
    at the same instant -- threads, processes, or machines sharing one database -- exactly one
    gets True. A run stored as completed is never claimed. A worker's claim lasts until that
    worker saves or releases the run, or until another worker takes it over as *stale*: its
    worker ran on this host and that process is gone (a killed study: stale at once), or its
    last heartbeat is older than ``stale_after`` seconds (a dead machine; the hosts' clocks are
    assumed to agree to well within ``stale_after``). A live worker's claim is never taken.

    **What readers see.** Reads see committed writes only: a run appears with all its epochs
    or not at all, and a claim appears until the transaction that saves the run commits. Reads
    are not blocked by a writer's open transaction. A value returned (a ``RunResult``, a
    ``StudyInfo``) is the caller's own copy: later writes never change it.

    **What is never lost.** A write that returned is committed: every store opened on the same
    database afterwards, and every later read of any open one, sees it. Concurrent writers
    wait for each other instead of failing (up to a backend-defined timeout) and none of their
    writes is lost; linking runs to a study and creating a study are idempotent.

    **Sharing.** Create one store per process (do not carry one across ``fork``); one store may
    be used by several threads at once. Several stores -- in threads, processes or on other
    machines -- may use one database at the same time; that is how workers share a study.
    """

    @property
    @abstractmethod
    def url(self) -> str:
        """Where the store lives, e.g. ``sqlite:////abs/results.db`` (a password is hidden)."""

    @abstractmethod
    def close(self) -> None:
        """Release the store's connections; the store must not be used afterwards."""

    def __enter__(self) -> Self:
        """The store itself (``with open_store(...) as store``)."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the store."""
        self.close()

    # ------------------------------------------------------------------ studies

    @abstractmethod
    def ensure_study(self, name: str, config: Mapping[str, Any]) -> None:
        """Create study ``name`` with ``config`` (a JSON-ready mapping) unless it exists; an
        existing study keeps its original config and creation time (idempotent, also when
        several stores call it at once).

        Raises:
            ConfigError: for an empty name or one longer than 200 characters.
        """

    @abstractmethod
    def add_runs_to_study(self, study: str, run_ids: Iterable[str]) -> None:
        """Link ``run_ids`` (stored or only planned) to ``study`` in one transaction; existing
        links are kept (idempotent). A planned run counts in the study's ``n_runs``.

        Raises:
            ConfigError: when the study was not created with :meth:`ensure_study`.
        """

    @abstractmethod
    def studies(self) -> list[StudyInfo]:
        """Every study with its run counts, oldest first."""

    # ------------------------------------------------------------------ runs

    @abstractmethod
    def save_run(self, result: RunResult, study: str | None = None, *,
                 started_at: datetime | None = None, release: WorkerId | None = None) -> bool:
        """Store ``result`` with its epochs, link it to ``study`` and, with ``release``, delete
        that worker's claim on the run -- all in ONE transaction (see the class doc).

        A stored ``finished``/``diverged`` run is never changed: the call then only adds the
        study link (and releases) and returns False. A stored ``failed`` or ``pruned`` run is
        replaced. ``started_at`` (UTC) defaults to now minus ``result.total_seconds``.

        Returns:
            True when the run was written.

        Raises:
            ConfigError: when ``study`` was not created with :meth:`ensure_study` (nothing is
                written, the claim is kept).
            ValueError: when two epoch records share an epoch number (nothing is written).
        """

    @abstractmethod
    def get_run(self, run_id: str) -> RunResult | None:
        """The stored run ``run_id`` with its epochs, or None."""

    @abstractmethod
    def get_runs(self, run_ids: Iterable[str]) -> dict[str, RunResult]:
        """The stored runs among ``run_ids`` (any number) with their epochs, by run id; ids not
        stored are left out."""

    @abstractmethod
    def load_runs(self, study: str | None = None, task: str | None = None) -> list[RunResult]:
        """Stored runs (of ``study``, of ``task``, or all) with their epochs, ordered by task,
        recipe (canonical JSON), seed and run id -- the same order on every backend.

        Raises:
            ConfigError: for a study name that does not exist (lists the known ones).
        """

    @abstractmethod
    def completed_run_ids(self, run_ids: Iterable[str] | None = None, *,
                          accept_pruned: bool = False) -> set[str]:
        """Ids (among ``run_ids``, any number, or all) of runs stored as ``finished`` or
        ``diverged`` (``pruned`` too with ``accept_pruned``: a search does not redo a pruned
        trial). A ``failed`` run is not completed: a resumed study retries it."""

    @abstractmethod
    def attempted_run_ids(self, run_ids: Iterable[str], since: datetime) -> set[str]:
        """Ids among ``run_ids`` of runs stored (in any status) at or after ``since`` (UTC),
        e.g. the runs an executor already tried in its current call."""

    # ------------------------------------------------------------------ claims

    @abstractmethod
    def claim_run(self, run_id: str, worker: WorkerId, *, stale_after: float = 600.0,
                  study: str | None = None, accept_pruned: bool = False,
                  attempted_since: datetime | None = None) -> bool:
        """Atomically claim ``run_id`` for ``worker`` before executing it (exactly one of
        concurrent claimers wins, see the class doc). A claim ``worker`` holds already is
        renewed (True).

        Args:
            run_id: the run to execute.
            worker: who executes it.
            stale_after: seconds without heartbeat after which another worker's claim is taken
                over; a claim of a process that no longer exists on this host is stale at once.
            study: recorded with the claim (for :meth:`claims`).
            accept_pruned: a stored ``pruned`` run counts as completed (search studies).
            attempted_since: also refuse a run stored (any status) at or after this time (UTC):
                an executor does not retry a run that failed earlier in the same call.

        Returns:
            False when the run is completed (or attempted since ``attempted_since``) or claimed
            by a live worker; True otherwise: the claim is ``worker``'s until it calls
            :meth:`release_run` or ``save_run(..., release=worker)``, or it goes stale.
        """

    @abstractmethod
    def heartbeat(self, run_id: str, worker: WorkerId) -> None:
        """Mark ``worker``'s claim on ``run_id`` alive now (no-op when it does not hold it)."""

    @abstractmethod
    def release_run(self, run_id: str, worker: WorkerId) -> None:
        """Give up ``worker``'s claim on ``run_id`` without saving (no-op when it does not hold
        it: another worker's claim is never released)."""

    @abstractmethod
    def claims(self, study: str | None = None) -> list[ClaimInfo]:
        """Runs in progress (claimed, not saved yet), of ``study`` (claimed for it or linked to
        it) or all, oldest claim first. A claim of a killed worker stays listed until another
        worker takes the run over.

        Raises:
            ConfigError: for a study name that does not exist.
        """


__all__ = ["ClaimInfo", "Store", "StudyInfo", "WorkerId"]
