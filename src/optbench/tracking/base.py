"""The one interface every tracker implements: a consumer of a run's life as the executor reports
it (:class:`~optbench.runs.executor.RunStarted`, :class:`~optbench.runs.executor.EpochDone`,
:class:`~optbench.runs.executor.RunDone`), in the calling process (docs/architecture.md, Layers:
``tracking/``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from optbench.core.spec import EpochRecord, RunResult
from optbench.tracking.record import RunInfo


class RunLogger(Protocol):
    """A tracker (TensorBoard, MLflow). Every method may raise any exception of its library;
    :class:`~optbench.tracking.router.Tracking` stops using a tracker that raised, so training is
    never disturbed by logging.

    Promises of an implementation: a run is logged at most once per destination (a run found
    there already is left as it is), and a run started but never finished (an interrupted session)
    does not keep a later, finished logging of the same run from happening.
    """

    #: What messages call the tracker (``tensorboard DIR``, ``mlflow URI``).
    where: str

    def start(self, study: str, run: RunInfo) -> None:
        """``run`` of ``study`` began training here: open its record (unless logged already)."""

    def epoch(self, study: str, run: RunInfo, record: EpochRecord) -> None:
        """``run`` measured an epoch: log its scalars (step = ``record.epoch``)."""

    def finish(self, study: str, result: RunResult) -> None:
        """``result`` is stored: close the record of a run started here with its status, or log a
        run found completed in the store (all its epochs at once) unless logged already."""

    def attach_report(self, study: str, run_ids: Sequence[str], path: Path) -> None:
        """Attach the HTML report ``path`` of ``study`` to the records of ``run_ids`` (a tracker
        without artifacts does nothing)."""

    def close(self) -> None:
        """Release files and connections; a run still open stays unfinished."""


__all__ = ["RunLogger"]
