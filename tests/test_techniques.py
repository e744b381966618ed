"""Every recipe technique, run through the one training loop; each test fails if the technique did nothing."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from optbench.core.errors import ConfigError
from optbench.core.spec import Recipe, RunStatus
from optbench.engine import split_data, train
from optbench.tasks import get_task


@pytest.fixture(scope="module")
def digits():
    task = get_task("digits_mlp")
    return task, split_data(task.load_data(), task.valid_size, seed=0, train_size=512)


def run(digits, **fields):
    task, data = digits
    base = dict(optimizer="sgd", hyperparams={"lr": 0.05}, batch_size=64, epochs=2)
    base.update(fields)
    result = train(task, data, Recipe.from_dict(base), seed=0)  # flat technique keys: the stored shorthand
    assert result.status is RunStatus.FINISHED, result.error
    return result


def metrics(result):
    return [e.metrics for e in result.epochs]


def test_cosine_schedule_with_warmup_sets_the_learning_rate(digits):
    result = run(digits, schedule="cosine", warmup_steps=4, epochs=3, schedule_params={"min_lr": 0.001})
    lrs = [e.lr for e in result.epochs]  # lr of each epoch's last step (8 steps per epoch)
    # after 4 warmup steps, cosine over the remaining 20 steps; the last step is cosine step 19
    last = 0.001 + (0.05 - 0.001) * (1 + math.cos(math.pi * 19 / 20)) / 2
    assert lrs[0] > lrs[1] > lrs[2] and lrs[2] == pytest.approx(last, rel=1e-9)
    assert metrics(result) != metrics(run(digits, epochs=3))


def test_step_schedule_in_epochs(digits):
    result = run(digits, schedule="step", schedule_params={"step_size_epochs": 1, "gamma": 0.1}, epochs=3)
    assert [e.lr for e in result.epochs] == pytest.approx([0.05, 0.005, 0.0005])


def test_label_smoothing_changes_training_but_reports_the_task_loss(digits):
    plain, smooth = run(digits), run(digits, label_smoothing=0.2)
    assert metrics(plain) != metrics(smooth)
    # train_loss is the unsmoothed cross-entropy: a smoothed objective would be much larger here
    assert smooth.epochs[-1].metrics["train_loss"] < plain.epochs[0].metrics["train_loss"] + 0.5


def test_l2_penalty_shrinks_the_weights(digits):
    task, data = digits

    def weight_norm(**fields):
        models = []
        original = task.make_model

        def capture():
            m = original()
            models.append(m)
            return m

        t = dataclasses.replace(task, make_model=capture)
        recipe = Recipe.from_dict(dict(optimizer="sgd", hyperparams={"lr": 0.05}, batch_size=64, epochs=3, **fields))
        assert train(t, data, recipe, seed=0).status is RunStatus.FINISHED
        return sum(float(p.detach().pow(2).sum()) for n, p in models[0].named_parameters() if n.endswith("weight"))

    assert weight_norm(penalty="l2", penalty_params={"strength": 0.5}) < 0.8 * weight_norm()


def test_early_stopping_stops_before_the_budget(digits):
    # lr so small that validation accuracy cannot improve by min_delta: stops after `patience` epochs
    result = run(digits, hyperparams={"lr": 1e-9}, epochs=10, early_stopping={"patience": 2, "min_delta": 0.05})
    assert len(result.epochs) == 3
    assert result.environment["early_stopping"] == {"stopped_epoch": 3, "best_epoch": 1}


def test_augmentation_changes_the_batches(digits):
    plain = run(digits)
    noisy = run(digits, augmentation={"gaussian_noise": {"std": 0.5}})
    assert metrics(plain) != metrics(noisy)
    again = run(digits, augmentation={"gaussian_noise": {"std": 0.5}})
    assert metrics(noisy) == metrics(again)  # seeded


@pytest.mark.parametrize("kind,params", [("ema", {"decay": 0.9}), ("swa", {})])
def test_weight_averaging_evaluates_the_average(digits, kind, params):
    plain, averaged = run(digits, epochs=3), run(digits, epochs=3, averaging=kind, averaging_params=params)
    assert [m["train_loss"] for m in metrics(plain)] == [m["train_loss"] for m in metrics(averaged)]
    assert [m["valid_loss"] for m in metrics(plain)] != [m["valid_loss"] for m in metrics(averaged)]


def test_bf16_autocast_runs_and_differs_from_fp32(digits):
    fp32, bf16 = run(digits), run(digits, precision="bf16")
    assert metrics(fp32) != metrics(bf16)
    assert bf16.epochs[-1].metrics["train_loss"] == pytest.approx(fp32.epochs[-1].metrics["train_loss"], rel=0.1)


def test_fp16_needs_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA present: fp16 is allowed")
    task = get_task("digits_mlp")
    data = split_data(task.load_data(), task.valid_size, seed=0, train_size=64)
    result = train(task, data, Recipe("sgd", {"lr": 0.1}, batch_size=64, precision="fp16"), seed=0)
    assert result.status is RunStatus.FAILED and "fp16" in result.error


def test_gradient_clipping_by_norm_limits_the_step(digits):
    huge = run(digits, hyperparams={"lr": 5.0}, epochs=1)
    clipped = run(digits, hyperparams={"lr": 5.0}, epochs=1, clip_norm=0.01)
    assert metrics(huge) != metrics(clipped)
    by_value = run(digits, hyperparams={"lr": 5.0}, epochs=1, clip_value=1e-4)
    assert metrics(by_value) != metrics(huge)


def test_gradient_accumulation_equals_the_big_batch(digits):
    one, accumulated = run(digits), run(digits, accumulation_steps=4)
    for a, b in zip(metrics(one), metrics(accumulated), strict=True):
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6)
    from optbench.engine.validate import check_recipe

    with pytest.raises(ConfigError, match="accumulation"):
        check_recipe(Recipe("sgd", batch_size=64, techniques=["accumulation:steps=3"]), digits[0])


def test_linear_batch_rule_scales_the_learning_rate(digits):
    result = run(digits, batch_size=128, batch_rule="linear", base_batch_size=64)
    assert result.hyperparams["lr"] == pytest.approx(0.1)
    assert result.epochs[-1].lr == pytest.approx(0.1)
    sqrt = run(digits, batch_size=256, batch_rule="sqrt", base_batch_size=64)
    assert sqrt.hyperparams["lr"] == pytest.approx(0.1)


def test_no_decay_for_biases_changes_training(digits):
    hp = {"lr": 0.05, "weight_decay": 0.5}
    assert metrics(run(digits, hyperparams=hp)) != metrics(run(digits, hyperparams=hp, decay_bias_and_norm=False))


@pytest.mark.parametrize("name,hp", [("lbfgs", {"lr": 0.5}), ("sam:sgd", {"lr": 0.05, "rho": 0.05}),
                                     ("gd", {"lr": 0.5})])
def test_closure_and_full_batch_optimizers_run_through_the_same_loop(digits, name, hp):
    result = run(digits, optimizer=name, hyperparams=hp, epochs=3)
    losses = [m["train_loss"] for m in metrics(result)]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    if name in ("gd", "lbfgs"):
        assert result.steps == 3  # full batch: one step per epoch


def test_image_augmentations_on_the_cnn_and_rejected_where_invalid(digits):
    from optbench.core.spec import Dataset, Split
    from optbench.engine.validate import check_recipe

    g = torch.Generator().manual_seed(0)
    fake = Dataset(Split(torch.randn(96, 1, 28, 28, generator=g), torch.randint(0, 10, (96,), generator=g)),
                   Split(torch.randn(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)))
    task = dataclasses.replace(get_task("fmnist_cnn3"), valid_size=16)
    data = split_data(fake, 16, seed=0)
    recipe = Recipe("adam", {"lr": 1e-3}, batch_size=32, techniques=["random_crop:padding=2", "horizontal_flip:p=0.5"])
    check_recipe(recipe, task)
    plain = train(task, data, Recipe("adam", {"lr": 1e-3}, batch_size=32), seed=0)
    augmented = train(task, data, recipe, seed=0)
    assert augmented.status is RunStatus.FINISHED, augmented.error
    assert metrics(plain) != metrics(augmented)
    with pytest.raises(ConfigError) as info:
        check_recipe(Recipe("adam", techniques=["horizontal_flip:p=0.5"]), digits[0])
    assert "gaussian_noise" in str(info.value)  # what digits allows
