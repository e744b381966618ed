"""Tasks on the user's own data, one line on the command line (docs/architecture.md, "Data: in memory
or streamed"): ``imagefolder_cnn[root=DIR]``, ``npy_mlp[root=DIR]``, ``table_mlp[root=PATH,label=COL]``.

Every one reads ``root`` by the common convention of a ``train`` and a ``test`` part, with an optional
``valid`` part (then the whole training part trains; else ``valid_size`` examples are carved from it
by the run's seed):

* ``imagefolder_cnn`` — ``root/train/<class>/*.png`` (and ``test``, ``valid``), Pillow-decoded, resized
  to ``size``; the 3-conv CNN of the reference experiment (:func:`optbench.tasks.models.cnn3`).
* ``npy_mlp`` — ``root/train_x.npy``, ``root/train_y.npy`` (and ``test_``, ``valid_``), read row by row;
  an MLP on the flattened inputs.
* ``table_mlp`` — a Hugging Face ``datasets`` folder saved with ``save_to_disk`` (a ``DatasetDict`` with
  ``train``/``test``[/``validation``]) or ``root/train.parquet`` / ``.csv`` / ``.json`` files; inputs
  are the ``features`` columns (``;``-separated, default every column but ``label``).

All splits are streamed (:class:`~optbench.core.splits.StreamSplit`): only the batches being read are
in memory. Labels are checked to lie in ``[0, classes)`` as they are read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch.utils.data import Dataset as TorchDataset

from optbench.core.errors import ConfigError
from optbench.core.spec import Dataset, StreamSplit, Task
from optbench.tasks.classification import classification_task

#: Default recipe of the user-data tasks (Adam at its default learning rate, batch 128, 10 epochs).
RECIPE = {"optimizer": "adam", "hyperparams": {"lr": 1e-3}, "batch_size": 128, "epochs": 10}


def _root(root: str, task: str) -> Path:
    path = Path(root)
    if not root or not path.exists():
        raise ConfigError(f"task {task} root", root, "an existing folder (or saved dataset) with train and test parts")
    return path


def _workers(workers: int, task: str) -> int | None:
    if workers < -1:
        raise ConfigError(f"task {task} workers", workers, "-1 (automatic) or an integer >= 0")
    return None if workers == -1 else workers


def _valid_size(valid_size: int, pool: int, has_valid: bool, task: str) -> int:
    """The examples carved for validation: ``valid_size`` when >= 1, else a tenth of the pool (at most
    5,000; 0 when the data has its own validation part)."""
    if has_valid:
        return 0
    if valid_size < 0:
        raise ConfigError(f"task {task} valid_size", valid_size, "0 (a tenth of the pool) or an integer >= 1")
    size = valid_size or min(5000, pool // 10)
    if not 1 <= size < pool:
        raise ConfigError(f"task {task} valid_size", size, f"an integer in [1, {pool - 1}] (the pool has {pool})")
    return size


def _streamed(parts: dict[str, TorchDataset], names: dict[str, str], classes: int, workers: int | None) -> Dataset:
    """The task's :class:`Dataset` of ``parts`` (``train``, ``test`` and optionally ``valid``), each read as a
    :class:`StreamSplit` named ``names[part]`` whose labels are checked against ``classes``."""
    splits = {part: StreamSplit(ds, name=names[part], classes=classes, workers=workers) for part, ds in parts.items()}
    return Dataset(splits["train"], splits["test"], splits.get("valid"))


def imagefolder_cnn(root: str = "", size: int = 28, mode: str = "RGB", valid_size: int = 0, dropout: float = 0.5,
                    workers: int = -1, verify: bool = True) -> Task:
    """The 3-conv CNN on an image folder ``root/{train,test[,valid]}/<class>/<image>``.

    Args:
        root: the folder.
        size: images are resized to ``size`` x ``size`` (pixels).
        mode: ``RGB`` (3 channels) or ``L`` (grayscale).
        valid_size: examples carved from ``train`` for validation (0: a tenth, at most 5,000).
        dropout: of the CNN's dense layer.
        workers: DataLoader worker processes (-1: automatic).
        verify: open every image's header once when the data is loaded (Pillow ``verify``), so that an
            unreadable file stops the command before any run instead of failing a run midway.

    Raises:
        ConfigError: for a missing folder or part, no classes, test classes the training part lacks,
            a bad size, mode or worker count (see :class:`~optbench.data.readers.ImageFolder`).
    """
    from optbench.data.readers import ImageFolder
    from optbench.tasks.models import cnn3

    name = "imagefolder_cnn"
    path = _root(root, name)
    loader_workers = _workers(workers, name)
    train = ImageFolder(path / "train", size=size, mode=mode)
    has_valid = (path / "valid").is_dir()
    channels, classes = ImageFolder.MODES[mode], len(train.classes)

    def load() -> Dataset:
        parts = {"train": train} | {part: ImageFolder(path / part, size=size, mode=mode, classes=train.classes)
                                    for part in ("test", "valid") if part == "test" or has_valid}
        if verify:
            for folder in parts.values():
                folder.verify()
        return _streamed(parts, {part: f"{path / part}" for part in parts}, classes, loader_workers)

    return classification_task(
        name, f"3-conv CNN on the image folder {path} ({classes} classes, {size}x{size} {mode})",
        lambda: cnn3(in_channels=channels, classes=classes, image_size=size, dropout=dropout), load,
        target_accuracy=0.9, valid_size=_valid_size(valid_size, len(train), has_valid, name), recipe=RECIPE,
        augmentations=("random_crop", "horizontal_flip", "gaussian_noise"))


def _labels_classes(path: Path, task: str) -> int:
    labels = np.load(path, mmap_mode="r", allow_pickle=False)
    if labels.size == 0 or not np.issubdtype(labels.dtype, np.integer) or int(labels.min()) < 0:
        raise ConfigError(f"task {task} labels", str(path), "non-negative integer class indices")
    return int(labels.max()) + 1


def npy_mlp(root: str = "", hidden: int = 256, valid_size: int = 0, workers: int = -1) -> Task:
    """An MLP (one hidden layer of ``hidden`` ReLU units) on ``root/{train,test[,valid]}_{x,y}.npy``:
    inputs ``(N, ...)`` flattened, labels ``(N,)`` class indices (classes = the largest training label + 1).

    Raises:
        ConfigError: for a missing folder or file, arrays of different lengths, non-integer labels.
    """
    from optbench.data.readers import NpyArrays
    from optbench.tasks.models import mlp

    name = "npy_mlp"
    path = _root(root, name)
    loader_workers = _workers(workers, name)
    if isinstance(hidden, bool) or hidden < 1:
        raise ConfigError(f"task {name} hidden", hidden, "an integer >= 1")
    train = NpyArrays(path / "train_x.npy", path / "train_y.npy", name=f"{path / 'train'}")
    classes = _labels_classes(path / "train_y.npy", name)
    features = int(np.prod(train.x.shape[1:]))
    has_valid = (path / "valid_x.npy").is_file()

    def load() -> Dataset:
        parts = {"train": train} | {part: NpyArrays(path / f"{part}_x.npy", path / f"{part}_y.npy",
                                                    name=f"{path / part}")
                                    for part in ("test", "valid") if part == "test" or has_valid}
        return _streamed(parts, {part: ds.name for part, ds in parts.items()}, classes, loader_workers)

    return classification_task(
        name, f"MLP {features}-{hidden}-{classes} on the arrays in {path}", lambda: mlp(features, (hidden,), classes),
        load, target_accuracy=0.9,
        valid_size=_valid_size(valid_size, len(train), has_valid, name), recipe=RECIPE,
        augmentations=("gaussian_noise",))


def table_mlp(root: str = "", label: str = "label", features: str = "", hidden: int = 256, valid_size: int = 0,
              workers: int = -1) -> Task:
    """An MLP on a table: a Hugging Face ``datasets`` folder (``save_to_disk``) with ``train``/``test``
    [/``validation``] splits, or ``root/{train,test[,validation]}.{parquet,csv,json,jsonl}`` files.

    Args:
        root: the saved dataset folder or the folder of table files.
        label: the label column (integer class indices).
        features: input columns separated by ``;`` (the order of the input vector); "": every column but
            ``label``.

    Raises:
        ConfigError: for a missing path or split, a column that does not exist (listing the existing ones).
    """
    from optbench.data.readers import TABLE_FORMATS, TableDataset
    from optbench.tasks.models import mlp

    name = "table_mlp"
    path = _root(root, name)
    loader_workers = _workers(workers, name)

    saved = (path / "dataset_dict.json").is_file()

    def source(part: str) -> tuple[Path, str] | None:
        """``(path, split)`` of a part: a split of the saved DatasetDict, or ``<part>.<format>``; None: absent."""
        if saved:
            return (path, part) if (path / part).is_dir() else None
        files = [path / f"{part}{suffix}" for suffix in TABLE_FORMATS if (path / f"{part}{suffix}").is_file()]
        return (files[0], "train") if files else None

    first = source("train")
    if first is None:
        raise ConfigError(f"task {name} root", root, "a saved DatasetDict folder or a folder with train.parquet / "
                          ".csv / .json and test files")
    train = TableDataset(first[0], [c for c in features.split(";") if c] or None, label, split=first[1])
    labels = np.asarray(train.table[label])
    classes = int(labels.max()) + 1 if labels.size else 0
    width = int(train[0][0].numel())
    has_valid = source("validation") is not None

    def load() -> Dataset:
        parts: dict[str, TorchDataset] = {"train": train}
        for part, key in (("test", "test"), ("valid", "validation")):
            found = source(key)
            if found is None and part == "test":
                raise ConfigError(f"task {name} test", str(path), "a test split or test table file")
            if found is not None:
                parts[part] = TableDataset(found[0], train.features, label, split=found[1])
        return _streamed(parts, {part: f"{ds.name} {part}" for part, ds in parts.items()}, classes, loader_workers)

    return classification_task(
        name, f"MLP {width}-{hidden}-{classes} on the table {path} (label {label})",
        lambda: mlp(width, (hidden,), classes), load, target_accuracy=0.9,
        valid_size=_valid_size(valid_size, len(train), has_valid, name), recipe=RECIPE,
        augmentations=("gaussian_noise",))


__all__ = ["RECIPE", "imagefolder_cnn", "npy_mlp", "table_mlp"]
