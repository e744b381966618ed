"""Regularizers and training techniques as components of the one training loop.

Each named choice is a :class:`~optbench.techniques.catalog.Technique` in a strict registry:

| registry          | names                                   | module                |
|-------------------|-----------------------------------------|-----------------------|
| ``penalties``     | none, l1, l2, elastic_net               | :mod:`.penalties`     |
| ``augmentations`` | random_crop, horizontal_flip, gaussian_noise | :mod:`.augmentation` |
| ``averagers``     | none, swa, ema                          | :mod:`.averaging`     |
| ``norms``         | none, batch, layer, group               | :mod:`.normalization` |
| ``precisions``    | fp32, bf16, fp16                        | :mod:`.precision`     |
| ``lr_scaling``    | none, linear, sqrt                      | :mod:`.batch_rules`   |
| ``clipping``      | none, norm, value                       | :mod:`.gradient_clipping` |

Numeric techniques: label smoothing (:func:`smoothed_cross_entropy`), early stopping
(:class:`EarlyStopping`), decay groups (:func:`decay_groups`), gradient accumulation
(:func:`accumulation_steps`, :func:`micro_batches`). What a recipe can name are the components of
:mod:`optbench.techniques.registry` (``optbench list techniques``), built on these functions.
Importing this package imports only torch.
"""

from __future__ import annotations

from optbench.techniques.augmentation import (
    Augmentation,
    augmentations,
    gaussian_noise,
    horizontal_flip,
    make_augmentation,
    random_crop,
)
from optbench.techniques.averaging import Averager, averagers, ema, make_averager, swa, swa_lr_scheduler
from optbench.techniques.batch_rules import (
    WarmupPlan,
    accumulation_steps,
    goyal_warmup,
    lr_scaling,
    micro_batches,
    scaled_lr,
)
from optbench.techniques.catalog import Technique
from optbench.techniques.early_stopping import EarlyStopping
from optbench.techniques.gradient_clipping import clip_grad_norm, clip_grad_value, clipping, make_clipper
from optbench.techniques.normalization import norm_layer, norms
from optbench.techniques.param_groups import decay_groups, split_decay_parameters
from optbench.techniques.penalties import elastic_net, l1, l2, make_penalty, penalties, penalty
from optbench.techniques.precision import Precision, precision_context, precisions
from optbench.techniques.smoothing import smoothed_cross_entropy

__all__ = [
    "Augmentation", "Averager", "EarlyStopping", "Precision", "Technique", "WarmupPlan",
    "accumulation_steps", "augmentations", "averagers", "clip_grad_norm", "clip_grad_value",
    "clipping", "decay_groups", "elastic_net", "ema", "gaussian_noise", "goyal_warmup", "horizontal_flip",
    "l1", "l2", "lr_scaling", "make_augmentation", "make_averager", "make_clipper", "make_penalty",
    "micro_batches", "norm_layer", "norms", "penalties", "penalty", "precision_context", "precisions",
    "random_crop", "scaled_lr", "smoothed_cross_entropy", "split_decay_parameters", "swa",
    "swa_lr_scheduler",
]
