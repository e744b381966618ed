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

from optbench.core.errors import ConfigError, DataUnavailableError, OptbenchError
from optbench.study.reference import (
    DEFAULT_EPOCHS,
    DEFAULT_SEEDS,
    DEFAULT_TRAIN_SIZE,
    REFERENCE_BATCH_SIZE,
    REFERENCE_LR,
    REFERENCE_OPTIMIZERS,
    REFERENCE_TASK,
)

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=False,
                  help="Compare neural-network training methods fairly and fast.")
data_app = typer.Typer(help="Datasets: list them, fetch them into the cache, describe one.", no_args_is_help=True)
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
    schedule: Annotated[str, typer.Option(help="Learning-rate schedule (optbench list schedules).",
                                          rich_help_panel="Techniques")] = "constant",
    schedule_param: Annotated[list[str] | None, typer.Option(help="Schedule parameter NAME=VALUE (repeatable).",
                                                             rich_help_panel="Techniques")] = None,
    warmup: Annotated[int, typer.Option(help="Linear warmup steps before the schedule.",
                                        rich_help_panel="Techniques")] = 0,
    label_smoothing: Annotated[float, typer.Option(help="Label smoothing epsilon in [0, 1).",
                                                   rich_help_panel="Techniques")] = 0.0,
    penalty: Annotated[str, typer.Option(help="Loss penalty: none, l1, l2, elastic_net.",
                                         rich_help_panel="Techniques")] = "none",
    penalty_param: Annotated[list[str] | None, typer.Option(help="Penalty parameter, e.g. strength=1e-4.",
                                                            rich_help_panel="Techniques")] = None,
    early_stopping: Annotated[int | None, typer.Option(help="Stop after PATIENCE epochs without improvement of "
                                                            "the validation target metric.",
                                                       rich_help_panel="Techniques")] = None,
    min_delta: Annotated[float, typer.Option(help="Smallest improvement that counts for early stopping.",
                                             rich_help_panel="Techniques")] = 0.0,
    augment: Annotated[list[str] | None, typer.Option(help="Augmentation NAME[:k=v...] (repeatable), e.g. "
                                                           "random_crop:padding=2.",
                                                      rich_help_panel="Techniques")] = None,
    averaging: Annotated[str, typer.Option(help="Weight averaging: none, swa, ema.",
                                           rich_help_panel="Techniques")] = "none",
    averaging_param: Annotated[list[str] | None, typer.Option(help="Averaging parameter, e.g. decay=0.999.",
                                                              rich_help_panel="Techniques")] = None,
    precision: Annotated[str, typer.Option(help="fp32, bf16 (autocast) or fp16 (CUDA, loss scaling).",
                                           rich_help_panel="Techniques")] = "fp32",
    clip_norm: Annotated[float | None, typer.Option(help="Clip gradients to this global norm.",
                                                    rich_help_panel="Techniques")] = None,
    clip_value: Annotated[float | None, typer.Option(help="Clip gradient elements to [-v, v].",
                                                     rich_help_panel="Techniques")] = None,
    accumulation: Annotated[int, typer.Option(help="Micro-batches accumulated per optimizer step.",
                                              rich_help_panel="Techniques")] = 1,
    batch_rule: Annotated[str, typer.Option(help="Scale the lr with the batch size: none, linear (Goyal et al. "
                                                 "2017), sqrt.", rich_help_panel="Techniques")] = "none",
    base_batch_size: Annotated[int, typer.Option(help="Batch size the --lr was chosen for (batch rules).",
                                                 rich_help_panel="Techniques")] = 128,
    no_decay_bias_norm: Annotated[bool, typer.Option("--no-decay-bias-norm", help="No weight decay on biases "
                                                     "and normalization weights.",
                                                     rich_help_panel="Techniques")] = False,
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
    from optbench.cli.techniques import techniques

    extra = techniques(schedule=schedule, schedule_param=schedule_param or [], warmup=warmup,
                       label_smoothing=label_smoothing, penalty=penalty, penalty_param=penalty_param or [],
                       early_stopping=early_stopping, min_delta=min_delta, augment=augment or [],
                       averaging=averaging, averaging_param=averaging_param or [], precision=precision,
                       clip_norm=clip_norm, clip_value=clip_value, accumulation=accumulation,
                       batch_rule=batch_rule, base_batch_size=base_batch_size,
                       no_decay_bias_norm=no_decay_bias_norm)
    config = CompareConfig(task=task, optimizers=parse_optimizers(optimizers), seeds=seeds, epochs=epochs,
                           batch_size=batch_size, lr=lr, train_size=_parse_train_size(train_size),
                           target=target, workers=workers, study=study, techniques=extra)
    task_spec = validate(config)  # names and hyperparameters, before any output
    store_url = store or str(out / "optbench.db")
    console = Console(stderr=True, quiet=quiet, log_path=False)
    console.print(f"[bold]optbench compare[/] task={config.task} optimizers={','.join(config.optimizers)} "
                  f"lr={config.lr:g} batch_size={config.batch_size} epochs={config.epochs} "
                  f"train_size={train_size} seeds={config.seeds} workers={config.workers}"
                  + "".join(f" {k}={v}" for k, v in extra.items()))
    from optbench.cli.progress import StudyProgress

    with StudyProgress(len(config.optimizers) * config.seeds, console, metric=task_spec.target.metric) as progress:
        outcome = run_compare(config, store_url, on_event=progress.on_event, on_result=progress.on_result,
                              create_store_dir=store is None)
    summaries = summarize(outcome)
    command = "optbench " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "optbench compare"
    context = context_lines(outcome, store_url, command)
    files = write_outputs(outcome, summaries, out, context)
    stdout = Console() if sys.stdout.isatty() else Console(width=160)  # files get the whole table
    stdout.print(ranking_table(summaries, title=f"{outcome.task.name}: ranked by final test {outcome.task.target.metric} "
                                                f"(lr {config.lr:g}, batch {config.batch_size}, "
                                                f"{config.epochs} epochs, {config.seeds} seeds)"))
    if not quiet:
        for key in ("shared hyperparameters", "budget", "time-to-target", "runs", "study"):
            console.print(f"{key}: {context[key]}")
        console.print(f"wrote {files['report']}, {files['curves']} and {files['summary']}")
        console.print(f"full protocol (150 epochs, all data): {full_protocol_command(outcome)}")
    failed = [r for r in outcome.results if r.status.value == "failed"]
    if len(failed) == len(outcome.results):
        raise OptbenchError(f"every run failed; first error: {failed[0].error}")


