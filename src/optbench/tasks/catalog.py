"""The task catalogue. Each factory returns a :class:`~optbench.core.spec.Task`.

Targets are validation accuracies; the recipes are ones that reach them (see each docstring
for the measured cost on 2 CPU cores, from ``python bench/tasks_cost.py``).
"""

from __future__ import annotations

from optbench.core.spec import Task
from optbench.tasks.classification import array_dataset_loader, classification_task
from optbench.tasks.models import Conv1dNet, cnn3, mlp, scaled

_MNIST_MLP_HIDDEN = (1000, 500, 100)  # DeepOBS mnist_mlp / fmnist_mlp
# Every factory takes the architecture options `norm` (none, batch, layer, group), `dropout`
# and `width` (a multiplier of every hidden width), so architecture is a sweepable axis:
# get_task("fmnist_cnn3[norm=batch,width=0.5]").


def _check_architecture(norm: str, dropout: float, width: float) -> None:
    """Validate the architecture options when the task is built, not when a run starts.

    Raises:
        UnknownNameError: unknown ``norm``; ConfigError: dropout outside [0, 1), width <= 0.
    """
    from optbench.core.errors import ConfigError, require_positive
    from optbench.techniques import norms

    norms.canonical(norm)
    if not 0 <= dropout < 1:
        raise ConfigError("dropout", dropout, "a number in [0, 1)")
    require_positive("width", width)


def fmnist_cnn3(norm: str = "none", dropout: float = 0.5, width: float = 1.0) -> Task:
    """Fashion-MNIST, the reference 3-conv CNN.

    Architecture: 3 x [3x3 conv (32, 64, 128 channels, padding 1) + ReLU + 2x2 max-pool],
    dropout 0.5, linear 1152 -> 10; 104,202 parameters. Loss: cross-entropy (nats).
    Metrics: loss (minimize), accuracy (maximize). Data: 60,000 training images (5,000 carved
    for validation per seed), 10,000 test images. Target: validation accuracy 0.85.
    Options: ``norm`` after each conv, ``dropout`` before the output layer, ``width`` x channels.
    Working recipe: adam, lr 1e-3, batch 128 — on a 10,000-example subset it reached validation
    accuracy 0.85 within 3 epochs in 2 of 3 seeds (the default ``optbench compare``). Measured
    cost on 2 CPU threads: ~3,100 training samples/s (~18 s per full 55,000-example epoch) plus
    ~3 s evaluating validation and test sets.
    """
    _check_architecture(norm, dropout, width)
    return classification_task(
        "fmnist_cnn3", fmnist_cnn3.__doc__.splitlines()[0],
        lambda: cnn3(dropout=dropout, channels=scaled(width, (32, 64, 128)), norm=norm),
        array_dataset_loader("fashion_mnist", 255.0, add_channel=True),
        target_accuracy=0.85, valid_size=5000,
        recipe={"optimizer": "adam", "hyperparams": {"lr": 1e-3}, "batch_size": 128, "epochs": 3},
        augmentations=("random_crop", "horizontal_flip", "gaussian_noise"),  # clothes stay clothes mirrored
    )


def fmnist_mlp(norm: str = "none", dropout: float = 0.0, width: float = 1.0) -> Task:
    """Fashion-MNIST, DeepOBS's MLP 784-1000-500-100-10 (ReLU), 1,336,610 parameters.

    Loss: cross-entropy. Target: validation accuracy 0.85. Working recipe: adam, lr 1e-3,
    batch 128, 2 epochs.
    """
    _check_architecture(norm, dropout, width)
    return classification_task(
        "fmnist_mlp", fmnist_mlp.__doc__.splitlines()[0],
        lambda: mlp(784, scaled(width, _MNIST_MLP_HIDDEN), 10, norm, dropout),
        array_dataset_loader("fashion_mnist", 255.0, add_channel=False),
        target_accuracy=0.85, valid_size=5000,
        recipe={"optimizer": "adam", "hyperparams": {"lr": 1e-3}, "batch_size": 128, "epochs": 2},
    )


def mnist_mlp(norm: str = "none", dropout: float = 0.0, width: float = 1.0) -> Task:
    """MNIST, DeepOBS's MLP 784-1000-500-100-10 (ReLU), 1,336,610 parameters.

    Loss: cross-entropy. Target: validation accuracy 0.97. Working recipe: adam, lr 1e-3,
    batch 128, 2 epochs.
    """
    _check_architecture(norm, dropout, width)
    return classification_task(
        "mnist_mlp", mnist_mlp.__doc__.splitlines()[0],
        lambda: mlp(784, scaled(width, _MNIST_MLP_HIDDEN), 10, norm, dropout),
        array_dataset_loader("mnist", 255.0, add_channel=False),
        target_accuracy=0.97, valid_size=5000,
        recipe={"optimizer": "adam", "hyperparams": {"lr": 1e-3}, "batch_size": 128, "epochs": 2},
    )


def mnist1d_mlp(norm: str = "none", dropout: float = 0.0, width: float = 1.0) -> Task:
    """MNIST-1D (Greydanus 2020; 4,000 train / 1,000 test sequences of length 40), MLP 40-100-100-10.

    15,210 parameters. Loss: cross-entropy. Target: validation accuracy 0.60. No download:
    the data are generated locally. Working recipe: adam, lr 1e-2, batch 100, 30 epochs.
    """
    _check_architecture(norm, dropout, width)
    return classification_task(
        "mnist1d_mlp", mnist1d_mlp.__doc__.splitlines()[0],
        lambda: mlp(40, scaled(width, (100, 100)), 10, norm, dropout),
        array_dataset_loader("mnist1d", 1.0, add_channel=False),
        target_accuracy=0.60, valid_size=500,
        recipe={"optimizer": "adam", "hyperparams": {"lr": 1e-2}, "batch_size": 100, "epochs": 30},
    )


def mnist1d_cnn(norm: str = "none", width: float = 1.0) -> Task:
    """MNIST-1D, the paper's 1-d CNN (3 conv layers of 25 channels, stride 2; linear 125 -> 10).

    5,210 parameters. Loss: cross-entropy. Target: validation accuracy 0.80. No download.
    Working recipe: adam, lr 1e-2, batch 100, 30 epochs.
    """
    _check_architecture(norm, 0.0, width)
    return classification_task(
        "mnist1d_cnn", mnist1d_cnn.__doc__.splitlines()[0],
        lambda: Conv1dNet(channels=scaled(width, (25,))[0], norm=norm),
        array_dataset_loader("mnist1d", 1.0, add_channel=False),
        target_accuracy=0.80, valid_size=500,
        recipe={"optimizer": "adam", "hyperparams": {"lr": 1e-2}, "batch_size": 100, "epochs": 30},
    )


def digits_mlp(norm: str = "none", dropout: float = 0.0, width: float = 1.0) -> Task:
    """scikit-learn digits (8x8 images, 1,497 train / 300 test), MLP 64-128-10; 9,610 parameters.

    Loss: cross-entropy. Target: validation accuracy 0.95. No download. Working recipe: adam,
    lr 1e-2, batch 64, 20 epochs.
    """
    _check_architecture(norm, dropout, width)
    return classification_task(
        "digits_mlp", digits_mlp.__doc__.splitlines()[0],
        lambda: mlp(64, scaled(width, (128,)), 10, norm, dropout),
        array_dataset_loader("digits", 16.0, add_channel=False),
        target_accuracy=0.95, valid_size=200,
        recipe={"optimizer": "adam", "hyperparams": {"lr": 1e-2}, "batch_size": 64, "epochs": 20},
    )
