"""Data in the formats users have: an image folder, NumPy arrays, a Hugging Face datasets table (saved, Parquet,
CSV), each as a one-line task reference and through a user's factory; bad data stops with one line, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from optbench.cli.main import app
from optbench.core.errors import ConfigError
from optbench.core.spec import StreamSplit
from optbench.data.readers import ImageFolder, NpyArrays, TableDataset
from optbench.engine import split_data
from optbench.tasks import check_task, get_task

ROOT = Path(__file__).resolve().parents[1]


def _images(root: Path, per_class: int = 12, size: int = 10) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for part, count in (("train", per_class), ("test", 4)):
        for label, name in enumerate(("bright", "dark")):
            folder = root / part / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 100, (size, size + 2, 3)) + 150 * (1 - label)
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")


def test_image_folder_items_and_classes(tmp_path: Path) -> None:
    _images(tmp_path)
    folder = ImageFolder(tmp_path / "train", size=8)
    assert folder.classes == ["bright", "dark"] and len(folder) == 24
    x, y = folder[0]
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32 and 0.0 <= float(x.min()) <= float(x.max()) <= 1.0
    assert y == 0 and folder[23][1] == 1
    gray = ImageFolder(tmp_path / "train", size=6, mode="L")
    assert gray[5][0].shape == (1, 6, 6)
    with pytest.raises(ConfigError, match="image folder .* mode 'CMYK'; allowed: L, RGB"):
        ImageFolder(tmp_path / "train", mode="CMYK")
    with pytest.raises(ConfigError, match="classes 'bright, dark'"):
        ImageFolder(tmp_path / "test", classes=["cat"])


def test_unreadable_image_names_its_file(tmp_path: Path) -> None:
    _images(tmp_path)
    bad = tmp_path / "train" / "dark" / "zz.png"
    bad.write_bytes(b"not an image")
    folder = ImageFolder(tmp_path / "train")
    with pytest.raises(ConfigError, match=r"image folder .*train item 24 '.*zz.png'; allowed: an image Pillow"):
        folder.verify()
    with pytest.raises(ConfigError, match=r"dataset f item 24 .*cannot decode image .*zz.png"):
        StreamSplit(folder, name="f").item(24)


def test_npy_arrays_are_read_row_by_row(tmp_path: Path) -> None:
    x = np.random.default_rng(0).standard_normal((30, 2, 3))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.arange(30) % 4)
    data = NpyArrays(tmp_path / "x.npy", tmp_path / "y.npy")
    row, label = data[17]
    assert row.dtype == np.float32 and np.allclose(row, x[17]) and label == 1
    np.save(tmp_path / "short.npy", np.zeros(5))
    with pytest.raises(ConfigError, match="5 labels for 30 inputs"):
        NpyArrays(tmp_path / "x.npy", tmp_path / "short.npy")
    np.save(tmp_path / "f.npy", np.asfortranarray(np.zeros((4, 3))))
    with pytest.raises(ConfigError, match="Fortran order"):
        NpyArrays(tmp_path / "f.npy", tmp_path / "y.npy")
    with pytest.raises(ConfigError, match="an existing .npy file"):
        NpyArrays(tmp_path / "missing.npy", tmp_path / "y.npy")


@pytest.fixture
def tables(tmp_path: Path) -> Path:
    import datasets

    rng = np.random.default_rng(0)

    def part(n: int) -> datasets.Dataset:
        a, b = rng.standard_normal(n), rng.standard_normal((n, 2))
        return datasets.Dataset.from_dict({"a": a, "b": b.tolist(), "label": (a + b[:, 0] > 0).astype(int)})

    splits = datasets.DatasetDict({"train": part(120), "test": part(40)})
    splits.save_to_disk(str(tmp_path / "saved"))
    (tmp_path / "files").mkdir()
    splits["train"].to_parquet(str(tmp_path / "files" / "train.parquet"))
    splits["test"].to_csv(str(tmp_path / "files" / "test.csv"), index=False)
    return tmp_path


def test_tables_saved_parquet_and_csv(tables: Path) -> None:
    saved = TableDataset(tables / "saved", ["a", "b"], "label", split="test")
    parquet = TableDataset(tables / "files" / "train.parquet", ["b", "a"], "label")
    assert len(saved) == 40 and len(parquet) == 120
    x, y = parquet[3]
    assert x.shape == (3,) and x.dtype == torch.float32 and int(y) in (0, 1)
    assert TableDataset.all_but(tables / "files" / "test.csv", "label").features == ["a", "b"]
    with pytest.raises(ConfigError, match="column 'c'; allowed: a, b, label"):
        TableDataset(tables / "saved", ["c"], "label")
    with pytest.raises(ConfigError, match="split 'valid'; allowed: test, train"):
        TableDataset(tables / "saved", ["a"], "label", split="valid")


def test_one_line_task_references_check_and_split(tmp_path: Path, tables: Path) -> None:
    _images(tmp_path / "img")
    np.save(tmp_path / "train_x.npy", np.random.default_rng(1).standard_normal((50, 6)).astype(np.float32))
    np.save(tmp_path / "train_y.npy", np.arange(50) % 3)
    np.save(tmp_path / "test_x.npy", np.zeros((9, 6), np.float32))
    np.save(tmp_path / "test_y.npy", np.arange(9) % 3)
    for ref in (f"imagefolder_cnn[root={tmp_path / 'img'},size=8]", f"npy_mlp[root={tmp_path},hidden=16]",
                f"table_mlp[root={tables / 'saved'}]", f"table_mlp[root={tables / 'files'},features=b;a]"):
        task = get_task(ref)
        dataset = task.load_data()
        check_task(task, dataset)
        data = split_data(dataset, task.valid_size, 0)
        assert all(isinstance(s, StreamSplit) for s in (data.train, data.valid, data.test)), ref
        assert len(data.train) + len(data.valid) == len(dataset.train) and len(data.valid) >= 1
    (tmp_path / "img" / "valid" / "dark").mkdir(parents=True)
    (tmp_path / "img" / "test" / "dark" / "0.png").rename(tmp_path / "img" / "valid" / "dark" / "0.png")
    task = get_task(f"imagefolder_cnn[root={tmp_path / 'img'},size=8]")
    data = split_data(task.load_data(), task.valid_size, 0)
    assert task.valid_size == 0 and len(data.valid) == 1 and len(data.train) == 24  # its own validation part


def test_bad_references_exit_2_before_anything_is_written(tmp_path: Path) -> None:
    _images(tmp_path / "img")
    (tmp_path / "img" / "train" / "dark" / "zz.png").write_bytes(b"")
    runner = CliRunner()
    for ref, message in ((f"imagefolder_cnn[root={tmp_path / 'none'}]", "task imagefolder_cnn root"),
                         (f"imagefolder_cnn[root={tmp_path / 'img'},size=8]", "zz.png"),
                         (f"table_mlp[root={tmp_path / 'img'}]", "task table_mlp root")):
        out = tmp_path / "out"
        result = runner.invoke(app, ["compare", "--task", ref, "--optimizers", "adam", "--epochs", "1",
                                     "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split()) and not out.exists()


def test_the_image_folder_example_trains_from_the_command_line(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "examples" / "imagefolder_task.py"), str(tmp_path / "photos")],
                   check=True, timeout=120)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "optbench", "compare", "--task",
           f"{ROOT / 'examples' / 'imagefolder_task.py'}:make_task[root={tmp_path / 'photos'}]",
           "--optimizers", "adam", "--epochs", "5", "--lr", "0.01", "--batch-size", "16", "--seeds", "1",
           "--out", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    from optbench.runs.store import open_store

    with open_store(out / "optbench.db") as store:
        runs = store.load_runs()
    assert len(runs) == 1 and runs[0].status.value == "finished"
    assert runs[0].epochs[-1].metrics["test_accuracy"] > 0.8  # horizontal and vertical bars are told apart


USER_FACTORIES = '''
import torch
from torch import nn
from optbench.core.spec import Dataset, Split
from optbench.tasks.classification import classification_task

def _data():
    return Dataset(Split(torch.randn(10, 2), torch.arange(10) % 2), Split(torch.randn(4, 2), torch.arange(4) % 2))

def _task(model, load):
    return classification_task("user", "user", model, load, target_accuracy=0.9, valid_size=2, recipe={})

def factory_raises():
    raise RuntimeError("cannot reach my bucket")

def loader_raises():
    def load():
        raise FileNotFoundError("no such file: data.csv")
    return _task(lambda: nn.Linear(2, 2), load)

def model_raises():
    def model():
        raise ValueError("weights file missing")
    return _task(model, _data)
'''


@pytest.mark.parametrize(("factory", "message"), [
    ("factory_raises", "factory_raises 'RuntimeError: cannot reach my bucket'; allowed: a factory that builds"),
    ("loader_raises", "task user load_data 'FileNotFoundError: no such file: data.csv'"),
    ("model_raises", "task user make_model 'ValueError: weights file missing'"),
])
def test_a_users_factory_loader_or_model_that_raises_exits_2(tmp_path: Path, factory: str, message: str) -> None:
    module = tmp_path / "user_tasks.py"
    module.write_text(USER_FACTORIES)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["compare", "--task", f"{module}:{factory}", "--optimizers", "adam",
                                      "--epochs", "1", "--out", str(out)])
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
    assert not out.exists()


def test_the_user_data_examples_train(tmp_path: Path, tables: Path) -> None:
    from optbench.core.spec import Recipe
    from optbench.engine import train

    rng = np.random.default_rng(2)
    for part, n in (("train", 300), ("test", 60)):
        x = rng.standard_normal((n, 2, 3)).astype(np.float32)
        np.save(tmp_path / f"{part}_x.npy", x)
        np.save(tmp_path / f"{part}_y.npy", (x[:, 0, 0] > 0).astype(np.int64))
    example = ROOT / "examples" / "user_data_tasks.py"
    recipe = Recipe("adam", {"lr": 1e-2}, batch_size=32, epochs=3)
    for ref in (f"{example}:npy_task[root={tmp_path},classes=2]",
                f"{example}:table_task[root={tables / 'files' / 'train.parquet'}]", f"{example}:dataset_task"):
        task = get_task(ref)
        dataset = task.load_data()
        check_task(task, dataset)
        result = train(task, split_data(dataset, task.valid_size, 0), recipe, seed=0)
        assert result.status.value == "finished", (ref, result.error)
        assert result.epochs[-1].metrics["valid_accuracy"] > 0.75, ref  # each is learnable
