from __future__ import annotations

import math

import pytest

from optbench.core.errors import ConfigError
from optbench.core.spec import Direction, EpochRecord, Recipe, RunResult, RunStatus, run_id


def test_direction_is_explicit():
    assert Direction.MAXIMIZE.better(0.9, 0.8) and not Direction.MINIMIZE.better(0.9, 0.8)
    assert Direction.MAXIMIZE.reached(0.85, 0.85) and Direction.MINIMIZE.reached(0.1, 0.2)


@pytest.mark.parametrize("kwargs,field", [
    ({"batch_size": 0}, "batch_size"), ({"epochs": -1}, "epochs"), ({"train_size": 0}, "train_size"),
    ({"hyperparams": {"lr": 0.0}}, "lr"), ({"hyperparams": {"lr": -1e-3}}, "lr"),
    ({"hyperparams": {"lr": math.nan}}, "hyperparameter lr"), ({"batch_size": 2.5}, "batch_size"),
])
def test_recipe_rejects_bad_numbers(kwargs, field):
    with pytest.raises(ConfigError) as info:
        Recipe(optimizer="adam", **kwargs)
    assert info.value.field == field


def test_recipe_round_trip_and_run_id_is_content_hash():
    r = Recipe("adam", {"lr": 1e-3, "betas": [0.9, 0.99]}, batch_size=64, epochs=2, train_size=100)
    assert Recipe.from_dict(r.to_dict()) == r
    same = Recipe("adam", {"betas": [0.9, 0.99], "lr": 1e-3}, batch_size=64, epochs=2, train_size=100)
    assert run_id("t", r, 0) == run_id("t", same, 0)
    assert len({run_id("t", r, 0), run_id("t", r, 1), run_id("u", r, 0)}) == 3
    with pytest.raises(ConfigError):
        Recipe.from_dict({**r.to_dict(), "momentum": 0.9})


def test_run_result_final_best_and_time_to_target():
    records = [EpochRecord(e, e * 10, {"valid_accuracy": a, "valid_loss": loss}, 1.0, 0.1, 100.0, 1e-3)
               for e, a, loss in [(1, 0.5, 2.0), (2, 0.8, 1.0), (3, 0.7, 1.5)]]
    r = RunResult("x", "t", Recipe("adam"), 0, RunStatus.FINISHED, epochs=records)
    assert r.final("valid_accuracy") == 0.7
    assert r.best("valid_accuracy", Direction.MAXIMIZE) == 0.8
    assert r.best("valid_loss", Direction.MINIMIZE) == 1.0
    assert r.epochs_to_target("valid_accuracy", 0.75, Direction.MAXIMIZE) == 2
    assert r.epochs_to_target("valid_accuracy", 0.9, Direction.MAXIMIZE) is None
    assert math.isnan(RunResult("y", "t", Recipe("adam"), 0, RunStatus.FAILED).final("valid_accuracy"))


def test_integer_and_float_learning_rates_are_the_same_run():
    assert run_id("t", Recipe("adam", {"lr": 1}), 0) == run_id("t", Recipe("adam", {"lr": 1.0}), 0)


def test_time_to_target_sums_training_seconds_only():
    records = [EpochRecord(e, e * 10, {"valid_accuracy": a}, 2.0, 5.0, 100.0, 1e-3)
               for e, a in [(1, 0.5), (2, 0.9), (3, 0.95)]]
    r = RunResult("x", "t", Recipe("adam"), 0, RunStatus.FINISHED, epochs=records)
    assert r.time_to_target("valid_accuracy", 0.85, Direction.MAXIMIZE) == (2, 20, 4.0)
    assert r.time_to_target("valid_accuracy", 0.99, Direction.MAXIMIZE) is None


def test_task_without_metric_direction_fails_at_construction():
    import pytest

    from optbench.core.errors import ConfigError
    from optbench.core.spec import DerivedMetric, Direction, Metric
    from optbench.tasks import get_task

    base = get_task("digits_mlp")
    import dataclasses

    bad = (Metric("loss", "minimize", base.metrics[0].batch_sum), base.metrics[1])
    with pytest.raises(ConfigError, match="direction"):
        dataclasses.replace(base, metrics=bad)
    with pytest.raises(ConfigError, match="source"):
        dataclasses.replace(base, derived=(DerivedMetric("ppl", Direction.MINIMIZE, "nope", float),))
    with pytest.raises(ConfigError, match="distinct"):
        dataclasses.replace(base, metrics=(*base.metrics, base.metrics[1]))
