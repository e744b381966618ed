"""The sections of the HTML report, each appended to a :class:`~optbench.report.page.ReportPage`.

Every section computes its data with :mod:`optbench.analysis` and draws it with
:mod:`optbench.report.plots` / :mod:`optbench.report.figures`; this module only arranges.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optbench.analysis import summarize_runs
from optbench.analysis.communication import communication_curves, worker_memory
from optbench.analysis.reference_scaling import Calibration, one_process_compute, predictions_for
from optbench.analysis.report_data import (
    StudyOverview,
    applied_schedules,
    distributed_points,
    lr_sensitivity,
    performance_profiles,
)
from optbench.analysis.search_trials import ArchitectureSearch
from optbench.analysis.summary import RecipeSummary, recipe_labels
from optbench.core.spec import SPLITS, Direction, RunResult
from optbench.report.costs import cost_section
from optbench.report.export import make_table
from optbench.report.figures import (
    plot_architecture_search,
    plot_communication,
    plot_distributed,
    plot_lr_sensitivity,
    plot_profiles,
    plot_schedules,
)
from optbench.report.markdown import comparisons_of, how_sure, seeds_sentence
from optbench.report.page import ReportPage, esc, slug
from optbench.report.plots import plot_curves
from optbench.report.tables import (
    pairwise_cells,
    ranking_cells,
    ranking_legend,
    time_to_target_cells,
    trace_cells,
)


@dataclass(frozen=True)
class TaskInfo:
    """How one task is ranked: metric directions, the final and best keys, the target.

    Attributes:
        name: task name as stored.
        directions: metric key -> Direction (``"test_accuracy"`` -> maximize ...).
        final_key / best_key: ranked metric (last epoch) and best-over-epochs metric.
        target: ``(metric key, value)`` for time-to-target.
    """

    name: str
    directions: Mapping[str, Direction]
    final_key: str
    best_key: str
    target: tuple[str, float]

    @property
    def percent(self) -> bool:
        """Show the final metric in percent (accuracies)."""
        return self.final_key.endswith("_accuracy")


def _seconds(value: float) -> str:
    if not math.isfinite(value):
        return "—"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def summary_section(page: ReportPage, overview: StudyOverview, context: Mapping[str, str]) -> None:
    """What ran, the environment, the time spent, and every diverged or failed run."""
    page.heading("Study summary", anchor="summary")
    rows: list[tuple[str, str]] = [(k, v) for k, v in context.items()]
    known = {k for k, _ in rows}
    defaults = [
        ("study", overview.study or "(all runs in the store)"),
        ("tasks", ", ".join(overview.tasks)),
        ("recipes", f"{len(overview.labels)}: {', '.join(overview.labels)}"),
        ("seeds", ", ".join(map(str, overview.seeds))),
        ("protocol", str(overview.config.get("protocol", "—"))),
        ("budget", (f"epochs {', '.join(map(str, overview.epochs))}; batch size "
                    f"{', '.join(map(str, overview.batch_sizes))}; lr {', '.join(f'{x:g}' for x in overview.lrs)}")),
    ]
    rows += [(k, v) for k, v in defaults if k not in known]
    s = overview.per_run_seconds
    status = ", ".join(f"{n} {name}" for name, n in overview.n_by_status.items())
    rows += [("runs", f"{overview.n_runs} ({status})") if "runs" not in known else ("run status", status),
             ("total time", f"{_seconds(overview.total_seconds)} (summed over runs)"),
             ("time per run", f"mean {_seconds(s.mean)}" + (f", std {_seconds(s.std)}" if s.n > 1 else ""))]
    page.table(make_table("summary", "What ran.", ["item", "value"], rows, ["l", "l"]))
    env = [(k, ", ".join(v)) for k, v in overview.environment.items()]
    page.table(make_table("environment", "Environment of the runs (distinct values over runs).",
                          ["item", "value"], env or [("—", "no environment recorded")], ["l", "l"]))
    page.heading("Diverged and failed runs", level=3, anchor="failures")
    if overview.problems:
        page.paragraph(f"{len(overview.problems)} of {overview.n_runs} runs did not finish; all are listed. "
                       "Diverged runs count with their last recorded epoch; failed runs are left out of "
                       "the statistics.", cls="bad")
    else:
        page.paragraph(f"None: all {overview.n_runs} runs finished.", cls="ok")
    page.table(make_table("failures", "Every run that diverged or failed, with its stored message.",
                          ["task", "recipe", "seed", "run", "status", "epochs", "error"],
                          [(p.task, p.label, str(p.seed), p.run_id, p.status, str(p.epochs_completed),
                            p.error or "(no message stored)") for p in overview.problems],
                          ["l", "l", "r", "l", "l", "r", "l"]),
               row_classes=["warn"] * len(overview.problems))


def _ranking(page: ReportPage, info: TaskInfo, summaries: Sequence[RecipeSummary]) -> None:
    metric = info.final_key.partition("_")[2].replace("_", " ")
    headers, rows = ranking_cells(summaries, final_label=f"final test {metric}",
                                  best_label=f"best valid {info.best_key.partition('_')[2].replace('_', ' ')}",
                                  final_as_percent=info.percent, best_as_percent=info.best_key.endswith("_accuracy"))
    best = next((i for i, r in enumerate(summaries) if r.rank == 1 and not math.isnan(r.final_test.mean)), None)
    classes = ["best" if i == best else ("warn" if r.n_diverged or r.n_failed else "")
               for i, r in enumerate(summaries)]
    caption = f"{info.name}: ranked by {info.final_key} at the last epoch. " + ranking_legend(summaries)
    name = slug(info.name)
    page.table(make_table(f"ranking_{name}", caption, headers, rows), row_classes=classes)
    if summaries:
        page.add("<details><summary>Runs behind each row: every counted run id with its value</summary>")
        page.table(make_table(f"runs_{name}", f"{info.name}: the runs each ranking row was computed from.",
                              *trace_cells(summaries, percent=info.percent), ["l", "l", "l"]))
        page.add("</details>")
        key, value = info.target
        page.table(make_table(
            f"time_to_target_{name}", f"{info.name}: time to {key} {value:g} in epochs, optimizer steps and training "
            "seconds (evaluation excluded). Median: smallest time by which at least half of the non-failed runs "
            "reached it (Kaplan-Meier median; runs that never did are censored, never dropped; '> budget' when "
            "fewer than half did); means over the runs that reached it.", *time_to_target_cells(summaries)))
    table = comparisons_of(summaries)
    if table is not None and table.rows:
        page.add(f"<details{' open' if len(table.rows) <= 10 else ''}><summary>"
                 f"{esc(f'Pairwise comparisons ({len(table.rows)} pairs)')}</summary>")
        page.table(make_table(f"pairwise_{name}", f"{info.name}: every pair of recipes on {info.final_key}; "
                              f"two-sided p-values, Holm-corrected over all {len(table.rows)} pairs per test "
                              "(Welch's t-test; Mann-Whitney U).", *pairwise_cells(table, percent=info.percent)))
        page.add("</details>")
    page.paragraph(how_sure(summaries, final_label=f"final test {metric}", final_as_percent=info.percent))
    seeds = seeds_sentence(summaries, difference=0.005 if info.percent else None, percent=info.percent)
    if seeds:
        page.paragraph(seeds)


def _curve_keys(results: Sequence[RunResult]) -> list[str]:
    recorded = {k for r in results for e in r.epochs for k in e.metrics}
    names = sorted({k.partition("_")[2] for k in recorded if k.partition("_")[0] in SPLITS},
                   key=lambda n: (n != "loss", n != "accuracy", n))
    return [f"{split}_{name}" for split in SPLITS for name in names if f"{split}_{name}" in recorded]


def task_section(page: ReportPage, results: Sequence[RunResult], info: TaskInfo,
                 colors: Mapping[str, str], calibration: Mapping[str, Any] | None = None) -> list[RecipeSummary]:
    """Ranking, learning curves (epoch and seconds), lr sensitivity, applied schedule and
    distributed scaling of one task's runs (with the cost model's predictions when the study stored
    a ``calibration``, :mod:`optbench.analysis.reference_scaling`). Returns the ranked summaries."""
    page.heading(f"Task {info.name}", anchor=f"task-{slug(info.name)}")
    labels = recipe_labels(results)
    summaries = summarize_runs(results, info.directions, final_key=info.final_key, best_key=info.best_key,
                               target=info.target, group_by=lambda r: labels[r.run_id])
    page.heading("Ranking", level=3, anchor=f"ranking-{slug(info.name)}")
    _ranking(page, info, summaries)
    cost_section(page, info.name, info.final_key, summaries, results, colors)
    keys = _curve_keys(results)
    several = len(set(labels.values())) > len({r.recipe.label for r in results})
    curve_runs = list(results)
    if several:  # curves of each optimizer's best recipe (summaries are ranked, best first)
        best: dict[str, str] = {}
        for row in summaries:
            opt = next(r.recipe.label for r in results if labels[r.run_id] == row.label)
            best.setdefault(opt, row.label)
        chosen = set(best.values())
        curve_runs = [r for r in results if labels[r.run_id] in chosen]
    if keys:
        page.heading("Learning curves", level=3, anchor=f"curves-{slug(info.name)}")
        if several:
            page.paragraph("Curves of each optimizer's best recipe: " + ", ".join(sorted(chosen)) + ".",
                           cls="note")
        logs = [k for k in keys if k.endswith("_loss")]
        for x, words in (("epoch", "epoch"), ("seconds", "wall-clock seconds (training + evaluation)")):
            fig = plot_curves(curve_runs, keys=keys, x=x, colors=colors, log_keys=logs,
                              title=f"{info.name}: learning curves vs {words}")
            page.figure(f"curves_{info.name}_{x}", fig, f"{info.name}: mean over seeds, band from the lowest to "
                        f"the highest seed, versus {words}.")
    lr_curves = lr_sensitivity(results, info.final_key)
    if lr_curves:
        page.heading("Learning-rate sensitivity", level=3, anchor=f"lr-{slug(info.name)}")
        page.figure(f"lr_sensitivity_{info.name}",
                    plot_lr_sensitivity(lr_curves, colors=colors, ylabel=info.final_key, title=info.name),
                    f"{info.name}: {info.final_key} at the last epoch versus learning rate (mean and range over "
                    "runs; x: every run at that lr failed or diverged before its first epoch).")
        rows = [(name, f"{lr:g}", f"{m:.4g}" if math.isfinite(m) else "—", str(n), str(lost))
                for name, c in lr_curves.items()
                for lr, m, n, lost in zip(c.lr, c.mean, c.n, c.n_lost, strict=True)]
        page.table(make_table(f"lr_sensitivity_{slug(info.name)}", f"{info.final_key} versus lr.",
                              ["optimizer", "lr", f"mean {info.final_key}", "runs", "lost runs"], rows,
                              ["l", "r", "r", "r", "r"]))
    schedules = applied_schedules(curve_runs)
    if schedules:
        page.heading("Learning-rate schedule applied", level=3, anchor=f"schedule-{slug(info.name)}")
        page.figure(f"schedule_{info.name}", plot_schedules(schedules, colors=colors),
                    f"{info.name}: the learning rate per optimizer step of each recipe (seed with the lowest "
                    "number); dots are the values the run recorded at the end of each epoch.")
        notes = [f"{s.label}: {s.note}" for s in schedules.values() if s.note]
        if notes:
            page.paragraph("; ".join(notes), cls="note")
    dist = distributed_points(results, info.target, info.directions.get(info.target[0], Direction.MAXIMIZE))
    if dist is not None:
        predicted = _predicted(results, dist, calibration)
        page.heading("Distributed throughput and scaling", level=3, anchor=f"distributed-{slug(info.name)}")
        caption = f"{info.name}: {dist.baseline}." + (
            " Hollow markers: the cost model's prediction from the 1-process jobs and the measured link."
            if predicted else "")
        page.figure(f"distributed_{info.name}", plot_distributed(dist, predicted), caption)

        def model(p: Any) -> tuple[str, ...]:
            value = predicted.get((p.mode, p.nproc))
            if not predicted:
                return ()
            if value is None:
                return ("-", "-")
            return (f"{value:,.0f}", f"{p.samples_per_second / value - 1:+.0%}")

        page.table(make_table(f"distributed_{slug(info.name)}", dist.baseline,
                              ["mode", "workers", "samples/s", "efficiency", "train s to target",
                               *(("predicted samples/s", "error") if predicted else ())],
                              [(p.mode, str(p.nproc), f"{p.samples_per_second:,.0f}",
                                f"{dist.efficiency.get((p.mode, p.nproc), math.nan):.2f}",
                                "not reached" if p.time_to_target is None else f"{p.time_to_target:.2f}", *model(p))
                               for p in dist.points]))
        _communication(page, info, results)
        memory = worker_memory(results)
        if memory:
            page.table(make_table(f"memory_{slug(info.name)}", "memory per worker (bytes, rank 0 after the first "
                                  "epoch; fsdp holds its shard)",
                                  ["mode", "workers", "parameters", "gradients", "optimizer state", "total"],
                                  [(m.mode, str(m.nproc), f"{m.parameters:,}", f"{m.gradients:,}",
                                    f"{m.optimizer_state:,}", f"{m.total:,}") for m in memory]))
    return summaries


def _communication(page: ReportPage, info: TaskInfo, results: Sequence[RunResult]) -> None:
    """The target's metric against bytes communicated and training seconds, per distributed mode
    (when at least two modes recorded their bytes)."""
    metric = info.target[0]
    curves = communication_curves(results, metric)
    if not curves:
        return
    page.heading(f"{metric} against communication", level=3, anchor=f"communication-{slug(info.name)}")
    page.figure(f"communication_{info.name}", plot_communication(curves, metric),
                f"{info.name}: {metric} after each epoch against the bytes one worker handed to collectives "
                "(log scale) and against training seconds; mean over seeds.")
    page.table(make_table(f"communication_{slug(info.name)}", "bytes per worker per step and at the end",
                          ["mode", "workers", "bytes/step", "bytes in all", f"final {metric}", "runs"],
                          [(c.mode, str(c.nproc), f"{c.bytes_per_step:,.0f}",
                            f"{c.bytes[-1]:,.0f}", f"{c.values[-1]:.4f}", str(c.runs)) for c in curves]))


def _predicted(results: Sequence[RunResult], dist: Any,
               calibration: Mapping[str, Any] | None) -> dict[tuple[str, int], float]:
    """The cost model's samples/s of each multi-process job, from the 1-process jobs' compute time and
    the study's stored calibration; empty without one."""
    stored = Calibration.from_mapping(calibration)
    if stored is None:
        return {}
    return predictions_for([(p.mode, p.nproc) for p in dist.points], one_process_compute(results), stored)


