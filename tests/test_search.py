"""Tests of optbench.search: spaces, samplers, pruners and the adaptive trial loop."""

from __future__ import annotations

import importlib.util
import itertools
import math

import optuna
import pytest
import torch

from optbench.core.errors import ConfigError, OptbenchError, UnknownNameError
from optbench.core.spec import Direction, EpochRecord, Recipe, RunResult, RunStatus
from optbench.engine import Pruned
from optbench.search import (
    Param,
    SearchConfig,
    apply_params,
    grid_axes,
    grid_values,
    make_pruner,
    make_sampler,
    parse_space,
    pruners,
    read_params,
    samplers,
    search_loop,
    search_outcome,
)
from optbench.search.local import LocalRuns, run_search_local
from optbench.search.loop import outcome_of, search_runs
from optbench.search.samplers import distributions
from optbench.search.study import build_study

LR = Param("hyperparams.lr", "float", low=1e-4, high=1.0, log=True)
MOMENTUM = Param("hyperparams.momentum", "float", low=0.0, high=0.95)
SPACE = (LR, MOMENTUM)
BASE = Recipe("momentum", {"lr": 0.1, "momentum": 0.9}, batch_size=32, epochs=2, train_size=200)


class FakeRuns:
    """A stand-in executor that 'trains' instantly: valid accuracy peaks at lr = 0.1 and grows
    with epochs; lr >= 0.9 diverges in epoch 2; the first claim of points in ``refuse`` is
    refused (as if another worker had it)."""

    def __init__(self, epochs: int = 4, refuse_first: int = 0) -> None:
        self.runs: dict[str, RunResult] = {}
        self.epochs = epochs
        self.refuse_first = refuse_first
        self.refused: list[str] = []

    def load_runs(self) -> list[RunResult]:
        return list(self.runs.values())

    def record(self, result: RunResult) -> None:
        self.runs[result.run_id] = result

    def try_run(self, spec, *, on_epoch=None, accept_pruned=False, annotate=None):
        prev = self.runs.get(spec.run_id)
        if prev is not None and (prev.status in (RunStatus.FINISHED, RunStatus.DIVERGED)
                                 or (accept_pruned and prev.status is RunStatus.PRUNED)):
            return None
        if len(self.refused) < self.refuse_first:
            self.refused.append(spec.run_id)
            return None
        result = RunResult(spec.run_id, spec.task, spec.recipe, spec.seed, RunStatus.FINISHED,
                           environment=dict(annotate or {}))
        lr = spec.recipe.hyperparams["lr"]
        quality = max(0.0, 1.0 - abs(math.log10(lr) + 1.0) / 3.0)
        try:
            for epoch in range(1, spec.recipe.epochs + 1):
                if lr >= 0.9 and epoch == 2:
                    result.status, result.error = RunStatus.DIVERGED, "loss is nan"
                    break
                acc = quality * (1.0 - 0.5 ** epoch)
                record = EpochRecord(epoch, 10 * epoch, {"valid_accuracy": acc, "valid_loss": 1.0 - acc},
                                     0.01, 0.0, 1.0, lr)
                result.epochs.append(record)
                if on_epoch is not None:
                    on_epoch(record)
        except Pruned:
            result.status = RunStatus.PRUNED
        self.runs[spec.run_id] = result
        return result


def _search(runs, config, base=BASE):
    search_loop(runs.load_runs, runs.try_run, "digits_mlp", "digits_mlp", base, config, record=runs.record)
    return outcome_of(search_runs(runs.load_runs(), "digits_mlp", base, config.space, 0), config)


# ------------------------------------------------------------------------------------ spaces


def test_parse_space_reads_the_toml_form():
    space, problems = parse_space({
        "hyperparams.lr": {"low": 1e-5, "high": 1e-1, "log": True},
        "batch_size": {"choices": [64, 128]},
        "hyperparams.momentum": {"low": 0.8, "high": 0.99},
        "warmup_steps": {"low": 1, "high": 8, "type": "int"},
    }, "study.toml")
    assert problems == []
    assert space == (Param("hyperparams.lr", "float", 1e-5, 1e-1, log=True),
                     Param("batch_size", "categorical", choices=(64, 128)),
                     Param("hyperparams.momentum", "float", 0.8, 0.99),
                     Param("warmup_steps", "int", 1, 8))


