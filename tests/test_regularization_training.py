"""Training-technique components: SWA/EMA, precision, batch-size rules and accumulation, gradient
clipping, and the loop integration sketch given to the training loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from optbench.core.errors import ConfigError, UnknownNameError
from optbench.core.spec import Direction
from optbench.techniques import (
    EarlyStopping,
    accumulation_steps,
    clip_grad_norm,
    clip_grad_value,
    ema,
    goyal_warmup,
    make_augmentation,
    make_averager,
    make_clipper,
    make_penalty,
    micro_batches,
    precision_context,
    scaled_lr,
    smoothed_cross_entropy,
    swa,
    swa_lr_scheduler,
)


def _set(model: nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)


# ------------------------------------------------------------------ averaging
def test_ema_equals_closed_form() -> None:
    model = nn.Linear(3, 2)
    decay, values = 0.9, [1.0, 2.0, 4.0, -1.0, 3.0]
    averager = ema(model, decay=decay)
    for v in values:
        _set(model, v)
        assert averager.update(model)
    # w_1 = theta_1, w_t = decay * w_{t-1} + (1 - decay) * theta_t
    expected = decay ** (len(values) - 1) * values[0] + sum(
        (1 - decay) * decay ** (len(values) - 1 - i) * v for i, v in enumerate(values) if i > 0)
    for p in averager.finalize().parameters():
        torch.testing.assert_close(p, torch.full_like(p, expected))
    assert averager.count == len(values)


def test_swa_equal_average_with_start_and_every() -> None:
    model = nn.Linear(3, 2)
    averager = swa(model, start=2, every=2)
    with pytest.raises(RuntimeError, match="no weights averaged"):
        averager.module  # noqa: B018 - the property raises before the first average
    averaged, active = [], []
    for v in [10.0, 20.0, 1.0, 2.0, 3.0, 4.0, 5.0]:
        _set(model, v)
        active.append(averager.active)  # before the call: the loop picks the call's learning rate
        if averager.update(model):
            averaged.append(v)
    assert active == [False, False, True, True, True, True, True]  # the start=2 calls have passed
    assert averaged == [1.0, 3.0, 5.0]  # calls 3, 5, 7
    for p in averager.finalize().parameters():
        torch.testing.assert_close(p, torch.full_like(p, 3.0))
    assert not any(p.requires_grad for p in averager.module.parameters())


def test_swa_finalize_recomputes_batch_norm_statistics() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(3))
        model[0].bias.zero_()
    averager = swa(model)
    averager.update(model)
    data = torch.randn(256, 3) * torch.tensor([1.0, 2.0, 3.0]) + torch.tensor([5.0, -1.0, 0.5])
    bn = averager.module[1]
    assert torch.equal(bn.running_mean, torch.zeros(3))  # the model never saw data
    with pytest.raises(ValueError, match="train_batches"):
        averager.finalize()
    batches = [(x, torch.zeros(len(x))) for x in data.split(64)]
    module = averager.finalize(batches)
    torch.testing.assert_close(module[1].running_mean, data.mean(0), rtol=1e-5, atol=1e-5)
    batch_vars = torch.stack([x.var(0) for x in data.split(64)]).mean(0)  # cumulative average
    torch.testing.assert_close(module[1].running_var, batch_vars, rtol=1e-5, atol=1e-5)
    assert not module.training and model.training


def test_ema_averages_buffers_and_registry() -> None:
    model = nn.BatchNorm1d(2)
    averager = make_averager("ema", model, decay=0.5)
    assert averager is not None
    averager.update(model)
    model.running_mean.fill_(4.0)
    averager.update(model)
    torch.testing.assert_close(averager.finalize().running_mean, torch.full((2,), 2.0))  # no data pass
    assert make_averager("none", model) is None
    with pytest.raises(UnknownNameError, match="ema, none, swa"):
        make_averager("polyak", model)
    with pytest.raises(ConfigError, match="decay"):
        make_averager("ema", model, decay=1.5)
    with pytest.raises(ConfigError, match="decay"):
        make_averager("swa", model, decay=0.9)


def test_swa_lr_scheduler_anneals_to_swa_lr() -> None:
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=1.0)
    sched = swa_lr_scheduler(opt, swa_lr=0.1, anneal_epochs=4, anneal_strategy="linear")
    for _ in range(6):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="anneal_strategy"):
        swa_lr_scheduler(opt, swa_lr=0.1, anneal_strategy="step")
    with pytest.raises(ConfigError, match="swa_lr"):
        swa_lr_scheduler(opt, swa_lr=0.0)


# ------------------------------------------------------------------ precision
def test_bf16_on_cpu_autocasts_and_trains() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    autocast, scaler = precision_context("bf16", torch.device("cpu"))
    assert scaler is None
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    before = [p.detach().clone() for p in model.parameters()]
    with autocast():
        out = model(x)
        loss = F.cross_entropy(out, y)
    assert out.dtype == torch.bfloat16 and loss.dtype == torch.float32
    loss.backward()
    opt.step()
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in model.parameters())
    assert all(not torch.equal(p, b) for p, b in zip(model.parameters(), before, strict=True))


def test_fp32_and_fp16_contexts() -> None:
    autocast, scaler = precision_context("fp32", "cpu")
    assert scaler is None
    with autocast():
        assert nn.Linear(2, 2)(torch.ones(1, 2)).dtype == torch.float32
    with pytest.raises(ConfigError, match="needs CUDA"):
        precision_context("fp16", torch.device("cpu"))
    with pytest.raises(UnknownNameError, match="bf16, fp16, fp32"):
        precision_context("fp8", "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 with a gradient scaler needs CUDA")
def test_fp16_on_cuda_has_a_scaler() -> None:
    autocast, scaler = precision_context("fp16", "cuda")
    assert scaler is not None
    model = nn.Linear(4, 2).cuda()
    with autocast():
        assert model(torch.ones(3, 4, device="cuda")).dtype == torch.float16


# ------------------------------------------------------------------ batch-size rules
def test_scaled_lr_rules_and_goyal_warmup() -> None:
    assert scaled_lr(0.1, 256, 1024, "linear") == pytest.approx(0.4)
    assert scaled_lr(0.1, 256, 1024, "sqrt") == pytest.approx(0.2)
    assert scaled_lr(0.1, 256, 1024) == 0.1
    plan = goyal_warmup(0.1, 256, 8192, steps_per_epoch=100)
    assert (plan.start_lr, plan.peak_lr, plan.steps) == (0.1, pytest.approx(3.2), 500)
    assert plan.lr_at(0) == 0.1 and plan.lr_at(250) == pytest.approx(1.65) and plan.lr_at(900) == plan.peak_lr
    with pytest.raises(UnknownNameError, match="linear, none, sqrt"):
        scaled_lr(0.1, 256, 512, "cubic")
    with pytest.raises(ConfigError, match="batch_size"):
        scaled_lr(0.1, 256, 0, "linear")
    with pytest.raises(ConfigError, match="lr"):
        scaled_lr(-0.1, 256, 512, "linear")


def test_accumulation_steps_validation() -> None:
    assert accumulation_steps(256, 64) == 4
    assert accumulation_steps(256, None) == 1
    for micro in (30, 512, 0):
        with pytest.raises(ConfigError, match="micro_batch_size"):
            accumulation_steps(256, micro)


@pytest.mark.parametrize(("batch", "micro"), [(96, 32), (100, 32)])  # even, and a short last micro-batch
def test_accumulated_gradient_equals_big_batch_gradient(batch: int, micro: int) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 4))
    x, y = torch.randn(batch, 10), torch.randint(0, 4, (batch,))
    F.cross_entropy(model(x), y).backward()
    big = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    parts = micro_batches(x, y, micro)
    assert len(parts) == math.ceil(batch / micro) and sum(w for _, _, w in parts) == pytest.approx(1.0)
    for xi, yi, weight in parts:
        (F.cross_entropy(model(xi), yi) * weight).backward()
    for p, g in zip(model.parameters(), big, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ clipping
def test_clip_by_norm_and_value() -> None:
    p = nn.Parameter(torch.zeros(4))
    q = nn.Parameter(torch.zeros(3))
    p.grad = torch.tensor([3.0, 0.0, 0.0, 0.0])
    q.grad = torch.tensor([0.0, 4.0, 0.0])
    total = clip_grad_norm([p, q], max_norm=1.0)
    assert total.item() == pytest.approx(5.0)
    assert torch.linalg.vector_norm(torch.cat([p.grad, q.grad])).item() == pytest.approx(1.0, rel=1e-5)
    torch.testing.assert_close(p.grad, torch.tensor([0.6, 0.0, 0.0, 0.0]), rtol=1e-5, atol=1e-6)
    clip_grad_norm([p, q], max_norm=10.0)  # below the bound: unchanged
    torch.testing.assert_close(p.grad, torch.tensor([0.6, 0.0, 0.0, 0.0]), rtol=1e-5, atol=1e-6)
    q.grad = torch.tensor([-5.0, 0.2, 7.0])
    clip_grad_value([q], clip_value=1.0)
    assert torch.equal(q.grad, torch.tensor([-1.0, 0.2, 1.0]))


def test_make_clipper_registry_and_validation() -> None:
    p = nn.Parameter(torch.zeros(2))
    p.grad = torch.tensor([30.0, 40.0])
    clip = make_clipper("norm", [p], max_norm=5.0, norm_type=2.0)
    assert clip is not None and clip().item() == pytest.approx(50.0)
    torch.testing.assert_close(p.grad, torch.tensor([3.0, 4.0]), rtol=1e-5, atol=1e-5)
    assert make_clipper("none", [p]) is None
    with pytest.raises(UnknownNameError, match="none, norm, value"):
        make_clipper("global", [p])
    with pytest.raises(ConfigError, match="max_norm"):
        make_clipper("norm", [p], max_norm=0.0)
    with pytest.raises(ConfigError, match="norm_type"):
        make_clipper("norm", [p], max_norm=1.0, norm_type=-2)
    with pytest.raises(ConfigError, match="clip_value"):
        make_clipper("value", [p], clip_value=-1.0)
    with pytest.raises(ConfigError, match="missing"):
        make_clipper("value", [p])


# ------------------------------------------------------------------ the loop sketch
def test_loop_integration_sketch_runs_every_component() -> None:
    """The order given to the training loop: augmentation -> autocast forward -> loss + penalty
    (label smoothing) -> backward per micro-batch -> unscale -> clip -> step -> EMA update;
    early stopping on validation at the epoch end."""
    torch.manual_seed(0)
    device = torch.device("cpu")
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 8 * 8, 3))
    x_train, y_train = torch.randn(64, 1, 8, 8), torch.randint(0, 3, (64,))
    x_valid, y_valid = torch.randn(32, 1, 8, 8), torch.randint(0, 3, (32,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    augment = make_augmentation({"random_crop": {"padding": 1}, "gaussian_noise": {"std": 0.05}})
    aug_gen = torch.Generator(device=device).manual_seed(0)
    autocast, scaler = precision_context("bf16", device)
    train_loss = smoothed_cross_entropy(0.1)
    add_penalty = make_penalty("l2", model, strength=1e-4)
    clip = make_clipper("norm", model.parameters(), max_norm=1.0)
    averager = make_averager("ema", model, decay=0.9)
    stopper = EarlyStopping(patience=2, min_delta=0.0, direction=Direction.MINIMIZE)
    micro = 16
    stopped_at = None
    valid_losses = []
    for epoch in range(1, 6):
        model.train()
        for x, y in zip(x_train.split(32), y_train.split(32), strict=True):
            x = augment(x, aug_gen)
            optimizer.zero_grad(set_to_none=True)
            for xi, yi, weight in micro_batches(x, y, micro):
                with autocast():
                    loss = train_loss(model(xi), yi)
                if add_penalty is not None:
                    loss = loss + add_penalty()
                loss = loss * weight
                (scaler.scale(loss) if scaler is not None else loss).backward()
            if scaler is not None:
                scaler.unscale_(optimizer)
            if clip is not None:
                clip()
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            if averager is not None:
                averager.update(model)
        evaluated = averager.finalize(zip(x_train.split(32), y_train.split(32), strict=True)) \
            if averager is not None else model
        evaluated.eval()
        with torch.no_grad():
            valid_loss = F.cross_entropy(evaluated(x_valid), y_valid).item()
        assert math.isfinite(valid_loss)
        valid_losses.append(valid_loss)
        if stopper.update(valid_loss):
            stopped_at = epoch
            break
    epochs = len(valid_losses)
    assert averager.count == epochs * 2  # every step of every epoch trained (2 steps of 32)
    # the patience rule from the recorded losses: the best is the first minimum; the run stops at
    # the first epoch 2 (patience) epochs after the best so far
    best = [1 + min(range(e), key=lambda i: valid_losses[i]) for e in range(1, epochs + 1)]
    assert stopper.best_epoch == best[-1] and stopper.best == min(valid_losses)
    stops = [e for e in range(1, epochs + 1) if e - best[e - 1] >= 2]
    assert stopped_at == (stops[0] if stops else None) and (stopped_at is not None or epochs == 5)


def test_goyal_warmup_is_the_schedules_warmup_and_matches_the_paper() -> None:
    """Goyal et al. 2017, sec. 2.2: lr rises linearly from base_lr to k * base_lr (k = batch / base batch)
    over 5 epochs, then stays; the plan's numbers come from the schedules package's warmup."""
    from optbench.schedules import Warmup, make_schedule, schedule_values

    base, k, spe = 0.1, 6, 50  # k not a power of two: the two formulas may differ in the last bit
    plan = goyal_warmup(base, 256, 256 * k, steps_per_epoch=spe)
    t = np.arange(1000, dtype=np.float64)
    paper = np.where(t < 5 * spe, base + (k * base - base) * t / (5 * spe), k * base)
    ours = schedule_values(plan.schedule, 1000)
    assert isinstance(plan.schedule, Warmup) and plan.steps == 5 * spe
    assert ours == pytest.approx(paper, rel=1e-14, abs=0)
    assert [plan.lr_at(s) for s in (0, 125, 250, 999)] == pytest.approx([base, base + (k - 1) * base / 2, k * base,
                                                                         k * base], rel=1e-14)
    # a recipe reaches the same numbers: batch_rule "linear" sets the peak, the schedule's warmup the ramp
    recipe_schedule = make_schedule("constant", plan.peak_lr, total_steps=1000, steps_per_epoch=spe,
                                    warmup_epochs=5, warmup_start_factor=1 / k)
    assert schedule_values(recipe_schedule, 1000) == pytest.approx(paper, rel=1e-14, abs=0)
    assert goyal_warmup(base, 256, 1024, steps_per_epoch=spe, warmup_epochs=0).lr_at(0) == pytest.approx(0.4)
    with pytest.raises(ConfigError, match="batch_size"):
        goyal_warmup(base, 256, 128, steps_per_epoch=spe)
    with pytest.raises(ConfigError, match="warmup_epochs"):
        goyal_warmup(base, 256, 512, steps_per_epoch=spe, warmup_epochs=-1)
