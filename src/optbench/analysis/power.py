"""How many seeds do I need? Power of the two-sided Welch t-test and the seed count it implies.

The power of a two-sided t-test at level ``alpha`` with ``n`` values per group is
``P(|T| > t_{1 - alpha/2, df})`` where ``T`` follows a **noncentral t** distribution with
noncentrality ``delta = |difference| / sqrt((s_a^2 + s_b^2) / n)`` (Cohen, *Statistical Power
Analysis for the Behavioral Sciences*, 2nd ed. 1988, ch. 2), computed with
:data:`scipy.stats.nct`. The degrees of freedom are Welch-Satterthwaite's
``(n - 1) (s_a^2 + s_b^2)^2 / (s_a^4 + s_b^4)`` (Welch 1947), which is the pooled two-sample
``2 (n - 1)`` when the standard deviations are equal; so with equal stds this reproduces
Cohen's Table 2.4.1 (d = 0.5, 0.8, 1.0 at alpha = 0.05 and power 0.8: 64, 26, 17 per group).

The standard deviations are estimates from the seeds already run; with 3-5 seeds they are
themselves uncertain, so read the answer as an order of magnitude. The ranking Holm-corrects
over all pairs; for a conservative answer in that setting pass ``alpha / m`` (Bonferroni).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy_stats

from optbench.core.errors import ConfigError
from optbench.core.spec import Direction

#: Beyond this many seeds per group the normal approximation is returned (t and normal agree).
LARGE_N = 10**9


def _fraction(field: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value < 1.0:
        raise ConfigError(field, value, "a number strictly between 0 and 1")


def _stds(std_a: float, std_b: float) -> None:
    for field, value in (("std_a", std_a), ("std_b", std_b)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ConfigError(field, value, "a finite number >= 0")


def _difference(difference: float) -> None:
    if isinstance(difference, bool) or not isinstance(difference, int | float) \
            or not math.isfinite(difference) or difference == 0:
        raise ConfigError("difference", difference, "a finite non-zero number (in the metric's units)")


def welch_power(n: int, std_a: float, std_b: float, difference: float, *, alpha: float = 0.05) -> float:
    """Power of the two-sided Welch t-test with ``n`` values per group to detect ``difference``.

    Args:
        n: values (seeds) per group, >= 2.
        std_a / std_b: the groups' standard deviations (metric units, >= 0).
        difference: true difference of the means (metric units, non-zero; sign ignored).
        alpha: significance level, in (0, 1).

    Returns:
        The probability in [0, 1] of rejecting equal means; 1.0 when both stds are 0.

    Raises:
        ConfigError: ``n < 2``, a negative std, a zero difference, alpha outside (0, 1).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ConfigError("n", n, "an integer >= 2")
    _stds(std_a, std_b)
    _difference(difference)
    _fraction("alpha", alpha)
    va, vb = float(std_a) ** 2, float(std_b) ** 2
    if va + vb == 0.0:
        return 1.0
    df = (n - 1) * (va + vb) ** 2 / (va**2 + vb**2)
    ncp = abs(difference) / math.sqrt((va + vb) / n)
    critical = _scipy_stats.t.ppf(1.0 - alpha / 2.0, df)
    power = _scipy_stats.nct.sf(critical, df, ncp) + _scipy_stats.nct.cdf(-critical, df, ncp)
    return float(min(1.0, max(0.0, power)))


