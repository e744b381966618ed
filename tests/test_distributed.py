"""Distributed modes on CPU with gloo (2 workers): equivalence, convergence, staleness, shutdown, failures, CLI."""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from optbench.core.errors import ConfigError
from optbench.core.spec import Recipe, RunStatus, Task
from optbench.engine import split_data, train
from optbench.engine.distributed import (
    DistributedConfig,
    DistributedError,
    parse_counts,
    parse_mode,
    parse_modes,
    run_distributed,
)
from optbench.optim import create_optimizer
from optbench.runs.store import open_store
from optbench.tasks import get_task
from optbench.tasks.classification import array_dataset_loader, classification_task

N, B, TRAIN = 2, 16, 512  # 512 / (2 * 16) = 16 steps per epoch, no incomplete global batch
RECIPE = Recipe("sgd", {"lr": 0.1}, batch_size=B, epochs=2, train_size=TRAIN)
THIS = Path(__file__).resolve()


# ---------------------------------------------------------------- tasks loaded by the child processes
def digits_logreg() -> Task:
    """Multinomial logistic regression on digits: a convex problem."""
    return classification_task("digits_logreg", "logistic regression on digits",
                               lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 10)),
                               array_dataset_loader("digits", 16.0, add_channel=False), target_accuracy=0.9,
                               valid_size=200, recipe={})


class _Fault(nn.Module):
    """Identity that misbehaves on the 3rd training forward of rank 1: exits hard or hangs."""

    def __init__(self, action: str) -> None:
        super().__init__()
        self.action, self.calls = action, 0

    def forward(self, x):
        import torch.distributed as dist

        if self.training and dist.is_initialized() and dist.get_rank() == 1:
            self.calls += 1
            if self.calls == 3 and self.action == "crash":
                os._exit(7)  # a hard crash: no Python exception, no cleanup
            if self.calls == 3 and self.action == "hang":
                time.sleep(600)
        return x


def _faulty(action: str) -> Task:
    return classification_task(f"digits_{action}", action,
                               lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 10), _Fault(action)),
                               array_dataset_loader("digits", 16.0, add_channel=False), target_accuracy=0.9,
                               valid_size=200, recipe={})


def crashing_digits() -> Task:
    return _faulty("crash")


def hanging_digits() -> Task:
    return _faulty("hang")


# ---------------------------------------------------------------- helpers
def _leftovers() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("optbench-dist-*")}


