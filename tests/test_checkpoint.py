"""Per-epoch checkpoints: a run stopped after any epoch and resumed from its checkpoint
ends bitwise equal to an uninterrupted run (CPU); bad checkpoints are ignored; a study killed with
SIGKILL continues its interrupted run from its last epoch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from optbench.core.errors import ConfigError, ConfigProblems
from optbench.core.spec import Recipe, RunResult, RunStatus, Task, run_id
from optbench.engine import split_data, train
from optbench.engine.checkpoint import CHECKPOINT_FORMAT, Checkpointer, CheckpointWarning
from optbench.study.config import ExecutionConfig, study_from_dict
from optbench.tasks import get_task
from optbench.tasks.classification import array_dataset_loader, classification_task


class Kill(BaseException):  # stands for SIGKILL inside one process (not an error)
    """Raised from ``on_epoch``: leaves ``train`` like a kill would (nothing caught, nothing stored)."""


def _conv_digits() -> Task:
    """digits as 1x8x8 images (channels_last batches), conv + batch norm + dropout."""
    def model() -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.3),
                             nn.Flatten(), nn.Linear(8 * 8 * 8, 10))
    return classification_task("conv_digits", "digits conv", model, array_dataset_loader("digits", 16.0, True),
                               target_accuracy=0.9, valid_size=200, recipe={},
                               augmentations=("random_crop", "horizontal_flip", "gaussian_noise"))


def _data(task: Task, train_size: int = 300):
    return split_data(task.load_data(), task.valid_size, seed=0, train_size=train_size)


def _curves(result: RunResult) -> list[tuple]:
    return [(e.epoch, e.step, e.lr, e.metrics) for e in result.epochs]


def _interrupt(task: Task, data, recipe: Recipe, seed: int, checkpoint: Checkpointer, after: int) -> None:
    """Train with checkpoints and stop (like a kill) while epoch ``after + 1`` is being recorded."""
    def on_epoch(record) -> None:
        if record.epoch == after + 1:
            raise Kill

    with pytest.raises(Kill):
        train(task, data, recipe, seed, checkpoint=checkpoint, on_epoch=on_epoch)
    assert checkpoint.path.is_file()


CASES = {  # name: (task, recipe, resume after these epochs)
    "adam-ema-dropout-noise": ("digits_mlp[dropout=0.3]", Recipe(
        "adam", {"lr": 1e-2}, batch_size=64, epochs=4, schedule="cosine", schedule_params={"warmup_steps": 6},
        techniques=["gaussian_noise:std=0.2", "ema:decay=0.9"]), (1, 2)),
    "momentum-swa-conv-bn-crop-flip": ("conv", Recipe(
        "momentum", {"lr": 0.05, "momentum": 0.9}, batch_size=32, epochs=4, schedule="cosine",
        schedule_params={"warmup_steps": 5},
        techniques=["random_crop:padding=1", "horizontal_flip:p=0.5", "clip_norm:max_norm=5.0", "swa:start=1"]), (2,)),
    "schedule-free-conv-bn": ("conv", Recipe(  # saved at x after evaluation; train() brings back y
        "pytorch_optimizer.schedulefreeadamw", {"lr": 1e-2}, batch_size=32, epochs=4), (1, 2)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_resume_after_each_epoch_is_bitwise_identical(tmp_path: Path, case: str) -> None:
    ref, recipe, resume_points = CASES[case]
    task = _conv_digits() if ref == "conv" else get_task(ref)
    data = _data(task, 200)
    full = train(task, data, recipe, seed=5)
    assert full.status is RunStatus.FINISHED and "checkpoint" not in full.environment
    for after in resume_points:  # e.g. 1: stopped while recording epoch 2, resumed after epoch 1
        checkpoint = Checkpointer(tmp_path / f"{after}.pt", full.run_id)
        _interrupt(task, data, recipe, 5, checkpoint, after)
        seen = []
        resumed = train(task, data, recipe, seed=5, checkpoint=checkpoint, on_epoch=seen.append)
        assert resumed.status is RunStatus.FINISHED, resumed.error
        assert [r.epoch for r in seen] == list(range(after + 1, 5))  # only the new epochs are emitted
        assert resumed.environment["checkpoint"] == {"resumed_epoch": after}
        assert _curves(resumed) == _curves(full)  # bitwise equal floats, every epoch
        assert resumed.steps == full.steps and resumed.hyperparams == full.hyperparams
        assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary file
        state = torch.load(checkpoint.path, weights_only=True)
        assert state["epoch"] == 4 and state["format"] == CHECKPOINT_FORMAT  # saved after the last epoch too
        # the checkpoint of the finished run: resuming trains nothing and gives the same result again
        again = train(task, data, recipe, seed=5, checkpoint=checkpoint, on_epoch=seen.append)
        assert _curves(again) == _curves(full) and len(seen) == 4 - after
        checkpoint.delete()
        assert not checkpoint.path.exists()


def test_final_weights_are_restored_exactly(tmp_path: Path) -> None:
    task = get_task("digits_mlp[dropout=0.2]")
    data = _data(task, 200)
    recipe = Recipe("adam", {"lr": 1e-2}, batch_size=50, epochs=3)
    full = Checkpointer(tmp_path / "full.pt", "r")
    train(task, data, recipe, seed=1, checkpoint=full)
    part = Checkpointer(tmp_path / "part.pt", "r")
    _interrupt(task, data, recipe, 1, part, after=1)
    train(task, data, recipe, seed=1, checkpoint=part)
    a, b = (torch.load(c.path, weights_only=True) for c in (full, part))
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert torch.equal(a["rng"], b["rng"]) and torch.equal(a["data_generator"], b["data_generator"])


def test_plateau_schedule_and_early_stopping_survive_a_resume(tmp_path: Path) -> None:
    task = get_task("digits_mlp")
    data = _data(task, 200)
    recipe = Recipe("sgd", {"lr": 1.0}, batch_size=100, epochs=12, schedule="reduce_on_plateau",
                    schedule_params={"monitor": "valid_loss", "patience": 0, "factor": 0.5, "threshold": 0.05},
                    techniques=["early_stopping:patience=3,min_delta=0.01"])
    full = train(task, data, recipe, seed=0)
    lrs = [e.lr for e in full.epochs]
    stopped = full.environment["early_stopping"]["stopped_epoch"]
    assert stopped < recipe.epochs  # early stopping ended the run
    cut = min(i for i in range(1, len(lrs)) if lrs[i] < lrs[0])  # the plateau cut the lr after epoch `cut`
    best = full.environment["early_stopping"]["best_epoch"]
    for after in (cut, best + 1):  # lr cut in the saved state; early stopping counting bad epochs
        assert after + 1 < stopped
        checkpoint = Checkpointer(tmp_path / f"{after}.pt", full.run_id)
        _interrupt(task, data, recipe, 0, checkpoint, after)
        saved = torch.load(checkpoint.path, weights_only=True)
        assert saved["schedule"]["schedule"]["lr"] == lrs[after]  # the next epoch's lr is in the checkpoint
        resumed = train(task, data, recipe, seed=0, checkpoint=checkpoint)
        assert _curves(resumed) == _curves(full)
        assert resumed.environment["early_stopping"] == full.environment["early_stopping"]
    saved = torch.load(checkpoint.path, weights_only=True)
    assert saved["stopped"] and saved["components"]["0:early_stopping"]["stopped_epoch"] == stopped
    assert saved["epoch"] == stopped
    # restored after the stop: no epoch trained, the stop reason kept
    seen = []
    again = train(task, data, recipe, seed=0, checkpoint=checkpoint, on_epoch=seen.append)
    assert not seen and _curves(again) == _curves(full)
    assert again.environment["early_stopping"] == full.environment["early_stopping"]


def _bad_files(tmp_path: Path, rid: str, good: Path) -> dict[str, Path]:
    files = {name: tmp_path / f"{name}.pt" for name in ("corrupt", "truncated", "foreign", "format", "pickle",
                                                        "unfit")}
    files["corrupt"].write_bytes(b"not a checkpoint at all")
    files["truncated"].write_bytes(good.read_bytes()[:2000])
    state = torch.load(good, weights_only=True)
    torch.save({**state, "run_id": "0123456789abcdef"}, files["foreign"])
    torch.save({**state, "format": CHECKPOINT_FORMAT + 1}, files["format"])
    torch.save({"format": CHECKPOINT_FORMAT, "run_id": rid, "epoch": ConfigError("x", 1, "y")}, files["pickle"])
    unfit = {**state, "run_id": rid}
    unfit["model"] = {k: torch.zeros(3) for k in state["model"]}  # right run id, tensors of another model
    torch.save(unfit, files["unfit"])
    return files


def test_corrupt_foreign_or_unfit_checkpoints_are_ignored(tmp_path: Path) -> None:
    task = get_task("digits_mlp")
    data = _data(task, 200)
    recipe = Recipe("adam", {"lr": 1e-2, "weight_decay": 1e-4}, batch_size=64, epochs=2,
                    techniques=["lr_scaling:rule=linear,base_batch_size=32"])
    rid = run_id(task.name, recipe, 0)
    plain = train(task, data, recipe, seed=0)
    good = Checkpointer(tmp_path / "good.pt", rid)
    _interrupt(task, data, recipe, 0, good, after=1)
    for name, path in _bad_files(tmp_path, rid, good.path).items():
        with pytest.warns(CheckpointWarning, match="ignoring checkpoint"):
            result = train(task, data, recipe, seed=0, checkpoint=Checkpointer(path, rid))
        assert result.status is RunStatus.FINISHED, (name, result.error)
        assert "checkpoint" not in result.environment, name  # started from scratch
        assert _curves(result) == _curves(plain), name
        assert result.hyperparams == plain.hyperparams, name  # the batch rule's lr is scaled once
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Checkpointer(tmp_path / "missing.pt", rid).load() is None  # no file: no warning


def test_partial_files_of_a_killed_save_are_removed(tmp_path: Path) -> None:
    checkpoint = Checkpointer(tmp_path / "r.pt", "r")
    checkpoint.save({"epoch": 1})
    partial = tmp_path / ".r.pt.abc123.tmp"
    partial.write_bytes(b"half a checkpoint")
    other = tmp_path / ".q.pt.abc123.tmp"  # another run's save in progress: not touched
    other.write_bytes(b"")
    assert checkpoint.load()["epoch"] == 1 and not partial.exists() and other.exists()
    partial.write_bytes(b"")
    checkpoint.delete()
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name]


def test_unwritable_checkpoint_directory_warns_and_the_run_goes_on(tmp_path: Path) -> None:
    task = get_task("digits_mlp")
    data = _data(task, 100)
    (tmp_path / "file").write_text("a file, not a directory")
    recipe = Recipe("sgd", {"lr": 0.1}, batch_size=50, epochs=1)
    with pytest.warns(CheckpointWarning, match="cannot be written"):
        result = train(task, data, recipe, seed=0, checkpoint=Checkpointer(tmp_path / "file" / "c.pt", "r"))
    assert result.status is RunStatus.FINISHED


# ----------------------------------------------------------------------------- study files


def _study(execution: dict | None = None) -> dict:
    data = {"study": {"name": "s", "protocol": "seed004", "tasks": ["digits_mlp"], "seeds": 1},
            "budget": {"epochs": 1, "train_size": 100}, "recipes": [{"optimizer": "sgd", "hyperparams": {"lr": 0.1}}]}
    if execution is not None:
        data["execution"] = execution
    return data


def test_execution_section_of_a_study_file(tmp_path: Path) -> None:
    assert study_from_dict(_study()).execution == ExecutionConfig(False, None)
    assert study_from_dict(_study()).execution.directory(tmp_path / "x.db") is None
    on = study_from_dict(_study({"checkpoints": True})).execution
    assert on.directory(tmp_path / "x.db") == Path(f"{tmp_path / 'x.db'}.checkpoints")
    assert on.directory(f"sqlite:///{tmp_path}/y.db") == Path(f"{tmp_path}/y.db.checkpoints")
    with pytest.raises(ConfigError, match="execution.checkpoint_dir") as info:
        on.directory("postgresql://u@localhost/db")
    assert "\n" not in str(info.value)
    given = study_from_dict(_study({"checkpoint_dir": "ck"})).execution  # a directory alone turns them on
    assert given == ExecutionConfig(True, "ck") and given.directory("postgresql://h/db") == Path("ck")
    assert study_from_dict(_study({"checkpoint_dir": "ck", "checkpoints": False})).execution.directory("a") is None
    with pytest.raises(ConfigProblems) as info:
        study_from_dict(_study({"checkpoints": "yes", "checkpoint_dir": 3, "every": 2}))
    paths = {p.path: p.message for p in info.value.problems}
    assert set(paths) == {"execution.checkpoints", "execution.checkpoint_dir", "execution.every"}
    unknown, _, allowed = paths["execution.every"].partition("; allowed: ")
    assert unknown == "unknown key" and set(allowed.split(", ")) == {"checkpoints", "checkpoint_dir", "save_weights",
                                                                     "weights_dir"}
    assert "'yes'" in paths["execution.checkpoints"] and "3" in paths["execution.checkpoint_dir"]


def test_study_with_checkpoints_cleans_up_after_itself(tmp_path: Path) -> None:
    from optbench.study.runner import run_study

    config = study_from_dict(_study({"checkpoints": True}))
    store = tmp_path / "r.db"
    outcome = run_study(config, store)
    assert [r.status for r in outcome.results] == [RunStatus.FINISHED]
    directory = Path(f"{store}.checkpoints")
    assert directory.is_dir() and not list(directory.iterdir())  # created, and emptied once stored


# ----------------------------------------------------------------------------- SIGKILL of a study

CHILD = textwrap.dedent('''
    import sys, torch
    from optbench.core.spec import Recipe
    from optbench.runs.store import open_store
    from optbench.runs.executor import EpochDone, execute_plan
    from optbench.runs.plan import plan_runs

    store, log, ckpt = sys.argv[1], sys.argv[2], (sys.argv[3] if sys.argv[3] != "-" else None)
    torch.set_num_threads(1)
    recipe = Recipe("momentum", {"lr": 0.05}, batch_size=32, epochs=EPOCHS, schedule="cosine",
                    schedule_params={"warmup_steps": 10}, techniques=["gaussian_noise:std=0.2", "ema:decay=0.9"])
    specs = plan_runs("digits_mlp[dropout=0.2]", "digits_mlp[dropout=0.2]", [recipe], [0])
    with open_store(store) as db:
        db.ensure_study("kill", {})
    out = open(log, "a", buffering=1)
    def on_event(event):
        if isinstance(event, EpochDone):
            out.write(f"epoch {event.record.epoch}\\n")
    execute_plan(store, "kill", specs, workers=1, device=torch.device("cpu"), on_event=on_event, checkpoint_dir=ckpt)
    out.write("end\\n")
''')
EPOCHS = 10


def _child(tmp_path: Path, store: Path, log: Path, ckpt: Path | None) -> subprocess.Popen[str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD.replace("EPOCHS", str(EPOCHS)))
    return subprocess.Popen([sys.executable, str(script), str(store), str(log), str(ckpt) if ckpt else "-"],
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _epochs(log: Path) -> list[int]:
    return [int(line.split()[1]) for line in log.read_text().splitlines() if line.startswith("epoch")] \
        if log.exists() else []


def _stored(store: Path) -> RunResult:
    from optbench.runs.store import open_store

    with open_store(str(store)) as db:
        (result,) = db.load_runs(study="kill")
    return result


def test_sigkill_mid_run_resumes_from_the_last_epoch(tmp_path: Path) -> None:
    ref_store, store, ckpt = tmp_path / "ref.db", tmp_path / "kill.db", tmp_path / "ckpt"
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    reference = _child(tmp_path, ref_store, tmp_path / "ref.log", None)  # one thread each: both at once
    proc = _child(tmp_path, store, first_log, ckpt)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None and len(_epochs(first_log)) < 4:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    before = _epochs(first_log)
    assert 4 <= len(before) < EPOCHS, before  # killed mid-run
    saved = torch.load(next(ckpt.glob("*.pt")), weights_only=True)
    assert saved["epoch"] >= len(before) - 1  # saved after each emitted epoch (or killed before saving it)

    proc = _child(tmp_path, store, second_log, ckpt)
    for child in (proc, reference):
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err[-2000:]
    after = _epochs(second_log)
    assert after == list(range(saved["epoch"] + 1, EPOCHS + 1))  # continued, not redone from epoch 1
    result, expected = _stored(store), _stored(ref_store)
    assert result.environment["checkpoint"] == {"resumed_epoch": saved["epoch"]}
    assert result.status is RunStatus.FINISHED and result.run_id == expected.run_id
    assert _curves(result) == _curves(expected)  # bitwise equal to the uninterrupted study
    assert not list(ckpt.iterdir())  # deleted once the result was stored



def _cli_app():
    import typer

    from optbench.cli import study as cli_study
    from optbench.cli.main import handle_errors

    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """optbench (test app)."""

    cli_study.register(app, handle_errors)
    return app


def _toml(execution: str = "") -> str:
    return ('[study]\nname = "c"\nprotocol = "seed004"\ntasks = ["digits_mlp"]\nseeds = 1\n'
            '[budget]\nepochs = 1\ntrain_size = 100\n[[recipes]]\noptimizer = "sgd"\nhyperparams = { lr = 0.1 }\n'
            + execution)


def test_cli_checkpoints_option_and_postgresql_without_a_directory(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from optbench.study import runner

    app, cli = _cli_app(), CliRunner()
    on = tmp_path / "on.toml"
    on.write_text(_toml("[execution]\ncheckpoints = true\n"))
    result = cli.invoke(app, ["study", "run", str(on), "--store", "postgresql+psycopg://u@127.0.0.1:1/none"])
    assert result.exit_code == 2 and "execution.checkpoint_dir" in result.output  # before any connection
    seen = {}

    def fake_run_study(config, store, **kwargs):
        seen.update(kwargs, execution=config.execution)
        raise ConfigError("stop", "here", "a test")

    monkeypatch.setattr(runner, "run_study", fake_run_study)
    plain = tmp_path / "plain.toml"
    plain.write_text(_toml())
    result = cli.invoke(app, ["study", "run", str(plain), "--checkpoints", str(tmp_path / "ck"), "-q"])
    assert result.exit_code == 2 and seen["checkpoint_dir"] == tmp_path / "ck"
    assert seen["execution"] == ExecutionConfig()
