"""Terminal progress of a study (rich): an overall bar of runs with the estimated time left, and one
line per busy worker."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from optbench.analysis.timing import Remaining, estimate_remaining
from optbench.core.spec import RunResult, RunStatus
from optbench.runs.executor import EpochDone, Event, RunStarted


def format_duration(seconds: float) -> str:
    """``42 s``, ``4 min``, ``1.5 h``: seconds below two minutes, minutes below two hours."""
    if seconds < 120:
        return f"{max(seconds, 0):.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_remaining(estimate: Remaining | None) -> str:
    """``about 4 min left (21 runs, ~11 s each, 2 workers)``; "" without an estimate."""
    if estimate is None:
        return ""
    runs = f"{estimate.runs} run{'s' if estimate.runs != 1 else ''}"
    workers = f"{estimate.workers} worker{'s' if estimate.workers != 1 else ''}"
    return (f"about {format_duration(estimate.seconds)} left ({runs}, ~{format_duration(estimate.per_run)} each, "
            f"{workers})")


class StudyProgress:
    """Shows runs done / total with the time left (from the wall time of the runs finished in this
    session, after the first one), and per worker the current run, epoch and validation metric.

    Use as a context manager; pass :meth:`on_event` and :meth:`on_result` to the study.
    """

    def __init__(self, total_runs: int, console: Console, *, metric: str = "accuracy", workers: int = 1) -> None:
        self.console = console
        self.metric = f"valid_{metric}"
        self.final = f"test_{metric}"
        self.total = total_runs
        self.n_workers = workers
        self.done = 0
        self.durations: list[float] = []
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console,
                                 transient=False)
        self.overall = self.progress.add_task("runs", total=total_runs, info="")
        self.workers: dict[int, int] = {}

    def __enter__(self) -> StudyProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for task_id in self.workers.values():
            self.progress.remove_task(task_id)
        self.progress.stop()

    def remaining(self) -> str:
        """The estimate of the time left as text ("" before the first run of this session finished)."""
        return format_remaining(estimate_remaining(self.durations, self.total - self.done, self.n_workers))

    def on_event(self, event: Event) -> None:
        """Update the worker's line: run started, or epoch measured."""
        if isinstance(event, RunStarted):
            name = f"  {event.spec.recipe.label} seed {event.spec.seed}"
            if event.worker in self.workers:
                self.progress.reset(self.workers[event.worker], total=event.spec.recipe.epochs,
                                    description=name, info="epoch 0")
            else:
                self.workers[event.worker] = self.progress.add_task(name, total=event.spec.recipe.epochs,
                                                                    info="epoch 0")
        elif isinstance(event, EpochDone):
            value = event.record.metrics.get(self.metric, float("nan"))
            self.progress.update(self.workers[event.worker], completed=event.record.epoch,
                                 info=f"epoch {event.record.epoch} {self.metric} {value:.4f}")

    def on_result(self, result: RunResult, skipped: bool) -> None:
        """Advance the overall bar, log one line for the run and, once a run has finished here,
        the time left."""
        self.done += 1
        if not skipped:
            self.durations.append(result.total_seconds)
        left = self.remaining()
        self.progress.update(self.overall, advance=1, info=left)
        where = "already stored" if skipped else f"{result.total_seconds:.1f} s"
        if result.status is RunStatus.FINISHED:
            text = f"{self.final} {result.final(self.final):.4f}"
        else:
            text = f"[bold red]{result.status.value}[/]: {result.error}"
        self.progress.console.log(f"{result.recipe.label} seed {result.seed}: {text} ({where})"
                                  + (f"; {left}" if left and not skipped else ""))


__all__ = ["StudyProgress", "format_duration", "format_remaining"]
