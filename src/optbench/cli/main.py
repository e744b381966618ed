"""The ``optbench`` command line: the typer application and its entry point :func:`main`.

Every command lives in the module of its group and is added here by that module's
``register(app)``; no command module imports this one. Bad input prints one line
``optbench: error: ...`` and exits with code 2 (:func:`optbench.cli.common.handle_errors`).
"""

from __future__ import annotations

import sys

import typer

from optbench.cli import (
    compare,
    data,
    distributed,
    federated,
    listing,
    report,
    schedules,
    study,
    trajectory,
)
from optbench.cli.common import handle_errors

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=False,
                  help="Compare neural-network training methods fairly and fast.")
for _module in (compare, listing, schedules, data, study, report, trajectory, distributed, federated):
    _module.register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``optbench`` console script; returns the exit code."""
    try:
        app(args=argv, prog_name="optbench")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


__all__ = ["app", "handle_errors", "main"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
