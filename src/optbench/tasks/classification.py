"""Building blocks for classification tasks: loss, metrics, array preprocessing."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from optbench.core.spec import Dataset, Direction, Metric, Split, Target, Task


def cross_entropy(output: Tensor, y: Tensor) -> Tensor:
    """Mean softmax cross-entropy of logits ``(B, C)`` against class indices ``(B,)`` (nats)."""
    return F.cross_entropy(output, y)


def _loss_sum(output: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(output, y, reduction="sum")


def _correct(output: Tensor, y: Tensor) -> Tensor:
    return (output.argmax(dim=1) == y).sum()


#: Metrics of every classification task: summed cross-entropy (nats) and correct count.
CLASSIFICATION_METRICS = (
    Metric("loss", Direction.MINIMIZE, _loss_sum),
    Metric("accuracy", Direction.MAXIMIZE, _correct),
)


def standardize(train_x: np.ndarray, test_x: np.ndarray, scale: float,
                add_channel: bool) -> tuple[Tensor, Tensor]:
    """Scale by ``1/scale``, subtract the training pool's mean and divide by its std
    (one scalar each, as in the usual MNIST normalization 0.1307/0.3081), return float32 tensors.
    ``add_channel`` inserts a channel axis: ``(N, H, W) -> (N, 1, H, W)``.
    """
    train = torch.from_numpy(np.ascontiguousarray(train_x, dtype=np.float32)) / scale
    test = torch.from_numpy(np.ascontiguousarray(test_x, dtype=np.float32)) / scale
    mean, std = train.mean(), train.std()
    train, test = (train - mean) / std, (test - mean) / std
    if add_channel:
        train, test = train.unsqueeze(1), test.unsqueeze(1)
    return train.contiguous(), test.contiguous()


def array_dataset_loader(dataset: str, scale: float, add_channel: bool) -> Callable[[], Dataset]:
    """A ``load_data`` function for a dataset of :mod:`optbench.data` (fetched on first use)."""

    def load() -> Dataset:
        # imported here: data access happens on use only
        from optbench.data import load_arrays

        arrays = load_arrays(dataset)
        train_x, test_x = standardize(arrays.train_x, arrays.test_x, scale, add_channel)
        return Dataset(
            train=Split(train_x, torch.from_numpy(np.asarray(arrays.train_y, dtype=np.int64))),
            test=Split(test_x, torch.from_numpy(np.asarray(arrays.test_y, dtype=np.int64))),
        )

    return load


def classification_task(name: str, description: str, make_model: Callable[[], nn.Module],
                        load_data: Callable[[], Dataset], *, target_accuracy: float,
                        valid_size: int, recipe: dict,
                        augmentations: tuple[str, ...] = ("gaussian_noise",)) -> Task:
    """A classification Task with cross-entropy loss, loss and accuracy metrics, and a target of
    ``target_accuracy`` on the validation split."""
    return Task(
        name=name, description=description, make_model=make_model, load_data=load_data,
        loss=cross_entropy, metrics=CLASSIFICATION_METRICS,
        target=Target("valid", "accuracy", target_accuracy), valid_size=valid_size, recipe=recipe,
        augmentations=augmentations,
    )
