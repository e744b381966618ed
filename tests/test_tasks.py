"""Every task builds, has the documented parameter count, and trains one step."""

from __future__ import annotations

import dataclasses
import sys
import textwrap

import pytest
import torch

from optbench.core.errors import ConfigError, UnknownNameError
from optbench.core.spec import Dataset, Recipe, RunStatus, Split, Task
from optbench.engine import split_data, train
from optbench.tasks import get_task, tasks

# (input shape, parameter count derived from the architecture in the task docstring)
SHAPES = {
    "fmnist_cnn3": ((1, 28, 28), 320 + 18_496 + 73_856 + 11_530),
    "fmnist_mlp": ((784,), 785 * 1000 + 1001 * 500 + 501 * 100 + 101 * 10),
    "mnist_mlp": ((784,), 785 * 1000 + 1001 * 500 + 501 * 100 + 101 * 10),
    "mnist1d_mlp": ((40,), 41 * 100 + 101 * 100 + 101 * 10),
    "mnist1d_cnn": ((40,), (1 * 5 + 1) * 25 + (25 * 3 + 1) * 25 * 2 + 126 * 10),
    "digits_mlp": ((8, 8), 65 * 128 + 129 * 10),
}


def fake_dataset(shape, n_train=300, n_test=50, seed=0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    return Dataset(Split(torch.randn((n_train, *shape), generator=g), torch.randint(0, 10, (n_train,), generator=g)),
                   Split(torch.randn((n_test, *shape), generator=g), torch.randint(0, 10, (n_test,), generator=g)))


def test_catalogue_is_complete():
    assert set(SHAPES) <= set(tasks.names())  # the full list: tests/test_tasks_catalog.py


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_task_builds_and_trains_one_step(name):
    shape, n_params = SHAPES[name]
    task = get_task(name)
    assert task.name == name and task.description
    assert task.target.split == "valid" and 0 < task.target.value < 1
    assert sum(p.numel() for p in task.make_model().parameters()) == n_params
    task = dataclasses.replace(task, valid_size=20)
    data = split_data(fake_dataset(shape if name != "fmnist_cnn3" else (1, 28, 28)), 20, seed=0, train_size=32)
    result = train(task, data, Recipe("sgd", {"lr": 0.01}, batch_size=32, epochs=1), seed=0)
    assert result.status is RunStatus.FINISHED, result.error
    assert result.steps == 1
    m = result.epochs[0].metrics
    assert set(m) == {f"{s}_{k}" for s in ("train", "valid", "test") for k in ("loss", "accuracy")}
    assert all(0 <= m[f"{s}_accuracy"] <= 1 for s in ("train", "valid", "test"))


def test_real_small_tasks_load_and_split():
    for name, n_pool, n_test in (("digits_mlp", 1497, 300), ("mnist1d_cnn", 4000, 1000)):
        task = get_task(name)
        ds = task.load_data()
        assert len(ds.train) == n_pool and len(ds.test) == n_test
        assert ds.train.y.dtype == torch.int64 and ds.train.x.dtype == torch.float32
        assert abs(float(ds.train.x.mean())) < 1e-3 and abs(float(ds.train.x.std()) - 1) < 1e-2
        a, b = split_data(ds, task.valid_size, 3), split_data(ds, task.valid_size, 3)
        c = split_data(ds, task.valid_size, 4)
        assert torch.equal(a.valid.x, b.valid.x) and not torch.equal(a.valid.x, c.valid.x)
        assert len(a.valid) == task.valid_size and len(a.train) == n_pool - task.valid_size
        assert torch.equal(a.test.x, ds.test.x)


def test_split_rejects_too_large_train_size():
    with pytest.raises(ConfigError) as info:
        split_data(fake_dataset((4,)), 20, seed=0, train_size=281)
    assert info.value.field == "train_size" and "280" in str(info.value)


def test_unknown_task_and_bad_user_task(tmp_path):
    with pytest.raises(UnknownNameError) as info:
        get_task("imagenet")
    assert "fmnist_cnn3" in str(info.value)
    with pytest.raises(ConfigError):
        get_task("no_such_module_xyz:make")
    bad = tmp_path / "bad_task.py"
    bad.write_text("def make():\n    return 42\n")
    with pytest.raises(ConfigError) as info:
        get_task(f"{bad}:make")
    assert "Task" in str(info.value)


def test_user_task_from_file(tmp_path):
    src = tmp_path / "my_task.py"
    src.write_text(textwrap.dedent("""
        import torch
        from torch import nn
        from optbench.core.spec import Dataset, Split
        from optbench.tasks.classification import classification_task

        def load():
            g = torch.Generator().manual_seed(0)
            x = torch.randn(200, 5, generator=g)
            y = (x[:, 0] > 0).long()
            return Dataset(Split(x[:150], y[:150]), Split(x[150:], y[150:]))

        def make_task():
            return classification_task("toy", "toy", lambda: nn.Linear(5, 2), load,
                                       target_accuracy=0.9, valid_size=30, recipe={})
    """))
    task = get_task(f"{src}:make_task")
    assert isinstance(task, Task) and task.name == "toy"
    data = split_data(task.load_data(), task.valid_size, 0)
    result = train(task, data, Recipe("adam", {"lr": 0.05}, batch_size=16, epochs=5), seed=0)
    assert result.final("valid_accuracy") > 0.9
    sys.modules.pop("optbench_user_task_my_task", None)


def test_task_parameters_change_the_architecture_and_the_name():
    base = get_task("fmnist_cnn3")
    task = get_task("fmnist_cnn3[norm=batch,width=0.5,dropout=0.25]")
    assert task.name == "fmnist_cnn3[dropout=0.25,norm=batch,width=0.5]"
    model = task.make_model()
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)] == [16, 32, 64]
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [0.25]
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in base.make_model().parameters())
    for norm, layer in (("layer", torch.nn.LayerNorm), ("group", torch.nn.GroupNorm)):
        mlp = get_task(f"digits_mlp[norm={norm}]").make_model()
        assert any(isinstance(m, layer) for m in mlp.modules())


@pytest.mark.parametrize("ref,field", [("fmnist_cnn3[depth=3]", "parameter of task fmnist_cnn3"),
                                       ("fmnist_cnn3[norm=instance]", "normalization"),
                                       ("digits_mlp[dropout=1.5]", "dropout"), ("digits_mlp[width=0]", "width"),
                                       ("digits_mlp[norm]", "task parameter")])
def test_bad_task_parameters(ref, field):
    with pytest.raises(ConfigError) as info:
        get_task(ref)
    assert info.value.field == field
