"""The self-contained HTML report of a study: ``DIR/index.html`` plus every plot as PNG and SVG
under ``DIR/figures/`` and every table as Markdown, CSV and LaTeX under ``DIR/tables/``.

``index.html`` is one file: the plots are inlined as PNG data URIs, the style sheet is inline,
there is no script and no external resource (a Content-Security-Policy forbids any), so it
reads the same offline and when mailed. Sections: study summary (what ran, environment, time,
every diverged and failed run), then per task the ranking (mean ± std, CI, significance,
time-to-target), learning curves versus epoch and versus seconds, lr sensitivity (when the
study varies the lr), the lr schedule applied and distributed scaling (when present), and with
several tasks the performance profiles and ranking across tasks. One colour per recipe label
throughout (:func:`optbench.report.label_colors` over all labels).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optbench.analysis.report_data import study_overview
from optbench.core.errors import ConfigError, OptbenchError
from optbench.core.fileio import atomic_write_text, atomic_writer
from optbench.core.spec import Direction, RunResult
from optbench.core.urls import redact_text, redact_url
from optbench.report.export import write_table
from optbench.report.page import ReportPage
from optbench.report.plots import label_colors, save_figure
from optbench.report.sections import (
    TaskInfo,
    architecture_search_section,
    profiles_section,
    summary_section,
    task_section,
)

#: Directions of metric names used when a stored task cannot be loaded (e.g. a user task whose
#: module is not importable here). These are optbench's own metric names, not guesses.
KNOWN_METRICS = {"loss": Direction.MINIMIZE, "accuracy": Direction.MAXIMIZE}


def task_info(name: str, target_value: float | None = None) -> TaskInfo:
    """How to rank task ``name``: from the task itself (``optbench.tasks.get_task``, which does not
    load data), else from :data:`KNOWN_METRICS` with target ``valid_accuracy`` 0.9 when the task
    cannot be built here.

    Args:
        name: the stored task name (registry name, ``name[params]`` or ``module:factory``).
        target_value: overrides the task's target value (the study's ``--target``).
    """
    from optbench.tasks import get_task

    try:
        task = get_task(name)
    except OptbenchError:
        key, value = "valid_accuracy", 0.9
        directions = {f"{s}_{m}": d for s in ("train", "valid", "test") for m, d in KNOWN_METRICS.items()}
        return TaskInfo(name, directions, "test_accuracy", key,
                        (key, float(target_value) if target_value is not None else value))
    directions = {f"{s}_{m.name}": m.direction for s in ("train", "valid", "test") 
                  for m in (*task.metrics, *task.derived)}
    metric = task.target.metric
    value = float(target_value) if target_value is not None else task.target.value
    return TaskInfo(name, directions, f"test_{metric}", f"valid_{metric}", (task.target.key, value))


@dataclass
class ReportFiles:
    """What :func:`write_report` wrote: the page, ``{figure: {fmt: path}}``, ``{table: {fmt: path}}``."""

    html: Path
    figures: dict[str, dict[str, Path]] = field(default_factory=dict)
    tables: dict[str, dict[str, Path]] = field(default_factory=dict)


def render_report(results: Sequence[RunResult], *, study: str = "", config: Mapping[str, Any] | None = None,
                  context: Mapping[str, str] | None = None, tasks: Mapping[str, TaskInfo] | None = None,
                  title: str | None = None, dpi: int = 100) -> ReportPage:
    """Build the report of ``results`` (any tasks, any statuses) without writing anything.

    Args:
        results: the runs; failed and diverged ones are listed, never hidden.
        study / config: the study's name and stored configuration (for the summary).
        context: extra ``{item: text}`` lines shown first in the summary (e.g. from ``compare``);
            credentials in them (a store URL's password) are hidden (:func:`optbench.core.urls.redact_text`).
        tasks: ``{task: TaskInfo}``; missing tasks are resolved with :func:`task_info` (using
            ``config["target"]`` when set).
        title: page title (default ``"optbench report: <study>"``).
        dpi: resolution of the PNGs.

    Returns:
        The :class:`ReportPage`: ``render()`` gives the HTML; ``figures`` and ``tables`` hold
        every figure and table shown.

    Raises:
        ConfigError: no runs.
    """
    if not results:
        raise ConfigError("results", "no runs", "a study with at least one stored run")
    config = dict(config or {})
    page = ReportPage(title or f"optbench report: {study or 'all runs'}", dpi=dpi)
    overview = study_overview(results, study=study, config=config)
    summary_section(page, overview, {k: redact_text(v) for k, v in (context or {}).items()})
    colors = label_colors(overview.labels)
    infos = dict(tasks or {})
    target = config.get("target")
    ranked = {}
    searched = _architecture_searches(page, results, target)
    for task in overview.tasks:
        runs = [r for r in results if r.task == task]
        if task in searched and all("trial" in r.environment for r in runs):
            continue  # a searched architecture with nothing but its trial: shown in the search's section
        info = infos.setdefault(task, task_info(task, target if isinstance(target, int | float) else None))
        ranked[task] = task_section(page, runs, info, colors, calibration=config.get("calibration"))
    profiles_section(page, ranked, infos, colors)
    return page


def _architecture_searches(page: ReportPage, results: Sequence[RunResult], target: Any) -> set[str]:
    """Add a section per architecture search among ``results``; returns the searched task names."""
    from optbench.analysis.search_trials import architecture_searches
    from optbench.tasks import parse_task_ref

    bases = {parse_task_ref(r.task)[0] for r in results if "trial" in r.environment}
    names: set[str] = set()
    for base in sorted(bases):
        info = task_info(base, target if isinstance(target, int | float) else None)
        metric = info.target[0]
        searches = architecture_searches(results, metric, info.directions.get(metric, Direction.MAXIMIZE))
        for search in (s for s in searches if s.base == base):  # all runs: the baselines are other tasks
            architecture_search_section(page, search)
            names |= {p.task for p in search.points}
    return names


def write_report(results: Sequence[RunResult], out: str | Path, **kwargs: Any) -> ReportFiles:
    """Render the report (see :func:`render_report` for the arguments) and write ``out/index.html``,
    ``out/figures/<name>.png|.svg`` and ``out/tables/<name>.md|.csv|.tex``, each atomically.

    Raises:
        ConfigError: no runs.
        OSError: when ``out`` cannot be written.
    """
    out = Path(out)
    page = render_report(results, **kwargs)
    files = ReportFiles(html=out / "index.html")
    for name, fig in page.figures.items():
        png = out / "figures" / f"{name}.png"
        with atomic_writer(png) as stream:
            stream.write(page.png[name])
        files.figures[name] = {"png": png, "svg": save_figure(fig, out / "figures" / f"{name}.svg")}
    for table in page.tables:
        files.tables[table.name] = write_table(table, out / "tables")
    atomic_write_text(files.html, page.render())
    return files


def report_from_store(store: str | Path, out: str | Path, *, study: str | None = None) -> ReportFiles:
    """Write the report of ``study`` (or, when the store holds exactly one study, of that one;
    otherwise of every run) from the results database ``store`` (shown with its password hidden).

    Raises:
        ConfigError: an unknown study (lists the known ones), a store without runs.
    """
    from optbench.runs.store import open_store

    with open_store(store) as db:
        infos = {s.name: s for s in db.studies()}
        if study is None and len(infos) == 1:
            study = next(iter(infos))
        if study is not None and study not in infos:
            raise ConfigError("--study", study, sorted(infos) or "none (the store has no study)")
        results = db.load_runs(study=study)
    config = infos[study].config if study is not None else {}
    return write_report(results, out, study=study or "", config=config,
                        context={"store": redact_url(store)})
