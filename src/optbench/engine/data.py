"""The harness's data handling: validation carve-out, training subsets, batching.

All of it works on in-memory tensors with index tensors (no per-example Python), and all
randomness comes from a ``torch.Generator`` seeded by the run's seed.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from optbench.core.errors import ConfigError
from optbench.core.spec import Dataset, Split, TaskData


def split_data(dataset: Dataset, valid_size: int, seed: int, train_size: int | None = None) -> TaskData:
    """Carve ``valid_size`` examples from the training pool for validation (a seeded random
    permutation), and keep ``train_size`` of the remaining ones for training (all when None).

    The same seed gives the same split; the test set is passed through untouched.

    Raises:
        ConfigError: when the pool has too few examples for ``valid_size`` + ``train_size``.
    """
    pool = len(dataset.train)
    if valid_size >= pool:
        raise ConfigError("valid_size", valid_size, f"an integer < {pool} (training pool size)")
    available = pool - valid_size
    if train_size is not None and train_size > available:
        raise ConfigError("train_size", train_size, f"an integer in [1, {available}] or 'all'")
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(pool, generator=generator)
    valid_idx = perm[:valid_size].sort().values
    train_idx = perm[valid_size:]
    if train_size is not None:
        train_idx = train_idx[:train_size]
    train_idx = train_idx.sort().values
    return TaskData(dataset.train.subset(train_idx), dataset.train.subset(valid_idx), dataset.test)


def memory_format(data: TaskData) -> torch.memory_format:
    """``channels_last`` for image batches ``(N, C, H, W)``, else the default layout.

    Rule, measured on the reference CNN (2 CPU threads, torch 2.13): channels_last made
    training 1.5x and evaluation 1.6x faster (oneDNN convolutions prefer NHWC); it is
    also the layout CUDA tensor cores prefer. Results are the same up to float rounding.
    """
    return torch.channels_last if data.train.x.dim() == 4 else torch.contiguous_format


def to_device(data: TaskData, device: torch.device, layout: torch.memory_format) -> TaskData:
    """The splits moved to ``device`` once (so that batching never copies host to device),
    inputs in ``layout``."""

    def move(split: Split) -> Split:
        x = split.x.to(device, non_blocking=True).contiguous(memory_format=layout)
        return Split(x, split.y.to(device, non_blocking=True))

    if device.type == "cpu" and layout is torch.contiguous_format:
        return data
    return TaskData(move(data.train), move(data.valid), move(data.test))


def shuffled_batches(split: Split, batch_size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
    """Batches of one epoch in a fresh random order; the last batch may be smaller.

    Each batch is a gather ``x[idx]`` of shape ``(<=batch_size, ...)``.
    """
    n = len(split)
    perm = torch.randperm(n, generator=generator).to(split.x.device)
    for index in perm.split(batch_size):
        yield split.x[index], split.y[index]


def ordered_batches(split: Split, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Batches in storage order (views, no copy), for evaluation."""
    yield from zip(split.x.split(batch_size), split.y.split(batch_size), strict=True)
