"""optbench.analysis: statistics over seeds, rankings and curves (data only, never plots).

Public API:

* :func:`summarize` / :class:`Summary` — mean, std and bootstrap CI of numbers.
* :func:`welch_p_value`, :func:`holm` — Welch's t-test and Holm's correction.
* :func:`summarize_runs` / :class:`RecipeSummary` / :class:`RunProblem` — per-recipe
  statistics over seeds and the ranking.
* :func:`curve_bands` / :class:`CurveBand` — learning curves over seeds.
"""

from __future__ import annotations

from optbench.analysis.curves import CurveBand, curve_bands
from optbench.analysis.stats import Summary, holm, summarize, welch_p_value
from optbench.analysis.summary import RecipeSummary, RunProblem, summarize_runs

__all__ = [
    "CurveBand",
    "RecipeSummary",
    "RunProblem",
    "Summary",
    "curve_bands",
    "holm",
    "summarize",
    "summarize_runs",
    "welch_p_value",
]
