"""Datasets in the forms users have, as map-style ``torch.utils.data`` datasets for a
:class:`~optbench.core.splits.StreamSplit` (docs/architecture.md, "Data: in memory or streamed").

* :class:`TensorItems` — in-memory tensors read one item at a time (the streamed twin of a
  :class:`~optbench.core.splits.Split`; :func:`streamed` turns any task into its streamed twin).
* :class:`NpyArrays` — NumPy ``.npy`` files read row by row with positioned reads: only the rows
  being read are in memory.
* :class:`ImageFolder` — one sub-folder per class, images decoded with Pillow on demand.
* :class:`TableDataset` — a Hugging Face ``datasets`` dataset saved to disk (``save_to_disk``) or
  local Parquet / CSV / JSON files, read offline with the ``datasets`` library.

Every reader checks what it can when it is made (a folder without classes, a column that does not
exist, arrays of different lengths) and raises :class:`~optbench.core.errors.ConfigError` naming the
dataset and what is wrong; an item that cannot be read raises when it is read, naming its index and
file. Random augmentation is not the reader's job: the recipe's augmentation techniques
(:mod:`optbench.techniques.augmentation`) run on every training batch, seeded by the run, so a
streamed run stays reproducible and resumable.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset as TorchDataset

from optbench.core.errors import ConfigError
from optbench.core.spec import Dataset, Split, StreamSplit, Task

#: Image file suffixes :class:`ImageFolder` reads (Pillow decodes them).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
#: Tabular file formats :class:`TableDataset` reads through ``datasets.load_dataset``.
TABLE_FORMATS = {".parquet": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "json"}


class TensorItems(TorchDataset):
    """Item ``i`` of in-memory tensors: ``(x[i], y[i])``; ``x`` ``(N, ...)``, ``y`` ``(N, ...)``."""

    def __init__(self, x: Tensor, y: Tensor) -> None:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} examples but y has {y.shape[0]}")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.x[index], self.y[index]


def streamed(task: Task, *, workers: int | None = None) -> Task:
    """``task`` with every in-memory split read item by item through a ``DataLoader``
    (:class:`TensorItems` in a :class:`StreamSplit`): same examples, same seeded order, so its
    per-epoch metrics equal the in-memory run's to float tolerance. For measuring the streaming
    path (``bench/data_loading.py``) and for checking it against the fast path.

    The task keeps its name (the same experiment); ``workers`` as :class:`StreamSplit`'s."""

    def wrap(split: Split | StreamSplit, name: str) -> StreamSplit:
        if isinstance(split, StreamSplit):
            return split
        return StreamSplit(TensorItems(split.x, split.y), name=f"{task.name} {name}", workers=workers)

    def load() -> Dataset:
        data = task.load_data()
        valid = None if data.valid is None else wrap(data.valid, "valid")
        return Dataset(wrap(data.train, "train"), wrap(data.test, "test"), valid)

    return dataclasses.replace(task, load_data=load)


