"""optbench.analysis: statistics over seeds, rankings and curves (data only, never plots).

Public API:

* :func:`summarize` / :class:`Summary` — mean, std and bootstrap CI of numbers.
* :func:`welch_p_value`, :func:`welch_p_value_samples`, :func:`mann_whitney_p_value`,
  :func:`mann_whitney_min_p`, :func:`holm` — tests and Holm's correction.
* :func:`censored_median` — median time-to-target when some runs never reach it.
* :func:`pairwise_comparisons` / :class:`PairwiseTable` / :class:`PairwiseComparison` — all
  pairs, Welch and Mann-Whitney, Holm-corrected; :func:`rank_with_ties` / :class:`TiedRank`.
* :func:`seeds_needed`, :func:`welch_power`, :func:`seed_advice` / :class:`SeedAdvice` — how
  many seeds detect a difference.
* :func:`summarize_runs` / :class:`RecipeSummary` / :class:`RunProblem` — per-recipe
  statistics over seeds and the ranking.
* :func:`curve_bands` / :class:`CurveBand` — learning curves over seeds.
* :func:`integrated_score` — the performance-profile score (Dahl et al. 2023).
"""

from __future__ import annotations

from optbench.analysis.curves import CurveBand, curve_bands
from optbench.analysis.pairwise import (
    PairwiseComparison,
    PairwiseTable,
    TiedRank,
    pairwise_comparisons,
    rank_with_ties,
)
from optbench.analysis.power import SeedAdvice, seed_advice, seeds_needed, welch_power
from optbench.analysis.report_data import integrated_score
from optbench.analysis.stats import (
    Summary,
    censored_median,
    holm,
    mann_whitney_min_p,
    mann_whitney_p_value,
    summarize,
    welch_p_value,
    welch_p_value_samples,
)
from optbench.analysis.summary import RecipeSummary, RunProblem, summarize_runs

__all__ = [
    "CurveBand",
    "PairwiseComparison",
    "PairwiseTable",
    "RecipeSummary",
    "RunProblem",
    "SeedAdvice",
    "Summary",
    "TiedRank",
    "censored_median",
    "curve_bands",
    "holm",
    "integrated_score",
    "mann_whitney_min_p",
    "mann_whitney_p_value",
    "pairwise_comparisons",
    "rank_with_ties",
    "seed_advice",
    "seeds_needed",
    "summarize",
    "summarize_runs",
    "welch_p_value",
    "welch_p_value_samples",
    "welch_power",
]