def test_parse_space_reports_every_problem():
    space, problems = parse_space({
        "hyperparams.lr": {"low": 0.0, "high": 1.0, "log": True, "step": 2},
        "hyperparams.momentum": {"low": 0.9, "high": 0.9},
        "batch_size": {"choices": []},
        "weight_decay": {"low": 0.0, "high": 0.1},
        "hyperparams.beta1": {"low": 0.5, "high": 0.99},
    }, "s.toml")
    paths = sorted(p.path for p in problems)
    assert paths == ["search.space.batch_size.choices", "search.space.hyperparams.lr.low",
                     "search.space.hyperparams.lr.step", "search.space.hyperparams.momentum.high",
                     "search.space.weight_decay"]
    assert all(p.source == "s.toml" for p in problems)
    assert "allowed" in next(p for p in problems if p.path == "search.space.weight_decay").message
    assert space == (Param("hyperparams.beta1", "float", 0.5, 0.99),)


def test_param_rejects_bad_input():
    with pytest.raises(ConfigError, match="low"):
        Param("hyperparams.lr", "float", 0.0, 1.0, log=True)
    with pytest.raises(ConfigError, match="high"):
        Param("hyperparams.lr", "float", 1.0, 1.0)
    with pytest.raises(ConfigError, match="path"):
        Param("hyperparams", "float", 0.0, 1.0)
    with pytest.raises(ConfigError, match="choices"):
        Param("batch_size", "categorical", choices=())


def test_apply_and_read_round_trip():
    space = (LR, Param("batch_size", "categorical", choices=(16, 64)), Param("schedule_params.gamma", "float", 0.1, 1))
    values = {"hyperparams.lr": 0.003, "batch_size": 64, "schedule_params.gamma": 0.5}
    recipe = apply_params(BASE, values)
    assert recipe.hyperparams == {"lr": 0.003, "momentum": 0.9}
    assert recipe.batch_size == 64 and recipe.schedule_params == {"gamma": 0.5}
    assert read_params(recipe, space) == values
    assert BASE.hyperparams["lr"] == 0.1  # the base is untouched
    with pytest.raises(ConfigError):
        apply_params(BASE, {"nonsense": 1})


def test_grid_values_are_log_spaced_like_deepobs():
    values = grid_values(Param("hyperparams.lr", "float", 1e-5, 1e2, log=True), 36)
    assert len(values) == 36 and values[0] == pytest.approx(1e-5) and values[-1] == pytest.approx(1e2)
    ratios = [b / a for a, b in itertools.pairwise(values)]
    assert max(ratios) == pytest.approx(min(ratios))
    assert grid_values(Param("warmup_steps", "int", 0, 3), 10) == [0, 1, 2, 3]
    with pytest.raises(ConfigError):
        grid_values(LR, 1)


# ------------------------------------------------------------------------------ registries


def test_registries_hold_the_methods():
    assert samplers.names() == ["cmaes", "gp", "grid", "nsga2", "qmc", "random", "tpe"]
    assert pruners.names() == ["asha", "curve", "hyperband", "median", "none"]
    with pytest.raises(UnknownNameError, match="tpe"):
        make_sampler("bayes", SPACE, seed=0, n_trials=4)
    with pytest.raises(UnknownNameError, match="asha"):
        make_pruner("sha", min_epochs=1, max_epochs=4)
    with pytest.raises(ConfigError):
        make_pruner("asha", min_epochs=3, max_epochs=2)


@pytest.mark.parametrize("name", ["grid", "random", "qmc", "tpe", "gp", "cmaes"])
def test_each_sampler_builds_and_asks_inside_the_space(name):
    if name == "cmaes" and importlib.util.find_spec("cmaes") is None:
        with pytest.raises(ConfigError, match="cmaes"):
            make_sampler(name, SPACE, seed=0, n_trials=4)
        pytest.skip("the cmaes package is not installed")
    sampler = make_sampler(name, SPACE, seed=3, n_trials=4)
    assert isinstance(sampler, optuna.samplers.BaseSampler)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    for _ in range(3):
        trial = study.ask(distributions(SPACE))
        assert 1e-4 <= trial.params["hyperparams.lr"] <= 1.0
        assert 0.0 <= trial.params["hyperparams.momentum"] <= 0.95
        study.tell(trial, trial.params["hyperparams.momentum"])


@pytest.mark.parametrize("name", ["random", "qmc", "tpe", "gp"])
def test_each_sampler_runs_a_search_of_distinct_points(name):
    outcome = _search(FakeRuns(epochs=2), SearchConfig(SPACE, sampler=name, n_trials=5, seed=1))
    assert [t.number for t in outcome.trials] == [0, 1, 2, 3, 4]
    assert len({t.result.run_id for t in outcome.trials}) == 5
    assert all(t.result.environment == {"trial": t.number, "search": name} for t in outcome.trials)
    assert outcome.epochs_spent == sum(len(t.result.epochs) for t in outcome.trials)


