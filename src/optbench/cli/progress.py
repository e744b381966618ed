"""Terminal progress of a study (rich): an overall bar of runs and one line per busy worker."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from optbench.core.spec import RunResult, RunStatus
from optbench.runs.executor import EpochDone, Event, RunStarted


class StudyProgress:
    """Shows runs done / total, and per worker the current run, epoch and validation accuracy.

    Use as a context manager; pass :meth:`on_event` and :meth:`on_result` to the study.
    """

    def __init__(self, total_runs: int, console: Console, *, metric: str = "accuracy") -> None:
        self.console = console
        self.metric = f"valid_{metric}"
        self.final = f"test_{metric}"
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
        """Advance the overall bar and log one line for the run."""
        self.progress.advance(self.overall)
        where = "already stored" if skipped else f"{result.total_seconds:.1f} s"
        if result.status is RunStatus.FINISHED:
            text = f"{self.final} {result.final(self.final):.4f}"
        else:
            text = f"[bold red]{result.status.value}[/]: {result.error}"
        self.progress.console.log(f"{result.recipe.label} seed {result.seed}: {text} ({where})")
