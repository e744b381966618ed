"""Parameter groups that exclude biases and normalization weights from weight decay.

Decaying the scale and shift of a normalization layer or a bias constrains nothing useful (they do
not grow with overfitting and the scale of a layer followed by normalization is free); the common
practice ("no bias decay", He et al. 2019, "Bag of Tricks for Image Classification", sec. 3.1,
after Jia et al. 2018; nanoGPT; timm ``param_groups_weight_decay``) is to
decay only weight matrices and convolution kernels.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from optbench.core.component import Component
from optbench.techniques import _validate

#: Module types whose parameters count as "normalization weights".
NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.RMSNorm,
)


def split_decay_parameters(model: nn.Module, *, exclude_bias_and_norm: bool = True
                           ) -> tuple[list[Tensor], list[Tensor]]:
    """``(decay, no_decay)``: the trainable parameters of ``model``, each listed once.

    A parameter goes to ``no_decay`` when ``exclude_bias_and_norm`` and it belongs to a
    normalization module (:data:`NORM_TYPES`) or its name is ``bias``. Shared parameters are
    listed once (first occurrence); frozen ones (``requires_grad=False``) are left out.
    """
    decay: list[Tensor] = []
    no_decay: list[Tensor] = []
    seen: set[int] = set()
    for module in model.modules():
        is_norm = isinstance(module, NORM_TYPES)
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            excluded = exclude_bias_and_norm and (is_norm or name == "bias")
            (no_decay if excluded else decay).append(p)
    return decay, no_decay


def decay_groups(model: nn.Module, weight_decay: float, exclude_bias_and_norm: bool = True
                 ) -> list[dict[str, Any]]:
    """Parameter groups for any ``torch.optim`` optimizer: ``weight_decay`` for weights,
    ``0.0`` for biases and normalization weights.

    Returns:
        ``[{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]``
        with empty groups left out (a single group when nothing is excluded). Group values override
        the optimizer's own ``weight_decay``; every other hyperparameter (lr, betas) comes from the
        optimizer's defaults, so schedules that write ``param_groups[i]["lr"]`` act on both groups.
        The optimizer must have a ``weight_decay`` hyperparameter, else the key is ignored.

    Raises:
        ConfigError: for ``weight_decay`` < 0 or not a number.
    """
    wd = _validate.number("weight_decay", weight_decay, low=0.0)
    decay, no_decay = split_decay_parameters(model, exclude_bias_and_norm=exclude_bias_and_norm)
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]



class NoDecayBiasNorm(Component):
    """Weight decay on weights only: biases and normalization weights go to a group with
    ``weight_decay = 0`` (He et al. 2019, Bag of Tricks, sec. 3.1)."""

    name = "no_decay_bias_norm"
    family = "param_groups"
    source = "He et al. 2019 (Bag of Tricks), sec. 3.1"
    description = "No weight decay on biases and normalization weights."

    def param_groups(self, model: nn.Module, hyperparams: Any) -> list[dict[str, Any]] | None:
        weight_decay = hyperparams.get("weight_decay")
        if not weight_decay:
            return None
        return decay_groups(model, float(weight_decay), exclude_bias_and_norm=True)

#: The techniques of this module (discovered by :mod:`optbench.techniques.registry`).
COMPONENTS = (NoDecayBiasNorm,)

__all__ = ["COMPONENTS", "NoDecayBiasNorm", "NORM_TYPES", "decay_groups", "split_decay_parameters"]