def _reference_state(batch: int) -> dict[str, torch.Tensor]:
    """Plain single-process SGD on digits_mlp with batch ``batch``, same seed, split and data order."""
    task = get_task("digits_mlp")
    data = split_data(task.load_data(), task.valid_size, 0, TRAIN)
    torch.manual_seed(0)
    model = task.make_model()
    optimizer = create_optimizer("sgd", model.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(0)
    for _ in range(RECIPE.epochs):
        for index in torch.randperm(len(data.train), generator=generator).split(batch):
            optimizer.zero_grad()
            task.loss(model(data.train.x[index]), data.train.y[index]).backward()
            optimizer.step()
    return model.state_dict()


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def runs() -> dict[str, object]:
    before = _leftovers()
    out = {mode: run_distributed(DistributedConfig("digits_mlp", RECIPE, mode=mode, nproc=N, keep_state=True,
                                                   timeout=240))
           for mode in ("ddp", "ps-sync", "ps-ssp:0", "ps-ssp:2")}
    out["leftovers"] = _leftovers() - before
    return out


# ---------------------------------------------------------------- correctness
def test_ddp_equals_single_process_training_with_n_times_the_batch(runs):
    ddp = runs["ddp"]
    assert ddp.result.status is RunStatus.FINISHED and ddp.result.steps == 2 * TRAIN // (N * B)
    assert _max_diff(ddp.final_state, _reference_state(N * B)) < 1e-5
    # ... and to optbench's own single-process loop: same validation numbers every epoch
    task = get_task("digits_mlp")
    single = train(task, split_data(task.load_data(), task.valid_size, 0, TRAIN),
                   Recipe("sgd", {"lr": 0.1}, batch_size=N * B, epochs=2, train_size=TRAIN), seed=0)
    for a, b in zip(ddp.result.epochs, single.epochs, strict=True):
        for key in ("valid_loss", "valid_accuracy", "test_loss", "train_loss"):
            assert a.metrics[key] == pytest.approx(b.metrics[key], abs=1e-5), key


def test_ps_sync_equals_ddp_and_ssp0_equals_ps_sync(runs):
    assert _max_diff(runs["ps-sync"].final_state, runs["ddp"].final_state) < 1e-5
    assert _max_diff(runs["ps-ssp:0"].final_state, runs["ps-sync"].final_state) < 1e-5
    for mode in ("ps-sync", "ps-ssp:0"):
        assert runs[mode].staleness == {0: N * runs[mode].result.steps}  # every gradient on fresh weights
        assert runs[mode].server["updates"] == runs[mode].result.steps


def test_ssp_staleness_is_bounded_and_steps_are_recorded(runs):
    ssp = runs["ps-ssp:2"]
    assert ssp.result.status is RunStatus.FINISHED
    assert max(ssp.staleness) <= 2 and sum(ssp.staleness.values()) == N * ssp.result.steps
    for name in ("ddp", "ps-sync", "ps-ssp:2"):
        run = runs[name]
        assert len(run.steps) == N * run.result.steps and {s.worker for s in run.steps} == {0, 1}
        for s in run.steps:
            assert s.samples == B and s.step_seconds > 0 and min(s.compute_seconds, s.comm_seconds,
                                                                   s.wait_seconds) >= 0
            parts = s.compute_seconds + s.wait_seconds + (0 if name == "ddp" else s.comm_seconds)
            assert parts == pytest.approx(s.step_seconds, abs=1e-6)  # stored to 0.1 us
        assert run.samples_per_second > 0 and run.result.epochs[-1].metrics["valid_accuracy"] > 0.5
        stored = run.result.environment["distributed"]
        assert stored["mode"] == name and len(stored["steps"]["step"]) == len(run.steps)
    assert runs["ddp"].staleness == {} and runs["ddp"].server is None


def test_processes_shut_down_cleanly(runs):
    assert runs["leftovers"] == set()  # temporary directories removed
    assert multiprocessing.active_children() == []  # every process reaped


def test_ps_async_converges_on_a_convex_task():
    recipe = Recipe("sgd", {"lr": 0.2}, batch_size=16, epochs=5)
    run = run_distributed(DistributedConfig(f"{THIS}:digits_logreg", recipe, mode="ps-async", nproc=N, timeout=240))
    losses = [e.metrics["train_loss"] for e in run.result.epochs]
    assert run.result.status is RunStatus.FINISHED and losses[-1] < losses[0] < 2.3
    assert run.result.epochs[-1].metrics["valid_accuracy"] > 0.9
    assert run.server["updates"] == sum(run.staleness.values()) == N * run.result.steps  # one update per gradient


# ---------------------------------------------------------------- failures end the job
def test_crashed_worker_ends_the_job_with_a_clear_error():
    before, started = _leftovers(), time.monotonic()
    config = DistributedConfig(f"{THIS}:crashing_digits", RECIPE, mode="ps-sync", nproc=N, timeout=240)
    exited = r"rank 1 \(worker 0\) exited with code 7 without a Python error"
    with pytest.raises(DistributedError, match=exited) as info:
        run_distributed(config)
    assert info.value.rank == 1 and "\n" not in str(info.value)
    assert time.monotonic() - started < 60  # no waiting for any timeout
    assert _leftovers() == before and multiprocessing.active_children() == []


def test_hung_worker_ends_the_job_at_the_timeout():
    started = time.monotonic()
    config = DistributedConfig(f"{THIS}:hanging_digits", RECIPE, mode="ddp", nproc=N, timeout=5)
    with pytest.raises(DistributedError, match="timed out after 5 s"):
        run_distributed(config)
    assert time.monotonic() - started < 20 and multiprocessing.active_children() == []


def test_bad_input_found_inside_a_process_is_a_config_error():
    config = DistributedConfig("digits_mlp", Recipe("sgd", {"lr": 0.1}, batch_size=4000), mode="ddp", nproc=N)
    with pytest.raises(ConfigError, match="batch_size"):
        run_distributed(config)


def test_bad_input_is_rejected_before_any_process_starts():
    with pytest.raises(ConfigError, match="mode"):
        DistributedConfig("digits_mlp", RECIPE, mode="ps-ssp")
    with pytest.raises(ConfigError, match="train_size"):
        run_distributed(DistributedConfig("digits_mlp", Recipe("sgd", {"lr": 0.1}, batch_size=64, train_size=100)))
    with pytest.raises(ConfigError, match="optimizer"):
        run_distributed(DistributedConfig("digits_mlp", Recipe("nosuch", {"lr": 0.1})))
    assert parse_mode("ps-ssp:3").staleness == 3 and parse_mode("PS-SYNC").name == "ps-sync"
    assert [m.name for m in parse_modes("ddp, ps-ssp:0")] == ["ddp", "ps-ssp:0"]
    assert parse_counts("4,1,2,2") == (1, 2, 4)
    for bad in ("ddp:1", "ps-ssp:-1", "ps-ssp:x", "allreduce"):
        with pytest.raises(ConfigError):
            parse_mode(bad)


# ---------------------------------------------------------------- command line
def test_run_and_scale_commands_store_and_resume(distributed_cli, tmp_path):
    app, runner = distributed_cli
    db = str(tmp_path / "dist.db")
    common = ["--task", "digits_mlp", "--optimizer", "sgd", "--lr", "0.1", "--batch-size", "16", "--epochs", "1",
              "--train-size", "512", "--store", db]
    result = runner.invoke(app, ["run", "--mode", "ddp", "--nproc", "2", *common])
    assert result.exit_code == 0, result.output
    assert "samples/s" in result.output and "time-to-target" in result.output
    result = runner.invoke(app, ["scale", "--modes", "ddp,ps-sync", "--nproc", "2", *common])
    assert result.exit_code == 0, result.output
    assert "ddp x2: already stored" in result.output  # the `run` above is the same job
    assert "ddp / ps-sync" in result.output and "time-to-target" in result.output
    with open_store(db) as store:
        runs = store.load_runs()
        assert sorted(r.environment["distributed"]["mode"] for r in runs) == ["ddp", "ps-sync"]
        assert all(r.status is RunStatus.FINISHED for r in runs)


def test_scale_predict_prints_models_and_published_check(distributed_cli):
    app, runner = distributed_cli
    result = runner.invoke(app, ["scale", "--predict", "--models", "vgg16,resnet101", "--bandwidth", "25",
                                 "--nproc", "1,16,512"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "vgg16" in result.output and "resnet101" in result.output and "predicted vs published" in result.output
    assert "68%" in result.output and "90%" in result.output


@pytest.mark.parametrize("args,field", [
    (["run", "--mode", "ring"], "--mode"),
    (["run", "--nproc", "0"], "--nproc"),
    (["run", "--task", "digits_mlp", "--train-size", "lots"], "--train-size"),
    (["run", "--task", "digits_mlp", "--batch-size", "5000"], "--batch-size"),
    (["scale", "--modes", "ddp,ddp"], "--modes"),
    (["scale", "--nproc", "1,x"], "--nproc"),
    (["scale", "--predict", "--models", "alexnet"], "model"),
    (["scale", "--predict", "--bandwidth", "-5"], "--bandwidth"),
    (["scale", "--predict", "--overlap", "2"], "--overlap"),
])
def test_bad_command_input_is_one_line_exit_2(distributed_cli, tmp_path, args, field):
    app, runner = distributed_cli
    result = runner.invoke(app, [*args, "--store", str(tmp_path / "x.db")] if args[0] == "run" else args)
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert line.startswith("optbench: error: invalid") and field in line and "\n" not in line
    assert not (tmp_path / "x.db").exists()
