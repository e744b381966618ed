"""Tasks whose model is a point of the architecture space (:mod:`optbench.nas`), named by its choices:
``nas_cnn[block=inverted,expansion=4,channels=16-32,depth=2]`` is one architecture on digits (1 x 8 x 8,
offline), so architectures are compared, stored and searched like any other task.

Two hard budgets make an architecture unrealizable (``ConfigError`` naming the key, so a search stores the
point as a failed trial, docs/architecture.md "Architecture search"):

* ``max_params``: trainable parameters, from the closed-form count (exact, the same everywhere);
* ``max_latency_ms``: the median forward latency at batch 1, in milliseconds, **measured on the machine
  that builds the task** when the task is built: the freshly initialized model in eval mode on the CPU,
  one input of the task's shape, with the process's torch thread count, by the same timer that records
  a trained model's ``latency_ms_batch_1`` (:func:`optbench.engine.model_cost.latency_ms`: 1 untimed
  warm-up pass, then the median of 5 timed passes under ``torch.inference_mode``). It is therefore
  machine-dependent (CPU, thread count, load): the same architecture may fit a budget on one machine and
  not on another, and one within a few percent of the budget may be judged differently from one build to
  the next. Measuring costs a few milliseconds for these spaces' networks; the global RNG is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from optbench.core.errors import ConfigError
from optbench.core.spec import Task
from optbench.tasks.classification import array_dataset_loader, classification_task


def _channels(text: str | int) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in str(text).split("-"))
    except ValueError:
        raise ConfigError("task nas_cnn channels", text, "stage channels joined by '-', e.g. 16-32") from None
    return values


def _within_budget(task: str, params: int, max_params: int) -> int:
    """``params`` when it is within the budget ``max_params`` (0: no budget).

    Raises:
        ConfigError: for a negative budget or an architecture over it."""
    if max_params < 0:
        raise ConfigError(f"task {task} max_params", max_params, "0 (no budget) or an integer >= 1")
    if max_params and params > max_params:
        raise ConfigError(f"task {task} max_params", max_params, f"a budget of at least {params:,} parameters "
                          "(this architecture's count)")
    return params


def measured_latency_ms(make_model: Callable[[], nn.Module], input_shape: tuple[int, ...]) -> float:
    """The median forward latency (ms) of a freshly built ``make_model()`` at batch 1 on the CPU: eval mode,
    a zero input of shape ``(1, *input_shape)``, the process's thread count, timed by
    :func:`optbench.engine.model_cost.latency_ms` (1 warm-up, median of 5 passes). The model is built
    under a forked RNG, so the caller's global random state is unchanged."""
    # the one latency timer of the project (engine/model_cost.py, docs/architecture.md "Measuring the
    # trained model"); imported here: it depends on torch only
    from optbench.engine.model_cost import batch_of, latency_ms

    with torch.random.fork_rng(devices=[]):
        model = make_model()
    model.eval()
    return latency_ms(model, batch_of(torch.zeros(1, *input_shape), 1))


def _within_latency(task: str, make_model: Callable[[], nn.Module], input_shape: tuple[int, ...],
                    max_latency_ms: float) -> float | None:
    """The measured latency (:func:`measured_latency_ms`, ms) when it is within ``max_latency_ms``
    (0: no budget, nothing measured: None).

    Raises:
        ConfigError: for a negative budget, or an architecture whose measured latency is over it (the
            message gives the measured value)."""
    if not max_latency_ms >= 0:
        raise ConfigError(f"task {task} max_latency_ms", max_latency_ms,
                          "0 (no budget) or a number of milliseconds > 0")
    if not max_latency_ms:
        return None
    measured = measured_latency_ms(make_model, input_shape)
    if measured > max_latency_ms:
        raise ConfigError(f"task {task} max_latency_ms", max_latency_ms,
                          f"a budget of at least {measured:.3g} ms (this architecture's median forward latency "
                          "at batch 1 measured on this machine's CPU; machine-dependent)")
    return measured


#: Image datasets of ``nas_cnn``: loader name, pixel scale, side, validation examples carved per seed,
#: target validation accuracy, working recipe, what the description calls it.
_IMAGE_DATA = {
    "digits": ("digits", 16.0, 8, 200, 0.95,
               {"optimizer": "adam", "hyperparams": {"lr": 1e-2}, "batch_size": 64, "epochs": 20}, "digits"),
    "fmnist": ("fashion_mnist", 255.0, 28, 5000, 0.85,  # as fmnist_cnn3, for comparisons at one budget
               {"optimizer": "adam", "hyperparams": {"lr": 1e-3}, "batch_size": 128, "epochs": 3}, "Fashion-MNIST"),
}


