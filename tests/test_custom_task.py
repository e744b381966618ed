"""A user's own task (examples/custom_task.py) through `optbench compare`, and broken user tasks
rejected by check_task with one line naming the task, the part and what is expected."""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from typer.testing import CliRunner

from optbench.cli.main import app
from optbench.core.errors import ConfigError
from optbench.core.spec import Direction, Metric, RunStatus
from optbench.runs.store import open_store
from optbench.tasks import check_task, get_task

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_task.py"


@pytest.fixture
def spirals():
    task = get_task(f"{EXAMPLE}:make_task")
    yield task, task.load_data()
    sys.modules.pop("optbench_user_task_custom_task", None)


def test_compare_runs_the_example_task(tmp_path):
    db, out = tmp_path / "runs.db", tmp_path / "out"
    result = CliRunner().invoke(app, ["compare", "--task", f"{EXAMPLE}:make_task", "--optimizers", "adam,sgd",
                                      "--seeds", "2", "--epochs", "3", "--lr", "0.01", "--batch-size", "64",
                                      "--store", str(db), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "two_spirals_mlp" in result.stdout and "adam" in result.stdout and "sgd" in result.stdout
    ranks = [line.split("│")[1:3] for line in result.stdout.splitlines() if line.startswith("│ ") and "│ " in line[1:]]
    assert [r[0].strip() for r in ranks if r[0].strip()] == ["1", "2"]  # a ranked table of both optimizers
    assert {r[1].strip() for r in ranks if r[0].strip()} == {"adam", "sgd"}
    with open_store(db) as store:
        runs = store.load_runs()
    assert len(runs) == 4 and {r.task for r in runs} == {"two_spirals_mlp"}
    assert all(r.status is RunStatus.FINISHED and len(r.epochs) == 3 for r in runs)
    assert (out / "summary.md").exists()


def test_the_example_passes_check_task(spirals):
    task, data = spirals
    state = torch.random.get_rng_state()
    check_task(task, data)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's RNG is untouched


def _flatten_all() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 2), nn.Flatten(0))  # (B, 2) -> (2B,)


BROKEN = {
    "model output": {"make_model": _flatten_all},
    "model": {"make_model": lambda: nn.Linear(3, 2)},
    "make_model": {"make_model": lambda: "not a module"},
    "loss": {"loss": lambda out, y: F.cross_entropy(out, y, reduction="none")},
    "metric accuracy": {"metrics": (
        Metric("loss", Direction.MINIMIZE, lambda o, y: F.cross_entropy(o, y, reduction="sum")),
        Metric("accuracy", Direction.MAXIMIZE, lambda o, y: o.argmax(1) == y))},
    "count": {"count": lambda y: 0.5},
    "valid_size": {"valid_size": 5000},
}


@pytest.mark.parametrize("part", sorted(BROKEN))
def test_broken_user_task_is_one_line_error(spirals, part):
    task, data = spirals
    broken = dataclasses.replace(task, **BROKEN[part])
    with pytest.raises(ConfigError) as info:
        check_task(broken, data)
    message = str(info.value)
    assert info.value.field == f"task two_spirals_mlp {part}" and "\n" not in message and "allowed:" in message


def test_non_scalar_loss_message_names_the_shape(spirals):
    task, data = spirals
    with pytest.raises(ConfigError) as info:
        check_task(dataclasses.replace(task, **BROKEN["loss"]), data)
    assert str(info.value) == ("invalid task two_spirals_mlp loss 'got shape (4,)'; "
                               "allowed: a 0-d tensor (the batch mean)")
    with pytest.raises(ConfigError, match="does not depend on the model's parameters"):
        check_task(dataclasses.replace(task, loss=lambda out, y: torch.tensor(0.5)), data)


BAD_FILE = textwrap.dedent("""
    import dataclasses
    from torch.nn import functional as F
    import importlib.util, pathlib

    def make_task():
        spec = importlib.util.spec_from_file_location("spirals_example", {example!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        task = module.make_task()
        return dataclasses.replace(task, loss=lambda out, y: F.cross_entropy(out, y, reduction="none"))
""")


def test_cli_rejects_an_invalid_user_task_with_exit_2(tmp_path):
    bad = tmp_path / "bad_task.py"
    bad.write_text(BAD_FILE.format(example=str(EXAMPLE)))
    result = CliRunner().invoke(app, ["compare", "--task", f"{bad}:make_task", "--optimizers", "adam",
                                      "--seeds", "1", "--epochs", "1", "--store", str(tmp_path / "s.db"),
                                      "--out", str(tmp_path / "out"), "--quiet"])
    sys.modules.pop("optbench_user_task_bad_task", None)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "task two_spirals_mlp loss" in lines[0] and "0-d tensor" in lines[0]
    assert not (tmp_path / "s.db").exists()
