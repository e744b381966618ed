"""Check a task against its data before any run: one forward pass on a few training examples.

A user task (``file.py:factory``) that returns a wrong output shape, a non-scalar loss or a metric
that is not a batch sum fails here with one line naming the task, the part and what is expected,
instead of deep inside a run.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor, nn

from optbench.core.errors import ConfigError
from optbench.core.spec import Dataset, Task

#: Training examples the check runs the model on.
CHECK_EXAMPLES = 4


def _shape(value: object) -> str:
    if isinstance(value, Tensor):
        return f"shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def check_task(task: Task, dataset: Dataset, *, examples: int = CHECK_EXAMPLES) -> None:
    """Raise a one-line :class:`ConfigError` if ``task`` does not work on ``dataset``.

    Builds the model under seed 0 (the caller's RNG state is restored afterwards), runs one forward
    pass in training mode on the first ``examples`` training examples (on the CPU, where the data
    are), and checks: the model is an ``nn.Module`` returning a tensor whose first dimension is the
    batch size; ``loss`` is a finite 0-d tensor that depends on the parameters; every metric's
    ``batch_sum`` is a finite 0-d tensor; ``count(y)`` is a positive integer; every derived metric
    is computable from its source's average; ``valid_size`` leaves training examples. Metric
    directions and names are checked when the Task is constructed (:class:`optbench.core.spec.Task`).

    Raises:
        ConfigError: ``field`` = ``"task <name> <part>"``, e.g. ``task two_spirals_mlp loss: got
            shape (64,), expected a 0-d tensor (the batch mean)``.
    """
    name = task.name

    def fail(part: str, got: object, expected: str) -> ConfigError:
        return ConfigError(f"task {name} {part}", got, expected)

    if not isinstance(dataset, Dataset):
        raise fail("load_data", type(dataset).__name__, "an optbench.core.spec.Dataset (train and test Splits)")
    pool = len(dataset.train)
    if pool < 1 or len(dataset.test) < 1:
        raise fail("data", f"{pool} training / {len(dataset.test)} test examples", "at least one of each")
    if dataset.valid is not None and len(dataset.valid) < 1:
        raise fail("data", "an empty validation set", "at least one validation example")
    if dataset.valid is None and getattr(dataset.train, "iterable", False):
        raise fail("data", "an IterableDataset training pool without a validation set",
                   "a separate validation set (an iterable cannot be split by index)")
    if dataset.valid is None and task.valid_size == 0:
        raise fail("valid_size", 0, "an integer >= 1 (the data has no validation set of its own)")
    if dataset.valid is None and task.valid_size >= pool:
        raise fail("valid_size", task.valid_size, f"fewer than the training pool's {pool} examples")
    n = min(examples, pool)
    x, y = dataset.train.first(n)
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(0)
        try:
            model = task.make_model()
        except Exception as exc:
            raise fail("make_model", f"{type(exc).__name__}: {exc}", "a callable building the model") from exc
        if not isinstance(model, nn.Module):
            raise fail("make_model", type(model).__name__, "a function returning a torch.nn.Module")
        model.train(n > 1)  # batch norm cannot train on one example
        try:
            output = model(x)
        except Exception as exc:
            raise fail("model", f"{type(exc).__name__}: {exc}",
                       f"a model accepting the task's inputs x of shape {tuple(x.shape)}") from exc
        if not isinstance(output, Tensor) or output.dim() == 0 or output.shape[0] != n:
            raise fail("model output", f"got {_shape(output)} for a batch of {n}",
                       f"a tensor whose first dimension is the batch size ({n}, ...)")
        _check_loss(task, output, y, fail)
        with torch.no_grad():
            _check_metrics(task, output, y, fail)  # the model's own output object (no grad here)


def _check_loss(task: Task, output: Tensor, y: Tensor, fail) -> None:
    try:
        loss = task.loss(output, y)
    except Exception as exc:
        raise fail("loss", f"{type(exc).__name__}: {exc}", "loss(output, y) -> a 0-d tensor (the batch mean)") from exc
    if not isinstance(loss, Tensor) or loss.dim() != 0:
        raise fail("loss", f"got {_shape(loss)}", "a 0-d tensor (the batch mean)")
    if not math.isfinite(float(loss.detach())):
        raise fail("loss", f"got {float(loss.detach())} at initialization", "a finite value")
    if not loss.requires_grad:
        raise fail("loss", "a tensor that does not depend on the model's parameters",
                   "a differentiable function of the model output")


def _check_metrics(task: Task, output: Tensor, y: Tensor, fail) -> None:
    try:
        count = task.count(y)
    except Exception as exc:
        raise fail("count", f"{type(exc).__name__}: {exc}", "count(y) -> a positive int") from exc
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count <= 0:
        raise fail("count", f"got {count!r}", "a positive int (the units the metrics are averaged over)")
    averages: dict[str, float] = {}
    for metric in task.metrics:
        try:
            total = metric.batch_sum(output, y)
        except Exception as exc:
            raise fail(f"metric {metric.name}", f"{type(exc).__name__}: {exc}",
                       "batch_sum(output, y) -> a 0-d tensor") from exc
        if not isinstance(total, Tensor) or total.dim() != 0:
            raise fail(f"metric {metric.name}", f"got {_shape(total)}", "a 0-d tensor (the sum over the batch)")
        if not math.isfinite(float(total)):
            raise fail(f"metric {metric.name}", f"got {float(total)} at initialization", "a finite sum")
        averages[metric.name] = float(total) / int(count)
    for derived in task.derived:
        try:
            value = derived.compute(averages[derived.source])
            float(value)
        except Exception as exc:
            raise fail(f"derived metric {derived.name}", f"{type(exc).__name__}: {exc}",
                       f"compute(average {derived.source}) -> a number") from exc


__all__ = ["CHECK_EXAMPLES", "check_task"]
