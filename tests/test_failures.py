"""A worker killed in the middle of a distributed job (SIGKILL, injected with ``kill_worker``):
``ps-async``/``ps-ssp`` finish with the remaining workers and record the loss; ``ps-sync`` and ``ddp``
fail cleanly and quickly, or restart from their last checkpoint (local launcher and ``torchrun``)
and end exactly as an undisturbed run; bad input is refused before any process starts."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch

from optbench.core.errors import ConfigError
from optbench.core.spec import Recipe, RunStatus
from optbench.engine.distributed import DistributedConfig, DistributedError, parse_mode, run_distributed
from optbench.engine.distributed.config import distributed_run_id, parse_kill_worker
from optbench.engine.distributed.failures import Membership, WorkerLost, transport_error
from optbench.runs.store import open_store

N, B, TRAIN = 2, 16, 512  # 16 steps per epoch
RECIPE = Recipe("sgd", {"lr": 0.1}, batch_size=B, epochs=3, train_size=TRAIN)
KILL = (1, 20)  # worker 1 dies before its step 20: in epoch 2, after 20 gradients


def _config(mode: str, kill: tuple[int, int] | None = KILL, nproc: int = N) -> DistributedConfig:
    return DistributedConfig("digits_mlp", RECIPE, mode=mode, nproc=nproc, kill_worker=kill, timeout=240,
                             comm_timeout=60)


@pytest.fixture(scope="module")
def async_runs() -> dict[str, object]:
    return {"calm": run_distributed(_config("ps-async", None)), "killed": run_distributed(_config("ps-async"))}


def test_ps_async_finishes_without_the_killed_worker_and_records_it(async_runs):
    calm, killed = async_runs["calm"], async_runs["killed"]
    assert killed.result.status is RunStatus.FINISHED and len(killed.result.epochs) == 3
    (lost,) = killed.server["lost_workers"]
    assert (lost["worker"], lost["rank"], lost["epoch"], lost["pushes"]) == (1, 2, 2, 20)
    assert lost["exit"] == "was killed by signal SIGKILL" and 0 <= lost["detect_seconds"] < 30
    # epoch 1: 2 x 16 gradients; epoch 2: 16 + the 4 worker 1 sent before dying; epoch 3: 16
    assert killed.server["gradients_received"] == killed.server["updates"] == 32 + 20 + 16
    assert killed.server["gradients_planned"] == calm.server["gradients_received"] == 96
    assert {s.worker for s in killed.steps} == {0}  # the dead worker's own records died with it
    # the remaining worker kept training: the model still learns, close to the undisturbed run
    calm_acc = calm.result.epochs[-1].metrics["valid_accuracy"]
    killed_acc = killed.result.epochs[-1].metrics["valid_accuracy"]
    assert killed_acc > 0.8 and calm_acc > 0.8
    assert killed.result.run_id != calm.result.run_id
    assert killed.result.environment["distributed"]["kill_worker"] == [1, 20]
    assert calm.server["lost_workers"] == [] and multiprocessing.active_children() == []


def test_ps_ssp_finishes_without_the_killed_worker_within_its_bound():
    run = run_distributed(_config("ps-ssp:1", kill=(0, 10)))
    assert run.result.status is RunStatus.FINISHED and len(run.result.epochs) == 3
    (lost,) = run.server["lost_workers"]
    assert (lost["worker"], lost["epoch"], lost["pushes"]) == (0, 1, 10)
    assert max(run.staleness) <= 1  # the bound still holds for every applied gradient
    assert run.server["updates"] == 48  # every clock was completed (by the remaining worker after the loss)


@pytest.mark.parametrize("mode", ["ps-sync", "ddp"])
def test_synchronous_modes_fail_cleanly_and_quickly(mode):
    started = time.monotonic()
    world_rank = 2 if parse_mode(mode).has_server else 1
    with pytest.raises(DistributedError, match=rf"rank {world_rank} \(worker 1\) was killed by signal SIGKILL"):
        run_distributed(_config(mode))
    assert time.monotonic() - started < 60  # no waiting for a timeout
    assert multiprocessing.active_children() == []


def test_losing_the_only_worker_fails_the_job():
    with pytest.raises(DistributedError, match="every worker was lost"):
        run_distributed(_config("ps-async", kill=(0, 5), nproc=1))


def test_membership_records_or_refuses_a_loss():
    ctx = SimpleNamespace(world_size=3, mode=parse_mode("ps-async"))
    members = Membership(ctx, tolerant=True)  # type: ignore[arg-type]
    members.epoch = 4
    members.lose(2, RuntimeError("[/x/gloo/pair.cc:553] Connection closed by peer [1.2.3.4]:5. This is typically"))
    assert members.live == [1] and members.records()[0]["error"] == "Connection closed by peer [1.2.3.4]:5"
    assert members.records()[0]["epoch"] == 4
    with pytest.raises(WorkerLost, match="every worker was lost"):
        members.lose(1, RuntimeError("gone"))
    strict = Membership(SimpleNamespace(world_size=3, mode=parse_mode("ps-sync")), tolerant=False)  # type: ignore[arg-type]
    with pytest.raises(WorkerLost, match="mode ps-sync needs every worker"):
        strict.lose(1, RuntimeError("gone"))
    assert transport_error(RuntimeError("")) == "RuntimeError"


def test_kill_worker_input_is_checked_and_part_of_the_run_identity():
    assert parse_kill_worker(" 1@40 ", 2) == (1, 40)
    for bad in ("1", "a@3", "2@5", "-1@5", "0@0", "1@2@3"):
        with pytest.raises(ConfigError, match="kill"):
            parse_kill_worker(bad, 2)
    with pytest.raises(ConfigError, match="kill_worker"):
        DistributedConfig("digits_mlp", RECIPE, mode="ps-async", nproc=2, kill_worker=(3, 1))
    calm = distributed_run_id("digits_mlp", RECIPE, 0, "ps-async", 2)
    assert calm == distributed_run_id("digits_mlp", RECIPE, 0, "ps-async", 2, None)  # stored ids unchanged
    assert calm != distributed_run_id("digits_mlp", RECIPE, 0, "ps-async", 2, (1, 20))


def test_run_command_injects_the_failure_and_stores_the_loss(distributed_cli, tmp_path):
    app, runner = distributed_cli
    db = str(tmp_path / "dist.db")
    result = runner.invoke(app, ["run", "--mode", "ps-async", "--nproc", "2", "--task", "digits_mlp", "--optimizer",
                                 "sgd", "--lr", "0.1", "--batch-size", "16", "--epochs", "2", "--train-size", "512",
                                 "--kill-worker", "0@24", "--store", db, "--quiet"])
    assert result.exit_code == 0, result.output
    assert "lost worker 0 in epoch 2 after 24 gradients (was killed by signal SIGKILL" in result.output
    assert "gradients received 56 of 64 planned" in result.output
    with open_store(db) as store:
        (run,) = store.load_runs()
    record = run.environment["distributed"]
    assert record["kill_worker"] == [0, 24] and record["server"]["lost_workers"][0]["worker"] == 0


@pytest.mark.parametrize("value", ["5@10", "x", "1@0"])
def test_bad_kill_worker_is_one_line_exit_2(distributed_cli, tmp_path, value):
    app, runner = distributed_cli
    result = runner.invoke(app, ["run", "--mode", "ps-async", "--task", "digits_mlp", "--kill-worker", value,
                                 "--store", str(tmp_path / "x.db")])
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert line.startswith("optbench: error: invalid") and "kill" in line and "\n" not in line
    assert not (tmp_path / "x.db").exists()


# ---------------------------------------------------------------- elastic restart of the synchronous modes
@pytest.mark.parametrize("mode", ["ddp", "ps-sync"])
def test_synchronous_job_restarts_from_its_checkpoint_and_ends_as_if_undisturbed(mode):
    calm = run_distributed(dataclasses.replace(_config(mode, None), keep_state=True))
    restarted = run_distributed(dataclasses.replace(_config(mode), keep_state=True, max_restarts=1))
    assert restarted.result.status is RunStatus.FINISHED and len(restarted.result.epochs) == 3
    elastic = restarted.result.environment["elastic"]
    assert (elastic["attempt"], elastic["restarts"], elastic["resumed_epoch"]) == (1, 1, 1)
    assert "(worker 1) was killed by signal SIGKILL" in elastic["failures"][0]["error"]
    assert elastic["steps_redone"] == 20 - 16 and 0 < elastic["recover_seconds"] < 60
    # the restored run computes exactly what the undisturbed one computes (CPU, same seeds)
    for key, value in calm.final_state.items():
        assert torch.equal(value, restarted.final_state[key]), key
    assert [e.metrics["valid_loss"] for e in calm.result.epochs] == \
        [e.metrics["valid_loss"] for e in restarted.result.epochs]
    assert multiprocessing.active_children() == []


def test_torchrun_restarts_a_killed_ddp_job_from_its_checkpoint(tmp_path):
    db, checkpoints = tmp_path / "runs.db", tmp_path / "ck"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "--max-restarts", "1", "-m", "optbench", "run", "--mode", "ddp", "--task", "digits_mlp",
                           "--optimizer", "sgd", "--lr", "0.1", "--batch-size", "16", "--epochs", "3",
                           "--train-size", "512", "--kill-worker", "1@20", "--checkpoint-dir", str(checkpoints),
                           "--store", str(db), "--quiet"], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "attempt 1 of the job (restarted): resumed after epoch 1" in done.stdout
    with open_store(str(db)) as store:
        (run,) = store.load_runs()
    assert run.status is RunStatus.FINISHED and len(run.epochs) == 3
    assert run.environment["elastic"]["resumed_epoch"] == 1
    assert list(checkpoints.iterdir()) == []  # the finished job removed its checkpoints


def test_restarts_are_refused_where_the_mode_cannot_use_them():
    for mode, field in (("ps-async", "max_restarts"), ("fsdp", "max_restarts"), ("ddp+powersgd:2", "max_restarts")):
        with pytest.raises(ConfigError, match=field):
            DistributedConfig("digits_mlp", RECIPE, mode=mode, nproc=2, max_restarts=1)
    with pytest.raises(ConfigError, match="checkpoint_dir"):
        DistributedConfig("digits_mlp", RECIPE, mode="ps-ssp:1", nproc=2, checkpoint_dir="/tmp/x")
    with pytest.raises(ConfigError, match="max_restarts"):
        DistributedConfig("digits_mlp", RECIPE, mode="ddp", nproc=2, max_restarts=-1)
