"""Learning-rate schedules: closed forms, torch.optim.lr_scheduler equivalence, warmup,
LRController, ReduceOnPlateau, parameter validation, CLI parsing and the plot."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler as tl

from optbench.core.errors import ConfigError, UnknownNameError
from optbench.core.spec import Direction
from optbench.schedules import (
    Constant,
    CosineDecay,
    LRController,
    ReduceOnPlateau,
    StepDecay,
    check_params,
    make_schedule,
    parse_params,
    plot_schedule,
    schedule_values,
    schedules,
    with_warmup,
)

LR = 0.1
N = 300  # steps compared against torch
RTOL = 1e-12


def _make(name: str, *, total_steps: int = N, steps_per_epoch: int = 10, lr: float = LR, **params):
    return make_schedule(name, lr, total_steps=total_steps, steps_per_epoch=steps_per_epoch, **params)


def _optimizer(lr: float = LR, **kw) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr, **kw)


def _torch_lrs(make, steps: int = N, lr: float = LR, opt_kw: dict | None = None,
               key: str = "lr") -> np.ndarray:
    """The lr (or momentum) a torch scheduler sets for optimizer steps 0..steps-1
    (``scheduler.step()`` after every optimizer step)."""
    opt = _optimizer(lr, **(opt_kw or {}))
    sched = make(opt)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
        for _ in range(steps):
            out.append(float(opt.param_groups[0][key]))
            opt.step()
            sched.step()
    return np.array(out)


def _assert_close(ours: np.ndarray, ref: np.ndarray, rtol: float = RTOL) -> None:
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=0)


# ---------------------------------------------------------------- closed forms


@pytest.mark.parametrize("name, params, expected", [
    ("constant", {}, lambda t: LR),
    ("step", {"step_size": 7, "gamma": 0.5}, lambda t: LR * 0.5 ** (t // 7)),
    ("multistep", {"milestones": [5, 9], "gamma": 0.1},
     lambda t: LR * (1 if t < 5 else 0.1 if t < 9 else 0.01)),
    ("exponential", {"gamma": 0.9}, lambda t: LR * 0.9 ** t),
    ("inverse_time", {"decay": 0.5}, lambda t: LR / (1 + 0.5 * t)),
    ("polynomial", {"power": 2.0, "end_lr": 0.01},
     lambda t: (LR - 0.01) * (1 - min(t, 20) / 20) ** 2 + 0.01),
    ("cosine", {"min_lr": 0.01}, lambda t: 0.01 + (LR - 0.01) * (1 + math.cos(math.pi * min(t, 20) / 20)) / 2),
])
def test_closed_forms(name, params, expected):
    s = _make(name, total_steps=20, **params)
    for t in (0, 1, 4, 5, 6, 8, 9, 10, 13, 19, 20, 25, 100):
        assert s(t) == pytest.approx(expected(t), rel=1e-14, abs=0), (name, t)


def test_closed_form_landmarks():
    cos = _make("cosine", total_steps=100, min_lr=0.0)
    assert cos(0) == LR and cos(50) == pytest.approx(LR / 2, rel=1e-14) and cos(100) == 0.0 and cos(10**6) == 0.0
    # SGDR, t0=10, t_mult=2: periods [0,10), [10,30), [30,70); restart -> lr0
    sgdr = _make("cosine_warm_restarts", t0=10, t_mult=2, min_lr=0.0)
    for t in (0, 10, 30, 70):
        assert sgdr(t) == LR
    assert sgdr(20) == pytest.approx(LR / 2, rel=1e-14) and sgdr(50) == pytest.approx(LR / 2, rel=1e-14)
    assert sgdr.period(69) == (39, 40)
    # cyclic triangular: lr0 at 0, max at step_size_up, back at 2*step_size_up; triangular2 halves
    cyc = _make("cyclic", max_lr=1.0, step_size_up=4, mode="triangular2")
    assert [cyc(t) for t in (0, 2, 4, 8, 12)] == pytest.approx([LR, 0.55, 1.0, LR, LR + 0.9 / 2], rel=1e-14)
    # one cycle: starts at max/div, peaks at pct_start*T - 1, ends at max/div/final_div; held after
    oc = _make("one_cycle", total_steps=100, max_lr=1.0, pct_start=0.25, div_factor=10.0, final_div_factor=100.0)
    assert oc(0) == pytest.approx(0.1) and oc(24) == pytest.approx(1.0) and oc(99) == pytest.approx(1e-3)
    assert oc(100) == oc(99) == oc(10**6)
    assert _make("one_cycle", total_steps=100)(29) == pytest.approx(LR)  # max_lr defaults to the recipe lr


# ---------------------------------------------------------------- torch equivalence


TORCH_CASES = {
    "step": ("step", {"step_size": 25, "gamma": 0.5}, lambda o: tl.StepLR(o, step_size=25, gamma=0.5)),
    "multistep": ("multistep", {"milestones": [40, 100, 250], "gamma": 0.3},
                  lambda o: tl.MultiStepLR(o, milestones=[40, 100, 250], gamma=0.3)),
    "exponential": ("exponential", {"gamma": 0.99}, lambda o: tl.ExponentialLR(o, gamma=0.99)),
    "cosine": ("cosine", {"min_lr": 0.001}, lambda o: tl.CosineAnnealingLR(o, T_max=N, eta_min=0.001)),
    # torch's cosine rises again after T_max; ours holds min_lr: compare up to T_max
    "cosine_decay_steps": ("cosine", {"min_lr": 0.002, "decay_steps": 120},
                           lambda o: tl.CosineAnnealingLR(o, T_max=120, eta_min=0.002), 121),
    "polynomial": ("polynomial", {"power": 2.0}, lambda o: tl.PolynomialLR(o, total_iters=N, power=2.0)),
    "polynomial_linear": ("polynomial", {"decay_steps": 200},
                          lambda o: tl.PolynomialLR(o, total_iters=200, power=1.0)),
    "cosine_warm_restarts": ("cosine_warm_restarts", {"t0": 20, "t_mult": 2, "min_lr": 0.001},
                             lambda o: tl.CosineAnnealingWarmRestarts(o, T_0=20, T_mult=2, eta_min=0.001)),
    "cosine_warm_restarts_1": ("cosine_warm_restarts", {"t0": 37},
                               lambda o: tl.CosineAnnealingWarmRestarts(o, T_0=37)),
    "cyclic_triangular": ("cyclic", {"max_lr": 1.0, "step_size_up": 30, "step_size_down": 20},
                          lambda o: tl.CyclicLR(o, LR, 1.0, step_size_up=30, step_size_down=20,
                                                cycle_momentum=False)),
    "cyclic_triangular2": ("cyclic", {"max_lr": 0.5, "step_size_up": 25, "mode": "triangular2"},
                           lambda o: tl.CyclicLR(o, LR, 0.5, step_size_up=25, mode="triangular2",
                                                 cycle_momentum=False)),
    "cyclic_exp_range": ("cyclic", {"max_lr": 0.8, "step_size_up": 15, "mode": "exp_range", "gamma": 0.995},
                         lambda o: tl.CyclicLR(o, LR, 0.8, step_size_up=15, mode="exp_range", gamma=0.995,
                                               cycle_momentum=False)),
    "one_cycle_cos": ("one_cycle", {"max_lr": 0.5},
                      lambda o: tl.OneCycleLR(o, max_lr=0.5, total_steps=N, cycle_momentum=False)),
    "one_cycle_linear": ("one_cycle", {"max_lr": 0.4, "pct_start": 0.4, "anneal": "linear", "div_factor": 10.0,
                          "final_div_factor": 100.0},
                         lambda o: tl.OneCycleLR(o, max_lr=0.4, total_steps=N, pct_start=0.4,
                                                 anneal_strategy="linear", div_factor=10.0,
                                                 final_div_factor=100.0, cycle_momentum=False)),
    "one_cycle_three_phase": ("one_cycle", {"three_phase": True, "pct_start": 0.2},
                              lambda o: tl.OneCycleLR(o, max_lr=LR, total_steps=N, pct_start=0.2,
                                                      three_phase=True, cycle_momentum=False)),
    "warmup": ("warmup", {"warmup_steps": 50, "warmup_start_factor": 0.1},
               lambda o: tl.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=50)),
}


@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_matches_torch_scheduler(case):
    name, params, make_torch, *steps = TORCH_CASES[case]
    n = steps[0] if steps else N
    ours = schedule_values(_make(name, **params), n)
    _assert_close(ours, _torch_lrs(make_torch, n))


@pytest.mark.parametrize("name, params, make_torch", [
    ("one_cycle", {"max_lr": 0.5, "cycle_momentum": True},
     lambda o: tl.OneCycleLR(o, max_lr=0.5, total_steps=N)),
    ("cyclic", {"max_lr": 1.0, "step_size_up": 30, "mode": "triangular2", "cycle_momentum": True},
     lambda o: tl.CyclicLR(o, LR, 1.0, step_size_up=30, mode="triangular2")),
])
def test_cycled_momentum_matches_torch(name, params, make_torch):
    schedule = _make(name, **params)
    opt = _optimizer(momentum=0.9)
    controller = LRController(opt, schedule)
    ours = []
    for t in range(N):
        controller.apply(t)
        ours.append(opt.param_groups[0]["momentum"])
    _assert_close(np.array(ours), _torch_lrs(make_torch, opt_kw={"momentum": 0.9}, key="momentum"))
    # Adam family: beta1 is cycled, beta2 kept
    adam = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=LR, betas=(0.9, 0.98))
    ctrl = LRController(adam, schedule)
    ctrl.apply(N // 2)
    assert adam.param_groups[0]["betas"] == (schedule.momentum(N // 2), 0.98)
    with pytest.raises(ConfigError, match="cycle_momentum"):
        LRController(torch.optim.Adagrad([torch.zeros(1, requires_grad=True)], lr=LR), schedule)


def test_plateau_matches_torch_both_directions():
    rng = np.random.default_rng(0)
    noisy = np.concatenate([np.linspace(1.0, 0.5, 10), 0.5 + 0.01 * rng.standard_normal(40)])
    for direction, values in ((Direction.MINIMIZE, noisy), (Direction.MAXIMIZE, -noisy)):
        for kw in ({"factor": 0.5, "patience": 2, "cooldown": 1},
                   {"factor": 0.3, "patience": 0, "threshold": 0.01, "threshold_mode": "abs", "min_lr": 0.005}):
            ours = ReduceOnPlateau(LR, direction, **kw)
            opt = _optimizer()
            ref = tl.ReduceLROnPlateau(opt, mode="min" if direction is Direction.MINIMIZE else "max", **kw)
            for v in values:
                ref.step(float(v))
                assert ours.update(float(v)) == pytest.approx(opt.param_groups[0]["lr"], rel=RTOL), (direction, kw)


# ---------------------------------------------------------------- plateau


@pytest.mark.parametrize("direction, better, worse", [(Direction.MINIMIZE, -1.0, 1.0),
                                                      (Direction.MAXIMIZE, 1.0, -1.0)])
def test_plateau_reduces_after_patience(direction, better, worse):
    p = ReduceOnPlateau(1.0, direction, factor=0.5, patience=2, threshold=0.0)
    lrs = [p.update(v) for v in (0.0, better, better, better, worse, worse)]
    # improvement on 0 and first `better`; then 4 bad epochs: reduce at the 3rd (> patience=2)
    assert lrs == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5]
    assert p(12345) == 0.5 and p.scale == 0.5
    state = p.state_dict()
    q = ReduceOnPlateau(1.0, direction, factor=0.5, patience=2, threshold=0.0)
    q.load_state_dict(state)
    assert q.update(worse) == p.update(worse)
    assert "ReduceOnPlateau(" in repr(p) and "lr=0.5" in repr(p)


def test_plateau_via_make_schedule_needs_direction_and_reads_monitor():
    with pytest.raises(ConfigError, match="direction_of"):
        _make("reduce_on_plateau")
    directions = {"valid_accuracy": Direction.MAXIMIZE, "valid_loss": Direction.MINIMIZE}
    s = _make("reduce_on_plateau", direction_of=directions.__getitem__, monitor="valid_accuracy",
              patience=0, factor=0.5)
    assert isinstance(s, ReduceOnPlateau) and s.direction is Direction.MAXIMIZE and s.monitor == "valid_accuracy"
    opt = _optimizer()
    ctrl = LRController(opt, s)
    assert ctrl.monitors == ["valid_accuracy"]
    ctrl.apply(0)
    ctrl.on_epoch_end({"valid_accuracy": 0.9, "valid_loss": 0.3})
    ctrl.on_epoch_end({"valid_accuracy": 0.8, "valid_loss": 0.1})  # accuracy got worse -> halve
    assert opt.param_groups[0]["lr"] == LR  # takes effect at the next apply
    ctrl.apply(1)
    assert opt.param_groups[0]["lr"] == pytest.approx(LR / 2)
    with pytest.raises(ConfigError, match="valid_accuracy"):
        ctrl.on_epoch_end({"valid_loss": 0.1})


# ---------------------------------------------------------------- warmup composition


def test_warmup_composes_with_any_schedule():
    inner = StepDecay(LR, step_size=10, gamma=0.5)
    s = with_warmup(inner, 20, start_factor=0.0)
    assert s(0) == 0.0 and s(10) == pytest.approx(LR / 2) and s(19) == pytest.approx(LR * 19 / 20)
    for t in range(20, 80):  # the inner schedule starts counting after the warmup
        assert s(t) == inner(t - 20)
    assert with_warmup(inner, 0) is inner
    # make_schedule: cosine after warmup ends at min_lr exactly on the run's last step
    cos = _make("cosine", total_steps=100, warmup_steps=10, min_lr=0.001)
    assert cos.inner == CosineDecay(LR, decay_steps=90, min_lr=0.001)
    assert cos(10) == LR and cos(100) == 0.001 and cos(5) == pytest.approx(LR / 2)
    # warmup in epochs, start factor
    s = _make("warmup", steps_per_epoch=8, warmup_epochs=2.5, warmup_start_factor=0.2)
    assert s.warmup_steps == 20 and s(0) == pytest.approx(0.2 * LR) and s(20) == LR
    # warmup ramps to where the inner schedule starts (one_cycle starts at max_lr / div_factor)
    oc = _make("one_cycle", warmup_steps=30, max_lr=1.0)
    assert oc(15) == pytest.approx(0.5 * 1.0 / 25) and oc(30) == pytest.approx(1.0 / 25)
    assert oc.inner.total_steps == N - 30
    # warmup in front of a metric-driven schedule forwards the metric
    plateau = with_warmup(ReduceOnPlateau(LR, Direction.MINIMIZE, patience=0), 5)
    plateau.observe(1.0)
    plateau.observe(2.0)
    assert plateau.monitor == "valid_loss" and plateau(100) == pytest.approx(LR * 0.1)


def test_warmup_of_constant_matches_torch_linear_lr_from_zero_factor():
    # torch's LinearLR needs start_factor > 0; compare the closed form of start_factor = 0
    s = _make("warmup", warmup_steps=40)
    assert [s(t) for t in range(41)] == pytest.approx([LR * t / 40 for t in range(40)] + [LR], rel=1e-14)


# ---------------------------------------------------------------- LRController


def test_controller_keeps_group_ratios_and_follows_schedule():
    w, b = torch.zeros(3, requires_grad=True), torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([{"params": [w]}, {"params": [b], "lr": LR / 4}], lr=LR, momentum=0.9)
    schedule = _make("step", step_size=5, gamma=0.1)
    ctrl = LRController(opt, schedule)
    assert ctrl.scales == [1.0, 0.25] and ctrl.lr is None and ctrl.monitors == []
    for t in (0, 4, 5, 12):
        assert ctrl.apply(t) == schedule(t)
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([schedule(t), schedule(t) / 4], rel=1e-15)
    assert opt.param_groups[0]["momentum"] == 0.9  # untouched without cycle_momentum
    ctrl.on_epoch_end({"valid_loss": 1.0})  # pure schedule: no-op


def test_controller_changes_training_and_multiplies_extra_plateau():
    # a schedule that actually reaches the optimizer: SGD on f(x) = x, the step is -lr
    x = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([x], lr=1.0)
    plateau = ReduceOnPlateau(1.0, Direction.MINIMIZE, factor=0.5, patience=0)
    ctrl = LRController(opt, _make("exponential", lr=1.0, gamma=0.5), plateau=plateau)
    assert ctrl.monitors == ["valid_loss"]
    for t in range(3):
        ctrl.apply(t)
        opt.zero_grad()
        x.sum().backward()
        opt.step()
    assert x.item() == pytest.approx(-(1 + 0.5 + 0.25))
    ctrl.on_epoch_end(1.0)
    ctrl.on_epoch_end(2.0)  # worse -> plateau halves
    assert ctrl.apply(3) == pytest.approx(0.5 ** 3 * 0.5) and ctrl.lr_at(3) == ctrl.lr


def test_controller_writes_tensor_lr_in_place():
    lr = torch.tensor(LR)
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=lr)
    LRController(opt, _make("cosine")).apply(N // 2)
    assert opt.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(LR / 2)


# ---------------------------------------------------------------- validation, parsing, plot


@pytest.mark.parametrize("name, params, match", [
    ("cosine", {"T_max": 10}, r"cosine schedule parameter 'T_max'; allowed: decay_epochs, decay_steps, min_lr"),
    ("step", {}, r"step step_size"),
    ("step", {"step_size": 0}, r"step step_size 0; allowed: an integer >= 1"),
    ("step", {"step_size": 2.5}, r"step step_size"),
    ("step", {"step_size": 3, "step_size_epochs": 1}, r"not both"),
    ("step", {"step_size_epochs": 0.01}, r"step step_size_epochs"),  # rounds to 0 steps
    ("step", {"step_size": 3, "gamma": 1.5}, r"step gamma 1.5; allowed: a number in \(0, 1\]"),
    ("multistep", {"milestones": [60, 30]}, r"strictly increasing"),
    ("exponential", {"gamma": float("nan")}, r"exponential gamma"),
    ("exponential", {"gamma": True}, r"exponential gamma"),
    ("cosine", {"min_lr": 1.0}, r"cosine min_lr 1.0; allowed: a number in \[0, lr=0.1\]"),
    ("cosine", {"warmup_steps": N}, r"warmup_steps 300; allowed: an integer < total_steps=300"),
    ("cyclic", {"max_lr": 0.01}, r"cyclic max_lr 0.01; allowed: a number >= lr=0.1"),
    ("cyclic", {"max_lr": 1.0, "mode": "sine"}, r"cyclic mode 'sine'; allowed: triangular, triangular2, exp_range"),
    ("one_cycle", {"pct_start": 1.0}, r"one_cycle pct_start"),
    ("one_cycle", {"pct_start": 0.001}, r"one_cycle pct_start"),  # first phase shorter than a step
    ("reduce_on_plateau", {"factor": 1.0}, r"reduce_on_plateau factor"),
    ("warmup", {}, r"warmup warmup_steps None; allowed: required"),
])
def test_bad_params_raise_config_error(name, params, match):
    with pytest.raises(ConfigError, match=match):
        _make(name, direction_of=lambda key: Direction.MINIMIZE, **params)


def test_bad_name_and_run_arguments():
    with pytest.raises(UnknownNameError, match="cosine_warm_restarts, cyclic"):
        _make("cosinus")
    with pytest.raises(ConfigError, match="total_steps"):
        _make("cosine", total_steps=0)
    with pytest.raises(ConfigError, match="steps_per_epoch"):
        _make("cosine", steps_per_epoch=0)
    with pytest.raises(ConfigError, match="cosine lr"):
        _make("cosine", lr=-1.0)
    with pytest.raises(ConfigError, match="constant lr"):
        Constant(0.0)
    with pytest.raises(ValueError, match=">= 0"):
        _make("cosine")(-1)
    # cyclic's lower bound is the recipe lr: a torch-style base_lr parameter is rejected, not a TypeError
    with pytest.raises(ConfigError, match="cyclic schedule parameter 'base_lr'; allowed: base_momentum"):
        _make("cyclic", base_lr=0.01, max_lr=1.0)


def test_aliases():
    assert type(_make("sgdr", t0=10)).__name__ == "CosineWarmRestarts"
    assert type(_make("1cycle")).__name__ == "OneCycle"
    assert _make("plateau", direction_of=lambda key: Direction.MINIMIZE).monitor == "valid_loss"


def test_epoch_spellings_and_check_params():
    s = _make("multistep", steps_per_epoch=50, milestones_epochs=[30, 60], gamma=0.2)
    assert s.milestones == (1500, 3000)
    assert _make("cosine_warm_restarts", steps_per_epoch=7, t0_epochs=3).t0 == 21
    assert _make("cosine", steps_per_epoch=7, decay_epochs=2).decay_steps == 14
    assert _make("multistep", milestones=30).milestones == (30,)
    resolved = check_params("step", {"step_size_epochs": 30})
    assert resolved == {"step_size_epochs": 30, "gamma": 0.1, "warmup_steps": 0, "warmup_start_factor": 0.0}
    with pytest.raises(ConfigError, match="step schedule parameter 'lr'"):
        check_params("step", {"lr": 0.1, "step_size": 3})


def test_parse_params():
    assert parse_params(["milestones=30,60", "gamma=0.1", "step_size=5", "mode=exp_range",
                         "three_phase=true", "min_lr=1e-5"]) == {
        "milestones": [30, 60], "gamma": 0.1, "step_size": 5, "mode": "exp_range",
        "three_phase": True, "min_lr": 1e-5}
    assert parse_params([]) == {}
    for bad in (["gamma"], ["=3"], ["a=1", "a=2"]):
        with pytest.raises(ConfigError, match="schedule parameter"):
            parse_params(bad)
    # parsed values feed make_schedule directly
    s = _make("multistep", **parse_params(["milestones=30,60", "gamma=0.5"]))
    assert s(45) == pytest.approx(LR / 2)


def test_every_registered_schedule_builds_and_is_finite():
    needs = {"step": {"step_size": 50}, "multistep": {"milestones": [100]}, "exponential": {"gamma": 0.99},
             "inverse_time": {"decay": 0.01}, "cosine_warm_restarts": {"t0": 50}, "cyclic": {"max_lr": 1.0},
             "warmup": {"warmup_steps": 10}}
    for name in schedules.names():
        s = _make(name, direction_of=lambda key: Direction.MINIMIZE, **needs.get(name, {}))
        values = schedule_values(s, N)
        assert values.shape == (N,) and np.isfinite(values).all() and (values >= 0).all(), name
        assert name.split("_")[0] in repr(s).lower() or type(s).__name__ in repr(s), name
        assert schedules.get(name).describe()


def test_schedule_values_and_plot(tmp_path):
    s = _make("cosine", total_steps=50)
    values = schedule_values(s, 50)
    assert values[0] == LR and values[-1] == pytest.approx(s(49))
    assert schedule_values(s, [0, 25]).tolist() == [s(0), s(25)]
    fig = plot_schedule(values, repr(s), steps_per_epoch=10)
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), values)
    assert ax.get_xlabel() == "optimizer step" and ax.get_title() == repr(s)
    fig.savefig(tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 1000
    with pytest.raises(ConfigError):
        plot_schedule([LR, 0.0], "x", log_y=True)
    with pytest.raises(ConfigError):
        plot_schedule([], "x")