class NpyArray:
    """Rows of one ``.npy`` file read with positioned reads (``os.pread``): row ``i`` of an array
    ``(N, ...)`` costs one read of its bytes, so only the rows being read are in the process's memory
    (a memory map would count every page it touched in the process's resident set). The file is
    opened lazily in each process (DataLoader workers included).

    Raises:
        ConfigError: when the file is missing, is not a ``.npy`` array, is Fortran-ordered, holds
            Python objects or is 0-d (``field`` names ``what``).
    """

    def __init__(self, path: str | Path, what: str) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(what, str(path), "an existing .npy file")
        try:
            with self.path.open("rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                               (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if read_header is None:
                    raise ValueError(f"format version {version[0]}.{version[1]}; 1.0 and 2.0 are read")
                shape, fortran, dtype = read_header(f)
                self.offset = f.tell()
        except (OSError, ValueError) as exc:
            raise ConfigError(what, str(path), f"a .npy array ({exc})") from exc
        if fortran or dtype.hasobject or len(shape) < 1:
            raise ConfigError(what, f"{path} ({'Fortran order' if fortran else dtype if dtype.hasobject else '0-d'})",
                              "a C-ordered numeric .npy array (N, ...)")
        self.shape, self.dtype = tuple(shape), dtype
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        self._fd: tuple[int, int] | None = None  # (pid, file descriptor)

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_fd": None}

    def row(self, index: int) -> np.ndarray:
        """Row ``index`` as an array of shape ``shape[1:]``."""
        if not 0 <= index < self.shape[0]:
            raise IndexError(f"row {index} of {self.shape[0]} in {self.path}")
        if self._fd is None or self._fd[0] != os.getpid():
            self._fd = (os.getpid(), os.open(self.path, os.O_RDONLY))
        data = os.pread(self._fd[1], self.row_bytes, self.offset + index * self.row_bytes)
        return np.frombuffer(data, dtype=self.dtype).reshape(self.shape[1:])


class NpyArrays(TorchDataset):
    """Item ``i`` of two ``.npy`` files ``x`` ``(N, ...)`` and ``y`` ``(N, ...)``: ``(x[i] as float32, y[i])``,
    read row by row from disk (:class:`NpyArray`): a dataset larger than memory trains in bounded memory.

    Args:
        x_path, y_path: ``.npy`` files with the same first dimension.
        name: shown in errors.

    Raises:
        ConfigError: when a file is missing, is not a numeric C-ordered ``.npy`` array, or the lengths differ.
    """

    def __init__(self, x_path: str | Path, y_path: str | Path, name: str = "npy") -> None:
        self.name = name
        self.x = NpyArray(x_path, f"dataset {name} x")
        self.y = NpyArray(y_path, f"dataset {name} y")
        if len(self.x) != len(self.y):
            raise ConfigError(f"dataset {name} y", f"{len(self.y)} labels for {len(self.x)} inputs",
                              "one label per input (the same first dimension)")

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.x.row(index).astype(np.float32), self.y.row(index)


class ImageFolder(TorchDataset):
    """Images in ``root/<class>/<file>``: item ``i`` is ``(x (C, H, W) float32 in [0, 1], class index)``.

    Classes are the sub-folder names in sorted order (index 0 is the first), files sorted within a class.
    Decoding is Pillow's (``Image.open(...).convert(mode)``), resized to ``size`` x ``size`` when given.

    Args:
        root: the folder.
        size: the side length every image is resized to (bilinear); None: images must share one size.
        mode: Pillow mode, ``"L"`` (grayscale, C = 1) or ``"RGB"`` (C = 3).
        classes: the class names in index order (e.g. the training folder's, for a test folder);
            None: this folder's sub-folders.

    Raises:
        ConfigError: for a missing folder, no class sub-folders, a class folder without images,
            an unknown mode, or a folder whose classes differ from ``classes``; reading an image
            that Pillow cannot decode raises naming the file.
    """

    MODES = {"L": 1, "RGB": 3}

    def __init__(self, root: str | Path, size: int | None = None, mode: str = "RGB",
                 classes: Sequence[str] | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ConfigError("image folder", str(root), "an existing folder with one sub-folder per class")
        if mode not in self.MODES:
            raise ConfigError(f"image folder {root} mode", mode, self.MODES)
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ConfigError(f"image folder {root} size", size, "an integer >= 1 or None")
        found = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        if not found:
            raise ConfigError("image folder", str(root), "a folder with one sub-folder per class (none found)")
        self.classes = list(classes) if classes is not None else found
        extra = sorted(set(found) - set(self.classes))
        if extra:
            raise ConfigError(f"image folder {root} classes", ", ".join(extra), self.classes)
        self.size, self.mode = size, mode
        self.files: list[tuple[Path, int]] = []
        for label, name in enumerate(self.classes):
            folder = self.root / name
            images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) \
                if folder.is_dir() else []
            if not images and classes is None:
                raise ConfigError(f"image folder {root} class {name}", "no images",
                                  f"files ending in {', '.join(IMAGE_SUFFIXES)}")
            self.files.extend((p, label) for p in images)

    def __len__(self) -> int:
        return len(self.files)

    def verify(self) -> None:
        """Open every image's header with Pillow (``Image.verify``, no full decode).

        Raises:
            ConfigError: naming the first file Pillow cannot read."""
        from PIL import Image, UnidentifiedImageError

        for index, (path, _) in enumerate(self.files):
            try:
                with Image.open(path) as image:
                    image.verify()
            except (OSError, SyntaxError, UnidentifiedImageError) as exc:
                raise ConfigError(f"image folder {self.root} item {index}", str(path),
                                  f"an image Pillow can read ({type(exc).__name__}: {exc})") from exc

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        from PIL import Image, UnidentifiedImageError

        path, label = self.files[index]
        try:
            with Image.open(path) as image:
                image = image.convert(self.mode)
                if self.size is not None:
                    image = image.resize((self.size, self.size), Image.Resampling.BILINEAR)
                array = np.asarray(image, dtype=np.float32) / 255.0
        except (OSError, UnidentifiedImageError) as exc:
            raise ValueError(f"cannot decode image {path}: {exc}") from exc
        x = torch.from_numpy(array.copy())
        x = x.unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1)
        return x, label


