"""The ranking table, rendered for the terminal (rich) and as GitHub Markdown.

Both renderings show the same columns, built once by :func:`ranking_cells`:
rank, optimizer, final metric (mean ± std over seeds and its bootstrap CI), best
validation metric, epochs to target (mean ± std over the runs that reached it, and
"k/n reached"), training samples/s, the costs runs recorded (optimizer state bytes per parameter and
median step time; model parameters, bytes, FLOPs and latency: :data:`COST_COLUMNS`, shown when
present), the tie-aware rank with the Holm-corrected Welch and
Mann-Whitney p-values against the best recipe, diverged and failed counts. Missing numbers
(no value, or a std from one seed) render as "—".

Further tables of the reports: :func:`time_to_target_cells` (epochs, steps and seconds with a
censoring-aware median), :func:`pairwise_cells` (every pair of recipes) and
:func:`trace_cells` (the runs behind each row); :func:`markdown_table` renders any of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.table import Table

from optbench.analysis.pairwise import PairwiseTable
from optbench.analysis.stats import Summary
from optbench.analysis.summary import RecipeSummary
from optbench.core.spec import Direction

DASH = "—"


def _num(value: float, percent: bool) -> str:
    if math.isnan(value):
        return DASH
    return f"{100.0 * value:.2f}" if percent else f"{value:.4g}"


def _mean_std(s: Summary, percent: bool) -> str:
    if math.isnan(s.mean):
        return DASH
    if math.isnan(s.std):
        return _num(s.mean, percent)
    return f"{_num(s.mean, percent)} ± {_num(s.std, percent)}"


def _ci(s: Summary, percent: bool) -> str:
    if math.isnan(s.ci_low):
        return DASH
    return f"[{_num(s.ci_low, percent)}, {_num(s.ci_high, percent)}]"


def _epochs(r: RecipeSummary) -> str:
    s = r.epochs_to_target
    reached = f"({r.n_reached}/{r.n_reached + r.n_censored})"
    if math.isnan(s.mean):
        return f"{DASH} {reached}"
    spread = "" if math.isnan(s.std) else f" ± {s.std:.1f}"
    return f"{s.mean:.1f}{spread} {reached}"


def _throughput(s: Summary) -> str:
    if math.isnan(s.mean):
        return DASH
    return f"{s.mean:,.0f}" + ("" if math.isnan(s.std) else f" ± {s.std:,.0f}")


def _p(p: float) -> str:
    if math.isnan(p):
        return f"p={DASH}"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _vs_best(r: RecipeSummary, is_best: bool) -> str:
    if is_best:
        return "best"
    if math.isnan(r.final_test.mean):
        return f"{r.tie_rank} {DASH}".strip()
    return (f"{r.tie_rank} " if r.tie_rank else "") + ("≈ " if r.tied_with_best else "") + _p(r.p_vs_best) \
        + " · MW " + _p(r.p_mann_whitney_vs_best)


def _target_header(summaries: Sequence[RecipeSummary]) -> str:
    if not summaries:
        return "epochs to target"
    r = summaries[0]
    sign = "≥" if r.target_direction is Direction.MAXIMIZE else "≤"
    return f"epochs to {r.target_key} {sign} {r.target_value:g}"


def _best_index(summaries: Sequence[RecipeSummary]) -> int | None:
    for i, r in enumerate(summaries):
        if r.rank == 1 and not math.isnan(r.final_test.mean):
            return i
    return None


#: Cost columns of the ranking table, shown when some recipe recorded them: (cost key, header,
#: format of the mean). Keys are those of :func:`optbench.analysis.costs.run_costs`.
COST_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("optimizer_cost.state_bytes_per_param", "state B/param", "{:.3g}"),
    ("optimizer_cost.step_us_median", "step µs", "{:,.0f}"),
    ("model_cost.parameters", "params", "{:,.0f}"),
    ("model_cost.nonzero_parameters", "nonzero params", "{:,.0f}"),
    ("model_cost.model_bytes", "model bytes", "{:,.0f}"),
    ("model_cost.flops", "FLOPs", "{:.3g}"),
    ("model_cost.latency_ms_batch_1", "latency ms (1)", "{:.3g}"),
    ("model_cost.latency_ms_batch_256", "latency ms (256)", "{:.3g}"),
)


def cost_columns(summaries: Sequence[RecipeSummary]) -> list[tuple[str, str, str]]:
    """The :data:`COST_COLUMNS` some recipe of ``summaries`` has a value for."""
    return [c for c in COST_COLUMNS if any(c[0] in r.costs and not math.isnan(r.costs[c[0]].mean)
                                           for r in summaries)]


def _cost(r: RecipeSummary, key: str, fmt: str) -> str:
    s = r.costs.get(key)
    return DASH if s is None or math.isnan(s.mean) else fmt.format(s.mean)


def ranking_cells(summaries: Sequence[RecipeSummary], *, final_label: str = "final test acc",
                  best_label: str = "best valid acc", final_as_percent: bool = True,
                  best_as_percent: bool = True) -> tuple[list[str], list[list[str]]]:
    """Headers and rows (strings) of the ranking table, in the order given.

    Args:
        summaries: from :func:`optbench.analysis.summarize_runs` (already ranked).
        final_label / best_label: names of the final and best metrics in the headers.
        final_as_percent / best_as_percent: show those metrics x 100 with "(%)" in the
            header (for accuracies in [0, 1]); otherwise 4 significant digits.

    Returns:
        ``(headers, rows)``; every row has ``len(headers)`` cells.
    """
    confidence = summaries[0].final_test.confidence if summaries else 0.95
    unit_final = " (%)" if final_as_percent else ""
    unit_best = " (%)" if best_as_percent else ""
    costs = cost_columns(summaries)
    headers = ["#", "optimizer", f"{final_label}{unit_final}", f"{confidence:.0%} CI{unit_final}",
               f"{best_label}{unit_best}", _target_header(summaries), "samples/s",
               *(header for _, header, _ in costs), "tie rank · vs best", "diverged", "failed"]
    best = _best_index(summaries)
    rows = [
        [str(r.rank), r.label, _mean_std(r.final_test, final_as_percent),
         _ci(r.final_test, final_as_percent), _mean_std(r.best_valid, best_as_percent),
         _epochs(r), _throughput(r.samples_per_second), *(_cost(r, key, fmt) for key, _, fmt in costs),
         _vs_best(r, i == best), f"{r.n_diverged}/{r.n_runs}", f"{r.n_failed}/{r.n_runs}"]
        for i, r in enumerate(summaries)
    ]
    return headers, rows


def ranking_legend(summaries: Sequence[RecipeSummary]) -> str:
    """One paragraph explaining the table's columns and markers (plain text)."""
    if not summaries:
        return "No runs."
    r = summaries[0]
    m = r.n_comparisons
    test = "Welch's t-test" if r.tie_test == "welch" else "the Mann-Whitney U test"
    return (
        f"Mean ± std over seeds; CI: bootstrap percentile {r.final_test.confidence:.0%} interval "
        f"of the mean. Final values are {r.final_key} at each run's last recorded epoch (a "
        f"diverged run counts with its last epoch before divergence; failed runs are left out); "
        f"best is the best {r.best_key} over epochs. Epochs to target: mean over the runs that "
        f"reached it, (reached/runs); runs that never reached it are censored, not dropped. "
        f"# orders by mean. Tie rank: walking down that order, a recipe shares the rank of its "
        f"group's leader (1=) unless {test} finds it different at {r.alpha:.0%}; ≈ marks a CI "
        f"overlapping the best's (a marker, not a test); p: Welch's t-test, MW p: Mann-Whitney U "
        f"test against the best, each Holm-corrected over all {m} pair{'s' if m != 1 else ''} of "
        f"recipes." + _cost_legend(summaries)
    )


