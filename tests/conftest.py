"""Shared test setup: a per-session data cache, so tests never touch the user's cache."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _data_cache(tmp_path_factory):
    """Point $OPTBENCH_DATA at a session temp dir (MNIST-1D is generated there once)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("OPTBENCH_DATA", str(tmp_path_factory.mktemp("optbench-data")))
    yield
    mp.undo()