class TableDataset(TorchDataset):
    """Rows of a Hugging Face ``datasets`` table: item ``i`` is ``(x, y)`` with ``x`` the float32 vector of
    the ``features`` columns (each a number or a fixed-length list) and ``y`` the ``label`` column.

    Read offline: ``datasets.load_from_disk`` for a folder written by ``Dataset.save_to_disk``, else
    ``datasets.load_dataset("parquet" | "csv" | "json", data_files=...)`` for local files (by suffix);
    the table is Arrow, memory-mapped, so rows are read on demand.

    Args:
        path: a saved dataset folder or a ``.parquet`` / ``.csv`` / ``.json`` / ``.jsonl`` file.
        features: input column names, in order; None: every column but ``label``, in table order.
        label: the label column.
        split: for a saved ``DatasetDict`` or files, which split (``"train"`` for plain files).

    Raises:
        ConfigError: for a missing path, an unknown suffix, a split or a column that does not exist
            (listing the existing ones).
    """

    def __init__(self, path: str | Path, features: Sequence[str] | None, label: str, split: str = "train") -> None:
        import datasets

        path = Path(path)
        if not path.exists():
            raise ConfigError("table dataset", str(path), "an existing saved dataset folder or table file")
        if path.is_dir():
            table = datasets.load_from_disk(str(path))
        elif path.suffix.lower() in TABLE_FORMATS:
            table = datasets.load_dataset(TABLE_FORMATS[path.suffix.lower()], data_files=str(path))
        else:
            raise ConfigError("table dataset", str(path), f"a saved dataset folder or a file ending in "
                              f"{', '.join(TABLE_FORMATS)}")
        if isinstance(table, datasets.DatasetDict):
            if split not in table:
                raise ConfigError(f"table dataset {path} split", split, list(table))
            table = table[split]
        columns = list(table.column_names)
        if features is None:
            features = [c for c in columns if c != label]
        if not features:
            raise ConfigError(f"table dataset {path} features", "none", columns)
        for column in (*features, label):
            if column not in columns:
                raise ConfigError(f"table dataset {path} column", column, columns)
        self.name = str(path)
        self.features, self.label = list(features), label
        self.table = table.select_columns([*self.features, label]).with_format("numpy")

    @classmethod
    def all_but(cls, path: str | Path, label: str, split: str = "train") -> TableDataset:
        """The table at ``path`` with every column except ``label`` as the input features, in table order."""
        return cls(path, None, label, split)

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        row = self.table[int(index)]
        parts = [np.asarray(row[c], dtype=np.float32).reshape(-1) for c in self.features]
        return torch.from_numpy(np.concatenate(parts)), torch.as_tensor(np.asarray(row[self.label]))


__all__ = ["IMAGE_SUFFIXES", "TABLE_FORMATS", "ImageFolder", "NpyArray", "NpyArrays", "TableDataset", "TensorItems",
           "streamed"]
