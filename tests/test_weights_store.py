"""Stored final weights of runs (optbench.runs.weights): atomic save, exact load, one-line errors, the
default directory next to a SQLite store, what the training loop saves (the final evaluated model),
the executor refusing a plan that names a run without weights, and the study file's option."""

from __future__ import annotations

import pytest
import torch

from optbench.core.errors import ConfigError, ConfigProblems
from optbench.core.spec import Recipe, RunStatus, TechniqueSpec
from optbench.engine import split_data, train
from optbench.engine.loop import EVAL_BATCH_SIZE, evaluate
from optbench.runs.executor import execute_plan
from optbench.runs.plan import plan_runs
from optbench.runs.store import open_store
from optbench.runs.weights import NEEDED, WeightsDir, default_directory, weights_for
from optbench.study.config import study_from_dict
from optbench.tasks import get_task

CPU = torch.device("cpu")
TASK = "digits_mlp"


def _data(task, train_size=256):
    return split_data(task.load_data(), task.valid_size, 0, train_size)


def test_save_load_round_trip_is_exact_and_atomic(tmp_path):
    weights = WeightsDir(tmp_path / "w")
    state = {"a.weight": torch.randn(3, 4), "a.bias": torch.arange(3.0), "steps": torch.tensor(7)}
    path = weights.save("0123456789abcdef", state)
    assert path == tmp_path / "w" / "0123456789abcdef.pt" and weights.has("0123456789abcdef")
    assert [p.name for p in (tmp_path / "w").iterdir()] == ["0123456789abcdef.pt"]  # no temporary file left
    loaded = weights.load("0123456789abcdef")
    assert loaded.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(loaded[key], value) and loaded[key].dtype == value.dtype
    state["a.bias"] += 1  # the stored copy is a copy
    assert torch.equal(weights.load("0123456789abcdef")["a.bias"], torch.arange(3.0))


def test_missing_bad_and_corrupt_runs_are_one_line_config_errors(tmp_path):
    weights = WeightsDir(tmp_path / "w")
    with pytest.raises(ConfigError) as err:
        weights.load("feedfacefeedface", field="teacher")
    message = str(err.value)
    assert "\n" not in message and "teacher" in message and "feedfacefeedface" in message and NEEDED in message
    with pytest.raises(ConfigError, match="init run id"):
        weights.check([("init run id", "feedfacefeedface")])
    for bad in ("../etc", "a/b", "", ".."):
        with pytest.raises(ConfigError, match="run id"):
            weights.file(bad)
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "0000000000000001.pt").write_bytes(b"not a torch file")
    with pytest.raises(ConfigError) as err:
        weights.load("0000000000000001")
    assert "\n" not in str(err.value) and "unreadable" in str(err.value)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a file"):
        WeightsDir(tmp_path / "file")


def test_default_directory_next_to_a_sqlite_store_and_none_for_postgres(tmp_path):
    assert default_directory(tmp_path / "r.db") == tmp_path / "r.db.weights"
    assert default_directory(f"sqlite:///{tmp_path}/r.db") == tmp_path / "r.db.weights"
    assert default_directory("postgresql://u:p@localhost/db") is None
    assert weights_for("postgresql://u:p@localhost/db") is None  # loading: no directory, no access
    with pytest.raises(ConfigError, match="weights directory"):
        weights_for("postgresql://u:p@localhost/db", saving=True)
    chosen = weights_for("postgresql://u:p@localhost/db", tmp_path / "w", saving=True)
    assert chosen.path == tmp_path / "w" and chosen.saving


def test_train_saves_the_final_evaluated_weights_only_when_saving(tmp_path):
    task = get_task(TASK)
    data = _data(task)
    recipe = Recipe("adam", {"lr": 1e-2}, batch_size=64, epochs=2, techniques=(TechniqueSpec("ema", {"decay": 0.9}),))
    quiet = WeightsDir(tmp_path / "w")  # loading only
    result = train(task, data, recipe, 0, device=CPU, weights=quiet)
    assert result.status is RunStatus.FINISHED and not quiet.has(result.run_id)
    saving = WeightsDir(tmp_path / "w", saving=True)
    result = train(task, data, recipe, 0, device=CPU, weights=saving)
    assert result.status is RunStatus.FINISHED and saving.has(result.run_id)
    model = task.make_model()
    model.load_state_dict(saving.load(result.run_id))
    # the stored weights are the EMA weights the run evaluated: they reproduce its final test numbers
    again = evaluate(model, task, data.test, "test")
    assert again["test_loss"] == pytest.approx(result.epochs[-1].metrics["test_loss"], rel=1e-6)
    assert again["test_accuracy"] == result.epochs[-1].metrics["test_accuracy"]
    assert EVAL_BATCH_SIZE > 0
    diverged = train(task, data, Recipe("sgd", {"lr": 1e9}, batch_size=64, epochs=2), 0, device=CPU, weights=saving)
    assert diverged.status is RunStatus.DIVERGED and not saving.has(diverged.run_id)


