"""``optbench compare``: the reference protocol (:mod:`optbench.study.compare`) from the command line."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from optbench.cli.common import (
    DEFAULT_OUT,
    LOG_HELP,
    SAVE_WEIGHTS_HELP,
    check_count,
    check_lr,
    command_line,
    given_store,
    handle_errors,
    parse_train_size,
    stdout_console,
    warning_printer,
)
from optbench.cli.techniques import TechniqueOptions, technique_options
from optbench.core.errors import OptbenchError
from optbench.study.reference import (
    DEFAULT_EPOCHS,
    DEFAULT_SEEDS,
    DEFAULT_TRAIN_SIZE,
    REFERENCE_BATCH_SIZE,
    REFERENCE_LR,
    REFERENCE_OPTIMIZERS,
    REFERENCE_TASK,
)


def compare_command(
    task: Annotated[str, typer.Option(help="Task name, or 'module:factory' / 'file.py:factory' for your own.")]
    = REFERENCE_TASK,
    optimizers: Annotated[str, typer.Option(help="Comma-separated optimizer names.")]
    = ",".join(REFERENCE_OPTIMIZERS),
    seeds: Annotated[int, typer.Option(help="Number of seeds (0..N-1).")] = DEFAULT_SEEDS,
    epochs: Annotated[int, typer.Option(help="Epochs per run.")] = DEFAULT_EPOCHS,
    batch_size: Annotated[int, typer.Option(help="Batch size shared by all optimizers.")] = REFERENCE_BATCH_SIZE,
    lr: Annotated[float, typer.Option(help="Learning rate shared by all optimizers.")] = REFERENCE_LR,
    train_size: Annotated[str, typer.Option(help=f"Training examples per run (a seeded subset), 'all', or "
                                                 f"'auto' ({DEFAULT_TRAIN_SIZE:,} or all if fewer).")]
    = "auto",
    target: Annotated[float | None, typer.Option(help="Validation accuracy for time-to-target "
                                                       "(default: the task's).")] = None,
    workers: Annotated[int, typer.Option(help="Parallel runs in separate processes (threads are split).")] = 1,
    store: Annotated[str | None, typer.Option(help="Results database: SQLite file or SQLAlchemy URL "
                                                   "(default: $OPTBENCH_STORE, else OUT/optbench.db).")] = None,
    out: Annotated[Path, typer.Option(help="Directory for curves.png and summary.md.")] = DEFAULT_OUT,
    study: Annotated[str | None, typer.Option(help="Study name (default: derived from the settings).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output; print the table only.")]
    = False,
    log: Annotated[list[str] | None, typer.Option("--log", metavar="KIND[:WHERE]", help=LOG_HELP)] = None,
    save_weights: Annotated[bool, typer.Option("--save-weights", help=SAVE_WEIGHTS_HELP)] = False,
    *,
    options: TechniqueOptions,
) -> None:
    """Run the reference protocol: several optimizers with the same hyperparameters, several seeds.

    Prints a ranked table (mean ± std and 95% CI over seeds), writes the results database,
    OUT/curves.png and OUT/summary.md. Running the same command again resumes: finished runs
    are kept, not repeated. While it runs it shows the time left, estimated from the runs finished.
    """
    from dataclasses import replace

    from optbench.cli.progress import StudyProgress
    from optbench.report import ranking_table
    from optbench.study.compare import CompareConfig, parse_optimizers, run_compare, validate
    from optbench.study.outputs import context_lines, full_protocol_command, summarize, write_outputs
    from optbench.tracking import chain, open_tracking, parse_logs

    logs = parse_logs(log)
    for field, value in (("--seeds", seeds), ("--epochs", epochs), ("--batch-size", batch_size),
                         ("--workers", workers)):
        check_count(field, value)
    check_lr(lr)
    config = CompareConfig(task=task, optimizers=parse_optimizers(optimizers), seeds=seeds, epochs=epochs,
                           batch_size=batch_size, lr=lr, train_size=parse_train_size(train_size), target=target,
                           workers=workers, study=study, schedule=options.schedule,
                           schedule_params=options.schedule_params, precision=options.precision,
                           techniques=options.techniques)
    task_spec = validate(config)  # names and hyperparameters, before any output
    chosen = given_store(store)  # --store, else $OPTBENCH_STORE
    store_url = chosen or str(out / "optbench.db")
    console = Console(stderr=True, quiet=quiet, log_path=False)
    extra = options.describe()
    console.print("[bold]optbench compare[/] " + escape(
        f"task={config.task} optimizers={','.join(config.optimizers)} lr={config.lr:g} "
        f"batch_size={config.batch_size} epochs={config.epochs} train_size={train_size} seeds={config.seeds} "
        f"workers={config.workers}" + (f" {extra}" if extra else "")))
    # the study is named after the resolved training-set size, which every run's recipe carries
    with open_tracking(logs, out=out, warn=warning_printer(),
                       study=lambda spec: replace(config, train_size=spec.recipe.train_size).study_name(spec.task)
                       ) as tracking:
        with StudyProgress(len(config.optimizers) * config.seeds, console, metric=task_spec.target.metric,
                           workers=config.workers) as progress:
            outcome = run_compare(config, store_url, on_event=chain(progress.on_event, tracking.on_event),
                                  on_result=chain(progress.on_result, tracking.on_result),
                                  create_store_dir=chosen is None, save_weights=save_weights)
        summaries = summarize(outcome)
        context = context_lines(outcome, store_url, command_line(sys.argv[1:], "optbench compare"))
        files = write_outputs(outcome, summaries, out, context)
        tracking.complete(outcome.results, report=files["report"])
    stdout_console().print(ranking_table(
        summaries, title=f"{outcome.task.name}: ranked by final test {outcome.task.target.metric} "
                         f"(lr {config.lr:g}, batch {config.batch_size}, {config.epochs} epochs, "
                         f"{config.seeds} seeds)"))
    if not quiet:
        for key in ("shared hyperparameters", "budget", "time-to-target", "runs", "study"):
            console.print(f"{key}: {context[key]}", markup=False)
        console.print(f"wrote {files['report']}, {files['curves']} and {files['summary']}", markup=False)
        for logger in tracking.loggers:
            console.print(f"logged to {logger.where}", markup=False)
        console.print(f"full protocol (150 epochs, all data): {full_protocol_command(outcome)}", markup=False)
    failed = [r for r in outcome.results if r.status.value == "failed"]
    if len(failed) == len(outcome.results):
        raise OptbenchError(f"every run failed; first error: {failed[0].error}")


def register(app: typer.Typer, errors: Callable = handle_errors) -> None:
    """Add ``compare`` to ``app`` (``errors``: the decorator turning optbench errors into exit codes)."""
    app.command("compare")(errors(technique_options(compare_command)))


__all__ = ["compare_command", "register"]
