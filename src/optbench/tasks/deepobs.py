"""DeepOBS image test problems: logistic regression, 2c2d and 3c3d (Schneider, Balles & Hennig
2019, "DeepOBS: A Deep Learning Optimizer Benchmark Suite", ICLR; definitions from
fsschneider/DeepOBS, ``deepobs/pytorch/testproblems/``: ``mnist_logreg.py``, ``mnist_2c2d.py``,
``cifar10_3c3d.py`` and the networks in ``testproblems_modules.py``).

Architecture, initialization and L2 regularization follow DeepOBS (see
:mod:`optbench.tasks.models`). DeepOBS's regularizer is ``0.5 * l2 * sum w^2`` over parameters
named ``weight`` (``testproblem.py``, ``get_regularization_loss``), the same convention as
:attr:`optbench.core.spec.Task.l2`, so ``cifar10_3c3d`` uses ``l2=0.002`` unchanged. Differences from
DeepOBS, all of them the harness's: validation is carved from the training pool per seed (DeepOBS
uses a fixed 10,000-example train-eval set), inputs are standardized (one scalar for
(Fashion-)MNIST, per channel for CIFAR; DeepOBS scales to [0, 1]), and the CIFAR training data
are not augmented unless a recipe asks for it (DeepOBS crops, flips and jitters by default).

Measured costs are training seconds per epoch on 2 CPU threads (torch 2.13, ``python bench/tasks.py``);
other processes loaded the machine during part of the measurements, hence the ranges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from optbench.core.spec import Dataset, Split, Task
from optbench.tasks.classification import array_dataset_loader, classification_task
from optbench.tasks.models import logreg, net_2c2d, net_3c3d, scaled


def _check(norm: str, dropout: float, width: float) -> None:
    from optbench.tasks.catalog import _check_architecture

    _check_architecture(norm, dropout, width)


def cifar_loader(dataset: str) -> Callable[[], Dataset]:
    """A ``load_data`` for ``"cifar10"`` / ``"cifar100"``: uint8 ``(N, 3, 32, 32)`` images scaled
    to [0, 1] and standardized per channel with the training pool's mean and std (float32)."""

    def load() -> Dataset:
        from optbench.data import load_arrays

        arrays = load_arrays(dataset)
        train = torch.from_numpy(np.ascontiguousarray(arrays.train_x, dtype=np.float32)) / 255.0
        test = torch.from_numpy(np.ascontiguousarray(arrays.test_x, dtype=np.float32)) / 255.0
        mean = train.mean(dim=(0, 2, 3), keepdim=True)
        std = train.std(dim=(0, 2, 3), keepdim=True)
        return Dataset(
            Split(((train - mean) / std).contiguous(), torch.from_numpy(np.asarray(arrays.train_y, dtype=np.int64))),
            Split(((test - mean) / std).contiguous(), torch.from_numpy(np.asarray(arrays.test_y, dtype=np.int64))))

    return load


_ADAM = {"optimizer": "adam", "hyperparams": {"lr": 1e-3}, "batch_size": 128}


def mnist_logreg() -> Task:
    """MNIST, DeepOBS's multinomial logistic regression 784 -> 10 (weights and biases start at 0).

    7,850 parameters. Loss: cross-entropy (nats); metrics: loss (minimize), accuracy (maximize).
    No regularization (as DeepOBS). Data: 60,000 training images (5,000 carved for validation),
    10,000 test images. Target: validation accuracy 0.90. Working recipe: adam, lr 1e-3, batch
    128, 3 epochs (seed 0, full pool: 0.912 after epoch 1, ``bench/tasks.py``). Cost on 2 CPU
    threads: 0.5-0.6 s per 10,000 training examples when the machine was quiet, up to 34 s per
    full epoch under heavy load from other processes (both measured by ``bench/tasks.py``).
    """
    return classification_task(
        "mnist_logreg", mnist_logreg.__doc__.splitlines()[0], lambda: logreg(784, 10),
        array_dataset_loader("mnist", 255.0, add_channel=True), target_accuracy=0.90, valid_size=5000,
        recipe={**_ADAM, "epochs": 3}, augmentations=("random_crop", "gaussian_noise"))


def fmnist_logreg() -> Task:
    """Fashion-MNIST, DeepOBS's multinomial logistic regression 784 -> 10 (zero initialization).

    7,850 parameters. Loss: cross-entropy; metrics: loss (minimize), accuracy (maximize). No
    regularization. Target: validation accuracy 0.80. Working recipe: adam, lr 1e-3, batch 128,
    3 epochs (seed 0, full pool: 0.834 after epoch 1, ``bench/tasks.py``). Cost: as ``mnist_logreg``.
    """
    return classification_task(
        "fmnist_logreg", fmnist_logreg.__doc__.splitlines()[0], lambda: logreg(784, 10),
        array_dataset_loader("fashion_mnist", 255.0, add_channel=True), target_accuracy=0.80, valid_size=5000,
        recipe={**_ADAM, "epochs": 3}, augmentations=("random_crop", "horizontal_flip", "gaussian_noise"))


