"""`optbench report`: the self-contained HTML report of a stored study."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from optbench.cli.common import existing_store, handle_errors


def report_command(
    store: Annotated[str | None, typer.Argument(help="Results database: SQLite file or SQLAlchemy URL "
                                                     "(default: $OPTBENCH_STORE).")] = None,
    study: Annotated[str | None, typer.Option(help="Study name (default: the only study, else every run).")]
    = None,
    out: Annotated[Path, typer.Option(help="Directory for index.html, figures/ and tables/.")]
    = Path("optbench-report"),
) -> None:
    """Write OUT/index.html (one self-contained file, readable offline), the plots as PNG and SVG
    under OUT/figures/ and the tables as Markdown, CSV and LaTeX under OUT/tables/."""
    from optbench.report.html import report_from_store

    files = report_from_store(existing_store(store), out, study=study)
    typer.echo(f"wrote {files.html} ({len(files.figures)} figures, {len(files.tables)} tables)")


def register(app: typer.Typer, errors: Callable = handle_errors) -> None:
    """Add ``report`` to ``app`` (``errors``: the decorator turning optbench errors into exit codes)."""
    app.command("report")(errors(report_command))


__all__ = ["register", "report_command"]
