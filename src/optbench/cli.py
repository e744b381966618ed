"""The ``optbench`` command line: a thin typer layer over the public API.

Bad input (unknown names, out-of-range numbers, an unusable store path) prints one line
``optbench: error: ...`` naming the field and the allowed values and exits with code 2;
nothing is written. Data that cannot be obtained exits with code 1 and says how to fix it.
"""

from __future__ import annotations

import functools
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from optbench.errors import ConfigError, DataUnavailableError, OptbenchError
from optbench.study.reference import (DEFAULT_EPOCHS, DEFAULT_SEEDS, DEFAULT_TRAIN_SIZE, REFERENCE_BATCH_SIZE,
                                      REFERENCE_LR, REFERENCE_OPTIMIZERS, REFERENCE_TASK)

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=False,
                  help="Compare neural-network training methods fairly and fast.")
data_app = typer.Typer(help="Datasets: list them, fetch them into the cache.", no_args_is_help=True)
app.add_typer(data_app, name="data")
F = TypeVar("F", bound=Callable[..., object])


def _fail(message: str, code: int) -> typer.Exit:
    Console(stderr=True, highlight=False, soft_wrap=True).print(message, markup=False)
    return typer.Exit(code)


def handle_errors(command: F) -> F:
    """Turn optbench's errors into one line on stderr and an exit code: 2 for bad input
    (:class:`ConfigError`), 1 for unavailable data or other failures, 130 when interrupted."""

    @functools.wraps(command)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return command(*args, **kwargs)
        except ConfigError as exc:
            raise _fail(f"optbench: error: {exc}", 2) from None
        except DataUnavailableError as exc:
            raise _fail(f"optbench: data unavailable: {exc}", 1) from None
        except OptbenchError as exc:
            raise _fail(f"optbench: error: {exc}", 1) from None
        except KeyboardInterrupt:
            raise _fail("optbench: interrupted; finished runs are stored, the same command resumes.", 130) from None

    return wrapper  # type: ignore[return-value]


def _parse_train_size(text: str) -> int | None | str:
    word = text.strip().lower()
    if word == "all":
        return None
    if word == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        raise ConfigError("--train-size", text, "an integer >= 1, 'all' or 'auto'") from None
    if value < 1:
        raise ConfigError("--train-size", text, "an integer >= 1, 'all' or 'auto'")
    return value


def _check_count(field: str, value: int) -> None:
    if value < 1:
        raise ConfigError(field, value, "an integer >= 1")


@app.command()
@handle_errors
def compare(
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
                                                   "[default: OUT/optbench.db].")] = None,
    out: Annotated[Path, typer.Option(help="Directory for curves.png and summary.md.")] = Path("optbench-out"),
    study: Annotated[str | None, typer.Option(help="Study name [default: derived from the settings].")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output; print the table only.")]
    = False,
) -> None:
    """Run the reference protocol: several optimizers with the same hyperparameters, several seeds.

    Prints a ranked table (mean ± std and 95% CI over seeds), writes the results database,
    OUT/curves.png and OUT/summary.md. Running the same command again resumes: finished runs
    are kept, not repeated.
    """
    from optbench.report import ranking_table
    from optbench.study.compare import CompareConfig, parse_optimizers, run_compare, validate
    from optbench.study.outputs import context_lines, full_protocol_command, summarize, write_outputs

    for field, value in (("--seeds", seeds), ("--epochs", epochs), ("--batch-size", batch_size),
                         ("--workers", workers)):
        _check_count(field, value)
    if not lr > 0:
        raise ConfigError("--lr", lr, "a number > 0")
    config = CompareConfig(task=task, optimizers=parse_optimizers(optimizers), seeds=seeds, epochs=epochs,
                           batch_size=batch_size, lr=lr, train_size=_parse_train_size(train_size),
                           target=target, workers=workers, study=study)
    validate(config)  # names and hyperparameters, before any output
    store_url = store or str(out / "optbench.db")
    console = Console(stderr=True, quiet=quiet, log_path=False)
    console.print(f"[bold]optbench compare[/] task={config.task} optimizers={','.join(config.optimizers)} "
                  f"lr={config.lr:g} batch_size={config.batch_size} epochs={config.epochs} "
                  f"train_size={train_size} seeds={config.seeds} workers={config.workers}")
    from optbench.progress import StudyProgress

    with StudyProgress(len(config.optimizers) * config.seeds, console) as progress:
        outcome = run_compare(config, store_url, on_event=progress.on_event, on_result=progress.on_result,
                              create_store_dir=store is None)
    summaries = summarize(outcome)
    command = "optbench " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "optbench compare"
    context = context_lines(outcome, store_url, command)
    files = write_outputs(outcome, summaries, out, context)
    stdout = Console() if sys.stdout.isatty() else Console(width=160)  # files get the whole table
    stdout.print(ranking_table(summaries, title=f"{outcome.task.name}: ranked by final test accuracy "
                                                f"(lr {config.lr:g}, batch {config.batch_size}, "
                                                f"{config.epochs} epochs, {config.seeds} seeds)"))
    if not quiet:
        for key in ("shared hyperparameters", "budget", "time-to-target", "runs", "study"):
            console.print(f"{key}: {context[key]}")
        console.print(f"wrote {files['curves']} and {files['summary']}")
        console.print(f"full protocol (150 epochs, all data): {full_protocol_command(outcome)}")


@app.command("list")
@handle_errors
def list_names(
    kind: Annotated[str, typer.Argument(help="What to list: optimizers, tasks or datasets.")],
) -> None:
    """List registered names, one per line."""
    kinds = ("optimizers", "tasks", "datasets")
    if kind not in kinds:
        raise ConfigError("kind", kind, kinds)
    if kind == "optimizers":
        from optbench.optim import optimizers as registry
    elif kind == "tasks":
        from optbench.tasks import tasks as registry
    else:
        from optbench.data import datasets as registry
    for name in registry.names():
        typer.echo(name)


@data_app.command("list")
@handle_errors
def data_list() -> None:
    """List the datasets, their sizes, whether they need a download and whether they are cached."""
    from rich.table import Table

    from optbench.data import cache_dir, is_cached, list_datasets

    table = Table(title=f"datasets (cache: {cache_dir()})")
    for column in ("name", "train", "test", "shape", "classes", "download", "cached", "description"):
        table.add_column(column)
    for info in list_datasets():
        table.add_row(info.name, f"{info.n_train:,}", f"{info.n_test:,}", "x".join(map(str, info.shape)),
                      str(info.classes), "yes" if info.needs_download else "no",
                      "yes" if is_cached(info.name) else "no", info.description)
    Console().print(table)


@data_app.command("fetch")
@handle_errors
def data_fetch(name: Annotated[str, typer.Argument(help="Dataset name (see `optbench data list`).")]) -> None:
    """Download a dataset into the cache and verify its checksums."""
    from optbench.data import datasets, fetch

    datasets.canonical(name)
    console = Console(stderr=True)
    path = fetch(name, log=lambda message: console.print(message))
    typer.echo(str(path))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``optbench`` console script; returns the exit code."""
    try:
        app(args=argv, prog_name="optbench")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
