"""Store credentials never leave the process.

End to end on the throwaway PostgreSQL server (conftest.py) with a role that must authenticate
with a password over TCP: ``optbench compare --workers 2`` and ``optbench study run --workers 2``,
once with the password in the ``--store`` URL and once with a URL without one and ``PGPASSWORD``
(the second compare takes the URL from ``$OPTBENCH_STORE``). The password is in none of the files
written, the terminal output, the stored rows, or the command lines of the worker processes.
Also: the redaction helpers (:mod:`optbench.core.urls`) and where a command takes its store from.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from optbench.core.urls import REDACTED, passwords, redact_json, redact_text, redact_url

NO_FILE = "/nonexistent/optbench-test/pgpass"
STUDY_FILE = """
[study]
name = "credentials"
protocol = "seed004"
tasks = ["digits_mlp"]
seeds = 2
[budget]
epochs = 1
train_size = 200
[defaults]
batch_size = 64
hyperparams = { lr = 1e-2 }
[[recipes]]
optimizer = "sgd"
"""


# ----------------------------------------------------------------------------- helpers (no server)


def test_redact_url_hides_every_form_of_password():
    assert redact_url("postgresql+psycopg://bob:s3cr%2Ft%40x@db.example:5432/res") == \
        f"postgresql+psycopg://bob:{REDACTED}@db.example:5432/res"
    assert redact_url("postgresql+psycopg://bob@db.example/res") == "postgresql+psycopg://bob@db.example/res"
    hidden = redact_url("postgresql+psycopg://bob@h/res?password=hunter22&sslmode=require")
    assert "hunter22" not in hidden and "sslmode=require" in hidden
    assert "ss" not in redact_url("postgresql://bob:p@ss@h/db").split("@", 1)[0]  # an unencoded "@"
    assert redact_url("results.db") == "results.db" and redact_url(Path("a/b.db")) == str(Path("a/b.db"))
    assert redact_url("https://user:tok123@tracker.example/api") == f"https://user:{REDACTED}@tracker.example/api"
    from sqlalchemy.engine import make_url

    assert "pw123" not in redact_url(make_url("postgresql://u:pw123@h/db"))
    assert passwords("postgresql://u:a%40b@h/db") >= {"a@b", "a%40b"}


def test_redact_text_command_lines_messages_and_known_secrets():
    line = "optbench compare --store=postgresql+psycopg://bob:hunter22@h/db --out x"
    assert "hunter22" not in redact_text(line) and "--out x" in redact_text(line)
    assert redact_text("host=h password='a b' dbname=x") == f"host=h password={REDACTED} dbname=x"
    secrets = passwords("postgresql://u:zebra-crossing@h/db")
    assert redact_text("failed: zebra-crossing", secrets) == f"failed: {REDACTED}"
    assert redact_text("failed: zebra%2Dcrossing", ["zebra-crossing"]) == "failed: zebra%2Dcrossing"  # "-" is safe
    assert redact_text("x and zebra crossing", secrets) == "x and zebra crossing"
    assert redact_text("pw: abc", ["abc"]) == "pw: abc"  # too short to hide as free text
    assert redact_json({"a": ["mysql://u:pw9876@h/d", 1, None], "b": 2.5}) == \
        {"a": [f"mysql://u:{REDACTED}@h/d", 1, None], "b": 2.5}


def test_store_precedence_option_then_environment_then_default(monkeypatch, tmp_path):
    from optbench.cli.common import command_line, existing_store, resolve_store
    from optbench.core.errors import ConfigError

    monkeypatch.delenv("OPTBENCH_STORE", raising=False)
    assert resolve_store(None, "out/optbench.db") == "out/optbench.db"
    monkeypatch.setenv("OPTBENCH_STORE", "postgresql+psycopg://bob@h/db")
    assert resolve_store(None, "out/optbench.db") == "postgresql+psycopg://bob@h/db"
    assert resolve_store("mine.db", "out/optbench.db") == "mine.db"
    assert existing_store(None) == "postgresql+psycopg://bob@h/db"
    monkeypatch.setenv("OPTBENCH_STORE", " ")
    assert resolve_store(None, "d.db") == "d.db"
    with pytest.raises(ConfigError, match="OPTBENCH_STORE"):
        existing_store(None)
    assert "hunter22" not in command_line(["compare", "--store", "postgresql://u:hunter22@h/db"])


def test_commands_take_their_store_from_the_environment(monkeypatch, tmp_path):
    """``OPTBENCH_STORE`` is the store of compare, study run/list/status and report when none is given."""
    from typer.testing import CliRunner

    from optbench.cli.main import app

    db = tmp_path / "env.db"
    monkeypatch.setenv("OPTBENCH_STORE", str(db))
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(app, ["compare", "--task", "digits_mlp", "--optimizers", "adam", "--seeds", "1",
                                 "--epochs", "1", "--lr", "0.01", "--batch-size", "64", "--quiet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert db.is_file() and not (out / "optbench.db").exists()
    listing = runner.invoke(app, ["study", "list"])
    assert listing.exit_code == 0 and "compare-digits_mlp" in listing.stdout, listing.output
    status = runner.invoke(app, ["study", "status"])
    assert status.exit_code == 0 and "1/1 runs done" in status.stdout, status.output
    report = runner.invoke(app, ["report", "--out", str(tmp_path / "rep")])
    assert report.exit_code == 0 and (tmp_path / "rep" / "index.html").is_file(), report.output
    other = tmp_path / "other.db"  # --store wins over the environment
    result = runner.invoke(app, ["compare", "--task", "digits_mlp", "--optimizers", "adam", "--seeds", "1",
                                 "--epochs", "1", "--lr", "0.01", "--batch-size", "64", "--quiet", "--out", str(out),
                                 "--store", str(other)])
    assert result.exit_code == 0 and other.is_file(), result.output


def test_error_messages_hide_the_password(capsys):
    from optbench.cli.main import main

    url = "postgresql+psycopg://bob:hunter22-x@127.0.0.1:1/nodb"  # port 1: nothing listens
    code = main(["study", "list", url])
    err = capsys.readouterr().err
    assert code == 2 and "hunter22" not in err and f"bob:{REDACTED}@" in err


# ----------------------------------------------------------------------------- end to end on PostgreSQL


@contextlib.contextmanager
def _password_role(server_url: str, require_available,
                   databases: int = 2) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """A new role with a random password that must authenticate over TCP from 127.0.0.1
    (scram-sha-256), owning ``databases`` new databases: yields the password and, per database, its
    (URL without password, URL with it). A pg_hba.conf line for the role is put before the
    server's ``trust`` lines while it lives."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    token = secrets.token_hex(8)
    password = f"pw{token}/@:x"  # characters that must be percent-encoded in a URL
    role = f"optbench_pw_{uuid.uuid4().hex[:10]}"
    base = make_url(server_url)
    names = [f"{role}_{i}" for i in range(databases)]
    urls = [(base.set(username=role, password=None, database=name).render_as_string(hide_password=False),
             base.set(username=role, password=password, database=name).render_as_string(hide_password=False))
            for name in names]
    assert all(quote(password, safe="") in full for _, full in urls)
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    hba: Path | None = None
    original = ""
    try:
        try:
            with admin.connect() as conn:
                literal = password.replace("'", "''")
                conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD '{literal}'")  # no bind parameters
                for name in names:
                    conn.execute(text(f'CREATE DATABASE "{name}" OWNER {role}'))
                hba_file = conn.scalar(text("SHOW hba_file"))
        except SQLAlchemyError as err:  # e.g. $OPTBENCH_TEST_POSTGRES_URL's user may not create roles
            require_available(f"cannot create a role with a password on the test server: "
                              f"{str(getattr(err, 'orig', None) or err).strip().splitlines()[0]}")
        if hba_file and os.access(hba_file, os.R_OK | os.W_OK):
            hba = Path(hba_file)
            original = hba.read_text()
            hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n" + original)
            with admin.connect() as conn:
                conn.execute(text("SELECT pg_reload_conf()"))
        deadline = time.monotonic() + 10
        enforced = False
        while not enforced and time.monotonic() < deadline:  # the reload is asynchronous
            probe = create_engine(urls[0][0])
            try:
                with probe.connect():
                    time.sleep(0.2)
            except SQLAlchemyError:
                enforced = True
            finally:
                probe.dispose()
        if not enforced:
            require_available(f"cannot make PostgreSQL require a password for a role (pg_hba.conf {hba_file!r} "
                              "not writable here)")
        yield password, urls
    finally:
        if hba is not None:
            hba.write_text(original)
            with contextlib.suppress(SQLAlchemyError), admin.connect() as conn:
                conn.execute(text("SELECT pg_reload_conf()"))
        with contextlib.suppress(SQLAlchemyError), admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f"DROP ROLE IF EXISTS {role}"))
        admin.dispose()


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process on this machine (Linux /proc)."""
    parents = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(entry.path, "stat").read_text()
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def _run_watched(args: list[str], env: dict[str, str], timeout: float = 300) -> tuple[str, dict[int, str], str]:
    """Run ``python -m optbench ARGS`` and, while it runs, record the command line of every process
    it starts (``/proc/<pid>/cmdline``); returns (stdout + stderr, {pid: command line}, own command line)."""
    proc = subprocess.Popen([sys.executable, "-m", "optbench", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    own = " ".join([sys.executable, "-m", "optbench", *args])
    seen: dict[int, str] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            parents = _parents()
            family, grew = {proc.pid}, True
            while grew:
                grew = False
                for pid, ppid in parents.items():
                    if ppid in family and pid not in family:
                        family.add(pid)
                        grew = True
            for pid in family - {proc.pid}:
                with contextlib.suppress(OSError):
                    line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    if line.strip() and line.strip() != own:  # the parent's own image between fork and exec
                        seen.setdefault(pid, line)
                        if "spawn_main" in line:
                            seen[pid] = line
            stop.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        stop.set()
        watcher.join()
        if proc.poll() is None:
            proc.kill()
    text = out.decode(errors="replace") + err.decode(errors="replace")
    assert proc.returncode == 0, text[-3000:]
    return text, seen, own


def _stored_text(url: str) -> str:
    """Every row of every table of the database at ``url``, as text."""
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return "\n".join(str(row) for table in inspect(conn).get_table_names()
                             for row in conn.execute(text(f'SELECT CAST(t AS text) FROM "{table}" t')))
    finally:
        engine.dispose()


def _assert_nowhere(token: str, *, output: str, out_dir: Path | None, cmdlines: dict[int, str], stored: str,
                    workers: str = "spawn_main", n_workers: int = 2) -> None:
    """``token`` is in none of ``output``, the files under ``out_dir``, the command lines and the
    stored rows; and at least ``n_workers`` processes whose command line holds ``workers`` were seen."""
    assert token not in output, output[-2000:]
    if out_dir is not None:
        written = [p for p in out_dir.rglob("*") if p.is_file()]
        assert written
        leaking = [str(p) for p in written if token.encode() in p.read_bytes()]
        assert not leaking, leaking
    seen = [line for line in cmdlines.values() if workers in line]
    assert len(seen) >= n_workers, cmdlines  # the worker processes were seen
    assert not [line for line in cmdlines.values() if token in line], cmdlines
    assert stored and token not in stored


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k != "OPTBENCH_STORE"}
    env["PGPASSFILE"] = NO_FILE  # no ~/.pgpass of this machine's user
    env.update(extra)
    return env


def test_no_password_in_outputs_rows_or_worker_command_lines(postgres_server, require_available, tmp_path):
    with _password_role(postgres_server, require_available) as (password, urls):
        token = password[2:18]  # the random part: in the password as written and percent-encoded
        study = tmp_path / "study.toml"
        study.write_text(STUDY_FILE)
        compare = ["compare", "--task", "digits_mlp", "--optimizers", "adam,sgd", "--epochs", "1", "--seeds", "1",
                   "--lr", "0.01", "--batch-size", "64", "--workers", "2"]
        (bare_1, full_1), (bare_2, full_2) = urls  # a database per case: nothing is found done already
        for case, full, store_args, env in (
                ("in-url", full_1, ["--store", full_1], _env()),
                ("pgpassword", full_2, [], _env(PGPASSWORD=password, OPTBENCH_STORE=bare_2))):
            out = tmp_path / case / "compare"
            output, cmdlines, own = _run_watched([*compare, *store_args, "--out", str(out)], env)
            assert f"{REDACTED}@" in (out / "summary.md").read_text() or case == "pgpassword"
            _assert_nowhere(token, output=output, out_dir=out, cmdlines=cmdlines, stored=_stored_text(full))
            if case == "pgpassword":
                assert token not in own  # nothing on this command line either
            out = tmp_path / case / "study"
            study_store = ["--store", full if case == "in-url" else bare_2]
            output, cmdlines, own = _run_watched(["study", "run", str(study), *study_store, "--workers", "2",
                                                  "--out", str(out)], env)
            _assert_nowhere(token, output=output, out_dir=out, cmdlines=cmdlines, stored=_stored_text(full))
            assert (token in own) is (case == "in-url")
            rows = _stored_text(full)
            assert "credentials" in rows and "compare-digits_mlp" in rows


def test_no_password_on_the_command_lines_of_distributed_ranks(postgres_server, require_available, tmp_path):
    with _password_role(postgres_server, require_available, databases=1) as (password, [(_, full)]):
        token = password[2:18]
        output, cmdlines, _ = _run_watched(["run", "--mode", "ddp", "--nproc", "2", "--task", "digits_mlp",
                                            "--epochs", "1", "--train-size", "400", "--store", full], _env())
        # the forkserver and the two ranks it forks (their command line is the forkserver's)
        _assert_nowhere(token, output=output, out_dir=None, cmdlines=cmdlines, stored=_stored_text(full),
                        workers="multiprocessing.forkserver", n_workers=3)
        assert "distributed-digits_mlp" in _stored_text(full)


def test_pgpass_and_service_file_supply_the_password(postgres_server, require_available, tmp_path, monkeypatch):
    """A URL without a password connects with libpq's ``~/.pgpass`` (``PGPASSFILE``) and
    ``PGSERVICE``; without either, the error names the URL, never a password."""
    from sqlalchemy.engine import make_url

    from optbench.core.errors import ConfigError
    from optbench.runs.store import open_store

    with _password_role(postgres_server, require_available, databases=1) as (password, [(bare, full)]):
        for key in [k for k in os.environ if k.startswith("PG")]:
            monkeypatch.delenv(key)
        monkeypatch.setenv("PGPASSFILE", NO_FILE)
        with pytest.raises(ConfigError) as info:
            open_store(bare)
        assert password not in str(info.value) and "no password supplied" in str(info.value)
        url = make_url(bare)
        pgpass = tmp_path / "pgpass"
        escaped = password.replace("\\", "\\\\").replace(":", "\\:")
        pgpass.write_text(f"{url.host}:{url.port}:{url.database}:{url.username}:{escaped}\n")
        pgpass.chmod(0o600)
        monkeypatch.setenv("PGPASSFILE", str(pgpass))
        with open_store(bare) as store:
            store.ensure_study("pgpass", {"via": "pgpass"})
            assert password not in store.url
        service = tmp_path / "pg_service.conf"
        service.write_text(f"[optbench]\nhost={url.host}\nport={url.port}\nuser={url.username}\n"
                           f"dbname={url.database}\n")
        monkeypatch.setenv("PGSERVICEFILE", str(service))
        monkeypatch.setenv("PGSERVICE", "optbench")
        with open_store("postgresql+psycopg://") as store:  # everything from the service file and pgpass
            assert {s.name for s in store.studies()} == {"pgpass"}
        assert password not in _stored_text(full)
