"""Batch-size rules: learning-rate scaling with the batch size, Goyal warmup, gradient accumulation.

* ``linear`` — ``lr = base_lr * batch_size / base_batch_size`` (Goyal et al. 2017, "Accurate,
  large minibatch SGD", sec. 2.1, "Linear Scaling Rule"), to be used with gradual warmup
  (sec. 2.2): the lr rises linearly from ``base_lr`` to the scaled lr over the first 5 epochs
  (:func:`goyal_warmup`, built on the schedules package's warmup; in a run, give the recipe the
  schedule parameters ``warmup_epochs=5, warmup_start_factor=base_batch_size/batch_size``: the
  ``linear`` rule scales the lr only).
* ``sqrt`` — ``lr = base_lr * sqrt(batch_size / base_batch_size)`` (Krizhevsky 2014, "One weird
  trick", sec. 5; Hoffer et al. 2017), which keeps the variance of the update constant and is the
  usual rule for adaptive methods.
* ``none`` — ``lr = base_lr``.

Gradient accumulation reaches a batch ``B`` larger than memory allows with ``k = B / b``
micro-batches of ``b`` examples: each micro-batch's *mean* loss is multiplied by its share of the
batch (``n_i / B``) before ``backward``, so the accumulated gradient equals the gradient of the mean
loss over the whole batch (exactly, up to float rounding, for models without batch statistics;
batch norm sees micro-batch statistics instead).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import Tensor

from optbench.core.component import Component
from optbench.core.errors import ConfigError
from optbench.core.registry import Registry
from optbench.techniques import _validate
from optbench.techniques.catalog import Technique

if TYPE_CHECKING:
    from optbench.schedules import Schedule

LrRule = Callable[[float, int, int], float]


def _none(base_lr: float, base_batch_size: int, batch_size: int) -> float:
    return base_lr


def _linear(base_lr: float, base_batch_size: int, batch_size: int) -> float:
    return base_lr * batch_size / base_batch_size


def _sqrt(base_lr: float, base_batch_size: int, batch_size: int) -> float:
    return base_lr * math.sqrt(batch_size / base_batch_size)


_LR_DATA = ("base_lr", "base_batch_size", "batch_size")

lr_scaling: Registry[Technique[LrRule]] = Registry("lr scaling rule")
lr_scaling.register("none", Technique(
    "none", "lr_scaling", _none, "-", "The lr does not depend on the batch size.", _LR_DATA))
lr_scaling.register("linear", Technique(
    "linear", "lr_scaling", _linear, "Goyal et al. 2017, sec. 2.1 (with warmup, sec. 2.2)",
    "lr * batch/base_batch; pair it with Goyal's 5-epoch warmup from the base lr (schedule parameters "
    "warmup_epochs=5, warmup_start_factor=base_batch/batch): the rule alone does not warm up.", _LR_DATA))
lr_scaling.register("sqrt", Technique(
    "sqrt", "lr_scaling", _sqrt, "Krizhevsky 2014, sec. 5; Hoffer et al. 2017",
    "lr * sqrt(batch/base_batch).", _LR_DATA))


def scaled_lr(base_lr: float, base_batch_size: int, batch_size: int, rule: str = "none") -> float:
    """The learning rate for ``batch_size`` given one tuned at ``base_batch_size`` (see module docstring).

    Raises:
        UnknownNameError: for an unknown ``rule``.
        ConfigError: for ``base_lr`` <= 0 or a batch size that is not a positive integer.
    """
    impl = lr_scaling.get(rule).impl
    _validate.number("lr", base_lr, low=0.0, low_open=True, high_open=True)
    _validate.integer("base_batch_size", base_batch_size, low=1)
    _validate.integer("batch_size", batch_size, low=1)
    return impl(float(base_lr), base_batch_size, batch_size)


@dataclass(frozen=True)
class WarmupPlan:
    """Linear warmup from ``start_lr`` to ``peak_lr`` over ``steps`` optimizer steps, then ``peak_lr``.

    A record of the plan; the learning rates come from the schedules package's warmup
    (:attr:`schedule`: :func:`optbench.schedules.with_warmup` in front of a constant ``peak_lr``,
    start factor ``start_lr / peak_lr``), so there is one implementation of the ramp.

    Raises:
        ConfigError: (from :attr:`schedule`) unless ``0 <= start_lr <= peak_lr``, ``peak_lr > 0`` and
            ``steps`` is an integer >= 0.
    """

    start_lr: float
    peak_lr: float
    steps: int

    @property
    def schedule(self) -> Schedule:
        """The plan as a :class:`~optbench.schedules.Schedule` (step -> lr), e.g. for an
        :class:`~optbench.schedules.LRController`."""
        from optbench.schedules import with_warmup
        from optbench.schedules.decay import Constant

        return with_warmup(Constant(self.peak_lr), self.steps, self.start_lr / self.peak_lr)

    def lr_at(self, step: int) -> float:
        """The lr at 0-based ``step``: ``start + (peak - start) * step / steps``, then ``peak``
        (equal up to float rounding: computed as ``peak * (s + (1 - s) * step / steps)``,
        ``s = start / peak``)."""
        return self.schedule(step)


def goyal_warmup(base_lr: float, base_batch_size: int, batch_size: int, steps_per_epoch: int,
                 warmup_epochs: float = 5.0) -> WarmupPlan:
    """Goyal et al. 2017 (sec. 2.2, "gradual warmup"): start at ``base_lr`` and reach the linearly
    scaled lr ``base_lr * batch_size / base_batch_size`` after ``warmup_epochs`` epochs
    (``round(warmup_epochs * steps_per_epoch)`` steps), increasing by a constant amount each step.

    In the schedules package this is a linear warmup with start factor
    ``base_batch_size / batch_size`` in front of a schedule whose peak is the scaled lr (the returned
    plan's :attr:`WarmupPlan.schedule`; a recipe gets it with ``warmup_epochs`` and
    ``warmup_start_factor`` schedule parameters and ``batch_rule="linear"``).

    Raises:
        ConfigError: for non-positive sizes or lr, ``batch_size < base_batch_size`` (the warmup
            raises the lr), or ``warmup_epochs`` < 0.
    """
    peak = scaled_lr(base_lr, base_batch_size, batch_size, "linear")
    if batch_size < base_batch_size:
        raise ConfigError("batch_size", batch_size, f"an integer >= base_batch_size {base_batch_size} "
                                                    "(the gradual warmup raises the lr to the scaled one)")
    _validate.integer("steps_per_epoch", steps_per_epoch, low=1)
    epochs = _validate.number("warmup_epochs", warmup_epochs, low=0.0, high_open=True)
    return WarmupPlan(start_lr=float(base_lr), peak_lr=peak, steps=round(epochs * steps_per_epoch))


def accumulation_steps(batch_size: int, micro_batch_size: int | None) -> int:
    """Micro-batches per optimizer step: ``batch_size // micro_batch_size`` (1 when None).

    Raises:
        ConfigError: unless both are positive integers and ``micro_batch_size`` divides
            ``batch_size``.
    """
    _validate.integer("batch_size", batch_size, low=1)
    if micro_batch_size is None:
        return 1
    _validate.integer("micro_batch_size", micro_batch_size, low=1)
    if micro_batch_size > batch_size or batch_size % micro_batch_size:
        raise ConfigError("micro_batch_size", micro_batch_size, f"a divisor of batch_size {batch_size}")
    return batch_size // micro_batch_size


def micro_batches(x: Tensor, y: Tensor, micro_batch_size: int) -> list[tuple[Tensor, Tensor, float]]:
    """Split one batch into micro-batches (views, no copy) with their loss weights.

    Args:
        x: ``(B, ...)`` inputs; y: ``(B, ...)`` targets.
        micro_batch_size: examples per micro-batch (the last one may be smaller, e.g. for the last
            batch of an epoch).

    Returns:
        ``[(x_i, y_i, n_i / B)]``: backpropagating ``weight_i * mean_loss(x_i, y_i)`` for every i
        accumulates the gradient of the mean loss over the whole batch.
    """
    _validate.integer("micro_batch_size", micro_batch_size, low=1)
    n = x.shape[0]
    return [(xi, yi, xi.shape[0] / n)
            for xi, yi in zip(x.split(micro_batch_size), y.split(micro_batch_size), strict=True)]



class LrScaling(Component):
    """Scale the learning rate with the batch size: ``linear`` (Goyal et al. 2017, sec. 2.1) or
    ``sqrt`` (Krizhevsky 2014; Hoffer et al. 2017), relative to ``base_batch_size``. The batch size is
    the examples of one optimizer step (all workers together in the distributed engines).

    Raises:
        ConfigError / UnknownNameError: an unknown rule or a bad base batch size.
    """

    name = "lr_scaling"
    family = "lr_scaling"
    source = "Goyal et al. 2017, sec. 2.1; Hoffer et al. 2017"
    description = "lr * (batch/base_batch_size) (linear) or its square root (sqrt)."

    def __init__(self, *, rule: str, base_batch_size: int = 128) -> None:
        lr_scaling.get(rule)
        _validate.integer("lr_scaling base_batch_size", base_batch_size, low=1)
        self.rule, self.base_batch_size = rule, base_batch_size

    def adjust_hyperparams(self, hyperparams: dict[str, Any], batch_size: int) -> dict[str, Any]:
        if "lr" not in hyperparams:
            return hyperparams
        return {**hyperparams, "lr": scaled_lr(float(hyperparams["lr"]), self.base_batch_size, batch_size, self.rule)}


class Accumulation(Component):
    """Gradient accumulation: each step's batch is split into ``steps`` micro-batches whose weighted
    gradients are summed before one optimizer step (same gradient, less memory; e.g. Ott et al. 2018)."""

    name = "accumulation"
    family = "batching"
    source = "common practice (e.g. Ott et al. 2018)"
    description = "Split each batch into `steps` micro-batches and sum their gradients."

    def __init__(self, *, steps: int) -> None:
        self.micro_batches = _validate.integer("accumulation steps", steps, low=1)

#: The techniques of this module (discovered by :mod:`optbench.techniques.registry`).
COMPONENTS = (Accumulation, LrScaling,)

__all__ = ["Accumulation", "COMPONENTS", "LrScaling", "WarmupPlan", "accumulation_steps",
           "goyal_warmup", "lr_scaling", "micro_batches", "scaled_lr"]
