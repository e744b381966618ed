"""`optbench study run|status|list`: run a study file, follow its progress, list the stored studies.

``register(app)`` adds the ``study`` sub-command group to the main typer app.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from optbench.cli.common import (
    DEFAULT_OUT,
    DEFAULT_STORE,
    LOG_HELP,
    SAVE_WEIGHTS_HELP,
    check_count,
    existing_store,
    given_store,
    handle_errors,
    stdout_console,
    warning_printer,
)


def run_command(
    file: Annotated[Path, typer.Argument(help="Study file (TOML); see examples/studies/.")],
    store: Annotated[str | None, typer.Option(help="Results database: SQLite file or SQLAlchemy URL "
                                                   "(default: $OPTBENCH_STORE, else OUT/optbench.db).")] = None,
    out: Annotated[Path, typer.Option(help="Directory for index.html and protocol.md.")] = DEFAULT_OUT,
    workers: Annotated[int, typer.Option(help="Parallel runs in separate processes.")] = 1,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and show the plan; run nothing.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    checkpoints: Annotated[Path | None, typer.Option(
        "--checkpoints", metavar="DIR", help="Save per-epoch checkpoints in DIR: a killed run resumes from its "
                                             "last epoch (default: the file's execution section).")] = None,
    log: Annotated[list[str] | None, typer.Option("--log", metavar="KIND[:WHERE]", help=LOG_HELP)] = None,
    optuna_storage: Annotated[str | None, typer.Option(
        "--optuna-storage", metavar="URL", help="Also write every search's trials, live, into this Optuna storage "
                                                "(an SQLAlchemy URL, or 'store' for the results database) for "
                                                "optuna-dashboard (default: the file's [search] optuna_storage, "
                                                "else none).")] = None,
    save_weights: Annotated[bool, typer.Option("--save-weights", help=SAVE_WEIGHTS_HELP.replace(
        "next to a SQLite store (STORE.weights/)", "in the file's [execution] weights_dir (default STORE.weights/ "
                                                   "next to a SQLite store)"))] = False,
) -> None:
    """Run (or resume) a study file: validate it (every problem at once, nothing written on bad input),
    run its protocol, print the protocol's tables, write the HTML report and OUT/protocol.md."""
    from optbench.report.protocols import protocol_rich_tables
    from optbench.study.config import load_study
    from optbench.study.runner import describe_plan, run_study, write_study_outputs
    from optbench.tracking import chain, open_tracking, parse_logs

    logs = parse_logs(log)
    check_count("--workers", workers)
    config = load_study(file)
    if optuna_storage is not None:
        config = config.with_optuna_storage(optuna_storage)
    console = Console(stderr=True, quiet=quiet, highlight=False)
    if dry_run:
        for line in describe_plan(config):
            typer.echo(line)
        return
    chosen = given_store(store)  # --store, else $OPTBENCH_STORE
    store_url = chosen or str(out / "optbench.db")
    for line in describe_plan(config)[:6]:
        console.print(line, markup=False)
    with open_tracking(logs, out=out, study=config.name, warn=warning_printer()) as tracking:
        outcome = run_study(config, store_url, workers=workers, create_store_dir=chosen is None,
                            on_event=chain(None if quiet else _progress(console), tracking.on_event),
                            checkpoint_dir=checkpoints, save_weights=save_weights)
        files = write_study_outputs(outcome, store_url, out)
        tracking.complete(outcome.results, report=files["report"])
    stdout = stdout_console()
    for table in protocol_rich_tables(outcome.result):
        stdout.print(table)
    console.print(f"runs stored for study {config.name}: {len(outcome.results)} (at most {outcome.planned} planned)")
    console.print(f"wrote {files['report']} and {files['protocol']}")
    for logger in tracking.loggers:
        console.print(f"logged to {logger.where}", markup=False)


