"""optbench.report: renders analysis data as tables (terminal, Markdown) and plots.

Public API:

* :func:`ranking_table` (rich), :func:`ranking_markdown`, :func:`ranking_cells`,
  :func:`ranking_legend` — the ranking table.
* :func:`summary_markdown`, :func:`how_sure`, :func:`problems_markdown` — ``summary.md``.
* :func:`plot_curves`, :func:`label_colors`, :func:`save_figure` — learning-curve figures.
* :func:`write_report`, :func:`render_report`, :func:`report_from_store`, :func:`task_info`,
  :class:`TaskInfo`, :class:`ReportFiles` — the self-contained HTML report.
* :func:`plot_lr_sensitivity`, :func:`plot_profiles`, :func:`plot_schedules`,
  :func:`plot_distributed` — figures of the report's further sections.
* :class:`TableData`, :func:`make_table`, :func:`to_markdown`, :func:`to_csv`, :func:`to_latex`,
  :func:`write_table` — tables as Markdown, CSV and LaTeX (booktabs).
"""

from __future__ import annotations

from optbench.report.export import TableData, make_table, to_csv, to_latex, to_markdown, write_table
from optbench.report.figures import plot_distributed, plot_lr_sensitivity, plot_profiles, plot_schedules
from optbench.report.html import ReportFiles, TaskInfo, render_report, report_from_store, task_info, write_report
from optbench.report.markdown import how_sure, problems_markdown, summary_markdown
from optbench.report.plots import label_colors, plot_curves, save_figure
from optbench.report.tables import ranking_cells, ranking_legend, ranking_markdown, ranking_table

__all__ = [
    "ReportFiles",
    "TableData",
    "TaskInfo",
    "make_table",
    "plot_distributed",
    "plot_lr_sensitivity",
    "plot_profiles",
    "plot_schedules",
    "render_report",
    "report_from_store",
    "task_info",
    "to_csv",
    "to_latex",
    "to_markdown",
    "write_report",
    "write_table",
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
