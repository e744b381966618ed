"""What every command module of the command line shares: turning optbench's errors into one line
and an exit code, and the parsing of the options several commands take.

Bad input (unknown names, out-of-range numbers, an unusable store path) prints one line
``optbench: error: ...`` naming the field and the allowed values and exits with code 2; nothing is
written. Data that cannot be obtained exits with code 1 and says how to fix it.
"""

from __future__ import annotations

import functools
import os
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import typer
from rich.console import Console

from optbench.core.errors import ConfigError, DataUnavailableError, OptbenchError
from optbench.core.urls import redact_text

F = TypeVar("F", bound=Callable[..., object])

#: The default output directory of ``optbench compare`` and ``optbench study run`` (its store:
#: ``OUT/optbench.db``).
DEFAULT_OUT = Path("optbench-out")
DEFAULT_STORE = DEFAULT_OUT / "optbench.db"
#: The environment variable holding the default store (SQLite path or SQLAlchemy URL) of every
#: command that takes one, when ``--store`` (or ``STORE``) is not given.
STORE_ENV = "OPTBENCH_STORE"
#: The help of ``--save-weights`` (``compare``, ``run``, ``study run``; :mod:`optbench.runs.weights`).
SAVE_WEIGHTS_HELP = ("Store every finished run's final weights next to a SQLite store (STORE.weights/), so that later "
                     "runs can start from or learn from them (init_from, lwf, ewc).")
#: The help of ``--log`` (``compare``, ``run``, ``study run``; parsed by :mod:`optbench.tracking.spec`).
LOG_HELP = ("Log every run live, per epoch: tensorboard[:DIR] (default OUT/tensorboard) or mlflow[:URI] (a tracking "
            "URI, or a directory for an MLflow SQLite database; default OUT/mlruns). Repeatable.")


def _fail(message: str, code: int) -> typer.Exit:
    Console(stderr=True, highlight=False, soft_wrap=True).print(redact_text(message), markup=False)
    return typer.Exit(code)


def handle_errors(command: F) -> F:
    """Turn optbench's errors into one line on stderr and an exit code: 2 for bad input
    (:class:`ConfigError`), 1 for unavailable data or other failures, 130 when interrupted.
    Every credential in the message (a store URL's password) is hidden
    (:func:`optbench.core.urls.redact_text`)."""

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


def check_count(field: str, value: int | None) -> None:
    """ConfigError naming ``field`` unless ``value`` is None or an integer >= 1."""
    if value is not None and value < 1:
        raise ConfigError(field, value, "an integer >= 1")


def check_lr(value: float | None, field: str = "--lr") -> None:
    """ConfigError naming ``field`` unless ``value`` is None or a number > 0."""
    if value is not None and not value > 0:
        raise ConfigError(field, value, "a number > 0")


def parse_train_size(text: str) -> int | None | str:
    """``--train-size``: an integer >= 1, ``all`` (None) or ``auto`` (``"auto"``: resolved once the
    data are loaded)."""
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


def given_store(store: str | Path | None) -> str | None:
    """The store the user chose: ``store`` (``--store`` or ``STORE``) when given, else
    ``$OPTBENCH_STORE`` when set and not blank, else None (the command's default applies). Its
    password is never shown (every output goes through :mod:`optbench.core.urls`); a PostgreSQL URL
    without a password uses libpq's ``PGPASSWORD``, ``~/.pgpass`` or ``PGSERVICE``.

    Raises:
        nothing.
    """
    chosen = str(store) if store is not None and str(store).strip() else os.environ.get(STORE_ENV, "").strip() or None
    return chosen


def resolve_store(store: str | Path | None, default: str | Path) -> str:
    """The store a command uses: ``--store``, else ``$OPTBENCH_STORE``, else ``default``
    (see :func:`given_store`).

    Raises:
        nothing.
    """
    return given_store(store) or str(default)


def existing_store(store: str | None, default: str | Path | None = None) -> str:
    """The store of a command that only reads (``store``, else ``$OPTBENCH_STORE``, else
    ``default``) when it is an existing SQLite file or a SQLAlchemy URL.

    Raises:
        ConfigError: naming ``STORE``, when it is neither, or when none of the three is given.
    """
    chosen = given_store(store) or (None if default is None else str(default))
    if chosen is None:
        raise ConfigError("STORE", "", f"a SQLite file or a SQLAlchemy URL, as an argument or in ${STORE_ENV}")
    if "://" not in chosen and not Path(chosen).is_file():
        raise ConfigError("STORE", chosen, "an existing SQLite file or a SQLAlchemy URL")
    return chosen


def command_line(argv: Sequence[str], default: str = "optbench") -> str:
    """The command ``optbench ARGS...`` of ``argv`` (the arguments after the program name) as a
    shell would take it, with every credential hidden (:func:`optbench.core.urls.redact_text`):
    what a report shows as the command that reproduces it. ``default`` when ``argv`` is empty.

    Raises:
        nothing.
    """
    if not argv:
        return default
    return "optbench " + " ".join(shlex.quote(redact_text(a)) for a in argv)


def warning_printer() -> Callable[[str], None]:
    """A function printing ``optbench: warning: LINE`` on stderr (also under ``--quiet``), with every
    credential hidden (:func:`optbench.core.urls.redact_text`)."""
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    return lambda line: console.print(redact_text(f"optbench: warning: {line}"), markup=False)


def stdout_console() -> Console:
    """The console tables are printed to: the terminal's width, or 160 columns when stdout is a
    file or a pipe (so that files get whole tables)."""
    return Console() if Console().is_terminal else Console(width=160)


__all__ = ["DEFAULT_OUT", "DEFAULT_STORE", "LOG_HELP", "SAVE_WEIGHTS_HELP", "STORE_ENV", "check_count", "check_lr",
           "command_line",
           "existing_store", "given_store", "handle_errors", "parse_train_size", "resolve_store", "stdout_console",
           "warning_printer"]
