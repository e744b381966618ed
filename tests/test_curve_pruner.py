"""Tests of learning-curve extrapolation (optbench.search.curves) and its pruner
(optbench.search.curve_pruner, registered as the ``curve`` pruner)."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState, create_trial

from optbench.core.errors import ConfigError, UnknownNameError
from optbench.core.spec import Recipe, RunStatus
from optbench.search import Param, SearchConfig, make_pruner, pruners
from optbench.search.curve_pruner import LearningCurvePruner
from optbench.search.curves import (
    MODELS,
    curve_shapes,
    exp3,
    extrapolate,
    extrapolate_with_shapes,
    fit_curve,
    pow3,
)
from optbench.search.local import run_search_local
from optbench.study.config import study_from_dict

MODEL = {m.name: m for m in MODELS}
EPOCHS = np.arange(1, 31, dtype=float)


def _noisy(curve: np.ndarray, sd: float, seed: int = 0) -> np.ndarray:
    return curve + np.random.default_rng(seed).normal(0.0, sd, size=curve.shape)


# ------------------------------------------------------------------------------- the family


@pytest.mark.parametrize(("name", "f", "params"), [("pow3", pow3, (0.9, 0.6, 0.7)), ("exp3", exp3, (0.8, 0.7, 0.25))])
def test_fit_recovers_known_parameters_and_the_final_value(name, f, params):
    y = _noisy(f(EPOCHS, *params), 0.002)
    fit = fit_curve(MODEL[name], EPOCHS[:20], y[:20], target=30)
    assert fit is not None and fit.name == name and fit.n == 20
    assert fit.params == pytest.approx(params, rel=0.1)
    truth = float(f(np.array([30.0]), *params)[0])
    assert abs(fit.prediction - truth) < 0.01
    assert 0 < fit.std < 0.05
    # minimized metrics are fitted negated: the same curve as a loss gives the same prediction, negated
    loss = fit_curve(MODEL[name], EPOCHS[:20], -y[:20], target=30, sign=-1.0)
    assert loss is not None and loss.prediction == pytest.approx(-fit.prediction, abs=1e-6)


def test_family_prediction_with_uncertainty():
    truth = pow3(EPOCHS, 0.9, 0.6, 0.7)
    out = extrapolate(EPOCHS[:15], _noisy(truth, 0.003, seed=1)[:15], target=30)
    assert out is not None and out.target == 30
    assert abs(out.mean - truth[-1]) < 0.02
    assert 0 < out.std < 0.1 and math.isfinite(out.std)
    assert sum(out.weights) == pytest.approx(1.0) and len(out.weights) == len(out.fits) >= 2
    assert out.optimistic(2.0) == pytest.approx(out.mean + 2 * out.std)
    assert out.optimistic(2.0, sign=-1.0) == pytest.approx(out.mean - 2 * out.std)


def test_fits_fail_softly():
    assert fit_curve(MODEL["pow3"], [1.0, 2.0, 3.0], [0.1, 0.2, 0.3], target=10) is None  # p + 1 points needed
    assert fit_curve(MODEL["exp3"], [1.0, 2.0, 3.0, 4.0], [0.1, math.nan, 0.3, 0.4], target=10) is None
    assert extrapolate([1.0], [0.5], target=10) is None
    flat = extrapolate(EPOCHS[:6], [0.3] * 6, target=30)  # no curvature at all: still an answer, no error
    assert flat is not None and flat.mean == pytest.approx(0.3, abs=1e-3)


def test_shapes_from_a_complete_curve_extrapolate_a_short_one():
    complete = _noisy(exp3(EPOCHS, 0.8, 0.7, 0.25), 0.005, seed=2)
    shapes = curve_shapes(EPOCHS, complete)
    assert {s.model for s in shapes} >= {"pow3", "exp3"}
    exp_shape = next(s for s in shapes if s.model == "exp3")
    assert exp_shape.shape[0] == pytest.approx(0.25, rel=0.15) and exp_shape.noise < 1e-3
    # another trial: same shape, other level and scale, only 4 epochs seen
    other = exp3(EPOCHS, 0.6, 0.5, 0.25)
    out = extrapolate_with_shapes(EPOCHS[:4], _noisy(other, 0.005, seed=3)[:4], 30, shapes)
    assert out is not None and abs(out.mean - other[-1]) < 0.05
    assert 0 < out.std < 0.1
    assert extrapolate_with_shapes(EPOCHS[:1], other[:1], 30, shapes) is None
    assert extrapolate_with_shapes(EPOCHS[:4], other[:4], 30, []) is None


# ------------------------------------------------------------------------------- the pruner


def _study(direction: str, pruner: optuna.pruners.BasePruner, incumbent: np.ndarray) -> optuna.Study:
    study = optuna.create_study(direction=direction, pruner=pruner)
    values = {int(e): float(v) for e, v in zip(EPOCHS, incumbent, strict=True)}
    best = max(values.values()) if direction == "maximize" else min(values.values())
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=best, intermediate_values=values))
    return study


def _decisions(study: optuna.Study, curve: np.ndarray, epochs: int) -> list[bool]:
    trial = study.ask()
    decisions = []
    for epoch in range(1, epochs + 1):
        trial.report(float(curve[epoch - 1]), epoch)
        decisions.append(trial.should_prune())
    return decisions


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_a_plateau_below_the_best_is_pruned_a_future_winner_is_not(direction):
    sign = 1.0 if direction == "maximize" else -1.0
    incumbent = sign * _noisy(pow3(EPOCHS, 0.8, 0.5, 1.0), 0.003, seed=4)  # ends near 0.78
    plateau = sign * _noisy(pow3(EPOCHS, 0.5, 0.3, 1.0), 0.003, seed=5)  # ends near 0.49
    winner = sign * _noisy(pow3(EPOCHS, 0.95, 0.9, 1.0), 0.003, seed=6)  # 0.77 at epoch 5, ends near 0.92
    pruner = LearningCurvePruner(min_epochs=3, max_epochs=30)
    study = _study(direction, pruner, incumbent)
    assert _decisions(study, plateau, 5) == [False, False, True, True, True]  # never before min_epochs
    assert _decisions(study, winner, 5) == [False] * 5
    assert sign * winner[4] < sign * max(incumbent, key=lambda v: sign * v)  # it had not beaten the best yet


def test_nothing_is_pruned_without_a_completed_trial_or_at_the_last_epoch():
    study = optuna.create_study(direction="maximize", pruner=LearningCurvePruner(min_epochs=3, max_epochs=6))
    assert _decisions(study, pow3(EPOCHS, 0.2, 0.1, 1.0), 6) == [False] * 6
    study = _study("maximize", LearningCurvePruner(min_epochs=3, max_epochs=6), pow3(EPOCHS, 0.8, 0.5, 1.0))
    decisions = _decisions(study, pow3(EPOCHS, 0.2, 0.1, 1.0), 6)
    assert decisions[2] and not decisions[-1]


def test_the_registry_and_bad_names_and_parameters():
    assert "curve" in pruners.names()
    pruner = make_pruner("curve", min_epochs=1, max_epochs=27)
    assert isinstance(pruner, LearningCurvePruner) and pruner.min_epochs == 3 and pruner.max_epochs == 27
    with pytest.raises(UnknownNameError, match="curve"):
        make_pruner("curves", min_epochs=1, max_epochs=4)
    with pytest.raises(UnknownNameError, match="curve"):
        SearchConfig((Param("hyperparams.lr", "float", low=1e-3, high=1.0, log=True),), pruner="extrapolate")
    with pytest.raises(ConfigError, match="k"):
        LearningCurvePruner(max_epochs=5, k=-1.0)
    with pytest.raises(ConfigError, match="max_epochs"):
        LearningCurvePruner(min_epochs=4, max_epochs=3)
    study = {"study": {"protocol": "search", "tasks": ["digits_mlp"]}, "budget": {"epochs": 2},
             "recipes": [{"optimizer": "sgd"}],
             "search": {"sampler": "tpe", "pruner": "curve", "space": {"hyperparams.lr": {"low": 1e-3, "high": 1.0}}}}
    assert study_from_dict(study).search.pruner == "curve"


def test_a_real_search_with_the_curve_pruner_records_pruned_trials():
    space = (Param("hyperparams.lr", "float", low=1e-6, high=0.3, log=True),)  # a terrible low-lr part
    base = Recipe("momentum", {"lr": 0.1, "momentum": 0.9}, batch_size=32, epochs=6, train_size=200)
    outcome = run_search_local("digits_mlp", "digits_mlp", base,
                               SearchConfig(space, sampler="random", pruner="curve", n_trials=5, seed=0))
    statuses = [t.result.status for t in outcome.trials]
    pruned = [t for t in outcome.trials if t.result.status is RunStatus.PRUNED]
    assert len(statuses) == 5 and pruned, statuses
    assert all(3 <= len(t.result.epochs) < 6 for t in pruned)  # min_epochs 3, never at the last epoch
    assert outcome.epochs_spent < 5 * 6
    assert outcome.best is not None and outcome.best.result.status is RunStatus.FINISHED
    assert all(outcome.best.value > t.value for t in pruned)


def test_k_sets_how_much_optimism_a_close_trial_gets():
    incumbent = _noisy(pow3(EPOCHS, 0.8, 0.5, 1.0), 0.003, seed=4)
    close = _noisy(pow3(EPOCHS, 0.76, 0.5, 1.0), 0.01, seed=7)  # ends near 0.74, the best is near 0.79
    mean_rule = _study("maximize", LearningCurvePruner(min_epochs=3, max_epochs=30), incumbent)
    assert _decisions(mean_rule, close, 5)[-1]
    cautious = _study("maximize", LearningCurvePruner(min_epochs=3, max_epochs=30, k=10.0), incumbent)
    assert _decisions(cautious, close, 5) == [False] * 5
