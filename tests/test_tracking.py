"""Results where users look: `--log tensorboard[:DIR]`, `--log mlflow[:URI]` (live per epoch, once per
run) and search trials in an Optuna RDB storage. Everything is read back through the libraries' own
readers (TensorBoard's EventAccumulator, MlflowClient, optuna.load_study) and compared with what
optbench stored."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
from typer.testing import CliRunner

from optbench.cli.main import app, main
from optbench.core.errors import ConfigError
from optbench.core.spec import EpochRecord, Recipe, RunResult, RunStatus
from optbench.runs.executor import EpochDone, RunDone, RunStarted
from optbench.runs.plan import RunSpec
from optbench.runs.store import open_store
from optbench.search import Param, SearchConfig, run_search
from optbench.search.local import run_search_local
from optbench.study.compare import CompareConfig, run_compare
from optbench.tracking import chain, open_tracking, parse_log, parse_logs
from optbench.tracking.tensorboard import MARKER

TINY = dict(task="digits_mlp", optimizers=("adam", "sgd"), seeds=1, epochs=2, lr=0.01, batch_size=64, train_size=200)
CLI = ["compare", "--task", "digits_mlp", "--optimizers", "adam", "--seeds", "1", "--epochs", "2", "--lr", "0.01",
       "--batch-size", "64", "--train-size", "200", "--quiet"]
SEARCH = """
[study]
name = "tiny-search"
protocol = "search"
tasks = ["digits_mlp"]
seeds = 1
[budget]
epochs = 2
train_size = 200
trials = 3
[[recipes]]
optimizer = "momentum"
batch_size = 64
[search]
sampler = "random"
seed = 1
[search.space]
"hyperparams.lr" = { low = 1e-3, high = 0.3, log = true }
[protocol]
rerun = false
"""


def _mlflow(directory: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{directory / 'mlflow.db'}")


def _mlflow_runs(directory: Path, study: str) -> dict[str, object]:
    """The MLflow runs of a study's experiment by optbench run id (each id once)."""
    client = _mlflow(directory)
    experiment = client.get_experiment_by_name(study)
    runs = client.search_runs([experiment.experiment_id])
    ids = [r.data.tags["optbench.run_id"] for r in runs]
    assert len(ids) == len(set(ids)), "a run was logged twice"
    return {r.data.tags["optbench.run_id"]: r for r in runs}


def _tb_dir(root: Path, run_id: str) -> Path:
    (found,) = [d for d in root.rglob(f"*-{run_id}") if d.is_dir()]
    return found


def _tb(directory: Path) -> EventAccumulator:
    acc = EventAccumulator(str(directory))
    acc.Reload()
    return acc


def _hparams(acc: EventAccumulator) -> dict[str, object]:
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    values = HParamsPluginData.FromString(content).session_start_info.hparams
    return {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in values.items()}


def _assert_logged_like_stored(run: RunResult, study: str, tb_root: Path, ml_dir: Path) -> None:
    """TensorBoard and MLflow hold exactly the stored run's per-epoch numbers, recipe and tags."""
    acc = _tb(_tb_dir(tb_root / study, run.run_id))
    for tag, key in (("valid/accuracy", "valid_accuracy"), ("train/loss", "train_loss"),
                     ("test/accuracy", "test_accuracy")):
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [r.epoch for r in run.epochs] == [1, 2]
        assert [e.value for e in events] == pytest.approx([r.metrics[key] for r in run.epochs], rel=1e-6)
    assert [e.value for e in acc.Scalars("train/lr")] == pytest.approx([r.lr for r in run.epochs], rel=1e-6)
    assert [e.value for e in acc.Scalars("train/samples_per_second")] == pytest.approx(
        [r.samples_per_second for r in run.epochs], rel=1e-6)
    hp = _hparams(acc)
    assert hp["optimizer"] == run.recipe.optimizer and hp["run_id"] == run.run_id and hp["study"] == study
    assert hp["hyperparams.lr"] == pytest.approx(run.recipe.hyperparams["lr"]) and hp["seed"] == run.seed
    assert hp["batch_size"] == run.recipe.batch_size and hp["status"] == run.status.value == "finished"

    client = _mlflow(ml_dir)
    logged = _mlflow_runs(ml_dir, study)[run.run_id]
    assert logged.info.status == "FINISHED"
    assert logged.data.tags["optbench.task"] == run.task == "digits_mlp"
    assert logged.data.tags["optbench.study"] == study and logged.data.tags["optbench.status"] == "finished"
    params = logged.data.params
    assert params["optimizer"] == run.recipe.optimizer
    assert float(params["hyperparams.lr"]) == run.recipe.hyperparams["lr"]
    assert params["batch_size"] == "64" and params["epochs"] == "2" and params["train_size"] == "200"
    assert params["schedule"] == "constant" and params["techniques"] == "none" and params["seed"] == str(run.seed)
    history = client.get_metric_history(logged.info.run_id, "valid/accuracy")
    assert sorted((m.step, m.value) for m in history) == [(r.epoch, r.metrics["valid_accuracy"]) for r in run.epochs]
    lr = client.get_metric_history(logged.info.run_id, "train/lr")
    assert sorted((m.step, m.value) for m in lr) == [(r.epoch, r.lr) for r in run.epochs]


