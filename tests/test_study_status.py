"""``optbench study status`` while runs are in progress: the running claims are listed with their
worker, host and process id, and workers are counted by (host, name, pid)."""

from __future__ import annotations

from typer.testing import CliRunner

from optbench.cli.main import app
from optbench.runs.store import WorkerId, open_store
from optbench.study.status import study_status


def test_status_lists_running_claims(tmp_path):
    url = str(tmp_path / "s.db")
    store = open_store(url)
    store.ensure_study("st", {"protocol": "seed004", "planned_runs": 3})
    store.add_runs_to_study("st", ["r1", "r2", "r3"])
    assert store.claim_run("r1", WorkerId("w0", "hostA", 11), study="st")
    assert store.claim_run("r2", WorkerId("w1", "hostA", 12), study="st")
    (status,) = study_status(url, "st")
    assert status.workers == 2 and sorted(c.run_id for c in status.running) == ["r1", "r2"]
    store.close()
    out = CliRunner().invoke(app, ["study", "status", url])
    assert out.exit_code == 0, out.output
    assert "0/3 runs done, 2 running on 2 worker(s)" in out.output
    assert "running r1 on w0@hostA (pid 11)" in out.output
