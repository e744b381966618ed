"""The two forms a split of a task's data takes (docs/architecture.md, "Data: in memory or streamed").

* :class:`Split` — in-memory tensors ``x`` ``(N, *input_shape)`` and ``y`` ``(N, ...)``: the fast path of
  the built-in tasks (batches are index gathers, no per-example Python).
* :class:`StreamSplit` — any map-style ``torch.utils.data.Dataset`` whose item ``i`` is ``(x_i, y_i)``
  (tensors, NumPy arrays or numbers), read through a ``DataLoader`` with worker processes and
  prefetching by :mod:`optbench.engine.data`; only the examples of the current batches are in memory.

Both answer ``len``, ``subset(index)`` (a seeded index split), ``gather(index)`` (one batch as tensors
on the split's device), ``input_shape`` and ``device``. Items of a stream are checked as they are read:
an item that is not ``(x, y)``, a label outside ``[0, classes)`` or an input whose shape differs from
item 0's raises :class:`~optbench.core.errors.ConfigError` naming the dataset, the index and what is
wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import IterableDataset, Subset

from optbench.core.errors import ConfigError


@dataclass(frozen=True)
class Split:
    """In-memory examples: ``x`` of shape ``(N, ...)`` and targets ``y`` of shape ``(N, ...)``."""

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"x has {self.x.shape[0]} examples but y has {self.y.shape[0]}")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, index: Tensor) -> Split:
        """The examples at ``index`` (a 1-d int64 tensor), copied."""
        return Split(self.x[index], self.y[index])

    def first(self, n: int) -> tuple[Tensor, Tensor]:
        """The first ``n`` examples: ``(x[:n], y[:n])``."""
        return self.x[:n], self.y[:n]

    def gather(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """One batch: ``(x[index], y[index])``, on the split's device."""
        index = index.to(self.x.device)
        return self.x[index], self.y[index]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one example's input, e.g. ``(1, 28, 28)``."""
        return tuple(self.x.shape[1:])

    @property
    def device(self) -> torch.device:
        """Where the examples are."""
        return self.x.device


def _as_tensor(value: object, what: str, name: str, index: int) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.ndarray) and not value.flags.writeable:
        return torch.from_numpy(value.copy())  # a read-only view (Arrow, memory map): torch needs its own
    if isinstance(value, np.ndarray | np.generic | int | float) and not isinstance(value, bool):
        return torch.as_tensor(value)
    raise ConfigError(f"dataset {name} item {index} {what}", type(value).__name__,
                      "a tensor, a NumPy array or a number")


def read_item(dataset: TorchDataset, index: int, name: str, classes: int | None = None,
              input_shape: tuple[int, ...] | None = None) -> tuple[Tensor, Tensor]:
    """Item ``index`` of a user's dataset as ``(x, y)`` tensors, checked.

    ``x`` becomes float32 when it is floating point or integer (images of uint8 are the dataset's
    business to scale); an integer ``y`` becomes int64.

    Raises:
        ConfigError: naming ``dataset <name> item <index>`` when reading raises (the reader's message),
            the item is not a pair, a label is outside ``[0, classes)``, or ``x``'s shape is not
            ``input_shape``.
    """
    try:
        item = dataset[index]
    except Exception as exc:
        raise ConfigError(f"dataset {name} item {index}", f"{type(exc).__name__}: {exc}",
                          "an item that can be read") from exc
    return check_item(item, index, name, classes, input_shape)


def check_item(item: object, index: int, name: str, classes: int | None = None,
               input_shape: tuple[int, ...] | None = None) -> tuple[Tensor, Tensor]:
    """An item already read (``index``: its index, or its position in an iterable's stream) as checked
    ``(x, y)`` tensors; see :func:`read_item`."""
    if not isinstance(item, tuple | list) or len(item) != 2:
        got = f"a {type(item).__name__}" + (f" of {len(item)}" if isinstance(item, tuple | list) else "")
        raise ConfigError(f"dataset {name} item {index}", got, "a pair (x, y)")
    x = _as_tensor(item[0], "x", name, index)
    y = _as_tensor(item[1], "y", name, index)
    if not x.is_floating_point():
        x = x.float()
    if not y.is_floating_point() and y.dtype != torch.bool:
        y = y.long()
        if classes is not None and y.numel() and (int(y.min()) < 0 or int(y.max()) >= classes):
            bad = int(y.max()) if int(y.max()) >= classes else int(y.min())
            raise ConfigError(f"dataset {name} item {index} label", bad, f"a class index in [0, {classes})")
    if input_shape is not None and tuple(x.shape) != input_shape:
        raise ConfigError(f"dataset {name} item {index} x shape", tuple(x.shape),
                          f"{input_shape} (the shape of item 0)")
    return x, y


def base_index(dataset: TorchDataset, index: int) -> tuple[TorchDataset, int]:
    """``(the user's dataset, its index)`` of item ``index`` of ``dataset`` seen through nested
    ``torch.utils.data.Subset`` views."""
    while isinstance(dataset, Subset):
        dataset, index = dataset.dataset, int(dataset.indices[index])
    return dataset, index