def _catalogue_rows(kind: str) -> list[tuple[str, str, str]]:
    """(name, family, source) rows of a catalogue, sorted by name."""
    if kind == "optimizers":
        from optbench.optim import optimizers

        specs = [optimizers.get(n) for n in optimizers.names()]
        return [(s.name, s.family, s.source.splitlines()[0] if s.source else "") for s in specs]
    if kind == "schedules":
        from optbench.schedules import schedules

        return [(n, "schedule", schedules.get(n).source) for n in schedules.names()]
    if kind == "regularizers":
        from optbench.techniques import catalogue

        return [(t.name, t.family, t.source) for t in catalogue()]
    if kind == "tasks":
        from optbench.tasks import get_task, tasks

        return [(n, "task", get_task(n).description) for n in tasks.names()]
    if kind == "samplers":
        from optbench.search import samplers

        return [(n, "sampler", samplers.get(n).description) for n in samplers.names()]
    if kind == "pruners":
        from optbench.search import pruners

        return [(n, "pruner", pruners.get(n).description) for n in pruners.names()]
    if kind == "protocols":
        from optbench.study.protocols import protocols

        return [(n, "protocol", f"{protocols.get(n).summary} ({protocols.get(n).source})") for n in protocols.names()]
    from optbench.data import list_datasets

    return [(d.name, "dataset", d.description) for d in list_datasets()]


@app.command("list")
@handle_errors
def list_names(
    kind: Annotated[str, typer.Argument(help="What to list: optimizers, schedules, regularizers, tasks, datasets, "
                                              "protocols, samplers, pruners.")],
) -> None:
    """List a catalogue, one line each: name, family, source."""
    kinds = ("optimizers", "schedules", "regularizers", "tasks", "datasets", "protocols", "samplers", "pruners")
    if kind not in kinds:
        raise ConfigError("kind", kind, kinds)
    rows = _catalogue_rows(kind)
    width = max(len(name) for name, _, _ in rows)
    family_width = max(len(family) for _, family, _ in rows)
    for name, family, source in rows:
        typer.echo(f"{name:<{width}}  {family:<{family_width}}  {source}")


