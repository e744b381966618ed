"""optbench.report: renders analysis data as tables (terminal, Markdown) and plots.

Public API:

* :func:`ranking_table` (rich), :func:`ranking_markdown`, :func:`ranking_cells`,
  :func:`ranking_legend` — the ranking table.
* :func:`summary_markdown`, :func:`how_sure`, :func:`problems_markdown` — ``summary.md``.
* :func:`plot_curves`, :func:`label_colors`, :func:`save_figure` — learning-curve figures.
"""

from __future__ import annotations

from optbench.report.markdown import how_sure, problems_markdown, summary_markdown
from optbench.report.plots import label_colors, plot_curves, save_figure
from optbench.report.tables import ranking_cells, ranking_legend, ranking_markdown, ranking_table

__all__ = [
    "how_sure",
    "label_colors",
    "plot_curves",
    "problems_markdown",
    "ranking_cells",
    "ranking_legend",
    "ranking_markdown",
    "ranking_table",
    "save_figure",
    "summary_markdown",
]
