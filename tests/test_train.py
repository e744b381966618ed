"""The training loop: metrics, determinism, divergence, failure."""

from __future__ import annotations

import torch

from optbench.core.spec import Recipe, RunStatus
from optbench.engine import split_data, train
from optbench.tasks import get_task


def _digits(train_size=400):
    task = get_task("digits_mlp")
    return task, split_data(task.load_data(), task.valid_size, seed=0, train_size=train_size)


def test_metrics_timings_and_learning():
    task, data = _digits()
    seen = []
    result = train(task, data, Recipe("adam", {"lr": 1e-2}, batch_size=64, epochs=3), seed=0, on_epoch=seen.append)
    assert result.status is RunStatus.FINISHED
    assert [r.epoch for r in result.epochs] == [1, 2, 3] and seen == result.epochs
    assert result.steps == 3 * 7 and result.epochs[-1].step == 21  # ceil(400 / 64) = 7
    first, last = result.epochs[0].metrics, result.epochs[-1].metrics
    assert last["train_loss"] < first["train_loss"]
    assert last["valid_accuracy"] > 0.8
    for r in result.epochs:
        assert r.train_seconds > 0 and r.eval_seconds > 0 and r.lr == 1e-2
        assert abs(r.samples_per_second - 400 / r.train_seconds) < 1e-6 * r.samples_per_second
    assert result.hyperparams["lr"] == 1e-2 and "betas" in result.hyperparams
    assert result.environment["threads"] == torch.get_num_threads() and result.environment["torch"]


def test_same_seed_same_numbers_different_seed_different():
    task, data = _digits(200)
    recipe = Recipe("momentum", {"lr": 0.05}, batch_size=32, epochs=2)
    a, b, c = (train(task, data, recipe, seed=s) for s in (1, 1, 2))
    assert [e.metrics for e in a.epochs] == [e.metrics for e in b.epochs]  # bitwise equal floats
    assert [e.metrics for e in a.epochs] != [e.metrics for e in c.epochs]


def test_caller_rng_state_is_restored():
    task, data = _digits(64)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(task, data, Recipe("sgd", {"lr": 0.1}, batch_size=32, epochs=1), seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_huge_learning_rate_is_recorded_as_diverged():
    task, data = _digits()
    result = train(task, data, Recipe("sgd", {"lr": 1e12}, batch_size=64, epochs=3), seed=0)
    assert result.status is RunStatus.DIVERGED
    assert "non-finite" in result.error
    assert len(result.epochs) < 3


def test_exception_is_recorded_as_failed():
    task, data = _digits(64)
    result = train(task, data, Recipe("adam", {"lr": 1e-3, "no_such_hyperparameter": 1}, batch_size=32), seed=0)
    assert result.status is RunStatus.FAILED
    assert "no_such_hyperparameter" in result.error


def test_on_epoch_may_prune_the_run_after_an_epoch():
    from optbench.engine import Pruned

    task, data = _digits(128)

    def prune_at_two(record):
        if record.epoch == 2:
            raise Pruned("below the median")

    result = train(task, data, Recipe("adam", {"lr": 1e-2}, batch_size=64, epochs=5), seed=0, on_epoch=prune_at_two)
    assert result.status is RunStatus.PRUNED
    assert [e.epoch for e in result.epochs] == [1, 2] and "below the median" in result.error


def test_derived_metric_is_reported_on_every_split():
    import dataclasses
    import math

    from optbench.core.spec import PERPLEXITY, Target

    task, data = _digits(128)
    task = dataclasses.replace(task, derived=(PERPLEXITY,), target=Target("valid", "perplexity", 2.0))
    assert task.direction("valid_perplexity").value == "minimize"
    result = train(task, data, Recipe("adam", {"lr": 1e-2}, batch_size=64, epochs=2), seed=0)
    for split in ("train", "valid", "test"):
        m = result.epochs[-1].metrics
        assert math.isclose(m[f"{split}_perplexity"], math.exp(m[f"{split}_loss"]), rel_tol=1e-12)


def test_task_l2_equals_the_recipe_l2_penalty_on_weights():
    import dataclasses

    task, data = _digits(128)
    recipe = Recipe("sgd", {"lr": 0.1}, batch_size=64, epochs=2)
    with_task_l2 = train(dataclasses.replace(task, l2=0.01), data, recipe, seed=0)
    with_penalty = train(task, data, dataclasses.replace(
        recipe, techniques=["l2:strength=0.01,exclude_bias_and_norm=true"]), seed=0)
    plain = train(task, data, recipe, seed=0)
    assert [e.metrics for e in with_task_l2.epochs] == [e.metrics for e in with_penalty.epochs]
    assert with_task_l2.epochs[-1].metrics != plain.epochs[-1].metrics


def test_time_budget_ends_the_run_after_the_epoch_that_spent_it():
    task, data = _digits(128)
    result = train(task, data, Recipe("adam", {"lr": 1e-2}, batch_size=64, epochs=50, max_train_seconds=1e-9), seed=0)
    assert result.status is RunStatus.FINISHED and len(result.epochs) == 1
    assert result.environment["time_budget"]["stopped_epoch"] == 1
