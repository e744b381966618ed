"""`optbench report`: the self-contained HTML report of a stored study."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer


def report_command(
    store: Annotated[str, typer.Argument(help="Results database: SQLite file or SQLAlchemy URL.")],
    study: Annotated[str | None, typer.Option(help="Study name [default: the only study, else every run].")]
    = None,
    out: Annotated[Path, typer.Option(help="Directory for index.html, figures/ and tables/.")]
    = Path("optbench-report"),
) -> None:
    """Write OUT/index.html (one self-contained file, readable offline), the plots as PNG and SVG
    under OUT/figures/ and the tables as Markdown, CSV and LaTeX under OUT/tables/."""
    from optbench.core.errors import ConfigError
    from optbench.report.html import report_from_store

    if "://" not in store and not Path(store).is_file():
        raise ConfigError("STORE", store, "an existing SQLite file or a SQLAlchemy URL")
    files = report_from_store(store, out, study=study)
    typer.echo(f"wrote {files.html} ({len(files.figures)} figures, {len(files.tables)} tables)")


def register(app: typer.Typer, handle_errors: Callable) -> None:
    """Add ``report`` to ``app``; ``handle_errors`` turns optbench errors into exit codes."""
    app.command("report")(handle_errors(report_command))
