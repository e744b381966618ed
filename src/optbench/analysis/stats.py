"""Statistics over seeds: mean, standard deviation, bootstrap confidence interval, tests.

Everything here takes plain numbers and returns plain data (no plotting, no printing).

Sources:

* Bootstrap percentile interval: Efron & Tibshirani, *An Introduction to the Bootstrap*
  (1993), ch. 13; computed with :func:`scipy.stats.bootstrap`.
* Welch's unequal-variance t-test: Welch, *Biometrika* 34 (1947); computed with
  :func:`scipy.stats.ttest_ind_from_stats` (``equal_var=False``).
* Holm's step-down correction: Holm, *Scand. J. Statist.* 6 (1979), 65-70.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy_stats

from optbench.errors import ConfigError


@dataclass(frozen=True)
class Summary:
    """Mean, spread and confidence interval of one quantity over ``n`` values (e.g. seeds).

    Attributes:
        n: number of values summarized.
        mean: arithmetic mean (NaN when ``n == 0``).
        std: sample standard deviation with ``ddof=1`` (NaN when ``n < 2``).
        ci_low / ci_high: bootstrap percentile confidence interval of the mean, in the
            values' own units; ``(mean, mean)`` when all values are equal, NaN when ``n < 2``.
        confidence: the interval's nominal coverage, e.g. ``0.95``.
    """

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    confidence: float

    def overlaps(self, other: Summary) -> bool:
        """True when the two confidence intervals share at least one point.

        False when either interval is undefined (NaN). Overlap is **not** a test: two
        95% intervals can overlap while the difference is significant at 5%; only
        non-overlap is (conservative) evidence of a difference.
        """
        if any(math.isnan(v) for v in (self.ci_low, self.ci_high, other.ci_low, other.ci_high)):
            return False
        return self.ci_low <= other.ci_high and other.ci_low <= self.ci_high


def _check_confidence(confidence: float) -> None:
    if isinstance(confidence, bool) or not isinstance(confidence, int | float) \
            or not 0.0 < confidence < 1.0:
        raise ConfigError("confidence", confidence, "a number strictly between 0 and 1")


def summarize(values: Sequence[float], confidence: float = 0.95, n_resamples: int = 10_000,
              seed: int = 0) -> Summary:
    """Mean, std (``ddof=1``) and a bootstrap confidence interval of the mean of ``values``.

    The interval is the bootstrap **percentile** interval (``method="percentile"`` of
    :func:`scipy.stats.bootstrap`; Efron & Tibshirani 1993, ch. 13), not BCa: with the
    3-10 seeds a benchmark affords, BCa's acceleration is a jackknife estimate from 3-10
    points and is itself very noisy, and BCa degenerates (NaN plus a warning) whenever the
    resampled means are nearly all equal. The percentile interval is simple, always
    defined for ``n >= 2``, and lies within the range of the data. Be aware that any
    bootstrap interval from a handful of seeds under-covers (it cannot be wider than the
    spread of the values seen); read it as "the spread of plausible means", not a guarantee.

    Args:
        values: the numbers, shape ``(n,)``, e.g. one final test accuracy per seed.
            ``n == 0`` gives an all-NaN summary with ``n=0``.
        confidence: nominal coverage of the interval, in (0, 1).
        n_resamples: bootstrap resamples (> 0).
        seed: seed of the resampling RNG; the same inputs and seed give the same interval.

    Returns:
        A :class:`Summary`. Special cases, handled without warnings: ``n == 1`` gives
        ``std = ci_low = ci_high = NaN``; all values equal gives ``ci = (mean, mean)``.

    Raises:
        ValueError: when a value is NaN or infinite (the caller decides what to drop).
        ConfigError: for a confidence outside (0, 1) or a non-positive ``n_resamples``.
    """
    _check_confidence(confidence)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples <= 0:
        raise ConfigError("n_resamples", n_resamples, "an integer > 0")
    data = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(data)):
        raise ValueError(f"summarize() got non-finite values {data[~np.isfinite(data)].tolist()}; "
                         "drop or replace them before summarizing")
    n = int(data.size)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan, float(confidence))
    mean = float(np.mean(data))
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan, float(confidence))
    std = float(np.std(data, ddof=1))
    if np.all(data == data[0]):
        value = float(data[0])  # exact, where np.mean may differ in the last bit
        return Summary(n, value, 0.0, value, value, float(confidence))
    result = _scipy_stats.bootstrap(
        (data,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
        method="percentile", vectorized=True, axis=-1, rng=np.random.default_rng(seed),
    )
    low, high = result.confidence_interval
    return Summary(n, mean, std, float(low), float(high), float(confidence))


def welch_p_value(a: Summary, b: Summary) -> float:
    """Two-sided p-value of Welch's t-test (unequal variances) for equal means of ``a`` and ``b``.

    Computed from the summaries' mean, std and n with
    :func:`scipy.stats.ttest_ind_from_stats` (``equal_var=False``; Welch 1947), which
    avoids scipy's precision-loss warning on nearly constant samples.

    Returns:
        The p-value in [0, 1]; NaN when either sample has fewer than 2 values or both have
        zero variance (the test is undefined there).
    """
    if a.n < 2 or b.n < 2:
        return math.nan
    if a.std == 0.0 and b.std == 0.0:
        return math.nan
    result = _scipy_stats.ttest_ind_from_stats(a.mean, a.std, a.n, b.mean, b.std, b.n,
                                               equal_var=False)
    return float(result.pvalue)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (Holm 1979), in the input order.

    With the ``m`` defined p-values sorted ascending ``p_(1) <= ... <= p_(m)``, the adjusted
    value is ``max_{j <= i} min(1, (m - j + 1) p_(j))``; rejecting where the adjusted value
    is below ``alpha`` controls the family-wise error rate at ``alpha``. NaN entries stay
    NaN and do not count towards ``m``.

    Args:
        p_values: raw p-values, each in [0, 1] or NaN.

    Returns:
        Adjusted p-values, same length and order as ``p_values``.

    Raises:
        ValueError: for a value outside [0, 1].
    """
    values = [float(p) for p in p_values]
    for p in values:
        if not math.isnan(p) and not 0.0 <= p <= 1.0:
            raise ValueError(f"p-value {p} outside [0, 1]")
    defined = sorted((p, i) for i, p in enumerate(values) if not math.isnan(p))
    m = len(defined)
    adjusted = list(values)
    running = 0.0
    for rank, (p, index) in enumerate(defined):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted
