"""Architecture search: ``task.<parameter>`` paths and ``when`` conditions in a search space, sampled
define-by-run, trials on parameterised tasks, unrealizable points stored as failed trials."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest

from optbench.core.errors import ConfigError, ConfigProblems
from optbench.core.spec import Recipe, RunStatus
from optbench.search import SearchConfig, parse_space, search_loop
from optbench.search.local import LocalRuns, run_search_local
from optbench.search.loop import search_runs
from optbench.search.space import trial_task, trial_values
from optbench.study.config import study_from_dict
from optbench.tasks import parse_task_ref

BASE = Recipe("adam", {"lr": 1e-2}, batch_size=64, epochs=1, train_size=300)
SPACE_TABLE = {
    "task.block": {"choices": ["plain", "inverted"]},
    "task.expansion": {"choices": [2, 4], "when": {"task.block": "inverted"}},
    "task.channels": {"choices": ["8-16", "16"]},
}
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "studies" / "nas_digits.toml"


def _space(table: dict) -> tuple:
    space, problems = parse_space(table, "t.toml", task="nas_cnn")
    assert problems == []
    return space


def _study(space: dict) -> dict:
    return {"study": {"protocol": "search", "tasks": ["nas_cnn"], "seeds": 1},
            "budget": {"epochs": 1, "trials": 2}, "recipes": [{"optimizer": "adam"}],
            "search": {"sampler": "tpe", "space": space}}


def _problems(space: dict) -> list[str]:
    with pytest.raises(ConfigProblems) as info:
        study_from_dict(_study(space), "s.toml")
    lines = str(info.value).splitlines()
    return [line for line in lines if "search.space" in line]


def test_space_reads_task_paths_and_conditions():
    space = _space(SPACE_TABLE)
    assert [p.path for p in space] == ["task.block", "task.expansion", "task.channels"]
    assert space[1].when == (("task.block", "inverted"),)
    assert trial_task("nas_cnn[depth=2]", "nas_cnn[depth=2]", {"block": "plain", "channels": "16"}) == \
        ("nas_cnn[block=plain,channels=16,depth=2]",) * 2
    values = trial_values("nas_cnn[block=plain,channels=16,depth=2]", BASE, space, "nas_cnn[depth=2]")
    assert values == {"task.block": "plain", "task.channels": "16"}  # "16" read back as its choice
    with pytest.raises(KeyError):  # expansion present on a plain block: not a trial of this space
        trial_values("nas_cnn[block=plain,channels=16,depth=2,expansion=2]", BASE, space, "nas_cnn[depth=2]")


def test_bad_spaces_name_the_key_path():
    bad = {"task.block": {"choices": ["plain", "inverted"]},
           "task.depth": {"low": 3, "high": 1, "type": "int"},  # empty range
           "task.expansion": {"choices": [2], "when": {"task.kernel": 3}, "size": 1},  # later/unknown path, key
           "task.kernel": {"choices": [3, 5]},
           "task.nope": {"choices": [1, 2]}}
    _, problems = parse_space(bad, "t.toml", task="nas_cnn")
    paths = {p.path for p in problems}
    assert {"search.space.task.depth.high", "search.space.task.expansion.when.task.kernel",
            "search.space.task.expansion.size", "search.space.task.nope"} <= paths
    # through a study file: one line per problem, naming the key path, before any trial
    lines = _problems({"task.block": {"choices": ["plain"]}, "task.width": {"low": 2.0, "high": 1.0},
                       "task.expansion": {"choices": [2], "when": {"task.kernel": 3}}, "task.kernel": {"choices": [3]},
                       "task.colour": {"choices": ["red"]}})
    assert any("search.space.task.width.high" in line for line in lines)
    assert any("search.space.task.expansion.when.task.kernel" in line for line in lines)
    assert any("search.space.task.colour" in line and "unknown parameter" in line for line in lines)
    with pytest.raises(ConfigError, match="grid"):
        SearchConfig(space=_space(SPACE_TABLE), sampler="grid")


def test_architecture_search_conditions_and_unrealizable_trials():
    space = _space({**SPACE_TABLE, "task.channels": {"choices": ["8-16", "16", "8-8-8-8-8"]}})
    config = SearchConfig(space=space, sampler="random", n_trials=6, seed=3)
    runs = LocalRuns()
    failed: list = []
    search_loop(runs.load_runs, runs.try_run, "nas_cnn", "nas_cnn", BASE, config,
                record=lambda r: (failed.append(r), runs.record(r)))
    trials = search_runs(runs.load_runs(), "nas_cnn", BASE, space, 0)
    assert len(trials) == 6
    for run in trials:
        _, params = parse_task_ref(run.task)
        assert ("expansion" in params) == (params["block"] == "inverted"), run.task
    bad = [r for r in trials if "8-8-8-8-8" in r.task]
    assert bad and bad == failed  # recorded, not trained, not a crash
    assert all(r.status is RunStatus.FAILED and r.epochs == [] and "unrealizable architecture" in r.error
               and "channels" in r.error for r in bad)
    assert all(r.status is RunStatus.FINISHED for r in trials if r not in bad)


def test_run_search_local_over_nas_cnn_with_a_budget():
    space = _space({**SPACE_TABLE, "task.max_params": {"choices": [0, 500]}})
    config = SearchConfig(space=space, sampler="tpe", n_trials=5, seed=0)
    outcome = run_search_local("nas_cnn", "nas_cnn", BASE, config)
    stored = [t.result for t in outcome.trials]
    assert stored and all(r.task.startswith("nas_cnn[") for r in stored)
    for t in outcome.trials:
        assert ("task.expansion" in t.params) == (t.params["task.block"] == "inverted")
        assert ("expansion=" in t.result.task) == (t.params["task.block"] == "inverted")
        if t.params["task.max_params"] == 500:  # below every architecture: recorded, never trained
            assert t.result.status is RunStatus.FAILED and "unrealizable architecture" in t.result.error
            assert not t.result.epochs
        else:
            assert t.result.status is RunStatus.FINISHED
    assert outcome.best is not None and outcome.best.value > 0.1


def test_existing_search_without_task_paths_is_unchanged():
    space, _ = parse_space({"hyperparams.lr": {"low": 1e-3, "high": 1e-1, "log": True}}, "t.toml")
    config = SearchConfig(space=space, sampler="random", n_trials=2, seed=0)
    outcome = run_search_local("nas_cnn", "nas_cnn", BASE, config)
    assert [t.result.task for t in outcome.trials] == ["nas_cnn", "nas_cnn"]
    assert all(set(t.params) == {"hyperparams.lr"} for t in outcome.trials)


def test_example_study_validates():
    config = study_from_dict(tomllib.loads(EXAMPLE.read_text()), str(EXAMPLE))
    assert config.search is not None and config.budget.trials == 12
    assert any(p.when for p in config.search.space)


def test_run_search_on_the_store_records_unrealizable_trials_and_resumes(tmp_path):
    import torch

    from optbench.runs.store import open_store
    from optbench.search import run_search

    space = _space({"task.block": {"choices": ["plain", "inverted"]},
                    "task.expansion": {"choices": [2], "when": {"task.block": "inverted"}},
                    "task.channels": {"choices": ["8-8-8-8-8", "8"]}})
    config = SearchConfig(space=space, sampler="random", n_trials=3, seed=1)
    url = str(tmp_path / "s.db")
    with open_store(url) as store:
        store.ensure_study("arch", {})
    outcome = run_search(url, "arch", "nas_cnn", "nas_cnn", BASE, config, device=torch.device("cpu"))
    assert len(outcome.trials) == 3
    for t in outcome.trials:
        failed = t.params["task.channels"] == "8-8-8-8-8"
        assert (t.result.status is RunStatus.FAILED) == failed, t.result.task
        assert not failed or (t.result.error and "unrealizable" in t.result.error and not t.result.epochs)
        assert ("expansion=2" in t.result.task) == (t.params["task.block"] == "inverted")
    assert {t.result.status for t in outcome.trials} == {RunStatus.FAILED, RunStatus.FINISHED}
    again = run_search(url, "arch", "nas_cnn", "nas_cnn", BASE, config, device=torch.device("cpu"))
    assert [t.result.run_id for t in again.trials] == [t.result.run_id for t in outcome.trials]


def test_the_best_architecture_is_retrained_on_every_seed_and_tested(tmp_path):
    import subprocess
    import sys

    text = EXAMPLE.read_text().replace("trials = 12", "trials = 3").replace("epochs = 3", "epochs = 1") \
        .replace("seeds = 3", "seeds = 2")
    study = tmp_path / "nas.toml"
    study.write_text(text)
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "optbench", "study", "run", str(study), "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "best re-run on 2 seeds" in " ".join(result.stdout.split())
    from optbench.runs.store import open_store

    with open_store(out / "optbench.db") as store:
        runs = store.load_runs()
    trials = [r for r in runs if "trial" in r.environment]
    baselines = [r for r in runs if r.task == "digits_mlp"]
    reruns = [r for r in runs if "trial" not in r.environment and r.task != "digits_mlp"]
    assert len(trials) == 3 and reruns  # seed 0's re-run may be the best trial itself (same run id)
    best = max((r for r in trials if r.epochs), key=lambda r: r.epochs[-1].metrics["valid_accuracy"])
    assert all(r.task == best.task and r.seed != best.seed for r in reruns)  # the best architecture, new seeds
    # the hand-designed baseline: the best's recipe on the same seeds, compared by Welch's t-test
    assert sorted(r.seed for r in baselines) == [0, 1] and all(r.recipe == best.recipe for r in baselines)
    assert "baseline digits_mlp, same recipe and seeds" in " ".join(result.stdout.split())


def test_unknown_baselines_are_refused_before_anything_runs():
    from optbench.core.errors import OptbenchError

    text = EXAMPLE.read_text().replace('baselines = ["digits_mlp"]', 'baselines = ["no_such_task"]')
    with pytest.raises(OptbenchError, match=r"baselines\[0\]"):
        study_from_dict(tomllib.loads(text), str(EXAMPLE))
    text = EXAMPLE.read_text().replace("rerun = true", "rerun = false")
    with pytest.raises(OptbenchError, match="needs rerun = true"):
        study_from_dict(tomllib.loads(text), str(EXAMPLE))


def test_a_point_is_built_once_so_a_noisy_measured_budget_cannot_stop_the_search(monkeypatch) -> None:
    import optbench.tasks.nas as nas

    calls: list[tuple] = []

    def reading(make_model, shape):  # within the 50 ms budget the first time, over it when measured again
        calls.append(shape)
        return 1.0 if len(calls) % 2 else 100.0

    monkeypatch.setattr(nas, "measured_latency_ms", reading)
    space = _space({"task.channels": {"choices": ["8-16"]}, "task.max_latency_ms": {"choices": [50.0]}})
    outcome = run_search_local("nas_cnn", "nas_cnn", BASE, SearchConfig(space=space, sampler="random", n_trials=1,
                                                                        seed=0))
    assert [t.result.status for t in outcome.trials] == [RunStatus.FINISHED]  # judged once, then trained
    assert len(calls) == 1


def test_the_search_never_reads_the_test_split(monkeypatch) -> None:
    """Poison the test split (NaN images, labels all 0) and search again: every trial's validation score
    and the chosen architecture are unchanged; only the test metrics, which nothing selects on, differ."""
    import dataclasses

    import torch

    import optbench.tasks.nas as nas
    from optbench.core.spec import Split

    space = _space(SPACE_TABLE)
    config = SearchConfig(space=space, sampler="tpe", n_trials=4, seed=1)
    clean = run_search_local("nas_cnn", "nas_cnn", BASE, config)
    original = nas.array_dataset_loader

    def poisoned_loader(*args, **kwargs):
        load = original(*args, **kwargs)

        def poisoned():
            data = load()
            test = Split(torch.full_like(data.test.x, float("nan")), torch.zeros_like(data.test.y))
            return dataclasses.replace(data, test=test)

        return poisoned

    monkeypatch.setattr(nas, "array_dataset_loader", poisoned_loader)
    poisoned = run_search_local("nas_cnn", "nas_cnn", BASE, config)

    def scores(outcome):
        return [(t.params, [e.metrics["valid_accuracy"] for e in t.result.epochs]) for t in outcome.trials]

    assert scores(poisoned) == scores(clean)
    assert poisoned.best.params == clean.best.params
    for t in poisoned.trials:  # the poison did arrive in every trial's test metrics
        assert math.isnan(t.result.epochs[-1].metrics["test_loss"])


def test_spaces_no_trial_could_run_are_refused_before_any_trial():
    # a block type that does not exist: refused at every point, naming the key path
    (line,) = _problems({"task.block": {"choices": ["plain", "dense"]}})
    assert "search.space.task.block" in line and "'dense'" in line and "allowed: inverted, plain" in line
    # a budget no architecture can meet
    (line,) = _problems({"task.channels": {"choices": ["8-16", "16-32"]}, "task.max_params": {"choices": [10]}})
    assert "search.space:" in line and "no point of the space can be realized" in line and "max_params" in line
    # a budget value no point meets, beside one some points meet
    lines = _problems({"task.channels": {"choices": ["8", "16-32"]}, "task.max_params": {"choices": [10, 5000]}})
    assert len(lines) == 1 and "search.space.task.max_params" in lines[0] and "10 is refused" in lines[0]
    # unrealizable only on this input (too many stages for 8 x 8 images) or only in some combinations:
    # accepted, the search records such points as failed trials
    study_from_dict(_study({"task.channels": {"choices": ["8-16", "4-4-4-4-4"]}}), "s.toml")
    study_from_dict(_study({"task.channels": {"choices": ["8", "16-32-64"]},
                            "task.max_params": {"choices": [1000, 50000]}}), "s.toml")
