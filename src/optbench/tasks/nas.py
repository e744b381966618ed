"""Tasks whose model is a point of the architecture space (:mod:`optbench.nas`), named by its choices:
``nas_cnn[block=inverted,expansion=4,channels=16-32,depth=2]`` is one architecture on digits (1 x 8 x 8,
offline), so architectures are compared, stored and searched like any other task."""

from __future__ import annotations

from optbench.core.errors import ConfigError
from optbench.core.spec import Task
from optbench.tasks.classification import array_dataset_loader, classification_task


def _channels(text: str | int) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in str(text).split("-"))
    except ValueError:
        raise ConfigError("task nas_cnn channels", text, "stage channels joined by '-', e.g. 16-32") from None
    return values


def nas_cnn(channels: str = "16-32", depth: int = 1, block: str = "plain", kernel: int = 3, expansion: int = 0,
            activation: str = "relu", norm: str = "batch", dropout: float = 0.0, width: float = 1.0,
            resolution: float = 1.0) -> Task:
    """An architecture of the image space on digits (8 x 8 grey images, 10 classes; 1,297 training and
    500 test examples after scikit-learn's split; adam lr 1e-2, batch 64, 20 epochs, target valid accuracy
    0.95). ``channels``: stage channels joined by ``-``; ``expansion``: the inverted block's ratio (0 for
    the other blocks). The description gives the one-line architecture and its parameter count.

    Raises:
        ConfigError: naming the key when the point cannot be realized (see
            :meth:`optbench.nas.ImageArchitecture.check`).
    """
    from optbench.nas import ImageArchitecture

    arch = ImageArchitecture(channels=_channels(channels), depth=depth, block=block, kernel=kernel,
                             expansion=expansion or None, activation=activation, norm=norm, dropout=dropout,
                             width=width, resolution=resolution)
    arch.check(8)
    params = arch.parameters(1, 10)
    return classification_task("nas_cnn", f"{arch.describe()} on digits; {params:,} parameters",
                               lambda: arch.build(1, 10, 8), array_dataset_loader("digits", 16.0, True),
                               target_accuracy=0.95, valid_size=200,
                               recipe={"optimizer": "adam", "hyperparams": {"lr": 1e-2}, "batch_size": 64,
                                       "epochs": 20})


__all__ = ["nas_cnn"]