schedules_app = typer.Typer(help="Learning-rate schedules.", no_args_is_help=True)
app.add_typer(schedules_app, name="schedules")


@schedules_app.command("plot")
@handle_errors
def schedules_plot(
    name: Annotated[str, typer.Argument(help="Schedule name (optbench list schedules).")],
    params: Annotated[list[str] | None, typer.Argument(help="Parameters NAME=VALUE, e.g. gamma=0.5.")] = None,
    lr: Annotated[float, typer.Option(help="Base learning rate.")] = 0.1,
    steps: Annotated[int, typer.Option(help="Total optimizer steps.")] = 1000,
    steps_per_epoch: Annotated[int, typer.Option(help="Steps per epoch (for *_epochs parameters).")] = 100,
    out: Annotated[Path, typer.Option(help="PNG file to write.")] = Path("schedule.png"),
) -> None:
    """Write a PNG of learning rate versus step for a schedule."""
    from optbench.report import save_figure
    from optbench.schedules import make_schedule, parse_params, plot_schedule, schedule_values
    from optbench.core.spec import Direction

    _check_count("--steps", steps)
    _check_count("--steps-per-epoch", steps_per_epoch)
    if not lr > 0:
        raise ConfigError("--lr", lr, "a number > 0")
    schedule = make_schedule(name, lr, total_steps=steps, steps_per_epoch=steps_per_epoch,
                             direction_of=lambda key: Direction.MINIMIZE, **parse_params(params or []))
    figure = plot_schedule(schedule_values(schedule, steps), repr(schedule), steps_per_epoch=steps_per_epoch)
    typer.echo(str(save_figure(figure, out)))


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
        table.add_row(info.name, f"{info.n_train:,}", f"{info.n_test:,}", "x".join(map(str, info.shape)) or "token",
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


@data_app.command("info")
@handle_errors
def data_info(name: Annotated[str, typer.Argument(help="Dataset name (see `optbench data list`).")]) -> None:
    """Describe a dataset: sizes, shape, classes (per-class counts when cached), checksum status of
    the cached files (verified / missing / corrupt; reads them, never downloads), where they are, sources."""
    from optbench.data import describe

    report = describe(name)
    unit = "tokens" if report.kind == "text" else "examples"
    lines = [f"name:        {report.name} ({report.kind})", f"description: {report.description}",
             "sizes:       " + ", ".join(f"{split} {count:,}" for split, count in report.sizes.items()) + f" {unit}",
             "example:     " + ("one token id" if report.kind == "text" else f"shape {report.shape}")]
    if report.kind == "text":
        lines.append(f"vocabulary:  {report.classes:,} tokens")
    else:
        lines.append(f"classes:     {report.classes}")
        for split, counts in (report.class_counts or {}).items():
            lines.append(f"  {split + ':':<6} " + " ".join(f"{i}:{c}" for i, c in enumerate(counts)))
        if report.class_counts is None:
            lines.append(f"  (per-class counts once the data is cached: `optbench data fetch {report.name}`)")
    lines += [f"checksums:   {report.status}", f"directory:   {report.directory}"]
    lines += [f"  {f.path.name}  {'-' if f.size is None else f'{f.size:,} bytes'}  {f.status}" for f in report.files]
    lines += ["sources:"] + [f"  {i}. {source}" for i, source in enumerate(report.sources, 1)]
    for line in lines:
        typer.echo(line)


def _register_commands() -> None:
    """Commands that live in their own modules (each module's ``register(app, handle_errors)``)."""
    from optbench.cli import report as cli_report, study as cli_study, trajectory as cli_trajectory, distributed as distributed_cli

    cli_report.register(app, handle_errors)
    cli_study.register(app, handle_errors)
    cli_trajectory.register(app, handle_errors)
    distributed_cli.register(app, handle_errors)


_register_commands()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``optbench`` console script; returns the exit code."""
    try:
        app(args=argv, prog_name="optbench")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
