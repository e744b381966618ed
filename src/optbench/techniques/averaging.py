"""Weight averaging: stochastic weight averaging (``swa``) and an exponential moving average
(``ema``), both through :mod:`torch.optim.swa_utils`.

* ``swa`` — the equal average of the weights at the averaged points (Izmailov et al. 2018,
  "Averaging weights leads to wider optima and better generalization", Algorithm 1): after
  ``start`` calls of :meth:`Averager.update`, every ``every``-th call adds the current weights,
  ``w_swa = (w_swa * n + w) / (n + 1)``. Batch-norm statistics are not averaged; they are
  recomputed by one pass over the training data in :meth:`Averager.finalize`
  (``torch.optim.swa_utils.update_bn``), as the paper prescribes. Pair it with a constant or cyclic
  learning rate during averaging (:func:`swa_lr_scheduler` wraps ``SWALR``).
* ``ema`` — ``w_ema = decay * w_ema + (1 - decay) * w`` at each averaged call, started from a copy
  of the weights (Polyak & Juditsky 1992 averaging in its exponential form; ``get_ema_multi_avg_fn``,
  one ``_foreach_lerp_`` per device and dtype). By default buffers (batch-norm running statistics)
  are averaged the same way, so no extra pass is needed.

The averaged copy lives beside the trained model; evaluate :attr:`Averager.module`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import SWALR, AveragedModel, get_ema_multi_avg_fn, update_bn

from optbench.core.component import Component, RunContext
from optbench.core.errors import ConfigError
from optbench.core.registry import Registry
from optbench.techniques import _validate
from optbench.techniques.catalog import Technique


class Averager:
    """A running weight average of a model.

    Args:
        model: the model being trained (deep-copied once; the copy holds the average).
        multi_avg_fn: ``torch.optim.swa_utils`` averaging function; None = equal average (SWA).
        use_buffers: average buffers too (True) or copy them from the model at each update (False).
        bn_update: :meth:`finalize` recomputes batch-norm statistics from training batches.
        start: calls of :meth:`update` ignored before averaging begins (an integer >= 0).
        every: average every ``every``-th call from ``start`` on (an integer >= 1).
        device: where the average lives (default: the model's device).

    Raises:
        ConfigError: for a bad ``start`` or ``every``.
    """

    def __init__(self, model: nn.Module, *, multi_avg_fn: Callable[..., None] | None = None,
                 use_buffers: bool = False, bn_update: bool = True, start: int = 0, every: int = 1,
                 device: torch.device | str | None = None) -> None:
        self.start = _validate.integer("averaging start", start, low=0)
        self.every = _validate.integer("averaging every", every, low=1)
        self.bn_update = bn_update
        self.calls = 0
        self._averaged = AveragedModel(model, device=device, multi_avg_fn=multi_avg_fn,
                                       use_buffers=use_buffers)
        self._averaged.requires_grad_(False)

    @property
    def count(self) -> int:
        """Number of weight snapshots averaged so far."""
        return int(self._averaged.n_averaged)

    @property
    def active(self) -> bool:
        """True once the ``start`` calls have passed (the loop may switch to the SWA learning rate)."""
        return self.calls >= self.start

    @property
    def ready(self) -> bool:
        """True when at least one snapshot was averaged (:attr:`module` is meaningful)."""
        return self.count > 0

    def update(self, model: nn.Module) -> bool:
        """Count one call (per step or per epoch, the loop's choice) and average ``model``'s current
        weights into the copy when it is due. Returns True when it averaged."""
        self.calls += 1
        due = self.calls > self.start and (self.calls - self.start - 1) % self.every == 0
        if due:
            self._averaged.update_parameters(model)
        return due

    def finalize(self, train_batches: Iterable[Any] | None = None) -> nn.Module:
        """Make the average ready for evaluation and return :attr:`module` (in eval mode).

        When ``bn_update`` is set and the model has batch-norm layers, their running statistics
        are recomputed by one forward pass in training mode over ``train_batches`` (tensors or
        ``(x, y)`` tuples, e.g. ``ordered_batches(data.train, batch_size)``; no gradients), with a
        cumulative average over batches (``torch.optim.swa_utils.update_bn``).

        Raises:
            RuntimeError: before the first averaged update.
            ValueError: when batch-norm statistics need recomputing and ``train_batches`` is None.
        """
        module = self.module
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())
        if self.bn_update and has_bn:
            if train_batches is None:
                raise ValueError("finalize needs train_batches to recompute batch-norm statistics")
            update_bn(train_batches, module)
        return module.eval()

    @property
    def module(self) -> nn.Module:
        """The averaged model (an ``nn.Module`` like the trained one) for evaluation.

        Raises:
            RuntimeError: before the first averaged update.
        """
        if not self.ready:
            raise RuntimeError(f"no weights averaged yet ({self.calls} update calls, start={self.start})")
        return self._averaged.module

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights, ``n_averaged`` and the call counter, for a checkpoint."""
        return {"averaged": self._averaged.state_dict(), "calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self._averaged.load_state_dict(state["averaged"])
        self.calls = int(state["calls"])


def _check_swa(start: int = 0, every: int = 1) -> None:
    _validate.integer("averaging start", start, low=0)
    _validate.integer("averaging every", every, low=1)


def _check_ema(decay: float = 0.999, start: int = 0, every: int = 1, average_buffers: bool = True) -> None:
    _validate.number("averaging decay", decay, low=0.0, high=1.0)
    _check_swa(start, every)
    if not isinstance(average_buffers, bool):
        raise ConfigError("averaging average_buffers", average_buffers, "true or false")


def swa(model: nn.Module, start: int = 0, every: int = 1,
        device: torch.device | str | None = None) -> Averager:
    """Stochastic weight averaging (Izmailov et al. 2018): equal average, batch-norm statistics
    recomputed in :meth:`Averager.finalize`."""
    _check_swa(start, every)
    return Averager(model, multi_avg_fn=None, use_buffers=False, bn_update=True, start=start, every=every,
                    device=device)


def ema(model: nn.Module, decay: float = 0.999, start: int = 0, every: int = 1, average_buffers: bool = True,
        device: torch.device | str | None = None) -> Averager:
    """Exponential moving average ``w = decay*w + (1-decay)*w_model`` (``get_ema_multi_avg_fn``).

    With ``average_buffers`` the batch-norm running statistics are averaged too (no data pass in
    :meth:`Averager.finalize`); without, they are recomputed there like SWA."""
    _check_ema(decay, start, every, average_buffers)
    return Averager(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=average_buffers,
                    bn_update=not average_buffers, start=start, every=every, device=device)


averagers: Registry[Technique[Callable[..., Averager] | None]] = Registry("averaging")
averagers.register("none", Technique("none", "averaging", None, "-", "Evaluate the trained weights."))
averagers.register("swa", Technique(
    "swa", "averaging", swa, "Izmailov et al. 2018, Alg. 1; torch.optim.swa_utils",
    "Equal average of weights after `start` updates; batch-norm statistics recomputed.",
    ("model", "device"), _check_swa))
averagers.register("ema", Technique(
    "ema", "averaging", ema, "Polyak & Juditsky 1992 (exponential form); torch get_ema_multi_avg_fn",
    "Exponential moving average of weights (and buffers) with `decay`.",
    ("model", "device"), _check_ema))


def make_averager(kind: str, model: nn.Module, *, device: torch.device | str | None = None,
                  **options: Any) -> Averager | None:
    """The averager registered as ``kind`` (``"none"`` -> None) over ``model``.

    Raises:
        UnknownNameError: for an unknown ``kind``.
        ConfigError: for an unknown option or a bad value.
    """
    technique = averagers.get(kind)
    technique.validate(options)
    if technique.impl is None:
        return None
    return technique.impl(model, device=device, **options)


def swa_lr_scheduler(optimizer: torch.optim.Optimizer, swa_lr: float, anneal_epochs: int = 10,
                     anneal_strategy: str = "cos") -> SWALR:
    """``torch.optim.swa_utils.SWALR``: anneal each group's lr to ``swa_lr`` over ``anneal_epochs``
    ``.step()`` calls (``"cos"`` or ``"linear"``), then hold it (Izmailov et al. 2018, sec. 3.2).

    Build it when :attr:`Averager.active` first becomes True and call its ``.step()`` once per
    epoch (or per averaging period) from then on, instead of the regular schedule.

    Raises:
        ConfigError: for ``swa_lr`` <= 0, ``anneal_epochs`` < 0 or an unknown strategy.
    """
    _validate.number("swa_lr", swa_lr, low=0.0, low_open=True, high_open=True)
    _validate.integer("swa anneal_epochs", anneal_epochs, low=0)
    if anneal_strategy not in ("cos", "linear"):
        raise ConfigError("swa anneal_strategy", anneal_strategy, ("cos", "linear"))
    return SWALR(optimizer, swa_lr=swa_lr, anneal_epochs=anneal_epochs, anneal_strategy=anneal_strategy)



class _Averaging(Component):
    """Evaluate (and report) a running average of the weights; the averaging happens on the side that
    holds the optimizer (the parameter server in ``ps``)."""

    family = "averaging"
    source = ""
    description = ""
    per_step = False

    def __init__(self, **options: Any) -> None:
        technique = averagers.get(self.name)
        technique.validate(options)
        self.options = options
        self._factory = technique.impl
        self.averager: Averager | None = None
        self._model: nn.Module | None = None

    def setup(self, run: RunContext) -> None:
        self._model = run.model
        self.averager = self._factory(run.model, **self.options)

    def after_step(self) -> None:
        if self.per_step:
            self.averager.update(self._model)

    def after_train_epoch(self, epoch: int) -> None:
        if not self.per_step:
            self.averager.update(self._model)

    def eval_model(self, model: nn.Module, train_inputs: Callable[[], Iterable[Any]]) -> nn.Module:
        if self.averager is None or not self.averager.ready:
            return model
        return self.averager.finalize(train_inputs())

    def state_dict(self) -> dict[str, Any]:
        return self.averager.state_dict()

    def load_state_dict(self, state: Any) -> None:
        self.averager.load_state_dict(dict(state))


class SWA(_Averaging):
    """Stochastic weight averaging (Izmailov et al. 2018, Alg. 1): after ``start`` epochs, every
    ``every``-th epoch's weights join an equal average; batch-norm statistics are recomputed before
    evaluation (``torch.optim.swa_utils``)."""

    name = "swa"
    source = averagers.get("swa").source
    description = averagers.get("swa").description

    def __init__(self, *, start: int = 0, every: int = 1) -> None:
        super().__init__(start=start, every=every)


class EMA(_Averaging):
    """Exponential moving average of the weights after every optimizer step, ``w = decay*w +
    (1-decay)*w_model`` (Polyak & Juditsky 1992, exponential form; ``get_ema_multi_avg_fn``)."""

    name = "ema"
    source = averagers.get("ema").source
    description = averagers.get("ema").description
    per_step = True

    def __init__(self, *, decay: float = 0.999, start: int = 0, every: int = 1, average_buffers: bool = True) -> None:
        super().__init__(decay=decay, start=start, every=every, average_buffers=average_buffers)

#: The techniques of this module (discovered by :mod:`optbench.techniques.registry`).
COMPONENTS = (SWA, EMA,)

__all__ = ["COMPONENTS", "EMA", "SWA", "Averager", "averagers", "ema", "make_averager", "swa", "swa_lr_scheduler"]
