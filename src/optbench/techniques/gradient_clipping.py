"""Gradient clipping: by global norm (Pascanu et al. 2013, "On the difficulty of training recurrent
neural networks", Algorithm 1) and by value, thin wrappers of ``torch.nn.utils.clip_grad_norm_`` and
``clip_grad_value_``. Call after ``backward`` (and after ``scaler.unscale_(optimizer)`` under fp16)
and before ``optimizer.step()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from torch import Tensor
from torch.nn.utils import clip_grad_norm_, clip_grad_value_

from optbench.core.component import Component, RunContext
from optbench.core.errors import ConfigError
from optbench.core.registry import Registry
from optbench.techniques import _validate
from optbench.techniques.catalog import Technique


def _check_norm(max_norm: float, norm_type: float = 2.0) -> None:
    _validate.number("clipping max_norm", max_norm, low=0.0, low_open=True, high_open=True)
    if isinstance(norm_type, bool) or not isinstance(norm_type, int | float) or not (
            norm_type > 0 or norm_type == math.inf):
        raise ConfigError("clipping norm_type", norm_type, "a number > 0 or inf")


def _check_value(clip_value: float) -> None:
    _validate.number("clipping clip_value", clip_value, low=0.0, low_open=True, high_open=True)


def clip_grad_norm(params: Iterable[Tensor], max_norm: float, norm_type: float = 2.0) -> Tensor:
    """Rescale all gradients together so their ``norm_type``-norm is at most ``max_norm``:
    ``g <- g * min(1, max_norm / (||g|| + 1e-6))``.

    Returns:
        the total gradient norm *before* clipping (0-d tensor; log it to watch for spikes).

    Raises:
        ConfigError: for ``max_norm`` <= 0 or ``norm_type`` not > 0.
    """
    _check_norm(max_norm, norm_type)
    return clip_grad_norm_(params, max_norm, norm_type=norm_type)


def clip_grad_value(params: Iterable[Tensor], clip_value: float) -> None:
    """Clamp every gradient element to ``[-clip_value, clip_value]``.

    Raises:
        ConfigError: for ``clip_value`` <= 0.
    """
    _check_value(clip_value)
    clip_grad_value_(params, clip_value)


def _no_clipping(params: Iterable[Tensor]) -> None:
    return None


clipping: Registry[Technique[Callable[..., Tensor | None]]] = Registry("clipping")
clipping.register("none", Technique(
    "none", "clipping", _no_clipping, "-", "No gradient clipping.", ("params",)))
clipping.register("norm", Technique(
    "norm", "clipping", clip_grad_norm, "Pascanu et al. 2013, Alg. 1; torch clip_grad_norm_",
    "Rescale gradients so their global norm is <= max_norm.", ("params",), _check_norm))
clipping.register("value", Technique(
    "value", "clipping", clip_grad_value, "torch clip_grad_value_",
    "Clamp each gradient element to [-clip_value, clip_value].", ("params",), _check_value))


def make_clipper(kind: str, params: Iterable[Tensor], **options: float) -> Callable[[], Tensor | None] | None:
    """A ``() -> total norm or None`` clipping the gradients of ``params`` (listed once now),
    validated now; None for ``"none"``.

    Args:
        kind: ``"none"``, ``"norm"`` (options ``max_norm``, ``norm_type=2.0``) or ``"value"``
            (option ``clip_value``).

    Raises:
        UnknownNameError: for an unknown ``kind``.
        ConfigError: for an unknown, missing or out-of-range option.
    """
    technique = clipping.get(kind)
    technique.validate(options)
    if clipping.canonical(kind) == "none":
        return None
    params = [p for p in params if p.requires_grad]
    # validated above: call torch's functions directly, not the re-validating wrappers (hot path)
    kind = clipping.canonical(kind)
    direct = {"norm": clip_grad_norm_, "value": clip_grad_value_}[kind]

    def clip() -> Tensor | None:
        return direct(params, **options)

    return clip



class ClipNorm(Component):
    """Scale the gradients so that their global ``norm_type``-norm is at most ``max_norm`` (Pascanu et
    al. 2013, Alg. 1; ``torch.nn.utils.clip_grad_norm_``), after unscaling, before the step."""

    name = "clip_norm"
    family = "clipping"
    source = "Pascanu et al. 2013, Alg. 1; torch.nn.utils.clip_grad_norm_"
    description = "Rescale gradients to global norm <= max_norm."

    def __init__(self, *, max_norm: float, norm_type: float = 2.0) -> None:
        _check_norm(max_norm, norm_type)
        self.max_norm, self.norm_type = max_norm, norm_type
        self._params: list[Tensor] = []

    def setup(self, run: RunContext) -> None:
        self._params = list(run.model.parameters())

    def after_backward(self) -> None:
        clip_grad_norm_(self._params, self.max_norm, norm_type=self.norm_type)


class ClipValue(Component):
    """Clamp every gradient element to ``[-clip_value, clip_value]`` (``torch.nn.utils.clip_grad_value_``)."""

    name = "clip_value"
    family = "clipping"
    source = "torch.nn.utils.clip_grad_value_"
    description = "Clamp gradient elements to [-clip_value, clip_value]."

    def __init__(self, *, clip_value: float) -> None:
        _check_value(clip_value)
        self.clip_value = clip_value
        self._params: list[Tensor] = []

    def setup(self, run: RunContext) -> None:
        self._params = list(run.model.parameters())

    def after_backward(self) -> None:
        clip_grad_value_(self._params, self.clip_value)

#: The techniques of this module (discovered by :mod:`optbench.techniques.registry`).
COMPONENTS = (ClipNorm, ClipValue,)

__all__ = ["COMPONENTS", "ClipNorm", "ClipValue", "clip_grad_norm", "clip_grad_value", "clipping", "make_clipper"]
