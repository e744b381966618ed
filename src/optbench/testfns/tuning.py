"""Learning-rate tuning of an optimizer on a 2-D test function: a log grid, the best stable lr."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from optbench.core.errors import ConfigError, require_positive
from optbench.testfns.functions import TestFunction
from optbench.testfns.trajectory import trajectory


@dataclass(frozen=True)
class TuningResult:
    """The outcome of :func:`tune_lr` for one optimizer.

    Attributes:
        optimizer: registry name.
        lr: the chosen learning rate (the grid value with the lowest score).
        score: its score: mean function value over the last ``last_k`` points of the path.
        grid: every learning rate tried, ascending.
        scores: the score of each grid value; ``inf`` where the path diverged (left the
            finite numbers, or the function's plot window when ``in_bounds``) or ended above its
            start value (no progress counts as failure).
        last_k: how many final points the score averages.
    """

    optimizer: str
    lr: float
    score: float
    grid: tuple[float, ...]
    scores: tuple[float, ...]
    last_k: int

    @property
    def stable(self) -> tuple[float, ...]:
        """The grid values whose path neither diverged nor ended above its start."""
        return tuple(lr for lr, s in zip(self.grid, self.scores, strict=True) if math.isfinite(s))


def lr_grid(low: float = 1e-4, high: float = 1.0, per_decade: int = 3) -> tuple[float, ...]:
    """A logarithmic learning-rate grid from ``low`` to ``high`` (both included), ascending.

    ``per_decade`` points per factor 10: the default gives 13 values 1e-4, 2.15e-4, 4.64e-4, ..., 1.

    Raises:
        ConfigError: ``low``/``high`` not > 0, ``high < low`` or ``per_decade`` not an integer >= 1.
    """
    require_positive("lr grid low", low)
    require_positive("lr grid high", high)
    require_positive("lr grid per_decade", per_decade, integer=True)
    if high < low:
        raise ConfigError("lr grid high", high, f"a number >= low ({low:g})")
    count = max(1, round(math.log10(high / low) * per_decade)) + 1
    return tuple(float(v) for v in np.geomspace(low, high, count))


def tune_lr(function: TestFunction, optimizer: str, *, steps: int, start: tuple[float, float] | None = None,
            noise: float = 0.0, seed: int = 0, grid: Sequence[float] | None = None, last_k: int | None = None,
            in_bounds: bool = True, **hyperparams: object) -> TuningResult:
    """The learning rate of ``grid`` that minimizes the final function value without divergence.

    Every grid value runs :func:`~optbench.testfns.trajectory` with the same ``steps``,
    ``start``, ``noise`` and ``seed`` as the run it is tuned for. The score of a run is the mean
    function value over its last ``last_k`` points (default ``max(1, steps // 10)``, which
    smooths the oscillation of noisy or momentum paths); a run that diverged or ended above its
    start value scores ``inf``, and with ``in_bounds`` so does a run that ever leaves the
    function's plot window (``function.bounds``): on Rosenbrock the largest lrs reach the minimum
    by wild jumps across the plane, which is instability, not a good learning rate. Ties go to
    the smaller lr (the more stable one).

    Args:
        function: the 2-D test function.
        optimizer: optimizer registry name; ``hyperparams`` (not ``lr``) are passed to it.
        steps, start, noise, seed: as for :func:`~optbench.testfns.trajectory`.
        grid: learning rates to try (default :func:`lr_grid`).
        last_k: points averaged by the score.
        in_bounds: count leaving the plot window as divergence (turn off for functions
            unbounded below, whose good paths leave any window).

    Returns:
        a :class:`TuningResult`.

    Raises:
        ConfigError: an empty grid, a grid value <= 0, ``lr`` in ``hyperparams``, bad
            ``last_k``, or no grid value that gives a stable path; the errors of
            :func:`~optbench.testfns.trajectory` (unknown optimizer, bad steps ...).
    """
    if "lr" in hyperparams:
        raise ConfigError("hyperparameter of tune_lr", "lr", "any hyperparameter but lr (lr is tuned)")
    values = tuple(sorted(float(v) for v in (lr_grid() if grid is None else grid)))
    if not values:
        raise ConfigError("lr grid", list(values), "one or more learning rates")
    for value in values:
        require_positive("lr grid value", value)
    k = max(1, steps // 10) if last_k is None else last_k
    require_positive("last_k", k, integer=True)
    (x0, x1), (y0, y1) = function.bounds
    scores = []
    for lr in values:
        path = trajectory(function, optimizer, steps=steps, start=start, noise=noise, seed=seed, lr=lr,
                          **hyperparams)
        score = float(np.mean(path.values[-k:]))
        ok = not path.diverged and math.isfinite(score) and score <= path.values[0]
        if in_bounds:
            xs, ys = path.points[:, 0], path.points[:, 1]
            ok = ok and bool(((xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)).all())
        scores.append(score if ok else math.inf)
    best = int(np.argmin(scores))  # first minimum: the smaller lr on ties
    if not math.isfinite(scores[best]):
        raise ConfigError(f"lr grid of {optimizer}", f"{values[0]:g}..{values[-1]:g}",
                          "a grid with at least one lr whose path neither diverges nor ends above its start")
    return TuningResult(optimizer, values[best], scores[best], values, tuple(scores), k)