def mnist_2c2d(norm: str = "none", dropout: float = 0.0, width: float = 1.0) -> Task:
    """MNIST, DeepOBS's 2c2d: 2 x [5x5 conv + ReLU + 2x2 max-pool] (32, 64 channels), dense 1024, dense 10.

    3,274,634 parameters; truncated-normal (std 0.05) weights, biases 0.05; no regularization
    (DeepOBS). Loss: cross-entropy; metrics: loss (minimize), accuracy (maximize). Target:
    validation accuracy 0.96. Options: ``norm`` after each conv/hidden layer, ``dropout`` before the
    output layer, ``width`` x every conv/hidden width. Working recipe: adam, lr 1e-3, batch 128,
    3 epochs of a 10,000-example subset (``train_size``; the full pool is 55,000): seed 0 reached
    0.933 / 0.965 after epochs 1 / 2 (``bench/tasks.py``). Cost on 2 CPU threads: ~6 s training per
    10,000-example epoch (~33 s per full epoch) on a quiet machine; 43-77 s when other processes loaded it.
    """
    _check(norm, dropout, width)
    return classification_task(
        "mnist_2c2d", mnist_2c2d.__doc__.splitlines()[0],
        lambda: net_2c2d(10, scaled(width, (32, 64)), scaled(width, (1024,))[0], norm, dropout),
        array_dataset_loader("mnist", 255.0, add_channel=True), target_accuracy=0.96, valid_size=5000,
        recipe={**_ADAM, "epochs": 3, "train_size": 10_000}, augmentations=("random_crop", "gaussian_noise"))


def fmnist_2c2d(norm: str = "none", dropout: float = 0.0, width: float = 1.0) -> Task:
    """Fashion-MNIST, DeepOBS's 2c2d (2 x [5x5 conv + ReLU + max-pool], dense 1024, dense 10).

    3,274,634 parameters, DeepOBS initialization, no regularization. Loss: cross-entropy;
    metrics: loss (minimize), accuracy (maximize). Target: validation accuracy 0.85. Options as
    ``mnist_2c2d``. Working recipe: adam, lr 1e-3, batch 128, 3 epochs of a 10,000-example subset
    (``train_size``): seed 0 reached 0.830 / 0.850 / 0.866 after epochs 1 / 2 / 3
    (``bench/tasks.py``). Cost: as ``mnist_2c2d`` (5.7-6.2 s per 10,000-example epoch, quiet machine).
    """
    _check(norm, dropout, width)
    return classification_task(
        "fmnist_2c2d", fmnist_2c2d.__doc__.splitlines()[0],
        lambda: net_2c2d(10, scaled(width, (32, 64)), scaled(width, (1024,))[0], norm, dropout),
        array_dataset_loader("fashion_mnist", 255.0, add_channel=True), target_accuracy=0.85, valid_size=5000,
        recipe={**_ADAM, "epochs": 3, "train_size": 10_000},
        augmentations=("random_crop", "horizontal_flip", "gaussian_noise"))


def _cifar_3c3d(name: str, classes: int, target: float, doc: str, norm: str, dropout: float,
                width: float) -> Task:
    _check(norm, dropout, width)
    task = classification_task(
        name, doc.splitlines()[0],
        lambda: net_3c3d(classes, scaled(width, (64, 96, 128)), scaled(width, (512, 256)), norm, dropout),
        cifar_loader(name.split("_")[0]), target_accuracy=target, valid_size=5000,
        recipe={**_ADAM, "epochs": 10}, augmentations=("random_crop", "horizontal_flip", "gaussian_noise"))
    return replace(task, l2=0.002)


def cifar10_3c3d(norm: str = "none", dropout: float = 0.0, width: float = 1.0) -> Task:
    """CIFAR-10, DeepOBS's 3c3d: 3 conv (64 5x5, 96 3x3, 128 3x3) + max-pools, dense 512, 256, 10.

    895,210 parameters; Xavier initialization, biases 0; L2 0.002 on the weights, not the biases
    (DeepOBS; ``Task.l2``, added to the training objective; the ``loss`` metric is the data loss).
    Loss: cross-entropy; metrics: loss (minimize), accuracy (maximize). Data: 50,000 training
    images (5,000 carved for validation), 10,000 test images (the canonical archive must be in
    the cache: ``optbench data fetch cifar10``). Target: validation accuracy 0.60. Working recipe:
    adam, lr 1e-3, batch 128, 10 epochs (DeepOBS's: momentum SGD, lr 0.01, batch 128, 100 epochs).
    Not measured here: the data were not available offline (``bench/tasks.py`` measures it
    when they are). Estimated cost: ~40 s per epoch on 2 CPU threads (4.4x the MACs of fmnist_cnn3 per image).
    """
    return _cifar_3c3d("cifar10_3c3d", 10, 0.60, cifar10_3c3d.__doc__, norm, dropout, width)


def cifar100_3c3d(norm: str = "none", dropout: float = 0.0, width: float = 1.0) -> Task:
    """CIFAR-100, DeepOBS's 3c3d (as ``cifar10_3c3d`` with 100 outputs): 918,340 parameters.

    L2 0.002 on the weights (DeepOBS). Loss: cross-entropy; metrics: loss (minimize), accuracy
    (maximize). Target: validation accuracy 0.30. Working recipe: adam, lr 1e-3, batch 128,
    10 epochs. Not measured here (data not available offline); cost as ``cifar10_3c3d``.
    """
    return _cifar_3c3d("cifar100_3c3d", 100, 0.30, cifar100_3c3d.__doc__, norm, dropout, width)