def _progress(console: Console) -> Callable[[Any], None]:
    """One line per finished run (events of the executor)."""
    def on_event(event: Any) -> None:
        result = getattr(event, "result", None)
        if result is not None and not getattr(event, "skipped", False):
            hp = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in result.recipe.hyperparams.items())
            extra = "" if result.recipe.schedule == "constant" else f" {result.recipe.schedule}"
            console.print(f"  {result.task} {result.recipe.label}({hp}){extra} seed {result.seed}: "
                          f"{result.status.value} ({result.total_seconds:.1f} s)", markup=False)
    return on_event


def _eta(status: Any) -> str:
    """The time left of a :class:`~optbench.study.status.StudyStatus` as text."""
    from optbench.analysis.timing import estimate_remaining
    from optbench.cli.progress import format_duration

    if status.pending == 0:
        return "done"
    remaining = estimate_remaining(status.seconds, status.pending, status.workers)
    return "unknown (no finished run yet)" if remaining is None else format_duration(remaining.seconds)


def status_command(
    store: Annotated[str | None, typer.Argument(help="Results database: SQLite file or SQLAlchemy URL "
                                                     "(default: $OPTBENCH_STORE).")] = None,
    study: Annotated[str | None, typer.Option(help="Only this study (default: every study).")] = None,
) -> None:
    """Per study: runs done / planned, running runs (claims), failed and diverged runs with their
    messages, and an ETA from the mean run time and the workers seen."""
    from optbench.study.status import study_status

    console = Console(highlight=False)
    for s in study_status(existing_store(store), study):
        console.print(f"[bold]{s.study}[/] ({s.protocol}): {s.done}/{s.planned} runs done, "
                      f"{len(s.running)} running on {s.workers} worker(s), ETA {_eta(s)}")
        for claim in s.running:
            worker = claim.worker
            console.print(f"  running {claim.run_id} on {worker.name}@{worker.host} (pid {worker.pid}), "
                          f"heartbeat {claim.heartbeat_at:%Y-%m-%d %H:%M:%S}", markup=False)
        for run in s.problems:
            message = (run.error or "").splitlines()[0] if run.error else ""
            console.print(f"  {run.status.value} {run.run_id} {run.task} {run.recipe.label} seed {run.seed}: "
                          f"{message}", markup=False)


def list_command(
    store: Annotated[str | None, typer.Argument(help="Results database: SQLite file or SQLAlchemy URL "
                                                     f"(default: $OPTBENCH_STORE, else {DEFAULT_STORE}).")] = None,
) -> None:
    """The studies in the store: protocol, runs done/planned, failed, created (UTC)."""
    from rich.table import Table

    from optbench.core.urls import redact_url
    from optbench.runs.store import open_store

    store = existing_store(store, DEFAULT_STORE)
    with open_store(store) as db:
        infos = db.studies()
    table = Table(title=f"studies in {redact_url(store)}")
    for column in ("study", "protocol", "done", "planned", "diverged", "failed", "created (UTC)"):
        table.add_column(column, justify="right" if column in ("done", "planned", "diverged", "failed") else "left")
    for s in infos:
        planned = max(s.n_runs, int(s.config.get("planned_runs") or 0))
        created = s.created_at.astimezone(UTC) if s.created_at.tzinfo else s.created_at.replace(tzinfo=UTC)
        table.add_row(s.name, str(s.config.get("protocol", "?")), str(s.n_finished + s.n_diverged), str(planned),
                      str(s.n_diverged), str(s.n_failed), f"{created:%Y-%m-%d %H:%M}")
    Console(width=160).print(table)


def register(app: typer.Typer, errors: Callable = handle_errors) -> None:
    """Add the ``study`` group (``run``, ``status``, ``list``) to ``app`` (``errors``: the decorator
    turning optbench errors into exit codes)."""
    study_app = typer.Typer(help="Studies from TOML files: run them, follow them, list them.", no_args_is_help=True)
    study_app.command("run")(errors(run_command))
    study_app.command("status")(errors(status_command))
    study_app.command("list")(errors(list_command))
    app.add_typer(study_app, name="study")


__all__ = ["list_command", "register", "run_command", "status_command"]
