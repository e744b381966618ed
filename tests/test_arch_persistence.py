"""The architecture study persists like any other: a tiny copy of examples/studies/nas_digits.toml (written
into tmp_path) run by ``optbench study run`` in a subprocess is killed (its process group, SIGKILL) after some
trials are stored and resumed without repeating a finished trial; it completes with ``--workers 2`` on one
SQLite store; and it runs with ``--workers 2`` on PostgreSQL (conftest's ``postgres_url``: skipped outside
CI without a server, failed in CI). The space keeps the example's conditional expansion and adds an
unrealizable choice of channels (5 stages on 8 x 8 inputs); the sampler's seed 3 proposes it as the first
and the last trial of a one-worker search, so a failed trial is stored before the kill and another after
the resume (docs/architecture.md, "Architecture search" and "Stores"). Runs other than the killed one go
through the CLI in this process (an interpreter start less each)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from optbench.cli.main import app
from optbench.core.spec import RunStatus
from optbench.runs.store import open_store
from store_rows import kill_group, stored_rows

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "studies" / "nas_digits.toml"
TRIALS = 6
STUDY = "nas-digits"
UNREALIZABLE = "4-4-4-4-4"  # 8 -> 4 -> 2 -> 1 -> 0 pixels: refused by ImageArchitecture.check ("channels")


def _study_file(tmp_path: Path) -> Path:
    """The example with a tiny budget: 6 trials of 1 epoch on 600 examples, one seed, small channels."""
    text_ = EXAMPLE.read_text()
    for old, new in (("trials = 12", f"trials = {TRIALS}"), ("epochs = 3", "epochs = 1\ntrain_size = 600"),
                     ("seeds = 3", "seeds = 1"), ("seed = 0", "seed = 3"),
                     ('["8-16", "16-32", "16-32-64"]', f'["4", "4-8", "{UNREALIZABLE}"]')):
        assert old in text_, old  # the example still has the shape this test shrinks
        text_ = text_.replace(old, new)
    path = tmp_path / "nas_tiny.toml"
    path.write_text(text_)
    return path


def _start(study: Path, url: str, out: Path) -> subprocess.Popen[str]:
    """``optbench study run`` in a subprocess in its own process group (a kill takes its workers too)."""
    return subprocess.Popen([sys.executable, "-m", "optbench", "study", "run", str(study), "--store", url,
                             "--out", str(out)],
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _study_run(study: Path, url: str, out: Path, monkeypatch: pytest.MonkeyPatch, workers: int = 1) -> str:
    """``optbench study run`` to the end in this process; its output, progress lines unwrapped."""
    monkeypatch.setenv("COLUMNS", "400")
    result = CliRunner().invoke(app, ["study", "run", str(study), "--store", url, "--out", str(out),
                                      "--workers", str(workers)])
    assert result.exit_code == 0, result.output[-3000:]
    return result.output




def _trials(url: str) -> list:
    with open_store(url) as store:
        return [r for r in store.load_runs(study=STUDY) if "trial" in r.environment]


def _check_complete(url: str, workers: int = 1) -> list:
    """The finished study: ``TRIALS`` trials (up to ``workers - 1`` more, as run_search documents), each a
    distinct architecture run, finished or (unrealizable) failed with the reason and no epochs; the best
    retrained and the baseline trained; no claim left."""
    trials = _trials(url)
    assert TRIALS <= len(trials) <= TRIALS + workers - 1, [r.task for r in trials]
    assert len({r.run_id for r in trials}) == len(trials)
    for run in trials:
        assert run.task.startswith("nas_cnn[")
        assert ("expansion=" in run.task) == ("block=inverted" in run.task), run.task
        if UNREALIZABLE in run.task:
            assert run.status is RunStatus.FAILED and not run.epochs and "unrealizable architecture" in run.error
            assert "invalid channels" in run.error
        else:
            assert run.status is RunStatus.FINISHED and len(run.epochs) == 1, (run.task, run.error)
    with open_store(url) as store:
        runs = store.load_runs(study=STUDY)
        assert store.claims() == []
    assert [r.status for r in runs if r.task == "digits_mlp"] == [RunStatus.FINISHED]  # the baseline, seed 0
    return trials


def _trained_lines(progress: str) -> list[str]:
    """The progress lines of runs this process trained (``TASK adam(lr=...) seed 0: finished (...)``)."""
    return [line.strip() for line in progress.splitlines() if " seed 0: " in line]


def _line_of(run: Any) -> str:
    """How the progress output names ``run``: ``TASK adam(lr=...) seed 0``."""
    return f"{run.task} adam(lr={run.recipe.hyperparams['lr']:.3g}) seed 0"


def test_killed_architecture_study_resumes_without_repeating_trials(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    study, url = _study_file(tmp_path), str(tmp_path / "arch.db")
    proc = _start(study, url, tmp_path / "out")
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and len(stored_rows(url)) < 2:
            time.sleep(0.02)
        assert proc.poll() is None, "the study ended before it could be interrupted"
    finally:
        kill_group(proc)
    snapshot = stored_rows(url)
    assert 2 <= len(snapshot) < TRIALS  # killed mid-way: some trials stored, not all
    done_before = {r.run_id: r for r in _trials(url)}
    assert set(done_before) == set(snapshot)  # only trials so far (the baseline comes after the search)
    assert any(r.status is RunStatus.FAILED for r in done_before.values())  # trial 0: unrealizable

    progress = _study_run(study, url, tmp_path / "out", monkeypatch)
    final = stored_rows(url)
    for run_id, row in snapshot.items():  # a trial stored before the kill is never rewritten
        assert final[run_id] == row
    trials = _check_complete(url)
    trained = _trained_lines(progress)
    for run in done_before.values():  # ... nor trained again
        assert not any(line.startswith(_line_of(run)) for line in trained), (_line_of(run), trained)
    resumed = [r for r in trials if r.run_id not in done_before and r.status is RunStatus.FINISHED]
    assert all(any(line.startswith(_line_of(r)) for line in trained) for r in resumed)
    assert len(trials) == TRIALS and sorted(r.environment["trial"] for r in trials) == list(range(TRIALS))
    assert all(row[6] == 1 for row in final.values())  # every run saved once
    assert sum(r.status is RunStatus.FAILED for r in trials) == 2  # trials 0 and 5, as without the kill


def test_architecture_study_with_two_workers_on_one_sqlite_store(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    url = str(tmp_path / "arch.db")
    _study_run(_study_file(tmp_path), url, tmp_path / "out", monkeypatch, workers=2)
    trials = _check_complete(url, workers=2)
    workers = {r.environment["worker"]["pid"] for r in trials if r.status is RunStatus.FINISHED}
    assert workers and os.getpid() not in workers  # trained in the worker processes (one may start late)
    rows = stored_rows(url)
    assert all(rows[r.run_id][6] == 1 for r in trials if r.status is RunStatus.FINISHED)


def test_architecture_study_on_postgresql(postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _study_run(_study_file(tmp_path), postgres_url, tmp_path / "out", monkeypatch, workers=2)
    _check_complete(postgres_url, workers=2)
