"""Pairwise comparisons of recipes and a ranking that marks statistical ties.

Data in, dataclasses out; nothing here plots or prints.

* :func:`pairwise_comparisons` — every pair of recipes: mean difference, Welch's t-test
  (Welch 1947) and the Mann-Whitney U test (Mann & Whitney 1947), each Holm-corrected
  (Holm 1979) over the family of all pairs.
* :func:`rank_with_ties` — ranks where recipes not significantly different from their
  group's leader share a rank ("1=", "1=", "3").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from optbench.analysis.stats import holm, mann_whitney_p_value, welch_p_value_samples
from optbench.core.errors import ConfigError
from optbench.core.spec import Direction

#: Tests a ranking can be based on.
TESTS = ("welch", "mann_whitney")


@dataclass(frozen=True)
class PairwiseComparison:
    """One pair of recipes; ``a`` has the better (or equal) mean under the direction.

    Attributes:
        a / b: labels; n_a / n_b: values per side (seeds); mean_a / mean_b: their means.
        difference: ``mean_a - mean_b`` in the metric's units (>= 0 when maximizing, <= 0
            when minimizing).
        welch_p / mann_whitney_p: raw two-sided p-values (NaN when undefined, see
            :func:`optbench.analysis.stats.welch_p_value` and
            :func:`optbench.analysis.stats.mann_whitney_p_value`).
        welch_p_holm / mann_whitney_p_holm: Holm-adjusted over every pair of the table.
        welch_significant / mann_whitney_significant: adjusted p < alpha (False when NaN).
    """

    a: str
    b: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    difference: float
    welch_p: float
    mann_whitney_p: float
    welch_p_holm: float
    mann_whitney_p_holm: float
    welch_significant: bool
    mann_whitney_significant: bool

    def significant(self, test: str = "welch") -> bool:
        """Whether the Holm-adjusted p of ``test`` ("welch" or "mann_whitney") is below alpha."""
        if test not in TESTS:
            raise ConfigError("test", test, TESTS)
        return self.welch_significant if test == "welch" else self.mann_whitney_significant

    def p_holm(self, test: str = "welch") -> float:
        """The Holm-adjusted p-value of ``test`` ("welch" or "mann_whitney")."""
        if test not in TESTS:
            raise ConfigError("test", test, TESTS)
        return self.welch_p_holm if test == "welch" else self.mann_whitney_p_holm


@dataclass(frozen=True)
class PairwiseTable:
    """All pairs of recipes with at least one value.

    Attributes:
        labels: recipes with values, best mean first (ties by label).
        rows: one :class:`PairwiseComparison` per pair ``(labels[i], labels[j])``, ``i < j``,
            in that order; ``len(rows) == m = k (k - 1) / 2`` (the Holm family size).
        direction: the metric's direction; alpha: the family-wise error rate.
        excluded: labels without any value (in no pair).
    """

    labels: tuple[str, ...]
    rows: tuple[PairwiseComparison, ...]
    direction: Direction
    alpha: float
    excluded: tuple[str, ...]

    def get(self, x: str, y: str) -> PairwiseComparison:
        """The comparison of ``x`` and ``y`` in either order.

        Raises:
            ConfigError: a label that is in no pair.
        """
        for row in self.rows:
            if {row.a, row.b} == {x, y} and x != y:
                return row
        raise ConfigError("pair", (x, y), [f"{r.a} vs {r.b}" for r in self.rows] or "none")


def _check(direction: Direction, alpha: float) -> None:
    if not isinstance(direction, Direction):
        raise ConfigError("direction", direction, [d.value for d in Direction])
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0.0 < alpha < 1.0:
        raise ConfigError("alpha", alpha, "a number strictly between 0 and 1")


def _ordered(groups: Mapping[str, Sequence[float]], direction: Direction) -> tuple[list[str], list[str]]:
    """(labels with values sorted best mean first, labels without values sorted)."""
    sign = -1.0 if direction is Direction.MAXIMIZE else 1.0
    valued = [s for s in groups if len(groups[s])]
    for label in valued:
        if not np.all(np.isfinite(np.asarray(groups[label], dtype=np.float64))):
            raise ValueError(f"values of {label!r} contain NaN or infinity; drop them first")
    valued.sort(key=lambda s: (sign * float(np.mean(groups[s])), s))
    return valued, sorted(s for s in groups if not len(groups[s]))


def pairwise_comparisons(groups: Mapping[str, Sequence[float]], direction: Direction, *,
                         alpha: float = 0.05) -> PairwiseTable:
    """Compare every pair of recipes with Welch's t-test and the Mann-Whitney U test.

    All ``k (k - 1) / 2`` pairs are compared (not only each against the best), so ties among
    the lower-ranked recipes are visible too; the Holm correction (Holm 1979) runs over that
    whole family, separately for each test, so each test controls the family-wise error rate
    at ``alpha``. Welch's test compares means without assuming equal variances (Welch 1947);
    the Mann-Whitney test compares the distributions by ranks (Mann & Whitney 1947) and needs
    at least 4 values per side to ever reach 5% (see :func:`~optbench.analysis.stats.mann_whitney_min_p`).

    Args:
        groups: ``{label: values}``, one value per seed (shape ``(n_label,)``); a label with no
            value is listed in ``excluded``.
        direction: whether larger (MAXIMIZE) or smaller (MINIMIZE) values are better.
        alpha: family-wise error rate, in (0, 1).

    Returns:
        A :class:`PairwiseTable`; ``rows`` is empty with fewer than two valued labels.

    Raises:
        ConfigError: a bad direction or alpha.
        ValueError: a NaN or infinite value.
    """
    _check(direction, alpha)
    labels, excluded = _ordered(groups, direction)
    raw = []
    for x, y in combinations(labels, 2):
        a, b = np.asarray(groups[x], dtype=np.float64), np.asarray(groups[y], dtype=np.float64)
        raw.append((x, y, a, b, welch_p_value_samples(a, b), mann_whitney_p_value(a, b)))
    welch_holm = holm([r[4] for r in raw])
    mw_holm = holm([r[5] for r in raw])
    rows = tuple(
        PairwiseComparison(a=x, b=y, n_a=int(a.size), n_b=int(b.size), mean_a=float(a.mean()),
                           mean_b=float(b.mean()), difference=float(a.mean() - b.mean()),
                           welch_p=pw, mann_whitney_p=pm, welch_p_holm=hw, mann_whitney_p_holm=hm,
                           welch_significant=hw < alpha, mann_whitney_significant=hm < alpha)
        for (x, y, a, b, pw, pm), hw, hm in zip(raw, welch_holm, mw_holm, strict=True))
    return PairwiseTable(tuple(labels), rows, direction, float(alpha), tuple(excluded))


@dataclass(frozen=True)
class TiedRank:
    """One recipe's place in a ranking with ties.

    Attributes:
        label: the recipe; mean / n: mean and count of its values (NaN / 0 without values).
        rank: competition rank of its group: 1 + the number of recipes in better groups.
        rank_label: ``rank`` followed by ``"="`` when the group has several members ("1=").
        group: 1-based index of its tie group (best group first).
        leader: label of the group's leader (the group's best mean).
        p_vs_leader: Holm-adjusted p of the ranking's test against the leader (NaN for the
            leader itself and for recipes without values).
    """

    label: str
    mean: float
    n: int
    rank: int
    rank_label: str
    group: int
    leader: str
    p_vs_leader: float


def rank_with_ties(groups: Mapping[str, Sequence[float]], direction: Direction, *, alpha: float = 0.05,
                   test: str = "welch", comparisons: PairwiseTable | None = None) -> list[TiedRank]:
    """Rank recipes by mean, letting recipes that are not significantly different share a rank.

    Algorithm (sequential grouping, deterministic):

    1. Sort the recipes with values by mean, best first under ``direction`` (ties by label).
    2. The first recipe leads group 1. Walk down the list: a recipe **joins the current group**
       when its difference from the group's **leader** is not significant (Holm-adjusted p of
       ``test`` >= ``alpha``, or undefined, from :func:`pairwise_comparisons` over all pairs);
       otherwise it **starts a new group** and becomes its leader.
    3. Every member of a group gets the competition rank ``1 + (recipes in better groups)``,
       written with ``"="`` when the group has several members: "1=", "1=", "3".
    4. Recipes without values come last, sharing rank ``k + 1`` in one final group.

    Comparing with the leader (not with the previous recipe) keeps a group from drifting down
    a chain: with A ~ B, B ~ C but A != C, C starts a new group (A "1=", B "1=", C "3") even
    though it is not significantly worse than B; the pairwise table shows that. An undefined
    p-value (e.g. one seed) is never evidence of a difference, so it ties.

    Args:
        groups: ``{label: values}`` (one value per seed).
        direction: the metric's direction.
        alpha: family-wise error rate, in (0, 1).
        test: ``"welch"`` (default; compares means, the quantity ranked) or ``"mann_whitney"``.
        comparisons: a table from :func:`pairwise_comparisons` of the same ``groups``, to reuse
            (its Holm-adjusted p-values do not depend on alpha; ``alpha`` here decides).

    Returns:
        One :class:`TiedRank` per label, best first.

    Raises:
        ConfigError: an unknown test, a bad direction or alpha.
        ValueError: a NaN or infinite value.
    """
    if test not in TESTS:
        raise ConfigError("test", test, TESTS)
    _check(direction, alpha)
    table = comparisons if comparisons is not None else pairwise_comparisons(groups, direction, alpha=alpha)
    labels, empty = _ordered(groups, direction)
    members: list[list[tuple[str, float]]] = []
    for label in labels:
        if members:
            p = table.get(members[-1][0][0], label).p_holm(test)
            if math.isnan(p) or p >= alpha:
                members[-1].append((label, p))
                continue
        members.append([(label, math.nan)])
    out: list[TiedRank] = []
    for index, group in enumerate(members, start=1):
        rank = len(out) + 1
        text = f"{rank}=" if len(group) > 1 else str(rank)
        out += [TiedRank(label, float(np.mean(groups[label])), len(groups[label]), rank, text, index,
                         group[0][0], p) for label, p in group]
    rank = len(labels) + 1
    out += [TiedRank(label, math.nan, 0, rank, f"{rank}=" if len(empty) > 1 else str(rank), len(members) + 1,
                     empty[0], math.nan) for label in empty]
    return out


__all__ = ["TESTS", "PairwiseComparison", "PairwiseTable", "TiedRank", "pairwise_comparisons", "rank_with_ties"]