def _cost_legend(summaries: Sequence[RecipeSummary]) -> str:
    keys = {key for key, _, _ in cost_columns(summaries)}
    words = []
    if "optimizer_cost.state_bytes_per_param" in keys:
        words.append("state B/param: bytes of optimizer state per trained parameter after the first step")
    if "optimizer_cost.step_us_median" in keys:
        words.append("step µs: median wall time of optimizer.step() (every 8th step timed)")
    if any(k.startswith("model_cost.") for k in keys):
        words.append("model columns: the trained model's size, forward FLOPs and median inference latency")
    return (" Costs (means over seeds): " + "; ".join(words) + ".") if words else ""


def ranking_table(summaries: Sequence[RecipeSummary], *, title: str,
                  final_label: str = "final test acc", best_label: str = "best valid acc",
                  final_as_percent: bool = True, best_as_percent: bool = True,
                  legend: bool = True) -> Table:
    """The ranking as a :class:`rich.table.Table` (print it with a rich ``Console``).

    Args:
        summaries: ranked summaries, best first.
        title: shown above the table.
        final_label, best_label, final_as_percent, best_as_percent: see :func:`ranking_cells`.
        legend: put :func:`ranking_legend` in the table's caption.

    Returns:
        The table; the best row is bold, rows with diverged or failed runs are yellow.
    """
    headers, rows = ranking_cells(summaries, final_label=final_label, best_label=best_label,
                                  final_as_percent=final_as_percent,
                                  best_as_percent=best_as_percent)
    table = Table(title=title, caption=ranking_legend(summaries) if legend else None,
                  caption_justify="left")
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i == 1 else "right",
                         no_wrap=i in (0, 1, 3))
    best = _best_index(summaries)
    for i, (r, row) in enumerate(zip(summaries, rows, strict=True)):
        style = "bold" if i == best else ("yellow" if r.n_diverged or r.n_failed else None)
        table.add_row(*row, style=style)
    return table


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def ranking_markdown(summaries: Sequence[RecipeSummary], *, final_label: str = "final test acc",
                     best_label: str = "best valid acc", final_as_percent: bool = True,
                     best_as_percent: bool = True, legend: bool = True) -> str:
    """The ranking as a GitHub Markdown table (same columns as :func:`ranking_table`).

    Args:
        summaries, final_label, best_label, final_as_percent, best_as_percent: see
            :func:`ranking_cells`.
        legend: append :func:`ranking_legend` as a paragraph after the table.

    Returns:
        Markdown text ending with a newline; ``|`` in labels is escaped.
    """
    headers, rows = ranking_cells(summaries, final_label=final_label, best_label=best_label,
                                  final_as_percent=final_as_percent,
                                  best_as_percent=best_as_percent)
    align = [":---" if i == 1 else "---:" for i in range(len(headers))]
    lines = ["| " + " | ".join(_md_cell(c) for c in cells) + " |"
             for cells in (headers, align, *rows)]
    text = "\n".join(lines) + "\n"
    if legend:
        text += "\n" + ranking_legend(summaries) + "\n"
    return text


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, left: int = 1) -> str:
    """Any table of strings as GitHub Markdown; the first ``left`` columns left-aligned, the rest
    right-aligned; ``|`` escaped. Ends with a newline."""
    align = [":---" if i < left else "---:" for i in range(len(headers))]
    return "\n".join("| " + " | ".join(_md_cell(c) for c in cells) + " |"
                     for cells in (headers, align, *rows)) + "\n"


