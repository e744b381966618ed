"""What every command module of the command line shares: turning optbench's errors into one line
and an exit code, and the parsing of the options several commands take.

Bad input (unknown names, out-of-range numbers, an unusable store path) prints one line
``optbench: error: ...`` naming the field and the allowed values and exits with code 2; nothing is
written. Data that cannot be obtained exits with code 1 and says how to fix it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import typer
from rich.console import Console

from optbench.core.errors import ConfigError, DataUnavailableError, OptbenchError

F = TypeVar("F", bound=Callable[..., object])

#: The default output directory of ``optbench compare`` and ``optbench study run`` (its store:
#: ``OUT/optbench.db``).
DEFAULT_OUT = Path("optbench-out")
DEFAULT_STORE = DEFAULT_OUT / "optbench.db"


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


def existing_store(store: str) -> str:
    """``store`` when it is an existing SQLite file or a SQLAlchemy URL (commands that only read).

    Raises:
        ConfigError: naming ``STORE``.
    """
    if "://" not in store and not Path(store).is_file():
        raise ConfigError("STORE", store, "an existing SQLite file or a SQLAlchemy URL")
    return store


def stdout_console() -> Console:
    """The console tables are printed to: the terminal's width, or 160 columns when stdout is a
    file or a pipe (so that files get whole tables)."""
    return Console() if Console().is_terminal else Console(width=160)


__all__ = ["DEFAULT_OUT", "DEFAULT_STORE", "check_count", "check_lr", "existing_store", "handle_errors",
           "parse_train_size", "stdout_console"]
