"""Test support shared by the interrupt-and-resume tests: stop a study's process group hard, and read
every stored run row as the database holds it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import Any

from sqlalchemy import create_engine, inspect, text


def kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL ``proc``'s whole process group (it was started with ``start_new_session``) and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)


def stored_rows(url: str) -> dict[str, tuple[Any, ...]]:
    """Every stored run row as the database holds it, by run id ({} before the store exists)."""
    engine = create_engine(url if "://" in url else f"sqlite:///{url}")
    try:
        with engine.connect() as conn:
            if "optbench_runs" not in inspect(conn).get_table_names():  # killed before the store existed
                return {}
            return {r[0]: tuple(r) for r in conn.execute(text(
                "SELECT run_id, status, steps, total_seconds, started_at, finished_at, attempts, environment "
                "FROM optbench_runs"))}
    finally:
        engine.dispose()