# ------------------------------------------------------------------------------------------ --log values
def test_log_values_parse_and_bad_ones_exit_2_before_anything(tmp_path, capsys):
    assert parse_log("mlflow:sqlite:///a/b.db").target == "sqlite:///a/b.db"  # a URI keeps its colons
    assert [(s.kind, s.target) for s in parse_logs(["TensorBoard", "tensorboard:tb", "mlflow"])] == [
        ("tensorboard", None), ("tensorboard", "tb"), ("mlflow", None)]
    for bad in ("foo", "tensorboard:", "mlflow: ", "wandb:x"):
        with pytest.raises(ConfigError, match=r"--log .*tensorboard\[:DIR\] or mlflow\[:URI\]"):
            parse_log(bad)
    with pytest.raises(ConfigError, match="each destination once"):
        parse_logs(["mlflow", "mlflow"])
    out = tmp_path / "out"
    assert main([*CLI, "--out", str(out), "--log", "foo"]) == 2
    line = capsys.readouterr().err.strip()
    assert line == "optbench: error: invalid --log 'foo'; allowed: tensorboard[:DIR] or mlflow[:URI]"
    study = tmp_path / "s.toml"
    study.write_text(SEARCH)
    for args in (["study", "run", str(study), "--out", str(out), "--log", "foo"],
                 ["run", "--task", "digits_mlp", "--store", str(tmp_path / "d.db"), "--log", "foo"],
                 ["study", "run", str(study), "--out", str(out), "--optuna-storage", "optuna.db"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        assert result.output.count("\n") == 1
        assert "invalid --log 'foo'" in result.output or "invalid --optuna-storage 'optuna.db'" in result.output
    assert not out.exists() and not (tmp_path / "d.db").exists()


# ------------------------------------------------------------------------------------------ live logging
def test_runs_are_logged_live_per_epoch_with_the_stored_numbers(tmp_path):
    tb_root, ml_dir, db = tmp_path / "tb", tmp_path / "ml", tmp_path / "s.db"
    config = CompareConfig(**TINY)
    seen: list[tuple[str, int, bool, bool]] = []  # (run id, epoch, in TensorBoard, in MLflow) while training
    tracking = open_tracking(parse_logs([f"tensorboard:{tb_root}", f"mlflow:{ml_dir}"]), out=tmp_path,
                             study=lambda spec: config.study_name(spec.task))

    def probe(event: object) -> None:  # runs after the trackers, inside the training loop
        if isinstance(event, EpochDone):
            study = config.study_name(event.spec.task)
            rid = event.spec.run_id
            tb = _tb(_tb_dir(tb_root / study, rid)).Scalars("valid/accuracy")
            ml = _mlflow_runs(ml_dir, study)[rid]
            history = _mlflow(ml_dir).get_metric_history(ml.info.run_id, "valid/accuracy")
            seen.append((rid, event.record.epoch, any(e.step == event.record.epoch for e in tb),
                         ml.info.status == "RUNNING" and any(m.step == event.record.epoch for m in history)))

    with tracking:
        outcome = run_compare(config, db, device=torch.device("cpu"), on_event=chain(tracking.on_event, probe),
                              on_result=tracking.on_result)
        tracking.complete(outcome.results)
    assert not tracking.failures
    assert len(seen) == 4 and all(tb and ml for _, _, tb, ml in seen)
    with open_store(db) as store:
        stored = store.load_runs()
    assert len(stored) == 2 and {r.run_id for r in stored} == {r.run_id for r in outcome.results}
    for run in stored:
        _assert_logged_like_stored(run, outcome.study, tb_root, ml_dir)
        assert (_tb_dir(tb_root, run.run_id) / MARKER).is_file()


def test_compare_logs_stored_runs_once_and_attaches_the_report(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    config = CompareConfig(**{**TINY, "optimizers": ("adam",)})  # the run of CLI, stored without logging
    run_compare(config, out / "optbench.db", device=torch.device("cpu"))
    assert not (out / "tensorboard").exists() and not (out / "mlruns").exists()
    logged = [*CLI, "--out", str(out), "--log", "tensorboard", "--log", "mlflow"]
    assert main(logged) == 0  # every run is skipped (stored): logged once from its stored result
    with open_store(out / "optbench.db") as store:
        ((study, ),) = [(s.name,) for s in store.studies()]
        (run,) = store.load_runs()
    _assert_logged_like_stored(run, study, out / "tensorboard", out / "mlruns")
    client = _mlflow(out / "mlruns")
    mlflow_run = _mlflow_runs(out / "mlruns", study)[run.run_id]
    assert [a.path for a in client.list_artifacts(mlflow_run.info.run_id, "report")] == ["report/index.html"]
    events = sorted(p.name for p in _tb_dir(out / "tensorboard", run.run_id).iterdir())
    assert main(logged) == 0  # again: nothing is logged twice
    assert list(_mlflow_runs(out / "mlruns", study)) == [run.run_id]
    assert sorted(p.name for p in _tb_dir(out / "tensorboard", run.run_id).iterdir()) == events


def test_a_run_interrupted_while_logged_is_logged_anew_once(tmp_path):
    recipe = Recipe("sgd", {"lr": 0.1}, batch_size=8, epochs=2)
    spec = RunSpec("digits_mlp", "digits_mlp", recipe, 0)
    records = [EpochRecord(e, 10 * e, {"train_loss": 1.0 / e, "valid_accuracy": 0.3 * e}, 0.1, 0.01, 1000.0 + e, 0.1)
               for e in (1, 2)]
    result = RunResult(spec.run_id, "digits_mlp", recipe, 0, RunStatus.FINISHED, epochs=records)
    specs = parse_logs([f"tensorboard:{tmp_path / 'tb'}", f"mlflow:{tmp_path / 'ml'}"])
    with open_tracking(specs, out=tmp_path, study="s") as first:  # a session killed after epoch 1
        first.on_event(RunStarted(spec, 0))
        first.on_event(EpochDone(spec, EpochRecord(1, 10, {"train_loss": 9.0, "valid_accuracy": 0.0}, 0.1, 0.0,
                                                   1.0, 0.1), 0))
    assert _mlflow_runs(tmp_path / "ml", "s")[spec.run_id].info.status == "RUNNING"
    with open_tracking(specs, out=tmp_path, study="s") as second:  # the run again, to the end
        second.on_event(RunStarted(spec, 0))
        for record in records:
            second.on_event(EpochDone(spec, record, 0))
        second.on_event(RunDone(spec, result, 0, False))
    assert not first.failures and not second.failures
    (logged,) = _mlflow_runs(tmp_path / "ml", "s").values()
    assert logged.info.status == "FINISHED"
    history = _mlflow(tmp_path / "ml").get_metric_history(logged.info.run_id, "train/loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 1.0), (2, 0.5)]
    scalars = _tb(_tb_dir(tmp_path / "tb", spec.run_id)).Scalars("train/loss")  # the earlier events purged
    assert [(e.step, e.value) for e in scalars] == [(1, 1.0), (2, 0.5)]


def test_distributed_run_is_logged_when_it_ends(tmp_path):
    db, tb_root = tmp_path / "d.db", tmp_path / "tb"
    result = CliRunner().invoke(app, ["run", "--mode", "ddp", "--nproc", "1", "--task", "digits_mlp", "--optimizer",
                                      "sgd", "--lr", "0.1", "--batch-size", "16", "--epochs", "2", "--train-size",
                                      "256", "--store", str(db), "--log", f"tensorboard:{tb_root}"])
    assert result.exit_code == 0, result.output
    assert "logged to tensorboard" in result.output
    with open_store(db) as store:
        (run,) = store.load_runs()
    acc = _tb(_tb_dir(tb_root / "distributed-digits_mlp", run.run_id))
    scalars = acc.Scalars("valid/accuracy")
    assert [(e.step, e.value) for e in scalars] == [
        (r.epoch, pytest.approx(r.metrics["valid_accuracy"], rel=1e-6)) for r in run.epochs]
    assert _hparams(acc)["status"] == "finished" and _hparams(acc)["run_id"] == run.run_id


# ------------------------------------------------------------------------------------------ Optuna storage
def test_search_trials_are_written_live_to_an_optuna_storage_without_changing_them(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    space = (Param("hyperparams.lr", "float", low=1e-3, high=0.3, log=True),)
    base = Recipe("momentum", {"lr": 0.1, "momentum": 0.9}, batch_size=64, epochs=2, train_size=200)
    plain = SearchConfig(space, sampler="tpe", pruner="median", n_trials=3, seed=3)
    mirrored = SearchConfig(space, sampler="tpe", pruner="median", n_trials=3, seed=3, optuna_storage=url)
    db = str(tmp_path / "s.db")
    with open_store(db) as store:
        store.ensure_study("tune", {"protocol": "search"})
    live: list[bool] = []

    def probe(event: object) -> None:  # after the mirror: the trial already holds this epoch's value
        if isinstance(event, EpochDone):
            (name,) = optuna.get_all_study_names(url)
            trials = {t.user_attrs["optbench.run_id"]: t for t in optuna.load_study(study_name=name,
                                                                                     storage=url).trials}
            trial = trials[event.spec.run_id]
            live.append(trial.state == optuna.trial.TrialState.RUNNING
                        and trial.intermediate_values.get(event.record.epoch) == event.record.metrics["valid_accuracy"])

    outcome = run_search(db, "tune", "digits_mlp", "digits_mlp", base, mirrored, device=torch.device("cpu"),
                         on_event=probe)
    local = run_search_local("digits_mlp", "digits_mlp", base, plain)
    assert [(t.params, t.value) for t in outcome.trials] == [(t.params, t.value) for t in local.trials]
    assert len(live) == 6 and all(live)
    (name,) = optuna.get_all_study_names(url)
    assert name.startswith("tune/digits_mlp/momentum/seed0/")
    study = optuna.load_study(study_name=name, storage=url)
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert len(study.trials) == 3
    for trial, ours in zip(study.trials, outcome.trials, strict=True):
        assert trial.user_attrs["optbench.run_id"] == ours.result.run_id
        assert trial.params == ours.params
        assert trial.intermediate_values == {r.epoch: r.metrics["valid_accuracy"] for r in ours.result.epochs}
        assert trial.state == optuna.trial.TrialState.COMPLETE and trial.value == ours.value


def test_study_run_writes_searches_to_optuna_and_mlflow_once(tmp_path):
    file = tmp_path / "search.toml"
    file.write_text(SEARCH)
    out = tmp_path / "out"
    url = f"sqlite:///{out / 'optbench.db'}"  # "store": Optuna's tables beside optbench's
    args = ["study", "run", str(file), "--out", str(out), "-q", "--log", "mlflow"]
    result = CliRunner().invoke(app, [*args, "--optuna-storage", "store"])
    assert result.exit_code == 0, result.output
    with open_store(out / "optbench.db") as store:
        runs = {r.run_id: r for r in store.load_runs(study="tiny-search")}
    assert len(runs) == 3 and all(r.status is RunStatus.FINISHED for r in runs.values())
    (name,) = optuna.get_all_study_names(url)
    trials = optuna.load_study(study_name=name, storage=url).trials
    assert sorted(t.user_attrs["optbench.run_id"] for t in trials) == sorted(runs)
    for trial in trials:
        run = runs[trial.user_attrs["optbench.run_id"]]
        assert trial.params["hyperparams.lr"] == run.recipe.hyperparams["lr"]
        assert trial.intermediate_values == {r.epoch: r.metrics["valid_accuracy"] for r in run.epochs}
        assert trial.value == max(r.metrics["valid_accuracy"] for r in run.epochs)
    logged = _mlflow_runs(out / "mlruns", "tiny-search")
    assert set(logged) == set(runs) and all(r.info.status == "FINISHED" for r in logged.values())
    client = _mlflow(out / "mlruns")
    for rid, mlflow_run in logged.items():
        history = client.get_metric_history(mlflow_run.info.run_id, "valid/accuracy")
        assert sorted((m.step, m.value) for m in history) == [(r.epoch, r.metrics["valid_accuracy"])
                                                              for r in runs[rid].epochs]
        assert [a.path for a in client.list_artifacts(mlflow_run.info.run_id, "report")] == ["report/index.html"]
    # the same study from the file's own option, resumed: nothing new anywhere
    file.write_text(SEARCH.replace('seed = 1\n', f'seed = 1\noptuna_storage = "{url}"\n'))  # the same, by URL
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(optuna.load_study(study_name=name, storage=url).trials) == 3
    assert set(_mlflow_runs(out / "mlruns", "tiny-search")) == set(runs)


def test_optuna_storage_in_a_study_file_is_checked_with_the_other_problems(tmp_path):
    from optbench.core.errors import ConfigProblems
    from optbench.study.config import load_study

    file = tmp_path / "bad.toml"
    file.write_text(SEARCH.replace('seed = 1\n', 'seed = 1\noptuna_storage = "optuna.db"\n').replace(
        'sampler = "random"', 'sampler = "nosuch"'))
    with pytest.raises(ConfigProblems) as info:
        load_study(file)
    paths = {p.path for p in info.value.problems}
    assert {"search.optuna_storage", "search.sampler"} <= paths
    file.write_text(SEARCH.replace('seed = 1\n', 'seed = 1\noptuna_storage = "store"\n'))
    assert load_study(file).search.optuna_storage == "store"
    assert "optuna_storage" not in load_study(file).to_dict()["search"]  # how runs are recorded: not stored


def test_importing_optbench_imports_no_tracker_library():
    code = ("import sys, optbench, optbench.tracking, optbench.cli.main, optbench.search; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mlflow', 'tensorboard')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
