"""``fsdp`` (fully_shard, ZeRO-3 style): the same per-epoch numbers as ``ddp``, each worker holding half the
parameters, gradients and optimizer state at two workers, and techniques it cannot run refused before start."""

from __future__ import annotations

import pytest

from optbench.core.errors import ConfigError
from optbench.core.spec import Recipe, RunStatus
from optbench.engine.distributed import DistributedConfig, parse_mode, run_distributed

RECIPE = Recipe("adam", {"lr": 0.01}, batch_size=16, epochs=2, train_size=512, techniques=["clip_norm:max_norm=1.0"])


@pytest.fixture(scope="module")
def runs() -> dict[str, object]:
    return {mode: run_distributed(DistributedConfig("digits_mlp", RECIPE, mode=mode, nproc=2, keep_state=True,
                                                    timeout=240)) for mode in ("ddp", "fsdp")}


def test_fsdp_equals_ddp_epoch_by_epoch(runs) -> None:
    ddp, fsdp = runs["ddp"], runs["fsdp"]
    assert fsdp.result.status is RunStatus.FINISHED, fsdp.result.error
    assert fsdp.result.steps == ddp.result.steps == 32
    for a, b in zip(fsdp.result.epochs, ddp.result.epochs, strict=True):
        for key in ("train_loss", "valid_loss", "valid_accuracy", "test_loss"):
            assert a.metrics[key] == pytest.approx(b.metrics[key], rel=1e-5, abs=1e-6), key
    assert fsdp.final_state.keys() == ddp.final_state.keys()
    assert max(float((fsdp.final_state[k] - ddp.final_state[k]).abs().max()) for k in ddp.final_state) < 1e-5


def test_each_worker_holds_half_the_state(runs) -> None:
    ddp = runs["ddp"].result.environment["memory_per_worker"]
    fsdp = runs["fsdp"].result.environment["memory_per_worker"]
    params = 4 * 9_610  # digits_mlp, float32
    steps = 4 * 4  # Adam's float32 step counter of each of the 4 parameter tensors
    assert ddp == {"parameters": params, "gradients": params, "optimizer_state": 2 * params + steps}
    assert fsdp["parameters"] == fsdp["gradients"] == params // 2  # every dimension 0 splits evenly in two
    assert fsdp["optimizer_state"] < ddp["optimizer_state"] / 2 + 64  # Adam's moments sharded (+ step counters)


def test_fsdp_is_a_mode_and_refuses_what_it_cannot_run() -> None:
    assert parse_mode("fsdp").name == "fsdp" and not parse_mode("fsdp").has_server
    with pytest.raises(ConfigError, match="technique in mode fsdp 'ema'"):
        run_distributed(DistributedConfig("digits_mlp", Recipe("sgd", {"lr": 0.1}, batch_size=16, epochs=1,
                                                               train_size=512, techniques=["ema"]), mode="fsdp"))


def test_the_report_lists_memory_per_worker(runs) -> None:
    from optbench.analysis.communication import worker_memory

    memory = {m.mode: m for m in worker_memory([r.result for r in runs.values()])}
    assert memory["fsdp"].total * 2 <= memory["ddp"].total + 64
    assert memory["ddp"].parameters == runs["ddp"].result.environment["memory_per_worker"]["parameters"]