def collate(items: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Stack checked items ``(x_i, y_i)`` into a batch ``(x (B, ...), y (B, ...))`` (the ``collate_fn`` of
    every streamed batch; items already have one shape, see :func:`read_item`)."""
    xs, ys = zip(*items, strict=True)
    return torch.stack(xs), torch.stack(ys)


@dataclass(frozen=True)
class StreamSplit:
    """Examples read through ``torch.utils.data``: ``dataset[i] -> (x_i, y_i)``.

    Args:
        dataset: a map-style ``torch.utils.data.Dataset`` with ``__len__``, or an ``IterableDataset`` (of
            shards, say) with ``__len__`` (the examples per epoch, which schedules count steps by). An
            iterable gives its own order: before every epoch it is told ``set_epoch(e)`` when it has
            that method (Hugging Face ``datasets`` and WebDataset do), with ``e`` drawn from the run's
            seeded data-order generator, so its order is reproducible and a resumed run gets the
            same ``e``; it cannot be split by index (the task's data must have its own validation
            set, and ``train_size`` is refused), it must divide its stream among DataLoader workers
            itself (``torch.utils.data.get_worker_info``), and errors name the position in the stream.
        name: shown in error messages, e.g. ``"train"`` or the folder it was read from.
        classes: when given, every integer label is checked to lie in ``[0, classes)``.
        workers: ``DataLoader`` worker processes; None: 2 where the process may start children
            (not inside a study worker) and the machine has more than 2 cores, else 1, and 0 inside
            a daemonic process. 0 reads in the training process.
        prefetch: batches each worker loads ahead (``DataLoader(prefetch_factor=)``).
        device: where batches go (set by :func:`optbench.engine.data.to_device`); pinned host memory
            and non-blocking copies on CUDA.
        layout: the memory format of 4-d input batches (``channels_last`` for images).

    Raises:
        ConfigError: for an iterable or length-less dataset, a negative worker count or prefetch < 1.
    """

    dataset: TorchDataset
    name: str = "dataset"
    classes: int | None = None
    workers: int | None = None
    prefetch: int = 2
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    layout: torch.memory_format = torch.contiguous_format

    def __post_init__(self) -> None:
        try:
            len(self.dataset)  # type: ignore[arg-type]
        except TypeError as exc:
            raise ConfigError(f"dataset {self.name}", type(self.dataset).__name__,
                              "a torch.utils.data.Dataset or IterableDataset with __len__ (examples per epoch)"
                              ) from exc
        if self.workers is not None and (isinstance(self.workers, bool) or self.workers < 0):
            raise ConfigError(f"dataset {self.name} workers", self.workers, "an integer >= 0 or None (automatic)")
        if isinstance(self.prefetch, bool) or self.prefetch < 1:
            raise ConfigError(f"dataset {self.name} prefetch", self.prefetch, "an integer >= 1")

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    @property
    def iterable(self) -> bool:
        """True for an ``IterableDataset`` (read in its own order, not by index)."""
        return isinstance(self.dataset, IterableDataset)

    def subset(self, index: Tensor) -> StreamSplit:
        """The examples at ``index`` (a 1-d int64 tensor), as a ``torch.utils.data.Subset`` view.

        Raises:
            ConfigError: for an iterable dataset (no index)."""
        if self.iterable:
            raise ConfigError(f"dataset {self.name}", "an IterableDataset split by index",
                              "a separate validation set for an iterable training set, and train_size all")
        return replace(self, dataset=Subset(self.dataset, index.tolist()))

    def first(self, n: int) -> tuple[Tensor, Tensor]:
        """The first ``n`` examples (in index or stream order) as one batch on the split's device."""
        if not self.iterable:
            return self.gather(list(range(min(n, len(self)))))
        items = []
        for position, item in enumerate(self.dataset):
            if position >= n:
                break
            items.append(check_item(item, position, self.name, self.classes, self.input_shape if position else None))
        return self.place(collate(items))

    def place(self, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """A host batch ``(x, y)`` on the split's device (non-blocking from pinned memory on CUDA), 4-d
        inputs in the split's layout."""
        x, y = batch
        cuda = self.device.type == "cuda"
        x = x.to(self.device, non_blocking=cuda)
        if x.dim() == 4:
            x = x.contiguous(memory_format=self.layout)
        return x, y.to(self.device, non_blocking=cuda)

    def item(self, index: int) -> tuple[Tensor, Tensor]:
        """Example ``index`` as checked ``(x, y)`` tensors on the host (see :func:`read_item`); errors name
        the index in the user's dataset (through any subsets)."""
        dataset, origin = base_index(self.dataset, index)
        return read_item(dataset, origin, self.name, self.classes, self.input_shape)

    def gather(self, index: Tensor | Sequence[int]) -> tuple[Tensor, Tensor]:
        """One batch ``(x (B, ...), y (B, ...))`` of the examples at ``index``, read in this process and
        moved to the split's device (the distributed engines and the task check use it; training in
        the single-process engine reads through a ``DataLoader`` instead)."""
        if self.iterable:
            raise ConfigError(f"dataset {self.name}", "an IterableDataset read by index",
                              "a map-style dataset (the distributed engines read batches by index)")
        return self.place(collate([self.item(int(i)) for i in (index.tolist() if isinstance(index, Tensor)
                                                                  else index)]))

    @cached_property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of item 0's input (every item must have it).

        Raises:
            ConfigError: for an empty dataset or an unreadable item 0."""
        if len(self) == 0:
            raise ConfigError(f"dataset {self.name}", "an empty dataset", "at least one example")
        if self.iterable:
            for item in self.dataset:
                return tuple(check_item(item, 0, self.name, self.classes)[0].shape)
            raise ConfigError(f"dataset {self.name}", "an empty stream", "at least one example")
        dataset, origin = base_index(self.dataset, 0)
        return tuple(read_item(dataset, origin, self.name, self.classes)[0].shape)


#: Either form of a split.
AnySplit = Split | StreamSplit


__all__ = ["AnySplit", "Split", "StreamSplit", "base_index", "check_item", "collate", "read_item"]
