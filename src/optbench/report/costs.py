"""The report's cost section of a task: what each recipe costs besides accuracy (optimizer state
memory and step time; model size, FLOPs and latency when runs recorded them), the accuracy-cost
planes with the Pareto front marked, and how optimizers with a parameter-partition contract (Muon)
split the model. Data from :mod:`optbench.analysis.costs`; figures on an Agg canvas, nothing shown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

from optbench.analysis.costs import CostPoint, cost_points, partitions
from optbench.analysis.summary import RecipeSummary
from optbench.core.spec import RunResult
from optbench.report.export import make_table
from optbench.report.figures import _colors, _figure
from optbench.report.page import ReportPage, slug

#: The accuracy-cost planes drawn when runs recorded the cost: (cost key, x-axis label, log x axis).
PLANES: tuple[tuple[str, str, bool], ...] = (
    ("optimizer_cost.step_us_median", "optimizer step time (µs, median)", True),
    ("optimizer_cost.state_bytes_per_param", "optimizer state (bytes per parameter)", False),
    ("model_cost.nonzero_parameters", "nonzero parameters (what a sparse format stores)", True),
    ("model_cost.model_bytes", "model size (bytes, serialized)", True),
    ("model_cost.latency_ms_batch_1", "inference latency, batch of 1 (ms, median)", True),
)


def plot_cost_plane(points: Sequence[CostPoint], *, xlabel: str, ylabel: str, log_x: bool = False,
                    colors: Mapping[str, str] | None = None, title: str | None = None) -> Figure:
    """Final metric (y) against one cost (x): one marker per recipe at its means, error bars of one
    std over seeds on both axes, the Pareto front joined by a dashed line (one ``Line2D``), front
    members drawn filled and the others hollow.

    Args:
        points: from :func:`optbench.analysis.costs.cost_points`.
        xlabel / ylabel: axis labels (with units).
        log_x: logarithmic cost axis.
        colors: label -> colour (default :func:`optbench.report.plots.label_colors`).
    """
    many = len(points) > 6  # a legend beside the plane, not over it
    fig, (ax,) = _figure(10.0 if many else 6.0, max(3.8, 0.22 * len(points)) if many else 3.8)
    palette = _colors([p.label for p in points], colors)
    prefix = common_prefix([p.label for p in points])
    for p in points:
        color = palette[p.label]
        ax.errorbar(p.cost.mean, p.value.mean,
                    xerr=None if math.isnan(p.cost.std) else p.cost.std,
                    yerr=None if math.isnan(p.value.std) else p.value.std,
                    fmt="o", color=color, mfc=color if p.on_front else "white", markersize=7, capsize=3,
                    label=p.label[len(prefix):] + (" (Pareto)" if p.on_front else ""))
    front = sorted((p for p in points if p.on_front), key=lambda p: p.cost.mean)
    if len(front) > 1:
        ax.plot([p.cost.mean for p in front], [p.value.mean for p in front], "--", color="0.4", linewidth=1.0)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if points:
        if many:
            ax.legend(frameon=False, fontsize="x-small", loc="center left", bbox_to_anchor=(1.01, 0.5))
        else:
            ax.legend(frameon=False, fontsize="small")
    if title or prefix:
        ax.set_title(" ".join(part for part in (title, f"({prefix.strip()} ...)" if prefix else "") if part))
    return fig


def common_prefix(labels: Sequence[str]) -> str:
    """The words (up to and including a space or ``=``) every one of 2+ ``labels`` starts with, e.g.
    ``"adam techniques="`` for recipes that differ in their techniques only; "" otherwise."""
    if len(labels) < 2:
        return ""
    shared = labels[0]
    for label in labels[1:]:
        while not label.startswith(shared):
            shared = shared[:-1]
    cut = max(shared.rfind(" "), shared.rfind("="))
    return shared[:cut + 1] if cut >= 0 else ""


def _partition_rows(records: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, ...]]:
    rows = []
    for label, record in records.items():
        for part, info in record.get("parts", {}).items():
            rows.append((label, str(record.get("rule", "")), part, str(info.get("tensors", "")),
                         f"{info.get('parameters', 0):,}", ", ".join(info.get("names", []))))
    return rows


def cost_section(page: ReportPage, task: str, final_key: str, summaries: Sequence[RecipeSummary],
                 results: Sequence[RunResult], colors: Mapping[str, str]) -> None:
    """Add the accuracy-cost planes of ``task`` (those with 2+ recipes that recorded the cost) and the
    parameter partitions of its runs; nothing when the runs recorded neither."""
    planes = [(key, label, log, cost_points(summaries, key)) for key, label, log in PLANES]
    planes = [p for p in planes if p[3]]
    parts = partitions(results)
    if not planes and not parts:
        return
    page.heading("Costs besides accuracy", level=3, anchor=f"costs-{slug(task)}")
    for key, label, log, points in planes:
        page.figure(f"cost_{task}_{key}", plot_cost_plane(points, xlabel=label, ylabel=final_key, log_x=log,
                                                          colors=colors, title=task),
                    f"{task}: {final_key} at the last epoch versus {label}; means over seeds with one std; filled "
                    "markers and the dashed line: the Pareto front (no recipe is cheaper and at least as good).")
    if parts:
        page.table(make_table(f"partition_{slug(task)}", f"{task}: how optimizers with a parameter-partition "
                              "contract split the model (each part is one optimizer group).",
                              ["recipe", "rule", "part", "tensors", "parameters", "parameter names"],
                              _partition_rows(parts), ["l", "l", "l", "r", "r", "l"]))


__all__ = ["PLANES", "common_prefix", "cost_section", "plot_cost_plane"]
