"""``summary.md``: what ran, the ranking, the runs behind it, time-to-target, pairwise tests,
how sure we are (with the seeds needed), and every run that went wrong."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from optbench.analysis.pairwise import PairwiseTable, pairwise_comparisons
from optbench.analysis.power import seed_advice
from optbench.analysis.summary import RecipeSummary, RunProblem
from optbench.core.spec import Direction, RunStatus
from optbench.core.urls import redact_text
from optbench.report.tables import (
    markdown_table,
    pairwise_cells,
    ranking_markdown,
    time_to_target_cells,
    trace_cells,
)


def _fmt(value: float, percent: bool) -> str:
    return f"{100.0 * value:.2f}%" if percent else f"{value:.4g}"


def _names(labels: Sequence[str]) -> str:
    return ", ".join(f"**{label}**" for label in labels)


def _best(summaries: Sequence[RecipeSummary]) -> RecipeSummary | None:
    for r in summaries:
        if r.rank == 1 and not math.isnan(r.final_test.mean):
            return r
    return None


def how_sure(summaries: Sequence[RecipeSummary], *, final_label: str = "final test acc",
             final_as_percent: bool = True) -> str:
    """A short paragraph, computed from the summaries, on how clear the ranking is.

    States the best recipe with its CI and seed count, which recipes' CIs overlap it, which
    share its tie-aware rank, what Holm-corrected Welch tests at level ``1 - confidence`` say, a warning when
    fewer than 5 seeds were counted, and who reached the target in all, some or no runs.

    Returns:
        Markdown text (one paragraph, no trailing newline).
    """
    if not summaries:
        return "No runs."
    best = _best(summaries)
    if best is None:
        return "No recipe has a final value (every run failed or diverged before its first epoch)."
    s = best.final_test
    alpha = 1.0 - s.confidence
    ci = ("" if math.isnan(s.ci_low) else
          f", {s.confidence:.0%} CI [{_fmt(s.ci_low, final_as_percent)}, "
          f"{_fmt(s.ci_high, final_as_percent)}]")
    parts = [(f"**{best.label}** ranks first on {final_label} with "
              f"{_fmt(s.mean, final_as_percent)}{ci} over {s.n} seed{'s' if s.n != 1 else ''}.")]
    others = [r for r in summaries if r is not best and not math.isnan(r.final_test.mean)]
    overlap = [r.label for r in others if r.tied_with_best]
    if overlap:
        parts.append(f"The confidence intervals of {_names(overlap)} overlap the best one's, so "
                     "these runs do not clearly separate them from it.")
    elif others:
        parts.append("No other recipe's confidence interval overlaps the best one's.")
    tied = [r.label for r in others if best.tie_group and r.tie_group == best.tie_group]
    if tied:
        parts.append(f"In the tie-aware rank {_names(tied)} share{'s' if len(tied) == 1 else ''} rank "
                     f"{best.tie_rank} with it (no significant difference at {best.alpha:.0%}).")
    worse = [r.label for r in others if not math.isnan(r.p_vs_best) and r.p_vs_best < alpha]
    unclear = [r.label for r in others if not math.isnan(r.p_vs_best) and r.p_vs_best >= alpha]
    undefined = [r.label for r in others if math.isnan(r.p_vs_best)]
    if worse:
        parts.append(f"Welch's t-test with Holm correction finds {_names(worse)} different from "
                     f"the best at the {alpha:.0%} level.")
    if unclear:
        parts.append(f"For {_names(unclear)} the difference from the best is not significant "
                     f"at {alpha:.0%}.")
    if undefined:
        parts.append(f"No test was possible for {_names(undefined)} (fewer than 2 counted "
                     "seeds on one side, or no variation in either).")
    counted = [r.final_test.n for r in summaries if r.final_test.n > 0]
    if counted and min(counted) < 5:
        parts.append(f"With as few as {min(counted)} seed{'s' if min(counted) != 1 else ''} per "
                     "recipe these intervals are rough: a bootstrap cannot show more spread than "
                     "the seeds observed; more seeds would narrow the doubt.")
    all_reached = [r.label for r in summaries if r.n_reached and not r.n_censored]
    never = [r.label for r in summaries if not r.n_reached]
    some = [r.label for r in summaries if r.n_reached and r.n_censored]
    target = f"{best.target_key} {'≥' if best.target_direction is Direction.MAXIMIZE else '≤'} " \
             f"{best.target_value:g}"
    reach = []
    if all_reached:
        reach.append(f"every run of {_names(all_reached)}")
    if some:
        reach.append(f"some runs of {_names(some)}")
    if reach:
        parts.append(f"The target {target} was reached by {' and '.join(reach)}"
                     + (f"; never by {_names(never)}." if never else "."))
    elif never:
        parts.append(f"No run reached the target {target}.")
    return " ".join(parts)


def comparisons_of(summaries: Sequence[RecipeSummary]) -> PairwiseTable | None:
    """:func:`~optbench.analysis.pairwise_comparisons` of the summaries' final values (the same
    family as their p-values), or None without summaries."""
    if not summaries:
        return None
    return pairwise_comparisons({r.label: r.final_values for r in summaries}, summaries[0].final_direction,
                                alpha=summaries[0].alpha)


def seeds_sentence(summaries: Sequence[RecipeSummary], *, difference: float | None = None,
                   percent: bool = True, power: float = 0.8) -> str:
    """One sentence: how many seeds per recipe the two best recipes would need for a two-sided
    Welch test at the summaries' alpha to detect their observed difference with probability
    ``power`` (and ``difference``, in metric units, when given), from their observed stds
    (:func:`optbench.analysis.seed_advice`). "" when fewer than two recipes have 2+ values."""
    if not summaries:
        return ""
    advice = seed_advice({r.label: r.final_values for r in summaries}, summaries[0].final_direction,
                         difference=difference, alpha=summaries[0].alpha, power=power)
    if advice is None:
        return ""

    def amount(x: float) -> str:
        return f"{100 * x:.2f} pp" if percent else f"{x:.4g}"

    level = f"at {advice.alpha:.0%} with {advice.power:.0%} power"
    if advice.seeds_for_observed is None:
        text = f"**{advice.first}** and **{advice.second}** have equal means: no seed count separates them."
    else:
        text = (f"Seeds needed: to tell **{advice.first}** from **{advice.second}** (observed difference "
                f"{amount(advice.observed_difference)}, stds {amount(advice.std_first)} and "
                f"{amount(advice.std_second)} over {advice.n_first} and {advice.n_second} seeds) {level}, "
                f"about {advice.seeds_for_observed} seeds per recipe.")
    if advice.difference is not None and advice.seeds_for_difference is not None:
        text += f" To detect a difference of {amount(advice.difference)}: {advice.seeds_for_difference}."
    return text + " (Welch t-test power from the observed stds; an estimate, itself uncertain.)"


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _problem(label: str, p: RunProblem) -> str:
    verb = {RunStatus.DIVERGED: "diverged", RunStatus.PRUNED: "was pruned"}.get(p.status, "failed")
    plural = "s" if p.epochs_completed != 1 else ""
    what = f"{verb} after {p.epochs_completed} recorded epoch{plural}"
    message = p.error.strip() or "(no message stored)"
    fence = _fence(message)
    body = "\n".join("  " + line for line in [fence, *message.splitlines(), fence])
    return f"- **{label}**, seed {p.seed}, run `{p.run_id}`: {what}.\n{body}"


def problems_markdown(summaries: Sequence[RecipeSummary]) -> str:
    """A Markdown list of every diverged and failed run with its full error message.

    Returns:
        The list, or a sentence saying all runs finished; ends with a newline.
    """
    items = [_problem(r.label, p) for r in summaries for p in r.problems]
    if not items:
        total = sum(r.n_runs for r in summaries)
        return f"None: all {total} run{'s' if total != 1 else ''} finished.\n"
    return "\n".join(items) + "\n"


def summary_markdown(summaries: Sequence[RecipeSummary], *, context: Mapping[str, str],
                     title: str = "optbench comparison", final_label: str = "final test acc",
                     best_label: str = "best valid acc", final_as_percent: bool = True,
                     best_as_percent: bool = True, detect_difference: float | None = None) -> str:
    """The full ``summary.md`` of a comparison.

    Args:
        summaries: ranked summaries from :func:`optbench.analysis.summarize_runs`.
        context: what ran, as ``{name: value}`` in display order, e.g. task, protocol, shared
            hyperparameters, seeds, epochs, train size, command to reproduce. Values are
            inserted as Markdown verbatim (wrap commands in backticks yourself), with every
            credential hidden (a store URL's password: :func:`optbench.core.urls.redact_text`).
        title: the top-level heading.
        final_label, best_label, final_as_percent, best_as_percent: as in
            :func:`optbench.report.tables.ranking_cells`.
        detect_difference: a difference of the final metric (its units, e.g. 0.005 = 0.5 pp)
            for which the seeds needed are stated too; default: for percent metrics 0.005,
            otherwise only the observed difference.

    Returns:
        Markdown text with sections: heading and context, Ranking (table, legend and the runs
        behind each row), Time to target, Pairwise comparisons, How sure (with the seeds
        needed), Diverged and failed runs. Ends with a newline.
    """
    n_runs = sum(r.n_runs for r in summaries)
    counts = (f"{n_runs} runs: {sum(r.n_finished for r in summaries)} finished, "
              f"{sum(r.n_diverged for r in summaries)} diverged, "
              f"{sum(r.n_failed for r in summaries)} failed"
              + (f", {pruned} pruned." if (pruned := sum(r.n_pruned for r in summaries)) else "."))
    if detect_difference is None and final_as_percent:
        detect_difference = 0.005
    lines = [f"# {title}", ""]
    lines += [f"- **{key}:** {redact_text(value)}" for key, value in context.items()]
    lines += ["", counts, "", "## Ranking", "",
              ranking_markdown(summaries, final_label=final_label, best_label=best_label,
                               final_as_percent=final_as_percent,
                               best_as_percent=best_as_percent).rstrip("\n")]
    if summaries:
        lines += ["", "### Runs behind each row", "",
                  markdown_table(*trace_cells(summaries, percent=final_as_percent), left=3).rstrip("\n")]
        target = summaries[0]
        sign = "≥" if target.target_direction is Direction.MAXIMIZE else "≤"
        lines += ["", "## Time to target", "",
                  markdown_table(*time_to_target_cells(summaries)).rstrip("\n"), "",
                  (f"Target {target.target_key} {sign} {target.target_value:g}. Median: the smallest time by "
                   "which at least half of the non-failed runs reached the target (Kaplan-Meier median; runs "
                   "that never reached it, diverged ones included, are censored, never dropped); \"> budget\" "
                   "when fewer than half did. Means are over the runs that reached it. Seconds: training only.")]
    table = comparisons_of(summaries)
    if table is not None and table.rows:
        lines += ["", "## Pairwise comparisons", "",
                  markdown_table(*pairwise_cells(table, percent=final_as_percent)).rstrip("\n"), "",
                  (f"Every pair of recipes on {summaries[0].final_key}; p-values two-sided, Holm-corrected over "
                   f"all {len(table.rows)} pairs per test (Welch's t-test; Mann-Whitney U, whose smallest possible "
                   "p is 0.1 with 3 seeds a side and 0.029 with 4, before the correction).")]
    seeds = seeds_sentence(summaries, difference=detect_difference, percent=final_as_percent)
    lines += ["", "## How sure", "",
              how_sure(summaries, final_label=final_label, final_as_percent=final_as_percent)]
    if seeds:
        lines += ["", seeds]
    lines += ["", "## Diverged and failed runs", "", problems_markdown(summaries).rstrip("\n")]
    return "\n".join(lines) + "\n"
