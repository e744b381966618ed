"""``summary.md``: what ran, the ranking, how sure we are, and every run that went wrong."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from optbench.analysis.summary import RecipeSummary, RunProblem
from optbench.report.tables import ranking_markdown
from optbench.spec import Direction, RunStatus


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

    States the best recipe with its CI and seed count, which recipes' CIs overlap it,
    what Holm-corrected Welch tests at level ``1 - confidence`` say, a warning when
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
    parts = [f"**{best.label}** ranks first on {final_label} with "
             f"{_fmt(s.mean, final_as_percent)}{ci} over {s.n} seed{'s' if s.n != 1 else ''}."]
    others = [r for r in summaries if r is not best and not math.isnan(r.final_test.mean)]
    overlap = [r.label for r in others if r.tied_with_best]
    if overlap:
        parts.append(f"The confidence intervals of {_names(overlap)} overlap the best one's, so "
                     "these runs do not clearly separate them from it.")
    elif others:
        parts.append("No other recipe's confidence interval overlaps the best one's.")
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


def _fence(text: str) -> str:
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _problem(label: str, p: RunProblem) -> str:
    verb = "diverged" if p.status is RunStatus.DIVERGED else "failed"
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
                     best_as_percent: bool = True) -> str:
    """The full ``summary.md`` of a comparison.

    Args:
        summaries: ranked summaries from :func:`optbench.analysis.summarize_runs`.
        context: what ran, as ``{name: value}`` in display order, e.g. task, protocol, shared
            hyperparameters, seeds, epochs, train size, command to reproduce. Values are
            inserted as Markdown verbatim (wrap commands in backticks yourself).
        title: the top-level heading.
        final_label, best_label, final_as_percent, best_as_percent: as in
            :func:`optbench.report.tables.ranking_cells`.

    Returns:
        Markdown text with sections: heading and context, Ranking (table and legend),
        How sure, Diverged and failed runs. Ends with a newline.
    """
    n_runs = sum(r.n_runs for r in summaries)
    counts = (f"{n_runs} runs: {sum(r.n_finished for r in summaries)} finished, "
              f"{sum(r.n_diverged for r in summaries)} diverged, "
              f"{sum(r.n_failed for r in summaries)} failed.")
    lines = [f"# {title}", ""]
    lines += [f"- **{key}:** {value}" for key, value in context.items()]
    lines += ["", counts, "", "## Ranking", "",
              ranking_markdown(summaries, final_label=final_label, best_label=best_label,
                               final_as_percent=final_as_percent,
                               best_as_percent=best_as_percent).rstrip("\n"),
              "", "## How sure", "",
              how_sure(summaries, final_label=final_label, final_as_percent=final_as_percent),
              "", "## Diverged and failed runs", "", problems_markdown(summaries).rstrip("\n")]
    return "\n".join(lines) + "\n"
