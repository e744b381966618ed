"""Shared test setup: a per-session data cache, store fixtures on SQLite and PostgreSQL, and the
rule for tests whose server or browser is missing.

PostgreSQL: ``$OPTBENCH_TEST_POSTGRES_URL`` (a server where the user may create databases) when
set; otherwise a throwaway cluster started for the session from the local PostgreSQL binaries
(Debian package ``postgresql``), listening on 127.0.0.1 on a free port only, run as the
``postgres`` system user when the tests run as root (initdb refuses root). Each test gets a
fresh database.

Missing server or browser (:func:`unavailable`): outside CI such a test is skipped with the
reason; with ``CI=true`` (how ``.ci/run`` runs) it FAILS with the reason instead, so that CI
never passes without having run the PostgreSQL and browser tests.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

POSTGRES_URL_ENV = "OPTBENCH_TEST_POSTGRES_URL"


def in_ci() -> bool:
    """Whether the tests run in CI (``$CI`` is ``true``, as ``.ci/run`` and most CI services set it)."""
    return os.environ.get("CI", "").strip().lower() == "true"


def unavailable(reason: str) -> NoReturn:
    """Stop a test whose server or browser cannot start: skip it with ``reason``, or, in CI,
    fail it with ``reason`` (a CI run must not pass without it)."""
    if in_ci():
        pytest.fail(f"{reason} [CI=true: required here, not skipped]", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def require_available() -> Callable[[str], NoReturn]:
    """:func:`unavailable`, for test modules (which cannot import conftest): call it with the
    reason when something the test needs cannot start."""
    return unavailable


@pytest.fixture(scope="session", autouse=True)
def _data_cache(tmp_path_factory):
    """Point $OPTBENCH_DATA at a session temp dir (MNIST-1D is generated there once)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("OPTBENCH_DATA", str(tmp_path_factory.mktemp("optbench-data")))
    yield
    mp.undo()


def _postgres_bindir() -> Path | None:
    """The directory of ``initdb``/``pg_ctl``: PATH, else the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Cluster:
    """A throwaway PostgreSQL cluster in a temp dir (started by :meth:`start`)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.prefix: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres system user
            runuser = shutil.which("runuser")
            if runuser is None:
                raise RuntimeError("running as root without runuser to switch to the postgres user")
            self.prefix = [runuser, "-u", "postgres", "--"]
        self.root = Path(tempfile.mkdtemp(prefix="optbench-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        if self.prefix:
            try:
                shutil.chown(self.root, "postgres", "postgres")
            except LookupError:  # no postgres system user
                shutil.rmtree(self.root, ignore_errors=True)
                raise

    def _run(self, *args: str) -> None:
        proc = subprocess.run([*self.prefix, *args], check=False, capture_output=True, text=True, timeout=120,
                              cwd=self.root)
        if proc.returncode:
            raise RuntimeError(f"{Path(args[0]).name} failed: {(proc.stderr or proc.stdout).strip()[-400:]}")

    def start(self) -> str:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options, "-l",
                  str(self.root / "server.log"), "-w", "-t", "60", "start")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def _check_server(url: str) -> None:
    """Connect to ``url`` once; :func:`unavailable` with the reason when that fails."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except SQLAlchemyError:
        shown = None
    if shown is None:
        unavailable(f"${POSTGRES_URL_ENV} is not a SQLAlchemy URL")
    engine = create_engine(url)
    reason = None
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as err:
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
    finally:
        engine.dispose()
    if reason is not None:
        unavailable(f"no PostgreSQL server at ${POSTGRES_URL_ENV} = {shown}: {reason}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """SQLAlchemy URL of a PostgreSQL database whose user may create databases (see
    :func:`unavailable` for what happens when no server is available)."""
    if importlib.util.find_spec("psycopg") is None:  # the driver the URLs name
        unavailable("PostgreSQL driver psycopg 3 not installed (pip install psycopg[binary])")
    url = os.environ.get(POSTGRES_URL_ENV)
    if url:
        _check_server(url)
        yield url
        return
    bindir = _postgres_bindir()
    if bindir is None:
        unavailable(f"no PostgreSQL server: set ${POSTGRES_URL_ENV} or install the Debian package postgresql")
    cluster: _Cluster | None = None
    failure = None
    try:
        cluster = _Cluster(bindir)
        url = cluster.start()
    except (RuntimeError, OSError, LookupError, subprocess.TimeoutExpired) as err:
        failure = f"could not start a local PostgreSQL server from {bindir}: {err}"
        if cluster is not None:
            cluster.stop()
    if failure is not None or cluster is None:
        unavailable(failure or "no PostgreSQL cluster")
    try:
        yield url
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    name = f"optbench_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new empty store on each backend: a SQLite file path, or a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "results.db")
    return request.getfixturevalue("postgres_url")


@pytest.fixture()
def distributed_cli() -> tuple[Any, Any]:
    """The ``run`` and ``scale`` commands on their own Typer app, with the CLI's error handling, and a
    runner for them."""
    import typer
    from typer.testing import CliRunner

    from optbench.cli.distributed import register
    from optbench.cli.main import handle_errors

    app = typer.Typer()
    register(app, handle_errors)
    return app, CliRunner()