def profiles_section(page: ReportPage, ranked: Mapping[str, Sequence[RecipeSummary]],
                     infos: Mapping[str, TaskInfo], colors: Mapping[str, str]) -> None:
    """Performance profiles over tasks and the ranking across tasks (only with 2+ tasks)."""
    if len(ranked) < 2:
        return
    values = {task: {r.label: r.final_test.mean for r in rows} for task, rows in ranked.items()}
    directions = {task: infos[task].directions[infos[task].final_key] for task in ranked}
    profiles = performance_profiles(values, directions, quantity="the final test metric")
    page.heading("Performance profiles and ranking across tasks", anchor="profiles")
    page.figure("performance_profiles", plot_profiles(profiles, colors=colors),
                "Fraction of tasks on which a recipe is within a factor tau of the best (Dolan & Moré 2002); "
                "score: area under the profile over tau in [1, 4], normalized (Dahl et al. 2023).")
    order = sorted(profiles.labels, key=lambda s: (-profiles.score[s], profiles.mean_rank[s], s))
    rows = [(str(i + 1), s, f"{profiles.score[s]:.3f}", f"{profiles.mean_rank[s]:.2f}",
             *(("—" if not math.isfinite(x) else f"{x:.3f}") for x in profiles.ratios[:, profiles.labels.index(s)]))
            for i, s in enumerate(order)]
    page.table(make_table("profiles", "Ranking across tasks by integrated performance-profile score; "
                          "ratio to the best per task (1 = best, — = no value).",
                          ["#", "recipe", "score", "mean rank", *(f"ratio {t}" for t in profiles.tasks)], rows))