def test_grid_covers_the_grid_exactly():
    config = SearchConfig(SPACE, sampler="grid", n_trials=9, grid_points=3, seed=5)
    outcome = _search(FakeRuns(epochs=2), config)
    axes = grid_axes(SPACE, 9, 3)
    expected = {(lr, m) for lr in axes["hyperparams.lr"] for m in axes["hyperparams.momentum"]}
    got = {(t.params["hyperparams.lr"], t.params["hyperparams.momentum"]) for t in outcome.trials}
    assert len(outcome.trials) == 9 and got == expected
    with pytest.raises(ConfigError, match="grid"):
        SearchConfig(SPACE, sampler="grid", n_trials=10, grid_points=3)


def test_grid_without_grid_points_fits_n_trials():
    config = SearchConfig(SPACE, sampler="grid", n_trials=10)
    assert config.target_trials() == 9
    assert len(_search(FakeRuns(epochs=1), config).trials) == 9


# -------------------------------------------------------------------------------- pruners


@pytest.mark.parametrize("pruner", ["asha", "median", "hyperband"])
def test_pruners_stop_bad_trials_and_keep_their_epochs(pruner):
    space = (Param("hyperparams.lr", "float", low=1e-6, high=0.5, log=True),)  # a terrible low-lr part
    base = Recipe("momentum", {"lr": 0.1, "momentum": 0.9}, batch_size=32, epochs=9, train_size=200)
    config = SearchConfig(space, sampler="random", pruner=pruner, n_trials=12, seed=0)
    outcome = _search(FakeRuns(), config, base)
    pruned = [t for t in outcome.trials if t.result.status is RunStatus.PRUNED]
    assert len(outcome.trials) == 12
    assert pruned, "some trials must be pruned"
    assert all(0 < len(t.result.epochs) < 9 for t in pruned)
    assert outcome.epochs_spent < 12 * 9
    assert outcome.best is not None and outcome.best.result.status is RunStatus.FINISHED


def test_asha_on_6_real_trials_prunes_some():
    space = (Param("hyperparams.lr", "float", low=1e-7, high=0.3, log=True),)
    base = Recipe("momentum", {"lr": 0.1, "momentum": 0.9}, batch_size=32, epochs=3, train_size=200)
    outcome = run_search_local("digits_mlp", "digits_mlp", base,
                               SearchConfig(space, sampler="random", pruner="asha", n_trials=6, seed=0))
    statuses = [t.result.status for t in outcome.trials]
    assert len(statuses) == 6 and RunStatus.PRUNED in statuses


# ------------------------------------------------------------------------------- the loop


def test_resume_gives_identical_trials():
    config = SearchConfig(SPACE, sampler="tpe", pruner="median", n_trials=4, seed=2)
    whole = run_search_local("digits_mlp", "digits_mlp", BASE, config)
    runs = LocalRuns()
    first = run_search_local("digits_mlp", "digits_mlp", BASE, SearchConfig(SPACE, sampler="tpe", pruner="median",
                                                                             n_trials=2, seed=2), runs=runs)
    assert len(first.trials) == 2
    resumed = run_search_local("digits_mlp", "digits_mlp", BASE, config, runs=runs)
    assert [t.params for t in resumed.trials] == [t.params for t in whole.trials]
    assert [t.value for t in resumed.trials] == [t.value for t in whole.trials]
    assert [t.result.status for t in resumed.trials] == [t.result.status for t in whole.trials]


def test_an_interrupted_trial_is_asked_again_with_the_same_point():
    config = SearchConfig(SPACE, sampler="tpe", n_trials=4, seed=7)
    whole = _search(FakeRuns(), config)
    runs = FakeRuns()
    _search(runs, SearchConfig(SPACE, sampler="tpe", n_trials=3, seed=7))
    history = search_runs(runs.load_runs(), "digits_mlp", BASE, SPACE, 0)
    study = build_study(history, config, number=3, retry=0, refused=[], max_epochs=BASE.epochs)
    assert study.ask(distributions(SPACE)).params == whole.trials[3].params


def test_a_refused_claim_asks_again_and_the_search_completes():
    runs = FakeRuns(refuse_first=2)
    outcome = _search(runs, SearchConfig(SPACE, sampler="tpe", n_trials=4, seed=0))
    assert len(outcome.trials) == 4 and len(runs.refused) == 2
    assert len({t.result.run_id for t in outcome.trials}) == 4


def test_diverged_and_failed_trials_count_and_never_win():
    space = (Param("hyperparams.lr", "categorical", choices=(0.1, 0.95, 0.01)),)
    config = SearchConfig(space, sampler="grid", n_trials=3)
    outcome = _search(FakeRuns(), config)
    by_lr = {t.params["hyperparams.lr"]: t for t in outcome.trials}
    assert by_lr[0.95].result.status is RunStatus.DIVERGED
    assert outcome.best is by_lr[0.1]
    history = search_runs(FakeRuns().load_runs(), "digits_mlp", BASE, space, 0)
    assert history == []
    study = build_study([t.result for t in outcome.trials], config, number=3, retry=0, refused=[], max_epochs=4)
    values = {t.params["hyperparams.lr"]: t.value for t in study.trials}
    assert values[0.95] == min(values.values())  # diverged -> the worst value seen


