"""``--log KIND[:WHERE]``: where the runs of a command are logged as they progress (see
docs/architecture.md, Layers: ``tracking/``).

Two kinds, each optionally followed by ``:`` and a destination (the first ``:`` splits, so a URI
keeps its own colons):

* ``tensorboard[:DIR]``: one TensorBoard event directory per run under ``DIR`` (default
  ``OUT/tensorboard``);
* ``mlflow[:URI]``: an MLflow tracking URI (``sqlite:///runs.db``, ``http://host:5000``), or a
  directory, which holds an MLflow SQLite database ``mlflow.db`` and the artifacts
  (default ``OUT/mlruns``).

Parsing touches nothing; :func:`parse_logs` runs before anything else of a command, so bad input
exits with code 2 before anything runs or is stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from optbench.core.errors import ConfigError

KINDS = ("tensorboard", "mlflow")
#: What ``--log`` accepts, as error messages and help texts say it.
ALLOWED = "tensorboard[:DIR] or mlflow[:URI]"


@dataclass(frozen=True)
class LogSpec:
    """One ``--log`` value.

    Attributes:
        kind: ``tensorboard`` or ``mlflow``.
        target: the directory or URI given after ``:``; None for the default under the output directory.
        text: the value as given (for messages).
    """

    kind: str
    target: str | None
    text: str


def parse_log(text: str, field: str = "--log") -> LogSpec:
    """One ``--log`` value: ``tensorboard``, ``tensorboard:DIR``, ``mlflow`` or ``mlflow:URI``
    (the kind is case-insensitive).

    Raises:
        ConfigError: naming ``field`` and :data:`ALLOWED`, for another kind or an empty destination.
    """
    kind, sep, target = str(text).strip().partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS or (sep and not target.strip()):
        raise ConfigError(field, text, ALLOWED)
    return LogSpec(kind, target.strip() if sep else None, str(text))


def parse_logs(items: Iterable[str] | None, field: str = "--log") -> tuple[LogSpec, ...]:
    """Every ``--log`` value of a command, in order; repeating the same destination is an error.

    Raises:
        ConfigError: see :func:`parse_log`; also for a destination given twice.
    """
    out: list[LogSpec] = []
    for text in items or ():
        spec = parse_log(text, field)
        if any((s.kind, s.target) == (spec.kind, spec.target) for s in out):
            raise ConfigError(field, text, f"{ALLOWED}, each destination once")
        out.append(spec)
    return tuple(out)


__all__ = ["ALLOWED", "KINDS", "LogSpec", "parse_log", "parse_logs"]
