"""Normalization layers as a model option: ``none``, ``batch``, ``layer``, ``group``.

| kind    | conv feature maps ``(B, C, *spatial)``                 | MLP features ``(B, C)``      |
|---------|--------------------------------------------------------|------------------------------|
| none    | ``nn.Identity``                                        | ``nn.Identity``              |
| batch   | ``BatchNorm{1,2,3}d(C)`` (Ioffe & Szegedy 2015)        | ``BatchNorm1d(C)``           |
| layer   | ``GroupNorm(1, C)``: normalizes over C and all spatial | ``LayerNorm(C)``             |
|         | positions per example, per-channel affine (Ba et al.   | (Ba et al. 2016)             |
|         | 2016 for conv nets, as in Wu & He 2018, sec. 3.1)      |                              |
| group   | ``GroupNorm(groups, C)`` (Wu & He 2018)                 | ``GroupNorm(groups, C)``     |

Place the layer after each linear/conv layer and before the activation. Batch norm uses batch
statistics in training mode and running statistics in eval mode (the harness switches modes).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from optbench.core.errors import ConfigError
from optbench.core.registry import Registry
from optbench.techniques import _validate
from optbench.techniques.catalog import Technique

NormFactory = Callable[..., nn.Module]

_BATCH_NORMS: dict[int, type[nn.Module]] = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def _none(num_features: int, *, spatial: bool, groups: int = 8, spatial_dims: int = 2) -> nn.Module:
    return nn.Identity()


def _batch(num_features: int, *, spatial: bool, groups: int = 8, spatial_dims: int = 2) -> nn.Module:
    return _BATCH_NORMS[spatial_dims](num_features) if spatial else nn.BatchNorm1d(num_features)


def _layer(num_features: int, *, spatial: bool, groups: int = 8, spatial_dims: int = 2) -> nn.Module:
    return nn.GroupNorm(1, num_features) if spatial else nn.LayerNorm(num_features)


def _group(num_features: int, *, spatial: bool, groups: int = 8, spatial_dims: int = 2) -> nn.Module:
    if num_features % groups:
        raise ConfigError("norm groups", groups, f"a divisor of the layer width {num_features}")
    return nn.GroupNorm(groups, num_features)


_NORM_DATA = ("num_features", "spatial", "spatial_dims")

norms: Registry[Technique[NormFactory]] = Registry("normalization")
norms.register("none", Technique("none", "normalization", _none, "-", "No normalization layer.", _NORM_DATA))
norms.register("batch", Technique(
    "batch", "normalization", _batch, "Ioffe & Szegedy 2015", "Batch normalization (BatchNorm1d/2d/3d).",
    _NORM_DATA))
norms.register("layer", Technique(
    "layer", "normalization", _layer, "Ba, Kiros & Hinton 2016",
    "Layer normalization (LayerNorm for MLPs; GroupNorm with 1 group for conv nets).", _NORM_DATA))
norms.register("group", Technique(
    "group", "normalization", _group, "Wu & He 2018", "Group normalization with `groups` groups.",
    _NORM_DATA))


def norm_layer(kind: str, num_features: int, *, spatial: bool, groups: int = 8,
               spatial_dims: int = 2) -> nn.Module:
    """A normalization layer for ``num_features`` channels (see the module table).

    Args:
        kind: ``"none"``, ``"batch"``, ``"layer"`` or ``"group"``.
        num_features: channels ``C`` (conv) or features (MLP).
        spatial: True for conv feature maps ``(B, C, *spatial)``, False for ``(B, C)``.
        groups: number of groups for ``"group"`` (must divide ``num_features``).
        spatial_dims: 1, 2 or 3 spatial axes (selects ``BatchNorm{1,2,3}d``; only for ``"batch"``).

    Raises:
        UnknownNameError: for an unknown ``kind``.
        ConfigError: for a non-positive width or group count, ``groups`` not dividing
            ``num_features``, or ``spatial_dims`` not in 1, 2, 3.
    """
    technique = norms.get(kind)
    _validate.integer("norm num_features", num_features, low=1)
    _validate.integer("norm groups", groups, low=1)
    if spatial_dims not in _BATCH_NORMS:
        raise ConfigError("norm spatial_dims", spatial_dims, "1, 2 or 3")
    return technique.impl(num_features, spatial=spatial, groups=groups, spatial_dims=spatial_dims)


__all__ = ["norm_layer", "norms"]