def test_a_space_smaller_than_n_trials_raises():
    space = (Param("hyperparams.lr", "categorical", choices=(0.1, 0.01)),)
    with pytest.raises(OptbenchError, match="fewer distinct points"):
        _search(FakeRuns(epochs=1), SearchConfig(space, sampler="random", n_trials=3))


def test_the_objective_must_be_a_validation_key():
    with pytest.raises(ConfigError, match="valid_"):
        SearchConfig(SPACE, objective="test_accuracy")
    with pytest.raises(ConfigError, match="valid_"):
        SearchConfig(SPACE, objective="train_loss")
    with pytest.raises(ConfigError):
        SearchConfig(SPACE, use="mean")
    with pytest.raises(ConfigError, match="valid_loss"):
        _search(FakeRuns(epochs=1), SearchConfig(SPACE, objective="valid_perplexity", n_trials=2))


def test_minimizing_the_validation_loss():
    config = SearchConfig(SPACE, sampler="tpe", n_trials=4, objective="valid_loss", direction=Direction.MINIMIZE)
    outcome = _search(FakeRuns(epochs=2), config)
    finished = [t.value for t in outcome.trials if t.result.status is RunStatus.FINISHED]
    assert outcome.best.value == min(finished)


def test_search_outcome_reads_the_store(tmp_path):
    from optbench.runs.store import open_store

    config = SearchConfig(SPACE, sampler="random", n_trials=3, seed=4)
    runs = FakeRuns(epochs=2)
    expected = _search(runs, config)
    other = apply_params(BASE, {"hyperparams.lr": 0.5, "epochs": 3})  # not a trial: epochs differ
    with open_store(tmp_path / "r.db") as store:
        store.ensure_study("tune", {})
        for run in [*runs.load_runs(), RunResult("x" * 16, "digits_mlp", other, 0, RunStatus.FINISHED)]:
            store.save_run(run, study="tune")
        got = search_outcome(store, "tune", "digits_mlp", BASE, config)
    assert [t.params for t in got.trials] == [t.params for t in expected.trials]
    assert [t.value for t in got.trials] == [t.value for t in expected.trials]
    assert got.epochs_spent == expected.epochs_spent


def test_run_search_on_the_store_matches_the_in_process_loop(tmp_path):
    from optbench.runs.store import open_store
    from optbench.search import run_search

    config = SearchConfig(SPACE, sampler="tpe", pruner="asha", n_trials=4, seed=3)
    local = run_search_local("digits_mlp", "digits_mlp", BASE, config)
    url = str(tmp_path / "s.db")
    with open_store(url) as store:
        store.ensure_study("tune", {"search": "tpe"})
    outcome = run_search(url, "tune", "digits_mlp", "digits_mlp", BASE, config, device=torch.device("cpu"))
    assert [t.params for t in outcome.trials] == [t.params for t in local.trials]
    assert [t.value for t in outcome.trials] == [t.value for t in local.trials]
    assert [t.result.environment["trial"] for t in outcome.trials] == [0, 1, 2, 3]
    again = run_search(url, "tune", "digits_mlp", "digits_mlp", BASE, config, device=torch.device("cpu"))
    assert [t.result.run_id for t in again.trials] == [t.result.run_id for t in outcome.trials]  # nothing rerun


def test_run_search_with_two_workers_shares_history(tmp_path):
    from optbench.runs.store import open_store
    from optbench.search import run_search

    config = SearchConfig(SPACE, sampler="random", n_trials=4, seed=0)
    url = str(tmp_path / "w.db")
    with open_store(url) as store:
        store.ensure_study("tune", {})
    outcome = run_search(url, "tune", "digits_mlp", "digits_mlp", BASE, config, workers=2,
                         device=torch.device("cpu"))
    assert 4 <= len(outcome.trials) <= 5
    assert len({t.result.run_id for t in outcome.trials}) == len(outcome.trials)
    assert {t.result.environment["worker"]["name"] for t in outcome.trials} <= {"w0", "w1"}


def test_grid_with_refused_claims_still_covers_the_grid():
    config = SearchConfig(SPACE, sampler="grid", n_trials=4, grid_points=2, seed=1)
    outcome = _search(FakeRuns(epochs=1, refuse_first=3), config)
    axes = grid_axes(SPACE, 4, 2)
    expected = {(lr, m) for lr in axes["hyperparams.lr"] for m in axes["hyperparams.momentum"]}
    assert {(t.params["hyperparams.lr"], t.params["hyperparams.momentum"]) for t in outcome.trials} == expected
