"""A complete user task: your own nn.Module and your own tensors, compared by optbench.

Run it with:

    optbench compare --task examples/custom_task.py:make_task --optimizers adam,sgd,momentum \
        --epochs 5 --lr 0.01

The factory returns an :class:`optbench.core.spec.Task`. The harness carves ``valid_size`` examples
from the training pool per seed, owns data order, seeding and timing, and never shows the test
set to anything but the reported test metrics. Before any run, :func:`optbench.tasks.check_task`
runs the model once on a few training examples: a wrong output shape, a loss that is not a 0-d
batch mean or a metric that is not a 0-d batch sum stops the command with one line (exit code 2).
"""

from __future__ import annotations

import torch
from torch import nn

from optbench.core.spec import Dataset, Split, Task
from optbench.tasks.classification import classification_task


def two_spirals(n: int, noise: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points of two interleaved spirals: x of shape (n, 2), y of shape (n,) in {0, 1}."""
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n, generator=g) * 3 * torch.pi
    y = torch.randint(0, 2, (n,), generator=g)
    sign = 1 - 2 * y.float()
    x = torch.stack([sign * t * torch.cos(t), sign * t * torch.sin(t)], dim=1) / (3 * torch.pi)
    return x + noise * torch.randn(n, 2, generator=g), y


def load() -> Dataset:
    """2,000 training and 1,000 test points (fixed seeds, so every run sees the same data)."""
    train_x, train_y = two_spirals(2000, 0.02, seed=0)
    test_x, test_y = two_spirals(1000, 0.02, seed=1)
    return Dataset(Split(train_x, train_y), Split(test_x, test_y))


class SpiralNet(nn.Module):
    """A small MLP 2-64-64-2 with tanh: (B, 2) -> logits (B, 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_task() -> Task:
    """Two spirals, classified by a 2-64-64-2 MLP; target validation accuracy 0.9."""
    return classification_task("two_spirals_mlp", "two spirals, MLP 2-64-64-2 (tanh)", SpiralNet, load,
                               target_accuracy=0.9, valid_size=400,
                               recipe={"optimizer": "adam", "hyperparams": {"lr": 0.01}, "batch_size": 64,
                                       "epochs": 20})
