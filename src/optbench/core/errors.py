"""Errors raised by optbench.

Every error a user can cause by bad input is a :class:`ConfigError`: it names the
field, the value given and what is allowed, and renders as one line. The CLI turns
it into that line on stderr and exit code 2.
"""

from __future__ import annotations

from collections.abc import Iterable


class OptbenchError(Exception):
    """Base class of every error optbench raises on purpose."""


class ConfigError(OptbenchError, ValueError):
    """Bad user input: an unknown name, an out-of-range value, an unreadable path.

    Args:
        field: the name of the input that is wrong, e.g. ``"optimizer"``, ``"--epochs"``.
        value: what the user gave.
        allowed: what would have been accepted; a string (``"an integer >= 1"``) or
            names (joined into a sorted, comma-separated list).
    """

    def __init__(self, field: str, value: object, allowed: str | Iterable[str]) -> None:
        if not isinstance(allowed, str):
            allowed = ", ".join(sorted(allowed))
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"invalid {field} {value!r}; allowed: {allowed}")


class UnknownNameError(ConfigError, KeyError):
    """A registry lookup of a name that is not registered; lists the known names."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]


class Problem:
    """One problem found while validating a configuration file: where and what.

    Args:
        source: the file (or ``"<api>"`` for a structure built in Python).
        path: the key path inside it, e.g. ``"search.space.lr.low"``.
        message: what is wrong and what is allowed, e.g. ``"a log range needs low > 0, got 0"``.
    """

    __slots__ = ("message", "path", "source")

    def __init__(self, source: str, path: str, message: str) -> None:
        self.source, self.path, self.message = str(source), path, message

    def __str__(self) -> str:
        return f"{self.source}: {self.path}: {self.message}"

    def __repr__(self) -> str:
        return f"Problem({self.source!r}, {self.path!r}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Problem) and (self.source, self.path, self.message) == (
            other.source, other.path, other.message)

    def __hash__(self) -> int:
        return hash((self.source, self.path, self.message))


class ConfigProblems(ConfigError):
    """Every problem of a configuration, found in one pass (a study file, say).

    Renders as one line per problem; ``problems`` keeps them as :class:`Problem` objects.
    The CLI exits with code 2 like for any :class:`ConfigError`.

    Raises:
        ValueError: when constructed with no problems.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        if not self.problems:
            raise ValueError("ConfigProblems needs at least one problem")
        first = self.problems[0]
        self.field, self.value, self.allowed = first.path, first.source, first.message
        lines = [f"{len(self.problems)} problem(s) in the configuration:"] + [f"  {p}" for p in self.problems]
        Exception.__init__(self, "\n".join(lines))


class DataUnavailableError(OptbenchError):
    """A dataset could not be obtained from any source, or failed its checksum."""


def require_positive(field: str, value: float | int, *, integer: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``value`` is > 0 (and an int when ``integer``)."""
    kind = "an integer" if integer else "a number"
    if integer and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(field, value, f"{kind} > 0")
    if not value > 0:  # also rejects NaN
        raise ConfigError(field, value, f"{kind} > 0")
