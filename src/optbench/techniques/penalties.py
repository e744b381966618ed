"""Parameter-norm penalties added to the training loss: ``l1``, ``l2``, ``elastic_net``.

Conventions (per parameter tensor theta, summed over the tensors given):

* ``l1``:          ``strength * sum |theta|``                      (Tibshirani 1996, the lasso)
* ``l2``:          ``strength / 2 * sum theta^2``                  (Tikhonov; "ridge", Hoerl & Kennard 1970)
* ``elastic_net``: ``strength * (l1_ratio * sum |theta| + (1 - l1_ratio) / 2 * sum theta^2)``
  (Zou & Hastie 2005, "Regularization and variable selection via the elastic net", eq. (3), the
  naive elastic net, with lambda_1 = strength*l1_ratio and lambda_2 = strength*(1-l1_ratio)/2;
  the (strength, l1_ratio) form is glmnet's and scikit-learn's ``ElasticNet(alpha, l1_ratio)``).

``l2`` uses lambda/2 so that its gradient is ``strength * theta``: for plain SGD (no momentum) a
step on ``loss + l2`` equals a step of ``torch.optim.SGD(weight_decay=strength)``, which adds
``weight_decay * theta`` to the gradient; with momentum they still coincide since the term enters
the gradient before the momentum buffer. For adaptive methods (Adam) an L2 penalty is *not* weight
decay: its gradient is rescaled by the second-moment estimate; decoupled weight decay
(AdamW, Loshchilov & Hutter 2019) is an optimizer hyperparameter instead.

``elastic_net`` with ``l1_ratio=1`` equals ``l1`` and with ``l1_ratio=0`` equals ``l2``.
Penalties are computed in float32 (or the parameters' wider dtype), outside autocast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from optbench.core.component import Component, RunContext
from optbench.core.errors import ConfigError
from optbench.core.registry import Registry
from optbench.techniques import _validate
from optbench.techniques.catalog import Technique

Penalty = Callable[..., Tensor]


def _as_list(params: Iterable[Tensor]) -> list[Tensor]:
    return [p for p in params]


def _sum(terms: list[Tensor], like: list[Tensor]) -> Tensor:
    if not terms:
        device = like[0].device if like else None
        return torch.zeros((), device=device)
    return torch.stack(terms).sum()


def _wide(p: Tensor) -> Tensor:
    """``p`` itself in float32/float64, else (half precisions) a float32 copy."""
    return p if p.dtype in (torch.float32, torch.float64) else p.float()


def _abs_sum(params: list[Tensor]) -> Tensor:
    return _sum([_wide(p).abs().sum() for p in params], params)


def _square_sum(params: list[Tensor]) -> Tensor:
    return _sum([_wide(p).square().sum() for p in params], params)


def _check_strength(strength: float) -> None:
    _validate.number("penalty strength", strength, low=0.0, high_open=True)


def _check_elastic(strength: float, l1_ratio: float = 0.5) -> None:
    _check_strength(strength)
    _validate.number("penalty l1_ratio", l1_ratio, low=0.0, high=1.0)


def l1(params: Iterable[Tensor], strength: float) -> Tensor:
    """L1 penalty ``strength * sum_i |theta_i|`` (0-d tensor, differentiable; the subgradient at 0
    is 0)."""
    return strength * _abs_sum(_as_list(params))


def l2(params: Iterable[Tensor], strength: float) -> Tensor:
    """L2 penalty ``strength / 2 * sum_i theta_i^2`` (0-d tensor); gradient ``strength * theta``."""
    return (strength / 2) * _square_sum(_as_list(params))


def elastic_net(params: Iterable[Tensor], strength: float, l1_ratio: float = 0.5) -> Tensor:
    """Elastic-net penalty ``strength * (l1_ratio*sum|theta| + (1-l1_ratio)/2*sum theta^2)``
    (Zou & Hastie 2005, eq. (3)); a 0-d tensor."""
    params = _as_list(params)
    return strength * (l1_ratio * _abs_sum(params) + (1 - l1_ratio) / 2 * _square_sum(params))


def no_penalty(params: Iterable[Tensor]) -> Tensor:
    """The zero penalty (a 0-d tensor on the parameters' device)."""
    params = _as_list(params)
    return torch.zeros((), device=params[0].device if params else None)


penalties: Registry[Technique[Penalty]] = Registry("penalty")
penalties.register("none", Technique("none", "penalty", no_penalty, "-", "No penalty.", ("params",)))
penalties.register("l1", Technique(
    "l1", "penalty", l1, "Tibshirani 1996 (lasso)", "strength * sum|theta| added to the loss.",
    ("params",), _check_strength))
penalties.register("l2", Technique(
    "l2", "penalty", l2, "Tikhonov regularization; Hoerl & Kennard 1970 (ridge)",
    "strength/2 * sum theta^2 added to the loss (= SGD weight_decay=strength; not AdamW's decay).",
    ("params",), _check_strength))
penalties.register("elastic_net", Technique(
    "elastic_net", "penalty", elastic_net, "Zou & Hastie 2005, eq. (3) (naive elastic net)",
    "strength*(l1_ratio*sum|theta| + (1-l1_ratio)/2*sum theta^2) added to the loss.",
    ("params",), _check_elastic))


def penalty(kind: str, params: Iterable[Tensor], **strengths: float) -> Tensor:
    """The penalty registered as ``kind`` of ``params`` (see the module docstring for formulas).

    Args:
        kind: ``"none"``, ``"l1"``, ``"l2"`` or ``"elastic_net"``.
        params: the tensors to penalize (e.g. :func:`~optbench.techniques.param_groups.
            penalized_parameters`, which leaves out biases and normalization weights).
        **strengths: ``strength`` (>= 0; ``l1``, ``l2``, ``elastic_net``) and ``l1_ratio``
            (in [0, 1]; ``elastic_net`` only).

    Returns:
        A 0-d tensor (float32, or float64 for float64 parameters) on the parameters' device,
        differentiable in ``params``.

    Raises:
        UnknownNameError: for an unknown ``kind``.
        ConfigError: for an unknown option or an out-of-range value.
    """
    technique = penalties.get(kind)
    technique.validate(strengths)
    return technique.impl(params, **strengths)


def make_penalty(kind: str, model: nn.Module, *, exclude_bias_and_norm: bool = True,
                 **strengths: float) -> Callable[[], Tensor] | None:
    """A ``() -> 0-d tensor`` computing ``kind``'s penalty of ``model``'s parameters, validated
    once; None for ``"none"`` (so the loop adds nothing).

    Args:
        kind, strengths: as in :func:`penalty`.
        model: whose trainable parameters are penalized.
        exclude_bias_and_norm: leave out biases and normalization-layer weights (the usual choice;
            see :func:`~optbench.techniques.param_groups.split_decay_parameters`).

    Raises:
        UnknownNameError, ConfigError: as :func:`penalty`.
    """
    from optbench.techniques.param_groups import split_decay_parameters

    technique = penalties.get(kind)
    technique.validate(strengths)
    if penalties.canonical(kind) == "none":
        return None
    decay, no_decay = split_decay_parameters(model, exclude_bias_and_norm=exclude_bias_and_norm)
    params = decay if exclude_bias_and_norm else decay + no_decay
    impl = technique.impl

    def compute() -> Tensor:
        return impl(params, **strengths)

    return compute



class _Penalty(Component):
    """A parameter penalty added to the objective once per step (see the module docstring)."""

    family = "penalty"
    source = ""
    description = ""

    def __init__(self, *, strength: float, exclude_bias_and_norm: bool = False, **extra: float) -> None:
        if not isinstance(exclude_bias_and_norm, bool):
            raise ConfigError(f"technique {self.name} exclude_bias_and_norm", exclude_bias_and_norm, "true or false")
        technique = penalties.get(self.name)
        strengths = {"strength": strength, **extra}
        technique.validate(strengths)
        self.exclude_bias_and_norm = exclude_bias_and_norm
        self.strengths = strengths
        self._impl = technique.impl
        self._params: list[Tensor] = []

    def setup(self, run: RunContext) -> None:
        from optbench.techniques.param_groups import split_decay_parameters

        decay, no_decay = split_decay_parameters(run.model, exclude_bias_and_norm=self.exclude_bias_and_norm)
        self._params = decay if self.exclude_bias_and_norm else decay + no_decay

    def penalty(self) -> Tensor:
        return self._impl(self._params, **self.strengths)


class L1Penalty(_Penalty):
    """``strength * sum |theta|`` added to the objective (Tibshirani 1996, the lasso).

    Args:
        strength: the penalty's weight (>= 0).
        exclude_bias_and_norm: leave biases and normalization weights out.
    """

    name = "l1"
    source = penalties.get("l1").source
    description = penalties.get("l1").description


class L2Penalty(_Penalty):
    """``strength / 2 * sum theta^2`` added to the objective (Tikhonov; Hoerl & Kennard 1970): its
    gradient is ``strength * theta``, SGD's ``weight_decay`` (not AdamW's decoupled decay). A task's
    own L2 (``Task.l2``, DeepOBS) is this component with the biases and normalization weights left out.

    Args:
        strength: the penalty's weight (>= 0).
        exclude_bias_and_norm: leave biases and normalization weights out.
    """

    name = "l2"
    source = penalties.get("l2").source
    description = penalties.get("l2").description


class ElasticNetPenalty(_Penalty):
    """``strength * (l1_ratio * sum|theta| + (1 - l1_ratio) / 2 * sum theta^2)`` added to the objective
    (Zou & Hastie 2005, eq. (3), the naive elastic net).

    Args:
        strength: the penalty's weight (>= 0).
        l1_ratio: the L1 share in [0, 1].
        exclude_bias_and_norm: leave biases and normalization weights out.
    """

    name = "elastic_net"
    source = penalties.get("elastic_net").source
    description = penalties.get("elastic_net").description

    def __init__(self, *, strength: float, l1_ratio: float = 0.5, exclude_bias_and_norm: bool = False) -> None:
        super().__init__(exclude_bias_and_norm=exclude_bias_and_norm, strength=strength, l1_ratio=l1_ratio)

#: The techniques of this module (discovered by :mod:`optbench.techniques.registry`).
COMPONENTS = (L1Penalty, L2Penalty, ElasticNetPenalty,)

__all__ = ["COMPONENTS", "ElasticNetPenalty", "L1Penalty", "L2Penalty", "elastic_net", "l1", "l2",
           "make_penalty", "no_penalty", "penalties", "penalty"]
