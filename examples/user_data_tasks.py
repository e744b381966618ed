"""Your data in the forms you have it, each in a task factory of a few lines (the image folder has its own
example, ``examples/imagefolder_task.py``).

    optbench compare --task "examples/user_data_tasks.py:npy_task[root=arrays]" --optimizers adam,sgd
    optbench compare --task "examples/user_data_tasks.py:table_task[root=table.parquet]" --optimizers adam
    optbench compare --task "examples/user_data_tasks.py:dataset_task" --optimizers adam,momentum

* ``npy_task`` — ``root/train_x.npy``, ``train_y.npy``, ``test_x.npy``, ``test_y.npy`` read row by row from
  disk (:class:`~optbench.data.readers.NpyArrays`), so the arrays may be larger than memory;
* ``table_task`` — a Parquet/CSV/JSON file or a ``datasets.save_to_disk`` folder read offline with Hugging
  Face ``datasets`` (:class:`~optbench.data.readers.TableDataset`); here the test split is a seeded fifth
  of the table;
* ``dataset_task`` — your own ``torch.utils.data.Dataset`` class, item ``i`` -> ``(x, y)``.

Each wraps its datasets in :class:`~optbench.core.splits.StreamSplit`, read through a ``DataLoader`` in
the run's seeded order. (Without code: ``npy_mlp[root=arrays]`` and ``table_mlp[root=...]`` are the same
readers with an MLP.)
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import Subset

from optbench.core.spec import Dataset, StreamSplit, Task
from optbench.data.readers import NpyArrays, TableDataset
from optbench.tasks.classification import classification_task

RECIPE = {"optimizer": "adam", "hyperparams": {"lr": 1e-2}, "batch_size": 64, "epochs": 5}


def _mlp(features: int, classes: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(features, 64), nn.ReLU(), nn.Linear(64, classes))


def npy_task(root: str = "arrays", classes: int = 10) -> Task:
    """An MLP on ``root/{train,test}_{x,y}.npy``."""
    train = NpyArrays(Path(root) / "train_x.npy", Path(root) / "train_y.npy", name=f"{root}/train")
    features = int(torch.tensor(train.x.shape[1:]).prod())

    def load() -> Dataset:
        test = NpyArrays(Path(root) / "test_x.npy", Path(root) / "test_y.npy", name=f"{root}/test")
        return Dataset(StreamSplit(train, name=train.name, classes=classes),
                       StreamSplit(test, name=test.name, classes=classes))

    return classification_task("npy_example", f"MLP on {root}", lambda: _mlp(features, classes), load,
                               target_accuracy=0.9, valid_size=max(1, len(train) // 10), recipe=RECIPE)


def table_task(root: str = "table.parquet", label: str = "label", classes: int = 2) -> Task:
    """An MLP on the numeric columns of a table (every column but ``label``); a seeded fifth is the test set."""
    table = TableDataset.all_but(root, label)
    features = int(table[0][0].numel())
    order = torch.randperm(len(table), generator=torch.Generator().manual_seed(0)).tolist()
    cut = len(table) // 5

    def load() -> Dataset:
        return Dataset(StreamSplit(Subset(table, order[cut:]), name=f"{root} train", classes=classes),
                       StreamSplit(Subset(table, order[:cut]), name=f"{root} test", classes=classes))

    return classification_task("table_example", f"MLP on {root}", lambda: _mlp(features, classes), load,
                               target_accuracy=0.9, valid_size=max(1, (len(table) - cut) // 10), recipe=RECIPE)


class Rings(TorchDataset):
    """Your own dataset class: item ``i`` is a 2-d point and whether it lies inside radius 1 (made on the fly
    from ``i``, so nothing is held in memory)."""

    def __init__(self, size: int, offset: int = 0) -> None:
        self.size, self.offset = size, offset

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        point = torch.rand(2, generator=torch.Generator().manual_seed(self.offset + index)) * 3 - 1.5
        return point, int(point.norm() < 1.0)


def dataset_task() -> Task:
    """An MLP telling points inside the unit circle from those outside (:class:`Rings`)."""

    def load() -> Dataset:
        return Dataset(StreamSplit(Rings(2000), name="rings train", classes=2),
                       StreamSplit(Rings(500, offset=10_000), name="rings test", classes=2))

    return classification_task("rings_example", "MLP on Rings", lambda: _mlp(2, 2), load, target_accuracy=0.9,
                               valid_size=200, recipe=RECIPE)
