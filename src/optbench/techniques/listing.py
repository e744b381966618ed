"""Every regularizer and training technique of the family registries, one row each, for
``optbench list regularizers``."""

from __future__ import annotations

from typing import Any

from optbench.techniques.augmentation import augmentations
from optbench.techniques.averaging import averagers
from optbench.techniques.batch_rules import ACCUMULATION, lr_scaling
from optbench.techniques.catalog import Technique
from optbench.techniques.early_stopping import EARLY_STOPPING
from optbench.techniques.gradient_clipping import clipping
from optbench.techniques.normalization import norms
from optbench.techniques.param_groups import DECAY_GROUPS
from optbench.techniques.penalties import penalties
from optbench.techniques.precision import precisions
from optbench.techniques.smoothing import LABEL_SMOOTHING


def catalogue() -> list[Technique[Any]]:
    """Every technique, one row each, ordered by family then name."""
    rows: list[Technique[Any]] = [LABEL_SMOOTHING, EARLY_STOPPING, DECAY_GROUPS, ACCUMULATION]
    for registry in (penalties, augmentations, averagers, norms, precisions, lr_scaling, clipping):
        rows += [registry.get(name) for name in registry.names()]
    return sorted(rows, key=lambda t: (t.family, t.name))


__all__ = ["catalogue"]
