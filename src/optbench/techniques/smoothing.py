"""Label smoothing (Szegedy et al. 2016, "Rethinking the Inception architecture", sec. 7).

The one-hot target is replaced by ``(1 - eps) * onehot + eps / K`` over ``K`` classes, so

    CE_ls = (1 - eps) * CE + eps * mean_k(-log p_k),

which is what ``torch.nn.functional.cross_entropy(label_smoothing=eps)`` computes. Only the
training objective changes: the task's ``loss`` *metric* stays the plain cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor
from torch.nn import functional as F

from optbench.core.component import Component, LossFn
from optbench.techniques import _validate


def smoothed_cross_entropy(eps: float) -> Callable[[Tensor, Tensor], Tensor]:
    """A mean loss ``(logits (B, K), targets (B,) int64) -> 0-d tensor`` (nats) with label smoothing.

    ``eps = 0`` is the plain cross-entropy. For sequence logits ``(B, T, K)`` flatten to
    ``(B*T, K)`` first.

    Raises:
        ConfigError: unless ``0 <= eps < 1``.
    """
    eps = _validate.number("label_smoothing", eps, low=0.0, high=1.0, high_open=True)

    def loss(logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y, label_smoothing=eps)

    return loss



class LabelSmoothing(Component):
    """Cross-entropy against ``(1 - epsilon) * onehot + epsilon / K`` as the training objective
    (Szegedy et al. 2016, sec. 7); the reported ``loss`` stays the task's own loss.

    Args:
        epsilon: smoothing in [0, 1).

    Raises:
        ConfigError: ``epsilon`` out of range.
    """

    name = "label_smoothing"
    family = "loss"
    source = "Szegedy et al. 2016, sec. 7"
    description = "Cross-entropy against (1-eps)*onehot + eps/K as the training objective."

    def __init__(self, *, epsilon: float) -> None:
        self.loss = smoothed_cross_entropy(epsilon)
        self.epsilon = epsilon

    def wrap_loss(self, loss_fn: LossFn) -> LossFn:
        return self.loss

#: The techniques of this module (discovered by :mod:`optbench.techniques.registry`).
COMPONENTS = (LabelSmoothing,)

__all__ = ["COMPONENTS", "LabelSmoothing", "smoothed_cross_entropy"]