def nas_cnn(channels: str = "16-32", depth: int = 1, block: str = "plain", kernel: int = 3, expansion: int = 0,
            activation: str = "relu", norm: str = "batch", dropout: float = 0.0, width: float = 1.0,
            resolution: float = 1.0, max_params: int = 0, max_latency_ms: float = 0.0,
            dataset: str = "digits") -> Task:
    """An architecture of the image space on ``dataset``: ``digits`` (8 x 8 grey images, 10 classes; 1,297
    training and 500 test examples after scikit-learn's split; adam lr 1e-2, batch 64, 20 epochs, target
    valid accuracy 0.95) or ``fmnist`` (Fashion-MNIST, 28 x 28, 60,000 training images of which 5,000 are
    carved for validation per seed, 10,000 test; the data, split, target 0.85 and working recipe of
    ``fmnist_cnn3``, so that a searched architecture and the hand-designed one compare at one budget).
    ``channels``: stage channels joined by ``-``; ``expansion``: the inverted block's ratio (0 for
    the other blocks); ``max_params``: a hard parameter budget (0: none); ``max_latency_ms``: a hard budget
    on the forward latency at batch 1 in milliseconds, measured on this machine (0: none; see the module
    docstring: machine-dependent). The description gives the one-line architecture and its parameter count.

    Raises:
        ConfigError: naming the key when the point cannot be realized (see
            :meth:`optbench.nas.ImageArchitecture.check`), is over a budget, or a budget is negative.
    """
    from optbench.nas import ImageArchitecture

    if dataset not in _IMAGE_DATA:
        raise ConfigError("task nas_cnn dataset", dataset, ", ".join(_IMAGE_DATA))
    loader, scale, side, valid_size, target, recipe, label = _IMAGE_DATA[dataset]
    arch = ImageArchitecture(channels=_channels(channels), depth=depth, block=block, kernel=kernel,
                             expansion=expansion or None, activation=activation, norm=norm, dropout=dropout,
                             width=width, resolution=resolution)
    arch.check(side)
    params = _within_budget("nas_cnn", arch.parameters(1, 10), max_params)
    _within_latency("nas_cnn", lambda: arch.build(1, 10, side), (1, side, side), max_latency_ms)
    return classification_task("nas_cnn", f"{arch.describe()} on {label}; {params:,} parameters",
                               lambda: arch.build(1, 10, side), array_dataset_loader(loader, scale, True),
                               target_accuracy=target, valid_size=valid_size, recipe=dict(recipe))


def nas_seq(cell: str = "gru", layers: int = 1, width: int = 64, heads: int = 0, dropout: float = 0.0,
            max_params: int = 0, max_latency_ms: float = 0.0) -> Task:
    """An architecture of the sequence space on MNIST-1D read as a 40-step sequence (10 classes; adam lr
    1e-2, batch 100, 10 epochs, target valid accuracy 0.8, as ``mnist1d_gru``). ``heads``: the transformer's
    (0 for the recurrent cells); ``max_params``: a hard parameter budget (0: none); ``max_latency_ms``: a hard
    budget on the forward latency at batch 1 in milliseconds, measured on this machine (0: none; see the
    module docstring: machine-dependent).

    Raises:
        ConfigError: naming the key when the point cannot be realized (see
            :meth:`optbench.nas.sequence.SequenceArchitecture.check`), is over a budget, or a budget is
            negative.
    """
    from optbench.nas.sequence import SequenceArchitecture

    arch = SequenceArchitecture(cell=cell, layers=layers, width=width, heads=heads or None, dropout=dropout)
    arch.check()
    params = _within_budget("nas_seq", arch.parameters(1, 40, 10), max_params)
    _within_latency("nas_seq", lambda: arch.build(1, 40, 10), (40,), max_latency_ms)
    return classification_task("nas_seq", f"{arch.describe()} on MNIST-1D sequences; {params:,} parameters",
                               lambda: arch.build(1, 40, 10), array_dataset_loader("mnist1d", 1.0, add_channel=False),
                               target_accuracy=0.8, valid_size=500,
                               recipe={"optimizer": "adam", "hyperparams": {"lr": 1e-2}, "batch_size": 100,
                                       "epochs": 10})


__all__ = ["measured_latency_ms", "nas_cnn", "nas_seq"]
