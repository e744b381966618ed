"""Multi-objective search: objectives read from the study file and refused in one line, Optuna studies with
several directions under NSGA-II and TPE, a Pareto front derived from the store that is non-dominated, the
front retrained on every seed with Kendall's tau between search-time and retrained scores, and grouped
multivariate TPE on conditional spaces."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from scipy.stats import kendalltau

from optbench.analysis.search_trials import Retrained, architecture_searches, fidelity_tau, retrained_trials
from optbench.analysis.stats import summarize
from optbench.core.errors import ConfigError, ConfigProblems
from optbench.core.spec import Direction, EpochRecord, Recipe, RunResult, RunStatus, run_id
from optbench.report.html import render_report
from optbench.search import SearchConfig, make_sampler, parse_space, search_loop
from optbench.search.local import run_search_local
from optbench.search.loop import outcome_of, search_runs
from optbench.search.objectives import cost_value, non_dominated, parse_objectives
from optbench.search.study import build_study, ga_generations
from optbench.study.config import study_from_dict

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "studies" / "nas_pareto.toml"
MAX, MIN = Direction.MAXIMIZE, Direction.MINIMIZE
NAS_BASE = Recipe("adam", {"lr": 1e-2}, batch_size=64, epochs=1, train_size=300)
CONDITIONAL = {"task.block": {"choices": ["plain", "inverted"]},
               "task.expansion": {"choices": [2, 4], "when": {"task.block": "inverted"}},
               "task.channels": {"choices": ["8", "8-16", "16-32"]},
               "hyperparams.lr": {"low": 3e-3, "high": 3e-2, "log": True}}
LR_SPACE, _ = parse_space({"hyperparams.lr": {"low": 1e-4, "high": 1.0, "log": True},
                           "hyperparams.momentum": {"low": 0.0, "high": 0.95}}, "t.toml")
FAKE_BASE = Recipe("momentum", {"lr": 0.1, "momentum": 0.9}, batch_size=32, epochs=2, train_size=200)


class FakeRuns:
    """Instant 'training': valid accuracy peaks at lr = 0.1, the 'parameters' grow with the momentum (so the
    two objectives conflict only through the momentum), lr >= 0.9 diverges."""

    def __init__(self) -> None:
        self.runs: dict[str, RunResult] = {}

    def load_runs(self) -> list[RunResult]:
        return list(self.runs.values())

    def record(self, result: RunResult) -> None:
        self.runs[result.run_id] = result

    def try_run(self, spec, *, on_epoch=None, accept_pruned=False, annotate=None):
        if spec.run_id in self.runs:
            return None
        lr, momentum = spec.recipe.hyperparams["lr"], spec.recipe.hyperparams["momentum"]
        size = int(1000 + 9000 * momentum)
        result = RunResult(spec.run_id, spec.task, spec.recipe, spec.seed, RunStatus.FINISHED,
                           environment={**dict(annotate or {}), "optimizer_cost": {"trained_parameters": size}})
        quality = max(0.0, 1.0 - abs(math.log10(lr) + 1.0) / 3.0) * (0.5 + 0.5 * momentum)
        for epoch in range(1, spec.recipe.epochs + 1):
            if lr >= 0.9 and epoch == 2:
                result.status, result.error = RunStatus.DIVERGED, "loss is nan"
                break
            acc = quality * (1.0 - 0.5 ** epoch)
            result.epochs.append(EpochRecord(epoch, 10 * epoch, {"valid_accuracy": acc, "valid_loss": 1 - acc},
                                             0.01, 0.0, 1.0, lr))
        self.runs[spec.run_id] = result
        return result


def _fake_search(config: SearchConfig, runs: FakeRuns | None = None):
    runs = runs or FakeRuns()
    search_loop(runs.load_runs, runs.try_run, "digits_mlp", "digits_mlp", FAKE_BASE, config, record=runs.record)
    return runs, outcome_of(search_runs(runs.load_runs(), "digits_mlp", FAKE_BASE, config.space, 0), config)


def _dominates(a, b, directions) -> bool:
    sign = [1 if d is MIN else -1 for d in directions]
    a, b = [s * x for s, x in zip(sign, a, strict=True)], [s * x for s, x in zip(sign, b, strict=True)]
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def _assert_front(outcome, directions) -> None:
    done = [t for t in outcome.trials if t.result.status is RunStatus.FINISHED and all(map(math.isfinite, t.values))]
    front = {t.number for t in outcome.front}
    assert front and front <= {t.number for t in done}
    for t in outcome.front:  # nothing finished dominates a point of the front
        assert not any(_dominates(q.values, t.values, directions) for q in done)
    for t in done:  # everything off the front is dominated by a point on it
        if t.number not in front:
            assert any(_dominates(q.values, t.values, directions) for q in outcome.front)


# ------------------------------------------------------------------------------------ objectives and refusals


def test_objectives_are_parsed_and_bad_ones_refused_in_one_line():
    parsed = parse_objectives(["valid_accuracy:max", "params:min", "latency"])
    assert (parsed.metric, parsed.direction, parsed.costs) == ("valid_accuracy", MAX, ("params", "latency"))
    assert parse_objectives([]).costs == () and parse_objectives(["valid_loss"]).direction is None
    for bad in (["test_accuracy:max", "params"], ["params:min"], ["valid_accuracy", "params:max"],
                ["valid_accuracy", "size"], ["valid_accuracy", "params", "params"], "valid_accuracy", [1]):
        with pytest.raises(ConfigError) as info:
            parse_objectives(bad)
        message = str(info.value)
        assert "\n" not in message and "search.objectives" in message
        assert "params, flops, latency" in message and "valid_<metric>" in message
    assert cost_value(RunResult("r", "t", FAKE_BASE, 0, RunStatus.FINISHED,
                                environment={"model_cost": {"flops": 123}}), "flops") == 123.0
    assert math.isnan(cost_value(RunResult("r", "t", FAKE_BASE, 0, RunStatus.FINISHED), "params"))


def _study(**changes) -> dict:
    data = tomllib.loads(EXAMPLE.read_text())
    for path, value in changes.items():
        table, key = path.split("__")
        if value is None:
            data[table].pop(key, None)
        else:
            data[table][key] = value
    return data


def _problem(**changes) -> str:
    with pytest.raises(ConfigProblems) as info:
        study_from_dict(_study(**changes), "s.toml")
    return str(info.value)


def test_a_study_refuses_what_several_objectives_cannot_do_before_anything_runs():
    config = study_from_dict(_study(), str(EXAMPLE))
    assert config.search.objectives == ("valid_accuracy:max", "params:min")
    assert config.to_dict()["search"]["objectives"] == ["valid_accuracy:max", "params:min"]
    assert "search.pruner" in _problem(search__pruner="asha") and "cannot prune" in _problem(search__pruner="asha")
    assert "search.sampler" in _problem(search__sampler="cmaes")
    assert "search.objectives" in _problem(search__objectives=["valid_accuracy", "size"])
    assert "search.objectives[0]" in _problem(search__objectives=["valid_nope", "params"])
    assert "model_cost" in _problem(search__objectives=["valid_accuracy", "flops"])  # nothing measures FLOPs
    measured = _study(search__objectives=["valid_accuracy", "flops", "latency"])
    measured["recipes"][0]["techniques"] = ["model_cost"]
    assert study_from_dict(measured, "s.toml").search.objectives[1:] == ("flops", "latency")
    assert "protocol.rerun_front" in _problem(search__objectives=None)  # one objective re-runs its best
    assert "protocol.search_epochs" in _problem(protocol__search_epochs=9)
    with pytest.raises(ConfigError, match="search.pruner"):  # the Python API refuses it too
        SearchConfig(LR_SPACE, sampler="tpe", pruner="median", costs=("params",))
    with pytest.raises(ConfigError, match="search.optuna_storage"):
        SearchConfig(LR_SPACE, costs=("params",), optuna_storage="sqlite:///x.db")


def test_example_study_validates_and_plans_its_front_reruns():
    from optbench.study.runner import planned_runs

    config = study_from_dict(_study(), str(EXAMPLE))
    assert config.search.sampler == "nsga2" and config.options["rerun_front"] == 8
    assert config.options["search_epochs"] == 2 < config.budget.epochs
    assert planned_runs(config) == 40 + 8 * 3


# ------------------------------------------------------------------------------------ the Pareto front


def test_non_dominated_is_the_pareto_front_and_agrees_with_optuna():
    rng = np.random.default_rng(0)
    for directions in ((MAX, MIN), (MIN, MIN, MAX)):
        values = rng.integers(0, 6, size=(40, len(directions))).astype(float).tolist()  # with ties
        mask = non_dominated(values, directions)
        for v, on in zip(values, mask, strict=True):
            assert on == (not any(_dominates(w, v, directions) for w in values))
        study = optuna.create_study(directions=[d.value for d in directions])
        for v in values:
            study.add_trial(optuna.trial.create_trial(values=v, params={}, distributions={}))
        assert {t.number for t in study.best_trials} == {i for i, on in enumerate(mask) if on}
    assert non_dominated([], (MAX, MIN)) == []
    with pytest.raises(ValueError):
        non_dominated([[1.0, math.nan]], (MAX, MIN))


@pytest.mark.parametrize("sampler", ["nsga2", "tpe", "random", "qmc", pytest.param("gp", marks=pytest.mark.slow)])
def test_a_multi_objective_search_has_a_non_dominated_front(sampler):
    config = SearchConfig(LR_SPACE, sampler=sampler, n_trials=14, seed=2, costs=("params",))
    runs, outcome = _fake_search(config)
    assert len(outcome.trials) == 14 and len(outcome.trials[0].values) == 2
    _assert_front(outcome, (MAX, MIN))
    assert outcome.front[0].value == max(t.value for t in outcome.front)  # best first by the metric
    _, again = _fake_search(config, FakeRuns())  # reproducible: the same points from the same seed
    assert [t.result.run_id for t in again.trials] == [t.result.run_id for t in outcome.trials]


def test_ga_generations_are_the_ones_optuna_gives_live():
    sampler = optuna.samplers.NSGAIISampler(population_size=3, seed=0)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    for k in range(14):
        trial = study.ask()
        x = trial.suggest_float("x", 0, 1)
        if k in (2, 7):
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, [x, (1 - x) ** 2])
    key = sampler._get_generation_key()
    live = [t.system_attrs[key] for t in study.trials]
    assert live[-1] >= 3 and ga_generations(study.trials, 3) == live


def test_a_rebuilt_nsga2_study_breeds_from_the_stored_generations():
    config = SearchConfig(LR_SPACE, sampler="nsga2", n_trials=16, seed=0, costs=("params",))  # population 4
    runs, _ = _fake_search(SearchConfig(LR_SPACE, sampler="nsga2", n_trials=9, seed=0, costs=("params",)))
    history = search_runs(runs.load_runs(), "digits_mlp", FAKE_BASE, LR_SPACE, 0)
    study = build_study(history, config, number=len(history), retry=0, refused=[], max_epochs=2)
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    trial = study.ask()
    trial.suggest_float("hyperparams.lr", 1e-4, 1.0, log=True)  # breeds: the generation is computed
    frozen = study.trials[-1]
    generation = frozen.system_attrs[study.sampler._get_generation_key()]
    assert generation == 2  # 9 stored trials: generations 0 and 1 full (4 each), the 9th starts generation 2
    assert len(study.sampler.get_parent_population(study, generation)) == 4


def test_a_diverged_trial_keeps_its_cost_and_takes_the_worst_metric():
    config = SearchConfig(LR_SPACE, sampler="random", n_trials=8, seed=0, costs=("params",))
    runs = FakeRuns()
    diverged = FAKE_BASE.__class__("momentum", {"lr": 0.95, "momentum": 0.5}, batch_size=32, epochs=2,
                                   train_size=200)
    from optbench.runs.plan import RunSpec

    runs.try_run(RunSpec("digits_mlp", "digits_mlp", diverged, 0), annotate={"trial": 0})
    runs, outcome = _fake_search(config, runs)
    history = search_runs(runs.load_runs(), "digits_mlp", FAKE_BASE, LR_SPACE, 0)
    study = build_study(history, config, number=len(history), retry=0, refused=[], max_epochs=2)
    told = study.trials[0]
    assert history[0].status is RunStatus.DIVERGED and told.values[1] == 5500.0
    assert told.values[0] == min(t.values[0] for t in study.trials if t.values)
    assert all(t.number != 0 for t in outcome.front)  # a diverged run is never on the front


# ------------------------------------------------------------------------------------ conditional spaces


def test_tpe_models_conditional_spaces_jointly_and_leaves_absent_parameters_out():
    space, problems = parse_space(CONDITIONAL, "t.toml", task="nas_cnn")
    assert problems == []
    assert make_sampler("tpe", space, seed=0, n_trials=8)._group is True
    assert make_sampler("tpe", LR_SPACE, seed=0, n_trials=8)._group is False
    config = SearchConfig(space, sampler="tpe", n_trials=8, seed=1, costs=("params",))
    outcome = run_search_local("nas_cnn", "nas_cnn", NAS_BASE, config)
    assert len(outcome.trials) == 8 and all(t.result.status is RunStatus.FINISHED for t in outcome.trials)
    for t in outcome.trials:  # the expansion only where the block is inverted, in the trial and its task
        assert ("task.expansion" in t.params) == (t.params["task.block"] == "inverted")
        assert ("expansion=" in t.result.task) == (t.params["task.block"] == "inverted")
        assert t.values[1] == t.result.environment["optimizer_cost"]["trained_parameters"]
    _assert_front(outcome, (MAX, MIN))


def test_an_nsga2_architecture_search_on_the_store_resumes_with_the_same_front(tmp_path):
    from optbench.runs.store import open_store
    from optbench.search import run_search, search_outcome

    space, _ = parse_space(CONDITIONAL, "t.toml", task="nas_cnn")
    config = SearchConfig(space, sampler="nsga2", n_trials=9, seed=0, costs=("params",))
    url = str(tmp_path / "s.db")
    with open_store(url) as store:
        store.ensure_study("pareto", {})
    outcome = run_search(url, "pareto", "nas_cnn", "nas_cnn", NAS_BASE, config, device=torch.device("cpu"))
    _assert_front(outcome, (MAX, MIN))
    with open_store(url) as store:  # derivable from the store alone
        stored = search_outcome(store, "pareto", "nas_cnn", NAS_BASE, config)
    assert [t.result.run_id for t in stored.front] == [t.result.run_id for t in outcome.front]
    again = run_search(url, "pareto", "nas_cnn", "nas_cnn", NAS_BASE, config, device=torch.device("cpu"))
    assert [t.result.run_id for t in again.trials] == [t.result.run_id for t in outcome.trials]


# ------------------------------------------------------------------------------------ retraining, Kendall's tau


def _run(task: str, epochs: int, seed: int, valid: float, test: float, trial: int | None = None) -> RunResult:
    recipe = Recipe("adam", {"lr": 0.01}, epochs=epochs)
    record = EpochRecord(epochs, 10, {"valid_accuracy": valid, "test_accuracy": test}, 1.0, 0.1, 100.0, 0.01)
    environment = {"optimizer_cost": {"trained_parameters": 100 * len(task)}}
    if trial is not None:
        environment["trial"] = trial
    return RunResult(run_id(task, recipe, seed), task, recipe, seed, RunStatus.FINISHED, [record],
                     environment=environment, total_seconds=1.0)


def test_retrained_trials_and_kendall_tau_come_from_the_store():
    tasks = [f"nas_cnn[channels={c}]" for c in ("8", "8-16", "16-32", "16-32-64")]
    search = [(0.5, 0), (0.7, 1), (0.6, 2), (0.9, 3)]  # 1-epoch validation accuracy of each trial
    full = {0: (0.80, 0.82), 1: (0.90, 0.92), 2: (0.85, 0.86)}  # trial 3 is never retrained
    runs = [_run(tasks[k], 1, 0, v, 0.0, trial=k) for v, k in search]
    for k, (a, b) in full.items():
        runs += [_run(tasks[k], 3, 0, a, a), _run(tasks[k], 3, 1, b, b)]
    rows = retrained_trials([r for r in runs if "trial" in r.environment], runs, "valid_accuracy", MAX)
    assert [r.number for r in rows] == [1, 2, 0]  # best search value first
    assert rows[0].valid.n == 2 and rows[0].valid.mean == pytest.approx(0.91)
    assert rows[0].test.mean == pytest.approx(0.91) and rows[0].parameters == 100 * len(tasks[1])
    tau = fidelity_tau(rows)
    expected = kendalltau([0.7, 0.6, 0.5], [0.91, 0.855, 0.81])
    assert (tau.tau, tau.n) == (pytest.approx(expected.statistic), 3) and tau.tau == pytest.approx(1.0)
    (found,) = architecture_searches(runs, "valid_accuracy", MAX)
    assert [r.number for r in found.retrained] == [1, 2, 0] and found.tau == tau
    page = render_report(runs, study="nas")  # the search's section shows the retrained trials and tau
    assert "nas_retrained_nas_cnn" in [t.name for t in page.tables]
    assert "Kendall&#x27;s tau between the search-time and the retrained valid_accuracy: 1.000" in page.render()
    lone = Retrained(0, "t", 0.5, summarize([0.8]), summarize([0.8]))
    assert math.isnan(fidelity_tau([lone]).tau) and fidelity_tau([lone]).n == 1


def test_the_front_is_retrained_on_every_seed_tested_and_reported(tmp_path):
    from optbench.report.protocols import protocol_markdown
    from optbench.runs.store import open_store
    from optbench.study.runner import run_study

    data = _study(budget__trials=5, budget__epochs=2, study__seeds=2, protocol__search_epochs=1)
    data["search"]["space"] = {"task.block": {"choices": ["plain", "inverted"]},
                               "task.expansion": {"choices": [2], "when": {"task.block": "inverted"}},
                               "task.channels": {"choices": ["8", "8-16", "16-32"]}}
    data["protocol"]["rerun_front"] = 2
    config = study_from_dict(data, "pareto.toml")
    store = tmp_path / "s.db"
    outcome = run_study(config, store, device=torch.device("cpu"))
    (task,) = outcome.result.tasks
    assert task.objectives == ("valid_accuracy", "params") and 1 <= len(task.front) <= 2
    with open_store(store) as db:
        runs = db.load_runs(study=config.name)
    trials = [r for r in runs if "trial" in r.environment]
    assert len(trials) == 5 and all(r.recipe.epochs == 1 for r in trials)  # the low-fidelity search
    values = [(r.epochs[-1].metrics["valid_accuracy"], r.environment["optimizer_cost"]["trained_parameters"])
              for r in trials if r.status is RunStatus.FINISHED]
    front_values = {(f.search_value, f.parameters) for f in task.front}
    on = [v for v, f in zip(values, non_dominated(values, (MAX, MIN)), strict=True) if f]
    assert front_values <= set(on)  # chosen from the validation metric and size alone
    for f in task.front:  # retrained from scratch on every seed at the full budget, and tested
        mine = [r for r in runs if r.task == f.task and "trial" not in r.environment]
        assert sorted(r.seed for r in mine) == [0, 1] and all(r.recipe.epochs == 2 for r in mine)
        assert f.test.n == 2 and math.isfinite(f.test.mean)
    assert task.rerun_test is not None and task.rerun_test.n == 2
    assert task.tau is not None and task.tau.n == len(task.front)
    text = protocol_markdown(outcome.result)
    assert "Kendall's tau, search-time vs retrained valid_accuracy" in text and "retrained on 2 seeds" in text
    (found,) = architecture_searches(runs, "valid_accuracy", MAX)  # the report's view, from the store
    assert {r.number for r in found.retrained} == {f.number for f in task.front}
    assert found.tau.n == task.tau.n and (found.tau.tau == task.tau.tau or math.isnan(task.tau.tau))


def test_several_objectives_need_protocol_search():
    data = {"study": {"protocol": "crowded-valley", "tasks": ["digits_mlp"], "seeds": 1},
            "budget": {"epochs": 1, "trials": 2}, "recipes": [{"optimizer": "adam"}],
            "search": {"objectives": ["valid_accuracy", "params"]}}
    with pytest.raises(ConfigProblems, match="search.objectives"):
        study_from_dict(data, "s.toml")

