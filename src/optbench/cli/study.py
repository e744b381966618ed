"""`optbench study run|status|list`: run a study file, follow its progress, list the stored studies.

``register(app)`` adds the ``study`` sub-command group to the main typer app.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

#: The default store of ``optbench compare`` (``--out`` then ``optbench.db`` in it).
DEFAULT_OUT = Path("optbench-out")
DEFAULT_STORE = str(DEFAULT_OUT / "optbench.db")


def _existing_store(store: str) -> str:
    from optbench.core.errors import ConfigError

    if "://" not in store and not Path(store).is_file():
        raise ConfigError("STORE", store, "an existing SQLite file or a SQLAlchemy URL")
    return store


def run_command(
    file: Annotated[Path, typer.Argument(help="Study file (TOML); see examples/studies/.")],
    store: Annotated[str | None, typer.Option(help="Results database: SQLite file or SQLAlchemy URL "
                                                   "[default: OUT/optbench.db].")] = None,
    out: Annotated[Path, typer.Option(help="Directory for index.html and protocol.md.")] = DEFAULT_OUT,
    workers: Annotated[int, typer.Option(help="Parallel runs in separate processes.")] = 1,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and show the plan; run nothing.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    checkpoints: Annotated[Path | None, typer.Option(
        "--checkpoints", metavar="DIR", help="Save per-epoch checkpoints in DIR: a killed run resumes from its "
                                             "last epoch [default: the file's [execution] section].")] = None,
) -> None:
    """Run (or resume) a study file: validate it (every problem at once, nothing written on bad input),
    run its protocol, print the protocol's tables, write the HTML report and OUT/protocol.md."""
    from optbench.core.errors import ConfigError
    from optbench.report.protocols import protocol_rich_tables
    from optbench.study.config import load_study
    from optbench.study.runner import describe_plan, run_study, write_study_outputs

    if workers < 1:
        raise ConfigError("--workers", workers, "an integer >= 1")
    config = load_study(file)
    console = Console(stderr=True, quiet=quiet, highlight=False)
    if dry_run:
        for line in describe_plan(config):
            typer.echo(line)
        return
    store_url = store or str(out / "optbench.db")
    for line in describe_plan(config)[:6]:
        console.print(line, markup=False)
    outcome = run_study(config, store_url, workers=workers, create_store_dir=store is None,
                        on_event=None if quiet else _progress(console), checkpoint_dir=checkpoints)
    files = write_study_outputs(outcome, store_url, out)
    stdout = Console(width=160) if not Console().is_terminal else Console()
    for table in protocol_rich_tables(outcome.result):
        stdout.print(table)
    console.print(f"runs stored for study {config.name}: {len(outcome.results)} (at most {outcome.planned} planned)")
    console.print(f"wrote {files['report']} and {files['protocol']}")


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


def _eta(finished: list[float], pending: int, workers: int) -> str:
    if pending <= 0:
        return "done"
    if not finished:
        return "unknown (no finished run yet)"
    seconds = statistics.fmean(finished) * pending / max(1, workers)
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def study_status(store: str, study: str | None = None) -> list[dict[str, Any]]:
    """Per study: runs done / planned, running (claims), failed and diverged runs with messages,
    mean run time (s) and ETA from it and the workers seen.

    Raises:
        ConfigError: an unknown study (lists the known ones) or a store that does not exist.
    """
    from optbench.core.errors import ConfigError
    from optbench.runs.store import open_store

    with open_store(_existing_store(store)) as db:
        infos = {s.name: s for s in db.studies()}
        if study is not None and study not in infos:
            raise ConfigError("--study", study, sorted(infos) or "none (the store has no study)")
        out = []
        for name in [study] if study is not None else list(infos):
            info = infos[name]
            runs = db.load_runs(study=name)
            claims = db.claims(name)
            stored = {r.run_id for r in runs}
            running = [c for c in claims if c.run_id not in stored]
            planned = max(info.n_runs, int(info.config.get("planned_runs") or 0))
            done = info.n_finished + info.n_diverged
            times = [r.total_seconds for r in runs if r.status.value in ("finished", "diverged")]
            workers = len({(c.host, c.worker) for c in claims}) or 1
            out.append({
                "study": name, "protocol": info.config.get("protocol", "?"), "done": done, "planned": planned,
                "running": running, "workers": workers,
                "problems": [r for r in runs if r.status.value in ("failed", "diverged")],
                "mean_seconds": statistics.fmean(times) if times else math.nan,
                "eta": _eta(times, planned - done - info.n_failed, workers),
            })
        return out


def status_command(
    store: Annotated[str, typer.Argument(help="Results database: SQLite file or SQLAlchemy URL.")],
    study: Annotated[str | None, typer.Option(help="Only this study [default: every study].")] = None,
) -> None:
    """Per study: runs done / planned, running runs (claims), failed and diverged runs with their
    messages, and an ETA from the mean run time and the workers seen."""
    console = Console(highlight=False)
    for s in study_status(store, study):
        console.print(f"[bold]{s['study']}[/] ({s['protocol']}): {s['done']}/{s['planned']} runs done, "
                      f"{len(s['running'])} running on {s['workers']} worker(s), ETA {s['eta']}")
        for claim in s["running"]:
            console.print(f"  running {claim.run_id} on {claim.worker}@{claim.host} (pid {claim.pid}), "
                          f"heartbeat {claim.heartbeat_at:%Y-%m-%d %H:%M:%S}", markup=False)
        for run in s["problems"]:
            message = (run.error or "").splitlines()[0] if run.error else ""
            console.print(f"  {run.status.value} {run.run_id} {run.task} {run.recipe.label} seed {run.seed}: "
                          f"{message}", markup=False)


def list_command(
    store: Annotated[str, typer.Argument(help="Results database: SQLite file or SQLAlchemy URL.")] = DEFAULT_STORE,
) -> None:
    """The studies in the store: protocol, runs done/planned, failed, created (UTC)."""
    from rich.table import Table

    from optbench.runs.store import open_store

    with open_store(_existing_store(store)) as db:
        infos = db.studies()
    table = Table(title=f"studies in {store}")
    for column in ("study", "protocol", "done", "planned", "diverged", "failed", "created (UTC)"):
        table.add_column(column, justify="right" if column in ("done", "planned", "diverged", "failed") else "left")
    for s in infos:
        planned = max(s.n_runs, int(s.config.get("planned_runs") or 0))
        created = s.created_at.astimezone(UTC) if s.created_at.tzinfo else s.created_at.replace(tzinfo=UTC)
        table.add_row(s.name, str(s.config.get("protocol", "?")), str(s.n_finished + s.n_diverged), str(planned),
                      str(s.n_diverged), str(s.n_failed), f"{created:%Y-%m-%d %H:%M}")
    Console(width=160).print(table)


def register(app: typer.Typer, handle_errors: Callable | None = None) -> None:
    """Add the ``study`` group (``run``, ``status``, ``list``) to ``app``. ``handle_errors`` turns
    optbench errors into exit codes (default: :func:`optbench.cli.main.handle_errors`)."""
    if handle_errors is None:
        from optbench.cli.main import handle_errors
    study_app = typer.Typer(help="Studies from TOML files: run them, follow them, list them.", no_args_is_help=True)
    study_app.command("run")(handle_errors(run_command))
    study_app.command("status")(handle_errors(status_command))
    study_app.command("list")(handle_errors(list_command))
    app.add_typer(study_app, name="study")


__all__ = ["list_command", "register", "run_command", "status_command", "study_status"]
