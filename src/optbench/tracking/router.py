"""Feed the executor's progress events to the trackers of a command, in the calling process
(docs/architecture.md, Layers: ``tracking/``): worker processes never log; the events they send
back (:func:`optbench.runs.executor.execute_plan`) are what is logged, live, per epoch.

A tracker that raises is reported once through ``warn`` and not used again for the rest of the
command: a logging problem (a locked database, a full disk) never fails or changes a run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Self

from optbench.core.spec import RunResult
from optbench.runs.executor import EpochDone, RunDone, RunStarted
from optbench.runs.plan import RunSpec
from optbench.tracking.base import RunLogger
from optbench.tracking.record import RunInfo

#: The study a run is logged under: a name, or a function of the first run seen (for studies
#: named after settings resolved while the command runs, e.g. ``compare``'s training-set size).
StudyName = str | Callable[[RunSpec], str]


class Tracking:
    """The trackers of one command and the study they log under.

    Args:
        loggers: the trackers (see :func:`optbench.tracking.open_tracking`).
        study: the study name, or a function giving it from the first run seen (called once).
        warn: receives one line when a tracker fails (it is then dropped); default: ignored.

    Use as a context manager (trackers are closed on exit); pass :meth:`on_event` as the
    executor's ``on_event`` (or :meth:`on_result` where a caller turns ``RunDone`` into results),
    and call :meth:`complete` with every run of the command at its end.
    """

    def __init__(self, loggers: Sequence[RunLogger], study: StudyName, *,
                 warn: Callable[[str], None] | None = None) -> None:
        self.loggers = list(loggers)
        self._study = study
        self._warn = warn or (lambda line: None)
        self._finished: set[str] = set()
        self.failures: list[str] = []

    def __bool__(self) -> bool:
        return bool(self.loggers)

    def study(self, run: RunSpec) -> str:
        """The study name (resolved from ``run`` the first time when given as a function)."""
        if not isinstance(self._study, str):
            self._study = self._study(run)
        return self._study

    def _each(self, action: Callable[[RunLogger], Any]) -> None:
        for logger in list(self.loggers):
            try:
                action(logger)
            except Exception as exc:  # noqa: BLE001 - a tracker's failure must never fail a run
                self.loggers.remove(logger)
                line = f"logging to {logger.where} stopped: {type(exc).__name__}: {exc}".splitlines()[0]
                self.failures.append(line)
                self._warn(line)

    def on_event(self, event: Any) -> None:
        """An executor event: ``RunStarted``, ``EpochDone`` or ``RunDone`` (others are ignored)."""
        if not self.loggers:
            return
        if isinstance(event, RunStarted):
            study, info = self.study(event.spec), RunInfo.of(event.spec)
            self._each(lambda logger: logger.start(study, info))
        elif isinstance(event, EpochDone):
            study, info = self.study(event.spec), RunInfo.of(event.spec)
            self._each(lambda logger: logger.epoch(study, info, event.record))
        elif isinstance(event, RunDone):
            self._finish(self.study(event.spec), event.result)

    def on_result(self, result: RunResult, skipped: bool = False) -> None:
        """A run stored now or found stored (``skipped``), where the caller turns ``RunDone`` into
        results (``optbench.study.compare.run_compare``'s ``on_result``)."""
        if not self.loggers:
            return
        self._finish(self.study(RunSpec(result.task, result.task, result.recipe, result.seed)), result)

    def _finish(self, study: str, result: RunResult) -> None:
        if not self.loggers or result.run_id in self._finished:
            return
        self._finished.add(result.run_id)
        self._each(lambda logger: logger.finish(study, result))

    def complete(self, results: Iterable[RunResult], report: Path | None = None) -> None:
        """The end of the command: log every run of ``results`` not logged yet (e.g. trials of a
        search stored in an earlier session, which the executor does not report again), then
        attach the HTML ``report`` (when the command wrote one) to all of them."""
        results = list(results)
        if not self.loggers:
            return
        for result in results:
            self.on_result(result, True)
        if report is not None and results:
            study = self.study(RunSpec(results[0].task, results[0].task, results[0].recipe, results[0].seed))
            ids = [r.run_id for r in results]
            self._each(lambda logger: logger.attach_report(study, ids, Path(report)))

    def close(self) -> None:
        """Close every tracker."""
        self._each(lambda logger: logger.close())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def chain(*callbacks: Callable[..., None] | None) -> Callable[..., None] | None:
    """One callback calling each of ``callbacks`` (None ones left out) in order; None if none is left."""
    present = [c for c in callbacks if c is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]

    def call(*args: Any) -> None:
        for callback in present:
            callback(*args)

    return call


__all__ = ["StudyName", "Tracking", "chain"]
