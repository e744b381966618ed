"""Federated results over seeds: per-round curves and final values with confidence intervals.

Data only (no plotting, no printing): :mod:`optbench.federated.plot` draws what
:func:`round_curves` returns and the CLI prints what :func:`final_rows` returns. Means and 95%
intervals are :func:`optbench.analysis.stats.summarize`'s (bootstrap percentile interval of the
mean over seeds; Efron & Tibshirani 1993).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from optbench.analysis.stats import Summary, summarize
from optbench.federated.simulation import FederatedResult


@dataclass(frozen=True)
class RoundCurve:
    """One strategy's metric against the communication round, over seeds.

    Attributes:
        strategy: the strategy's name.
        key: the metric, e.g. ``"test_accuracy"``.
        rounds: round numbers, shape ``(R + 1,)`` (0 is the initial model).
        mean / ci_low / ci_high: mean over seeds and its confidence interval per round, same shape
            (NaN where fewer than 2 seeds reached the round, for the interval).
        megabytes: mean cumulative megabytes (1e6 bytes) communicated by each round, same shape.
        n: seeds that reached each round (a diverged run stops early).
    """

    strategy: str
    key: str
    rounds: list[int]
    mean: list[float]
    ci_low: list[float]
    ci_high: list[float]
    megabytes: list[float]
    n: list[int]


@dataclass(frozen=True)
class FinalRow:
    """One strategy's final value over seeds.

    Attributes:
        strategy: the strategy's name.
        final: :class:`~optbench.analysis.stats.Summary` of the last round's value (one per seed).
        megabytes: mean total megabytes communicated (down + up).
        seconds: mean wall seconds per run.
        diverged: runs that ended with status ``diverged``.
    """

    strategy: str
    final: Summary
    megabytes: float
    seconds: float
    diverged: int


def _by_strategy(results: Iterable[FederatedResult]) -> dict[str, list[FederatedResult]]:
    groups: dict[str, list[FederatedResult]] = {}
    for r in results:
        groups.setdefault(r.strategy, []).append(r)
    return groups


def _finite(values: Iterable[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def round_curves(results: Sequence[FederatedResult], key: str = "test_accuracy",
                 confidence: float = 0.95) -> dict[str, RoundCurve]:
    """Per strategy (in first-seen order), ``key`` per round: mean and confidence interval over seeds.

    Raises:
        ConfigError: a confidence outside (0, 1) (from :func:`summarize`).
    """
    curves = {}
    for strategy, runs in _by_strategy(results).items():
        length = max(len(r.rounds) for r in runs)
        rounds, mean, low, high, mb, n = [], [], [], [], [], []
        for i in range(length):
            reached = [r.rounds[i] for r in runs if len(r.rounds) > i]
            s = summarize(_finite(float(rec.get(key, math.nan)) for rec in reached), confidence)
            rounds.append(int(reached[0]["round"]))
            mean.append(s.mean)
            low.append(s.ci_low)
            high.append(s.ci_high)
            mb.append(sum(rec["bytes"] for rec in reached) / len(reached) / 1e6)
            n.append(s.n)
        curves[strategy] = RoundCurve(strategy, key, rounds, mean, low, high, mb, n)
    return curves


def final_rows(results: Sequence[FederatedResult], key: str = "test_accuracy",
               confidence: float = 0.95) -> list[FinalRow]:
    """Per strategy (in first-seen order), the last round's ``key`` summarized over seeds, with
    the mean communication and wall time. A diverged run counts with its last finite value
    dropped when it is NaN."""
    rows = []
    for strategy, runs in _by_strategy(results).items():
        rows.append(FinalRow(strategy=strategy, final=summarize(_finite(r.final(key) for r in runs), confidence),
                             megabytes=sum(r.rounds[-1]["bytes"] for r in runs) / len(runs) / 1e6,
                             seconds=sum(r.seconds for r in runs) / len(runs),
                             diverged=sum(r.status == "diverged" for r in runs)))
    return rows


__all__ = ["FinalRow", "RoundCurve", "final_rows", "round_curves"]
