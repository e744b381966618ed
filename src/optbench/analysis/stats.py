"""Statistics over seeds: mean, standard deviation, bootstrap confidence interval, tests.

Everything here takes plain numbers and returns plain data (no plotting, no printing).

Sources:

* Bootstrap percentile interval: Efron & Tibshirani, *An Introduction to the Bootstrap*
  (1993), ch. 13; computed with :func:`scipy.stats.bootstrap`.
* Welch's unequal-variance t-test: Welch, *Biometrika* 34 (1947); computed with
  :func:`scipy.stats.ttest_ind_from_stats` (``equal_var=False``).
* Holm's step-down correction: Holm, *Scand. J. Statist.* 6 (1979), 65-70.
* Mann-Whitney U test: Mann & Whitney, *Ann. Math. Statist.* 18 (1947); computed with
  :func:`scipy.stats.mannwhitneyu`.
* Median time-to-target under censoring: Kaplan & Meier, *JASA* 53 (1958), 457-481.

Pairwise comparisons and the tie-aware ranking are in :mod:`optbench.analysis.pairwise`;
seed counts from power analysis in :mod:`optbench.analysis.power`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from math import comb

import numpy as np
from scipy import stats as _scipy_stats

from optbench.core.errors import ConfigError


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


#: Largest number of distinct splits for which a tied Mann-Whitney test is enumerated exactly.
EXACT_PERMUTATIONS = 9999


def _finite(values: Sequence[float], name: str) -> np.ndarray:
    data = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{name} got non-finite values {data[~np.isfinite(data)].tolist()}")
    return data


def mann_whitney_min_p(n_a: int, n_b: int) -> float:
    """Smallest two-sided p-value the exact Mann-Whitney U test can give with ``n_a`` and ``n_b`` values.

    It is ``min(1, 2 / C(n_a + n_b, n_a))`` (the two most extreme of the equally likely rank
    splits): 1.0 for 1 vs 1, 0.333 for 2 vs 2, 0.1 for 3 vs 3, 0.0286 for 4 vs 4. When it is at
    least ``alpha`` the test cannot reject, whatever the data; NaN when a sample is empty.
    """
    if n_a < 1 or n_b < 1:
        return math.nan
    return min(1.0, 2.0 / comb(n_a + n_b, n_a))


def mann_whitney_p_value(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test (Mann & Whitney 1947) that ``a`` and ``b``
    come from the same distribution (against a shift either way).

    Computed with :func:`scipy.stats.mannwhitneyu` (``alternative="two-sided"``):

    * no ties and a sample of at most 8 values: scipy's **exact** null distribution of U;
    * ties and at most :data:`EXACT_PERMUTATIONS` distinct splits of the pooled values (e.g.
      up to 7 vs 7 seeds): the exact permutation distribution, enumerated completely
      (:class:`scipy.stats.PermutationMethod`, deterministic, correct with ties);
    * otherwise scipy's normal approximation with its tie correction.

    The two-sided p is scipy's: twice the smaller one-sided p, capped at 1.

    Small samples are answered honestly, not refused: the p-value cannot fall below
    :func:`mann_whitney_min_p` (0.1 for 3 vs 3 seeds, so the test can never be significant at
    5% there), one value against one gives 1.0, and samples whose values are all equal give 1.0.

    Args:
        a, b: the two samples, shapes ``(n_a,)`` and ``(n_b,)``, e.g. final accuracies per seed.

    Returns:
        The p-value in [0, 1]; NaN when either sample is empty.

    Raises:
        ValueError: a value is NaN or infinite.
    """
    x, y = _finite(a, "mann_whitney_p_value()"), _finite(b, "mann_whitney_p_value()")
    if x.size == 0 or y.size == 0:
        return math.nan
    pooled = np.concatenate([x, y])
    if np.all(pooled == pooled[0]):
        return 1.0
    tied = np.unique(pooled).size < pooled.size
    if not tied:
        method: object = "exact" if min(x.size, y.size) <= 8 else "asymptotic"
    elif min(x.size, y.size) == 1:  # scipy's permutation test needs 2+ values per sample
        return _lone_value_tied_p(x, y)
    elif comb(x.size + y.size, x.size) <= EXACT_PERMUTATIONS:
        method = _scipy_stats.PermutationMethod(n_resamples=EXACT_PERMUTATIONS)
    else:
        method = "asymptotic"
    result = _scipy_stats.mannwhitneyu(x, y, alternative="two-sided", method=method)
    return float(min(1.0, max(0.0, result.pvalue)))


def _lone_value_tied_p(x: np.ndarray, y: np.ndarray) -> float:
    """Exact two-sided permutation p of the rank-sum statistic when one sample holds a single value
    and there are ties: the lone value's mid-rank against the mid-ranks of all ``n + 1`` positions it
    could take (each equally likely under the null), p = 2 * min(P(R >= r), P(R <= r)), capped at 1."""
    from scipy.stats import rankdata

    lone, other = (x, y) if x.size == 1 else (y, x)
    ranks = rankdata(np.concatenate([lone, other]))
    observed = ranks[0]
    upper = float(np.mean(ranks >= observed - 1e-9))
    lower = float(np.mean(ranks <= observed + 1e-9))
    return min(1.0, 2.0 * min(upper, lower))


def welch_p_value_samples(a: Sequence[float], b: Sequence[float]) -> float:
    """:func:`welch_p_value` of two raw samples (shapes ``(n_a,)``, ``(n_b,)``), without bootstrapping.

    Returns:
        The two-sided Welch p-value; NaN when a sample has fewer than 2 values or both are constant.

    Raises:
        ValueError: a value is NaN or infinite.
    """
    x, y = _finite(a, "welch_p_value_samples()"), _finite(b, "welch_p_value_samples()")
    return welch_p_value(_moments(x), _moments(y))


def _moments(x: np.ndarray) -> Summary:
    """A :class:`Summary` with mean, std and n only (no interval), for the tests."""
    n = int(x.size)
    mean = float(np.mean(x)) if n else math.nan
    std = float(np.std(x, ddof=1)) if n > 1 else math.nan
    return Summary(n, mean, std, math.nan, math.nan, 0.95)


def censored_median(times: Sequence[float | None]) -> float:
    """Median time-to-target over runs of which some never reached the target (censored).

    ``None`` marks a run that did not reach the target within its budget. Every run is
    censored at the end of its budget or never reaches it (a diverged run cannot reach it
    later), so no run leaves the risk set before an observed event and the Kaplan-Meier
    estimator (Kaplan & Meier 1958) reduces to the empirical distribution with censored runs
    at ``+inf``. Its median is the smallest observed time ``t`` by which at least half of the
    runs had reached the target: the ``ceil(n / 2)``-th smallest time, counting censored runs
    as infinite (the lower median for even ``n``; e.g. ``[2, 3, None, None] -> 3``).

    Args:
        times: one entry per run, shape ``(n,)``: a time (epochs, steps or seconds) or None.

    Returns:
        The median; ``inf`` when fewer than half of the runs reached the target (report it as
        "> budget"); NaN when ``times`` is empty.

    Raises:
        ValueError: a negative or non-finite time.
    """
    reached = [float(t) for t in times if t is not None]
    if any(not math.isfinite(t) or t < 0 for t in reached):
        raise ValueError(f"censored_median() got invalid times {reached}; times are finite and >= 0")
    n = len(times)
    if n == 0:
        return math.nan
    k = (n + 1) // 2  # at least half of the runs must have reached the target
    if len(reached) < k:
        return math.inf
    return sorted(reached)[k - 1]
