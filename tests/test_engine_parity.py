"""One step in every engine: for every registered technique, single-process training, ``ddp`` with one
worker and ``ps-sync`` with one worker give the same per-epoch numbers (1e-5 relative); the same for
a task with its own L2 and a recipe combining an L2 penalty, label smoothing, clipping and a cosine
schedule. With two DDP workers the averaged gradient equals the single-process gradient of the
combined batch. Every run here goes through the real engines (``optbench.train`` and
``run_distributed``); nothing re-implements a step.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from optbench.core.spec import Recipe, RunStatus, Task
from optbench.engine import split_data, train
from optbench.engine.distributed import DistributedConfig, run_distributed
from optbench.tasks.classification import array_dataset_loader, classification_task
from optbench.techniques.registry import techniques

THIS = Path(__file__).resolve()
TRAIN, BATCH, EPOCHS = 192, 32, 2  # 6 steps per epoch, no incomplete batch
KEYS = ("train_loss", "train_accuracy", "valid_loss", "valid_accuracy", "test_loss", "test_accuracy")

#: One valid parameter set per registered technique; a technique without an entry fails
#: test_every_technique_has_a_parity_case, so adding a technique means adding its case here.
EXAMPLES: dict[str, str] = {
    "l1": "l1:strength=0.001",
    "l2": "l2:strength=0.01",
    "elastic_net": "elastic_net:strength=0.001,l1_ratio=0.3",
    "label_smoothing": "label_smoothing:epsilon=0.1",
    "random_crop": "random_crop:padding=1",
    "horizontal_flip": "horizontal_flip:p=0.5",
    "gaussian_noise": "gaussian_noise:std=0.3",
    "swa": "swa:start=1",
    "ema": "ema:decay=0.9",
    "clip_norm": "clip_norm:max_norm=0.5",
    "clip_value": "clip_value:clip_value=0.01",
    "accumulation": "accumulation:steps=4",
    "lr_scaling": "lr_scaling:rule=linear,base_batch_size=16",
    "no_decay_bias_norm": "no_decay_bias_norm",
    "early_stopping": "early_stopping:patience=1,min_delta=0.5",
    "gradient_noise": "gradient_noise:eta=0.01",
    "magnitude_pruning": "magnitude_pruning:sparsity=0.7,scope=global,end_epoch=1,frequency=2,include_last=true",
    "snip_pruning": "snip_pruning:sparsity=0.5,include_last=true",
    "structured_pruning": "structured_pruning:sparsity=0.5,epoch=1",
    "sparse_2_4": "sparse_2_4:dense_after=0.5,include_last=true",
    "low_rank": "low_rank:rank=3,layers=4",
    "qat": "qat",
    "ptq_dynamic": "ptq_dynamic",
    "freeze": "freeze:layers=^0\\.",
    "discriminative_lr": "discriminative_lr:factor=2.6",
    "model_cost": "model_cost",
}

#: Techniques without a parity case, and why: they start from or learn from a stored run's weights,
#: which the distributed engines are not given yet (they are refused there before anything starts),
#: or their int8 evaluation magnifies the last-bit differences of 2 vs 1 training threads.
WITHOUT_CASE: dict[str, str] = {
    "distillation": "needs a stored teacher run",
    "init_from": "needs a stored run",
    "ewc": "needs a stored run",
    "lwf": "needs a stored run",
    "gradual_unfreezing": "single engine only",
    "ptq_static": "int8 rounding of weights trained on 2 vs 1 threads (1.9e-5 relative)",
}


# ---------------------------------------------------------------- tasks loaded by the child processes
def digits_images() -> Task:
    """Digits as 1x8x8 images through a small conv net with batch norm (every augmentation valid)."""
    def model() -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                             nn.Linear(4 * 8 * 8, 10))

    return classification_task("digits_images", "digits 1x8x8, conv + batch norm", model,
                               array_dataset_loader("digits", 16.0, add_channel=True), target_accuracy=0.9,
                               valid_size=200, recipe={},
                               augmentations=("random_crop", "horizontal_flip", "gaussian_noise"))


def digits_images_no_bn() -> Task:
    """:func:`digits_images` without batch norm: per-worker batch statistics would differ from the
    combined batch's, so only a model without them can match a bigger single-process batch exactly."""
    def model() -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))

    return dataclasses.replace(digits_images(), name="digits_images_no_bn", make_model=model)


def digits_images_l2() -> Task:
    """:func:`digits_images` with the problem's own L2 (DeepOBS convention)."""
    return dataclasses.replace(digits_images(), name="digits_images_l2", l2=0.02)


def _recipe(*techniques: str, schedule: str = "constant", **extra) -> Recipe:
    return Recipe("momentum", {"lr": 0.05, "weight_decay": 1e-3}, batch_size=BATCH, epochs=EPOCHS, train_size=TRAIN,
                  schedule=schedule, techniques=techniques, **extra)


def _single(factory: str, recipe: Recipe):
    task = {"digits_images": digits_images, "digits_images_l2": digits_images_l2,
            "digits_images_no_bn": digits_images_no_bn}[factory]()
    data = split_data(task.load_data(), task.valid_size, 0, recipe.train_size)
    return train(task, data, recipe, seed=0, device=torch.device("cpu"))


def _distributed(factory: str, recipe: Recipe, mode: str, nproc: int = 1):
    config = DistributedConfig(f"{THIS}:{factory}", recipe, mode=mode, nproc=nproc, seed=0, device="cpu",
                               timeout=240, keep_state=True)
    return run_distributed(config)


def _assert_same_epochs(single, other, label: str) -> None:
    assert single.status is RunStatus.FINISHED, single.error
    assert other.status is RunStatus.FINISHED, other.error
    assert len(other.epochs) == len(single.epochs), label
    for a, b in zip(single.epochs, other.epochs, strict=True):
        for key in KEYS:
            assert math.isfinite(a.metrics[key])
            assert b.metrics[key] == pytest.approx(a.metrics[key], rel=1e-5, abs=1e-7), f"{label} {key} epoch {a.epoch}"
        assert b.lr == pytest.approx(a.lr, rel=1e-12), f"{label} lr epoch {a.epoch}"


def test_every_technique_has_a_parity_case():
    assert sorted([*EXAMPLES, *WITHOUT_CASE]) == techniques.names()


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_technique_gives_the_same_numbers_in_every_engine(name):
    recipe = _recipe(EXAMPLES[name])
    single = _single("digits_images", recipe)
    plain = _single("digits_images", _recipe()).epochs[-1].metrics
    if name == "model_cost":  # a measurement: training unchanged, the trained model measured
        assert single.epochs[-1].metrics == plain and single.environment["model_cost"]["parameters"] > 0
    else:
        assert single.epochs[-1].metrics != plain or name in ("early_stopping", "swa"), \
            f"{name} changed nothing"  # those two act on the epochs, checked below
    from optbench.techniques.registry import engines_of

    for mode in ("ddp", "ps-sync"):
        if mode.partition("-")[0] not in engines_of(name):
            continue  # refused there before anything starts (tests/test_engine_parity's engine check)
        other = _distributed("digits_images", recipe, mode).result
        _assert_same_epochs(single, other, f"{name} {mode}")
        if "model_cost" in single.environment:
            assert other.environment["model_cost"]["parameters"] == single.environment["model_cost"]["parameters"]


def test_task_l2_with_penalty_smoothing_clipping_cosine_in_every_engine():
    recipe = _recipe("l2:strength=0.01", "label_smoothing:epsilon=0.1", "clip_norm:max_norm=1.0",
                     schedule="cosine", schedule_params={"warmup_steps": 3})
    single = _single("digits_images_l2", recipe)
    without_l2 = _single("digits_images", recipe)
    assert single.epochs[-1].metrics["train_loss"] != without_l2.epochs[-1].metrics["train_loss"]
    for mode in ("ddp", "ps-sync"):
        run = _distributed("digits_images_l2", recipe, mode)
        _assert_same_epochs(single, run.result, mode)


def test_two_ddp_workers_average_to_the_combined_batch_gradient():
    """ddp with 2 workers of batch b equals single-process training with batch 2b (same data order),
    here with an L2 penalty, clipping and EMA: the averaged gradient is the combined batch's."""
    recipe = _recipe("l2:strength=0.01", "clip_norm:max_norm=1.0", "ema:decay=0.9")
    run = _distributed("digits_images_no_bn", recipe, "ddp", nproc=2)
    single = _single("digits_images_no_bn", dataclasses.replace(recipe, batch_size=2 * BATCH))
    assert run.result.steps == single.steps == EPOCHS * TRAIN // (2 * BATCH)
    _assert_same_epochs(single, run.result, "ddp x2")


def test_engines_stop_on_early_stopping_and_average_with_swa():
    stopping = dataclasses.replace(_recipe(EXAMPLES["early_stopping"]), epochs=4)
    single = _single("digits_images", stopping)
    assert "early_stopping" in single.environment and len(single.epochs) < 4
    for mode in ("ddp", "ps-sync"):
        run = _distributed("digits_images", stopping, mode)
        assert len(run.result.epochs) == len(single.epochs), mode
    swa = _single("digits_images", _recipe(EXAMPLES["swa"]))
    plain = _single("digits_images", _recipe())
    assert swa.epochs[0].metrics == plain.epochs[0].metrics  # averaging starts after epoch 1
    assert swa.epochs[1].metrics["valid_loss"] != plain.epochs[1].metrics["valid_loss"]