def _time(value: float, digits: str) -> str:
    if math.isnan(value):
        return DASH
    return "> budget" if math.isinf(value) else format(value, digits)


def _reached_mean(s: Summary, digits: str) -> str:
    if math.isnan(s.mean):
        return DASH
    return format(s.mean, digits) + ("" if math.isnan(s.std) else f" ± {format(s.std, digits)}")


def time_to_target_cells(summaries: Sequence[RecipeSummary]) -> tuple[list[str], list[list[str]]]:
    """Time-to-target per recipe in epochs, optimizer steps and training seconds.

    Columns: recipe, "reached k/n" (non-failed runs), the censoring-aware median in epochs,
    steps and seconds (:func:`optbench.analysis.censored_median`: "> budget" when fewer than
    half reached the target), and mean ± std over the runs that reached it (epochs, steps, s).

    Returns:
        ``(headers, rows)`` of strings, rows in the order given.
    """
    headers = ["recipe", "reached", "median epochs", "median steps", "median train s",
               "mean epochs (reached)", "mean steps (reached)", "mean train s (reached)"]
    rows = [[r.label, f"{r.n_reached}/{r.n_reached + r.n_censored}",
             _time(r.median_epochs_to_target, "g"), _time(r.median_steps_to_target, ",.0f"),
             _time(r.median_seconds_to_target, ".2f"), _reached_mean(r.epochs_to_target, ".1f"),
             _reached_mean(r.steps_to_target, ",.0f"), _reached_mean(r.seconds_to_target, ".2f")]
            for r in summaries]
    return headers, rows


def _pp(p: float) -> str:
    return DASH if math.isnan(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def pairwise_cells(table: PairwiseTable, *, percent: bool = True) -> tuple[list[str], list[list[str]]]:
    """Every pair of recipes: mean difference and both tests, raw and Holm-corrected.

    Args:
        table: from :func:`optbench.analysis.pairwise_comparisons`.
        percent: show the difference in percentage points (metric in [0, 1]).

    Returns:
        ``(headers, rows)``; a row per pair, better mean first; "yes" in a "significant" column
        when the Holm-adjusted p is below the table's alpha.
    """
    unit = " (pp)" if percent else ""
    headers = ["pair", f"mean difference{unit}", "Welch p", "Welch p (Holm)", "MW p", "MW p (Holm)",
               f"significant at {table.alpha:.0%} (Welch / MW)"]
    rows = [[f"{c.a} vs {c.b}", f"{100 * c.difference:+.2f}" if percent else f"{c.difference:+.4g}",
             _pp(c.welch_p), _pp(c.welch_p_holm), _pp(c.mann_whitney_p), _pp(c.mann_whitney_p_holm),
             f"{'yes' if c.welch_significant else 'no'} / {'yes' if c.mann_whitney_significant else 'no'}"]
            for c in table.rows]
    return headers, rows


def trace_cells(summaries: Sequence[RecipeSummary], *, percent: bool = True) -> tuple[list[str], list[list[str]]]:
    """The runs behind each ranking row: every counted run id with its final value, and the runs
    of the recipe that have no value (failed, or diverged before any epoch).

    Returns:
        ``(headers, rows)``; one row per recipe, in the order given.
    """
    headers = ["recipe", f"runs counted: run id = {summaries[0].final_key if summaries else 'final value'}",
               "runs without a value"]
    rows = []
    for r in summaries:
        counted = ", ".join(f"{rid} = {_num(v, percent)}" for rid, v in zip(r.final_run_ids, r.final_values,
                                                                           strict=True))
        lost = [rid for rid in r.run_ids if rid not in set(r.final_run_ids)]
        rows.append([r.label, counted or DASH, ", ".join(lost) or DASH])
    return headers, rows