def seeds_needed(std_a: float, std_b: float, difference: float, *, alpha: float = 0.05,
                 power: float = 0.8) -> int:
    """Smallest number of seeds per recipe for the two-sided Welch t-test to detect ``difference``.

    Starts from the normal-approximation count ``(z_{1-alpha/2} + z_power)^2 (s_a^2 + s_b^2) / d^2``,
    a lower bound (the t distribution has heavier tails), and increases ``n`` until
    :func:`welch_power` reaches ``power``. Beyond :data:`LARGE_N` the normal count is returned.

    Args:
        std_a / std_b: standard deviations over seeds of the two recipes (metric units, >= 0).
        difference: the difference of means to detect (metric units, non-zero; e.g. 0.005 for
            0.5 percentage points of accuracy in [0, 1]).
        alpha: significance level, in (0, 1).
        power: the probability of detecting it, in (0, 1).

    Returns:
        Seeds per recipe, >= 2 (2 when both stds are 0: any difference is then certain).

    Raises:
        ConfigError: a negative or non-finite std, a zero or non-finite difference, alpha or
            power outside (0, 1).
    """
    _stds(std_a, std_b)
    _difference(difference)
    _fraction("alpha", alpha)
    _fraction("power", power)
    variance = float(std_a) ** 2 + float(std_b) ** 2
    if variance == 0.0:
        return 2
    z = _scipy_stats.norm.ppf(1.0 - alpha / 2.0) + _scipy_stats.norm.ppf(power)
    normal = z * z * variance / float(difference) ** 2
    if normal > LARGE_N:
        return math.ceil(normal)
    n = max(2, math.floor(normal))
    while welch_power(n, std_a, std_b, difference, alpha=alpha) < power:
        n += 1
    return n


@dataclass(frozen=True)
class SeedAdvice:
    """How many seeds would separate the two best recipes.

    Attributes:
        first / second: the two best recipes by mean (among those with >= 2 values).
        n_first / n_second: seeds they have now; std_first / std_second: their sample stds.
        observed_difference: ``|mean_first - mean_second|`` (metric units).
        seeds_for_observed: seeds per recipe to detect the observed difference (None when it is 0).
        difference: the user's difference of interest (None when not given).
        seeds_for_difference: seeds per recipe to detect ``difference`` (None when not given).
        alpha / power: the test's level and the wanted power.
    """

    first: str
    second: str
    n_first: int
    n_second: int
    std_first: float
    std_second: float
    observed_difference: float
    seeds_for_observed: int | None
    difference: float | None
    seeds_for_difference: int | None
    alpha: float
    power: float


def seed_advice(groups: Mapping[str, Sequence[float]], direction: Direction, *, difference: float | None = None,
                alpha: float = 0.05, power: float = 0.8) -> SeedAdvice | None:
    """Apply :func:`seeds_needed` to a study's two best recipes, with their observed stds.

    Args:
        groups: ``{label: values}``, one value per seed.
        direction: the metric's direction (which mean is best).
        difference: also answer for this difference (metric units), e.g. 0.005 = 0.5 pp.
        alpha / power: as in :func:`seeds_needed`.

    Returns:
        A :class:`SeedAdvice`, or None when fewer than two recipes have 2 or more values (no std).

    Raises:
        ConfigError: a bad direction, alpha, power or difference.
        ValueError: a NaN or infinite value.
    """
    if not isinstance(direction, Direction):
        raise ConfigError("direction", direction, [d.value for d in Direction])
    _fraction("alpha", alpha)
    _fraction("power", power)
    if difference is not None:
        _difference(difference)
    arrays = {label: np.asarray(v, dtype=np.float64).reshape(-1) for label, v in groups.items()}
    if any(not np.all(np.isfinite(a)) for a in arrays.values()):
        raise ValueError("seed_advice() got NaN or infinite values; drop them first")
    sign = -1.0 if direction is Direction.MAXIMIZE else 1.0
    ranked = sorted((s for s, a in arrays.items() if a.size >= 2), key=lambda s: (sign * float(arrays[s].mean()), s))
    if len(ranked) < 2:
        return None
    a, b = arrays[ranked[0]], arrays[ranked[1]]
    sa, sb = float(a.std(ddof=1)), float(b.std(ddof=1))
    observed = abs(float(a.mean() - b.mean()))
    return SeedAdvice(
        first=ranked[0], second=ranked[1], n_first=int(a.size), n_second=int(b.size), std_first=sa, std_second=sb,
        observed_difference=observed,
        seeds_for_observed=seeds_needed(sa, sb, observed, alpha=alpha, power=power) if observed > 0 else None,
        difference=None if difference is None else float(difference),
        seeds_for_difference=None if difference is None else seeds_needed(sa, sb, difference, alpha=alpha,
                                                                          power=power),
        alpha=float(alpha), power=float(power))


__all__ = ["LARGE_N", "SeedAdvice", "seed_advice", "seeds_needed", "welch_power"]
