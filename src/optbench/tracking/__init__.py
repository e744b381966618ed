"""Results where users look: every run of ``optbench compare``, ``optbench run`` and ``optbench
study run`` logged live to TensorBoard and MLflow (``--log tensorboard[:DIR]``, ``--log
mlflow[:URI]``, repeatable); see docs/architecture.md, Layers: ``tracking/``.

The trackers consume the executor's progress events in the calling process
(:class:`~optbench.tracking.router.Tracking`), so parallel workers need no tracker. Runs found
stored already are logged once from their stored result; a run already at a destination is never
logged there again. The libraries (``tensorboard``, ``mlflow``) are imported only when a tracker
is created, never with optbench.

Modules: :mod:`~optbench.tracking.spec` (parsing ``--log``), :mod:`~optbench.tracking.record`
(what is logged), :mod:`~optbench.tracking.base` (the tracker interface),
:mod:`~optbench.tracking.router` (events to trackers), :mod:`~optbench.tracking.tensorboard`,
:mod:`~optbench.tracking.mlflow`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from optbench.tracking.base import RunLogger
from optbench.tracking.router import StudyName, Tracking, chain
from optbench.tracking.spec import ALLOWED, LogSpec, parse_log, parse_logs

#: Where each kind logs under the output directory ``OUT`` when ``--log`` names no destination.
DEFAULT_DIRS = {"tensorboard": "tensorboard", "mlflow": "mlruns"}


def open_logger(spec: LogSpec, out: str | Path) -> RunLogger:
    """The tracker of one ``--log`` value; a value without destination logs under ``out``
    (:data:`DEFAULT_DIRS`).

    Raises:
        ConfigError: (field ``--log``) the tracker's package is missing or its destination
            cannot be opened.
    """
    target = spec.target if spec.target is not None else str(Path(out) / DEFAULT_DIRS[spec.kind])
    if spec.kind == "tensorboard":
        from optbench.tracking.tensorboard import TensorBoardLogger

        return TensorBoardLogger(target)
    from optbench.tracking.mlflow import MlflowLogger

    return MlflowLogger(target)


def open_tracking(specs: Sequence[LogSpec], *, out: str | Path, study: StudyName,
                  warn: Callable[[str], None] | None = None) -> Tracking:
    """The :class:`Tracking` of a command's ``--log`` values (none: a Tracking that logs nothing).

    Args:
        specs: from :func:`parse_logs`.
        out: the command's output directory (default destinations live under it).
        study: the study name, or a function of the first run giving it.
        warn: receives one line when a tracker fails while the command runs.

    Raises:
        ConfigError: see :func:`open_logger` (trackers opened before it are closed).
    """
    loggers: list[RunLogger] = []
    try:
        for spec in specs:
            loggers.append(open_logger(spec, out))
    except BaseException:
        for logger in loggers:
            logger.close()
        raise
    return Tracking(loggers, study, warn=warn)


__all__ = ["ALLOWED", "DEFAULT_DIRS", "LogSpec", "RunLogger", "StudyName", "Tracking", "chain", "open_logger",
           "open_tracking", "parse_log", "parse_logs"]
