"""The results database: studies, runs, per-epoch metrics and run claims.

:class:`Store` (a :class:`typing.Protocol`, in :mod:`optbench.runs.store.base`) is the contract
every caller relies on; :func:`open_store` opens the SQL implementation, :class:`SQLStore` -- a
SQLite file by default, any SQLAlchemy URL (PostgreSQL) otherwise::

    from optbench.runs.store import open_store
    with open_store("results.db") as store:
        store.ensure_study("seed004", {"tasks": ["fmnist_cnn3"]})
        todo = [r for r in planned if r not in store.completed_run_ids(planned)]
        store.save_run(result, study="seed004")   # one transaction: all of the run or nothing
        runs = store.load_runs(study="seed004")

Concurrent workers (processes, machines on one PostgreSQL URL) claim runs atomically::

        me = WorkerId.current("w0")
        if store.claim_run(run_id, me, study="seed004"):   # False: done, or another worker has it
            ...  # train, calling store.heartbeat(run_id, me) now and then
            store.save_run(result, study="seed004", release=me)   # saved and released together

The tables are described in :mod:`optbench.runs.store.schema`; the design in docs/architecture.md.
"""

from __future__ import annotations

from optbench.runs.store.base import ClaimInfo, Store, StudyInfo, WorkerId
from optbench.runs.store.schema import SCHEMA_VERSION
from optbench.runs.store.sql import SQLStore, open_store, sqlite_file

__all__ = ["SCHEMA_VERSION", "ClaimInfo", "SQLStore", "Store", "StudyInfo", "WorkerId", "open_store", "sqlite_file"]
