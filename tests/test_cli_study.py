"""`optbench study run|status|list` on a tiny study; a bad file exits 2 and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from optbench.cli import study as cli_study

TINY = """
[study]
name = "tiny"
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
[[recipes]]
optimizer = "adam"
"""


@pytest.fixture()
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """optbench (test app)."""

    cli_study.register(app)
    return app


def test_run_status_list(tmp_path, app):
    study = tmp_path / "tiny.toml"
    study.write_text(TINY)
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(app, ["study", "run", str(study), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "index.html").is_file() and (out / "protocol.md").is_file()
    assert (out / "optbench.db").is_file()
    assert "adam" in result.stdout and "sgd" in result.stdout
    status = runner.invoke(app, ["study", "status", str(out / "optbench.db")])
    assert status.exit_code == 0, status.output
    assert "tiny" in status.stdout and "4/4 runs done" in status.stdout
    listing = runner.invoke(app, ["study", "list", str(out / "optbench.db")])
    assert listing.exit_code == 0 and "tiny" in listing.stdout and "seed004" in listing.stdout
    unknown = runner.invoke(app, ["study", "status", str(out / "optbench.db"), "--study", "nope"])
    assert unknown.exit_code == 2 and "tiny" in unknown.output


def test_bad_file_exits_2_and_writes_nothing(tmp_path, app):
    study = tmp_path / "bad.toml"
    study.write_text(TINY.replace('"sgd"', '"sgdd"').replace("seeds = 2", "seeds = 2\ncolor = 1"))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["study", "run", str(study), "--out", str(out)])
    assert result.exit_code == 2
    assert "recipes[0].optimizer" in result.output and "study.color" in result.output
    assert not out.exists()


def test_bad_technique_in_a_file_exits_2_naming_its_key(tmp_path, app):
    study = tmp_path / "bad.toml"
    study.write_text(TINY.replace('optimizer = "adam"', 'optimizer = "adam"\ntechniques = ["clip_norm:maxnorm=1", '
                                                         '"label_smoothing:epsilon"]\nclip_value = -1'))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["study", "run", str(study), "--out", str(out)])
    assert result.exit_code == 2
    assert "recipes[1].techniques[1]" in result.output and "NAME:key=value" in result.output
    assert not out.exists()
    study.write_text(TINY.replace('optimizer = "adam"', 'optimizer = "adam"\ntechniques = ["clip_norm:maxnorm=1"]'))
    result = CliRunner().invoke(app, ["study", "run", str(study), "--out", str(out)])
    assert result.exit_code == 2 and "recipes[1].techniques[0]" in result.output and "max_norm" in result.output
    assert not out.exists()


def test_dry_run_writes_nothing(tmp_path, app):
    study = tmp_path / "tiny.toml"
    study.write_text(TINY)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["study", "run", str(study), "--out", str(out), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "runs: at most 4" in result.stdout and not out.exists()


def test_missing_store(tmp_path: Path, app):
    result = CliRunner().invoke(app, ["study", "list", str(tmp_path / "none.db")])
    assert result.exit_code == 2