def test_executor_saves_weights_and_refuses_a_plan_naming_a_run_without_them(tmp_path):
    db = tmp_path / "s.db"
    weights = WeightsDir(tmp_path / "w", saving=True)
    specs = plan_runs(TASK, TASK, [Recipe("adam", {"lr": 1e-2}, batch_size=64, epochs=1, train_size=128)], [0])
    with open_store(db) as store:
        store.ensure_study("s", {})
    results = execute_plan(str(db), "s", specs, device=CPU, weights=weights)
    assert results[0].status is RunStatus.FINISHED and weights.has(results[0].run_id)
    follow = Recipe("adam", {"lr": 1e-2}, batch_size=64, epochs=1, train_size=128,
                    techniques=(TechniqueSpec("init_from", {"run": "feedfacefeedface"}),))
    missing = plan_runs(TASK, TASK, [follow], [0])
    with pytest.raises(ConfigError, match="feedfacefeedface"):
        execute_plan(str(db), "s", missing, device=CPU, weights=weights)
    with pytest.raises(ConfigError, match="weights directory"):
        execute_plan(str(db), "s", missing, device=CPU, weights=None)
    with open_store(db) as store:
        assert [r.run_id for r in store.load_runs()] == [results[0].run_id]  # nothing else stored


def _study(execution):
    return {"study": {"name": "s", "protocol": "seed004", "tasks": [TASK], "seeds": 1},
            "budget": {"epochs": 1}, "recipes": [{"optimizer": "adam", "hyperparams": {"lr": 0.01}}],
            "execution": execution}


def test_study_file_execution_options(tmp_path):
    config = study_from_dict(_study({"save_weights": True, "weights_dir": str(tmp_path / "w")}))
    assert config.execution.save_weights and config.execution.weights_dir == str(tmp_path / "w")
    chosen = config.execution.weights(tmp_path / "r.db")
    assert chosen.saving and chosen.path == tmp_path / "w"
    plain = study_from_dict(_study({}))
    default = plain.execution.weights(tmp_path / "r.db")
    assert not default.saving and default.path == tmp_path / "r.db.weights"
    assert plain.execution.weights(tmp_path / "r.db", save=True).saving  # --save-weights
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigProblems) as err:
        study_from_dict(_study({"save_weights": "yes", "weights_dir": str(tmp_path / "file")}))
    paths = {p.path for p in err.value.problems}
    assert paths == {"execution.save_weights", "execution.weights_dir"}


def test_cli_save_weights_and_a_weights_dir_that_is_a_file(tmp_path, capsys):
    from optbench.cli.main import main

    out = tmp_path / "out"
    assert main(["compare", "--task", TASK, "--optimizers", "adam", "--seeds", "1", "--epochs", "1", "--train-size",
                 "200", "--quiet", "--out", str(out), "--save-weights"]) == 0
    with open_store(out / "optbench.db") as store:
        (run,) = store.load_runs()
    assert WeightsDir(out / "optbench.db.weights").has(run.run_id)
    capsys.readouterr()
    (tmp_path / "file").write_text("x")
    study = tmp_path / "s.toml"
    study.write_text(f'[study]\nprotocol = "seed004"\ntasks = ["{TASK}"]\nseeds = 1\n[[recipes]]\noptimizer = "adam"\n'
                     f'[execution]\nsave_weights = true\nweights_dir = "{tmp_path / "file"}"\n')
    assert main(["study", "run", str(study), "--out", str(tmp_path / "o2"), "-q"]) == 2
    assert "execution.weights_dir" in capsys.readouterr().err
    assert not (tmp_path / "o2" / "optbench.db").exists()