def architecture_search_section(page: ReportPage, search: ArchitectureSearch) -> None:
    """An architecture search: the trials' metric against size with the Pareto front, progress against
    trials and seconds, and the front's architectures, one line each."""
    page.heading(f"Architecture search: {search.base}", anchor=f"nas-{slug(search.base)}")
    finished = len(search.points) - search.failed
    page.figure(f"nas_{slug(search.base)}", plot_architecture_search(search),
                f"{search.base}: {len(search.points)} trials ({finished} trained, {search.failed} not finished: "
                f"unrealizable, failed or pruned), {sum(p.seconds for p in search.points):.1f} s in all. Left: "
                f"{search.metric} after each trial's last epoch against its trainable parameters, the Pareto front "
                "ringed; middle and right: the best so far. Selected on the validation split only.")
    rows = [(str(p.number), p.task, f"{p.parameters:,}", f"{p.value:.4f}")
            for p, f in zip(search.points, search.front, strict=True) if f]
    page.table(make_table(f"nas_front_{slug(search.base)}", "the Pareto front (fewer parameters or a better "
                          f"{search.metric})", ["trial", "architecture", "parameters", search.metric],
                          sorted(rows, key=lambda r: int(r[2].replace(",", "")))))
    if not search.retrained:
        return
    test = "test_" + search.metric.removeprefix("valid_")

    def cell(s: Any) -> str:
        return "—" if s.n == 0 else f"{s.mean:.4f}" + ("" if math.isnan(s.std) else f" ± {s.std:.4f}")

    tau = search.tau
    said = (f"Kendall's tau between the search-time and the retrained {search.metric}: {tau.tau:.3f} "
            f"(p = {tau.p_value:.3g}, {tau.n} architectures)" if not math.isnan(tau.tau)
            else f"Kendall's tau needs 2 or more retrained architectures with distinct scores ({tau.n} here)")
    page.table(make_table(f"nas_retrained_{slug(search.base)}", "trials retrained from scratch on every seed at the "
                          f"full budget and tested (the search saw the validation split only). {said}.",
                          ["trial", "architecture", "parameters", f"search {search.metric}",
                           f"retrained {search.metric}", test, "seeds"],
                          [(str(r.number), r.task, "—" if r.parameters is None else f"{r.parameters:,}",
                            f"{r.search_value:.4f}", cell(r.valid), cell(r.test), str(r.valid.n))
                           for r in search.retrained]))
    if not search.baselines:
        return
    best = search.retrained[0]

    def interval(s: Any) -> str:
        return "—" if s.n < 2 or math.isnan(s.ci_low) else f"[{s.ci_low:.4f}, {s.ci_high:.4f}]"

    page.table(make_table(f"nas_baselines_{slug(search.base)}", "hand-designed baselines trained with the best "
                          f"retrained architecture's recipe on its seeds, against it (trial {best.number}: "
                          f"{test} {cell(best.test)} {interval(best.test)}); Welch's t-test.",
                          ["task", test, "CI of the mean", "seeds", "Welch p vs best"],
                          [(b.task, cell(b.test), interval(b.test), str(b.test.n),
                            "—" if math.isnan(b.p_value) else f"{b.p_value:.3g}") for b in search.baselines]))
