"""Learning-rate semantics: what ``lr`` means for an optimizer (the *learning-rate semantics*
contract of :class:`optbench.optim.Capabilities`).

For most optimizers ``lr`` is the step size. For learning-rate-free methods (Prodigy, Mishchenko &
Defazio 2024; D-Adaptation, Defazio & Mishchenko 2023) the method estimates the step size itself and
``lr`` multiplies that estimate: 1.0 by design. Running them at a protocol's shared learning rate
(0.01 in the reference protocol) shrinks every step a hundredfold and measures nothing about the
method (``prodigy`` at lr 0.01 reached 11.2% on mnist1d_cnn in 5 epochs, chance is 10%). So:

* protocols that share one learning rate give a learning-rate-free optimizer :data:`LR_FREE_LR`
  (:func:`shared_lr`), and the tables say so;
* a search over ``lr`` searches the multiplier over :data:`LR_FREE_RANGE` instead of the space's
  range (:func:`lr_range`, :func:`lr_grid`): the same relative positions, log-scaled around 1.
"""

from __future__ import annotations

import math

from optbench.optim.catalog import optimizers

#: The learning rate a learning-rate-free method gets where a protocol shares one.
LR_FREE_LR = 1.0
#: The range a search over a learning-rate-free method's ``lr`` (its multiplier) covers.
LR_FREE_RANGE = (0.1, 10.0)


def is_learning_rate_free(optimizer: str) -> bool:
    """Whether ``optimizer``'s ``lr`` is a multiplier of its own step-size estimate.

    Raises:
        UnknownNameError: for an unknown optimizer name.
    """
    return optimizers.get(optimizer).capabilities().learning_rate_free


def shared_lr(optimizer: str, lr: float) -> float:
    """The learning rate ``optimizer`` runs at when a protocol shares ``lr``: ``lr``, or
    :data:`LR_FREE_LR` for a learning-rate-free method."""
    return LR_FREE_LR if is_learning_rate_free(optimizer) else lr


def lr_range(optimizer: str, low: float, high: float) -> tuple[float, float]:
    """The ``(low, high)`` a search over ``optimizer``'s lr covers: the given range, or
    :data:`LR_FREE_RANGE` for a learning-rate-free method."""
    return LR_FREE_RANGE if is_learning_rate_free(optimizer) else (low, high)


def lr_grid(optimizer: str, grid: list[float]) -> list[float]:
    """A learning-rate grid for ``optimizer``: ``grid``, or for a learning-rate-free method the same
    number of log-spaced multipliers over :data:`LR_FREE_RANGE` (rounded to 6 significant digits,
    as protocol grids are, so run ids are stable)."""
    if not is_learning_rate_free(optimizer) or not grid:
        return list(grid)
    low, high = (math.log(v) for v in LR_FREE_RANGE)
    n = len(grid)
    values = [math.exp(low + (high - low) * i / (n - 1)) for i in range(n)] if n > 1 else [LR_FREE_LR]
    return [float(f"{v:.6g}") for v in values]


__all__ = ["LR_FREE_LR", "LR_FREE_RANGE", "is_learning_rate_free", "lr_grid", "lr_range", "shared_lr"]
