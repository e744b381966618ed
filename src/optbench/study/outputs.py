"""The files a comparison writes: ``curves.png``, ``summary.md`` and the HTML report ``index.html`` with
``figures/`` and ``tables/`` (the store is written as it runs)."""

from __future__ import annotations

import shlex
from pathlib import Path

from optbench.core.fileio import atomic_write_text
from optbench.core.spec import Direction
from optbench.study.compare import (
    FULL_PROTOCOL_EPOCHS,
    CompareConfig,
    CompareOutcome,
    metric_directions,
    ranking_keys,
    target_of,
)


def summarize(outcome: CompareOutcome) -> list:
    """The ranked :class:`~optbench.analysis.RecipeSummary` list of ``outcome``'s runs."""
    from optbench.analysis import summarize_runs

    final_key, best_key = ranking_keys(outcome.task)
    return summarize_runs(outcome.results, metric_directions(outcome.task), final_key=final_key,
                          best_key=best_key, target=target_of(outcome.config, outcome.task))


def context_lines(outcome: CompareOutcome, store: str, command: str) -> dict[str, str]:
    """Key -> value lines that say what ran, for the summary and the terminal. The store URL and
    ``command`` are shown with every credential hidden (:mod:`optbench.core.urls`)."""
    from optbench.core.urls import redact_text, redact_url

    c = outcome.config
    key, value = target_of(c, outcome.task)
    reached = ">=" if outcome.task.direction(key) is Direction.MAXIMIZE else "<="
    train = "all" if c.train_size is None else f"{c.train_size:,} examples (seeded subset)"
    return {
        "task": f"{outcome.task.name}: {outcome.task.description}",
        "protocol": "seed004: the same hyperparameters for every optimizer, results over seeds",
        "shared hyperparameters": f"learning rate {c.lr:g}, batch size {c.batch_size}, other values at each "
                                  "optimizer's defaults" + "".join(f", {part}" for part in _shared_words(c)),
        "budget": f"{c.epochs} epochs, training set: {train}",
        "seeds": f"{c.seeds} (0..{c.seeds - 1})",
        "time-to-target": f"first epoch with {key} {reached} {value:g}",
        "runs": f"{len(outcome.results)} ({outcome.executed} executed now, {outcome.skipped} already in the store)",
        "study": f"{outcome.study} in {redact_url(store)}",
        "reproduce": redact_text(command),
        "full protocol": full_protocol_command(outcome),
    }


def _shared_words(c: CompareConfig) -> list[str]:
    """The schedule, precision and techniques of ``c`` as words ("schedule cosine", ...), none at their default;
    first the learning-rate-free optimizers, which run at lr 1.0 (a multiplier of their own step size)."""
    from optbench.optim.lr_semantics import LR_FREE_LR, is_learning_rate_free

    free = [name for name in c.optimizers if is_learning_rate_free(name)]
    words = [f"except {', '.join(free)}: learning-rate-free, lr {LR_FREE_LR:g} (a multiplier of the step size "
             "the method estimates)"] if free else []
    words += [] if c.schedule == "constant" else [f"schedule {c.schedule}"]
    words += [f"schedule parameter {k}={v}" for k, v in c.schedule_params.items()]
    words += [] if c.precision == "fp32" else [f"precision {c.precision}"]
    return words + [f"technique {t}" for t in c.techniques]


def _technique_args(c: CompareConfig) -> str:
    """The options that give ``c``'s schedule, precision and techniques ("" when all are at their default)."""
    from optbench.core.options import format_literal

    args = [] if c.schedule == "constant" else ["--schedule", c.schedule]
    for key, value in c.schedule_params.items():
        args += ["--schedule-param", f"{key}={format_literal(value)}"]
    args += [] if c.precision == "fp32" else ["--precision", c.precision]
    for t in c.techniques:
        args += ["--technique", str(t)]
    return "".join(f" {shlex.quote(a)}" for a in args)


def full_protocol_command(outcome: CompareOutcome) -> str:
    """The command of the full 150-epoch protocol on all training data (same schedule and techniques)."""
    c = outcome.config
    return (f"optbench compare --task {shlex.quote(c.task)} --optimizers {','.join(c.optimizers)} "
            f"--seeds {c.seeds} --epochs {FULL_PROTOCOL_EPOCHS} --train-size all --lr {c.lr:g} "
            f"--batch-size {c.batch_size}" + _technique_args(c))


def write_outputs(outcome: CompareOutcome, summaries: list, out: Path, context: dict[str, str]) -> dict[str, Path]:
    """Write ``curves.png``, ``summary.md`` and the self-contained report ``index.html`` (with its
    ``figures/`` and ``tables/``) into ``out``, each atomically; return their paths
    (keys ``curves``, ``summary``, ``report``)."""
    from optbench.report import TaskInfo, plot_curves, save_figure, summary_markdown, write_report

    out.mkdir(parents=True, exist_ok=True)
    curves = out / "curves.png"
    save_figure(plot_curves(outcome.results), curves)
    summary = out / "summary.md"
    atomic_write_text(summary, summary_markdown(summaries, context=context))
    task = outcome.task
    info = TaskInfo(task.name, metric_directions(task), *ranking_keys(task), target_of(outcome.config, task))
    config = {"protocol": "seed004", **outcome.config.to_dict()}
    report = write_report(outcome.results, out, study=outcome.study, config=config, context=context,
                          tasks={task.name: info}, title=f"optbench compare: {task.name}")
    return {"curves": curves, "summary": summary, "report": report.html}
