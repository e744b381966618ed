"""Stores written before techniques became a list still load and resume.

``tests/fixtures/store_legacy.db`` was written by the code of commit 39eb6f0 (flat technique fields
in every recipe; ``tests/fixtures/make_store_legacy.py`` says how), with the run ids and final test
accuracies that code computed in ``store_legacy.json``. Today's code must read every stored recipe,
compute the same run ids from it (so a re-run plan finds every stored run and repeats none), and
run only what is new when the study grows.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from optbench.core.spec import Recipe, run_id
from optbench.runs.executor import RunDone, execute_plan
from optbench.runs.plan import plan_runs
from optbench.runs.store import open_store

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def legacy(tmp_path):
    meta = json.loads((FIXTURES / "store_legacy.json").read_text())
    path = tmp_path / "legacy.db"
    shutil.copy(FIXTURES / "store_legacy.db", path)  # opening writes -wal/-shm beside it
    return path, meta


def test_every_stored_recipe_loads_with_its_old_run_id(legacy):
    path, meta = legacy
    assert len(meta["runs"]) == 18
    flat_keys = set()
    for run in meta["runs"]:
        recipe = Recipe.from_dict(run["recipe"])
        assert run_id(run["task"], recipe, run["seed"]) == run["run_id"]
        flat_keys |= set(run["recipe"]) - {"optimizer", "hyperparams", "batch_size", "epochs", "train_size"}
        # the new stored form reads back to the same recipe and id
        again = Recipe.from_dict(json.loads(json.dumps(recipe.to_dict())))
        assert again == recipe and run_id(run["task"], again, run["seed"]) == run["run_id"]
    assert {"warmup_steps", "penalty", "label_smoothing", "early_stopping", "augmentation", "averaging",
            "clip_norm", "clip_value", "accumulation_steps", "batch_rule", "decay_bias_and_norm"} <= flat_keys
    with open_store(str(path)) as store:
        stored = {r.run_id: r for r in store.load_runs(study=meta["study"])}
    assert set(stored) == {r["run_id"] for r in meta["runs"]}
    for run in meta["runs"]:
        result = stored[run["run_id"]]
        assert result.recipe == Recipe.from_dict(run["recipe"])
        assert result.final("test_accuracy") == run["test_accuracy"]


def test_the_old_study_resumes_without_repeating_a_run(legacy):
    path, meta = legacy
    recipes = list({json.dumps(r["recipe"], sort_keys=True): Recipe.from_dict(r["recipe"])
                    for r in meta["runs"]}.values())
    task = meta["runs"][0]["task"]
    events: list[RunDone] = []
    specs = plan_runs(task, task, recipes, [0, 1])
    def collect(event) -> None:
        if isinstance(event, RunDone):
            events.append(event)

    execute_plan(str(path), meta["study"], specs, on_event=collect)
    assert len(events) == 18 and all(e.skipped for e in events)
    # one more seed: only the 9 new runs execute, the stored ones are untouched
    events.clear()
    grown = [s for s in plan_runs(task, task, recipes, [0, 1, 2]) if s.seed == 2][:3]
    results = execute_plan(str(path), meta["study"], specs + grown, on_event=collect)
    assert sorted(e.skipped for e in events) == [False] * 3 + [True] * 18
    by_id = {r.run_id: r for r in results}
    for run in meta["runs"]:
        assert by_id[run["run_id"]].final("test_accuracy") == run["test_accuracy"]
