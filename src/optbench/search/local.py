"""An in-process stand-in for the executor's worker: runs trials with :func:`optbench.engine.train`
and keeps results in a dict (no Store, one process). For tests, benchmarks and notebooks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from optbench.core.spec import Dataset, EpochRecord, Recipe, RunResult, RunStatus, Task
from optbench.runs.plan import RunSpec
from optbench.search.loop import SearchConfig, SearchOutcome, outcome_of, search_loop, search_runs

_COMPLETED = (RunStatus.FINISHED, RunStatus.DIVERGED)


class LocalRuns:
    """Runs kept in memory, keyed by run id, with the executor's ``try_run`` semantics.

    Args:
        device: where runs train (CUDA when available by default).
    """

    def __init__(self, device: torch.device | None = None) -> None:
        self.runs: dict[str, RunResult] = {}
        self.device = device
        self._tasks: dict[str, Task] = {}
        self._data: dict[str, Dataset] = {}

    def load_runs(self) -> list[RunResult]:
        """Every stored run."""
        return list(self.runs.values())

    def record(self, result: RunResult) -> None:
        """Store ``result`` as it is (an unrealizable search point: nothing to train)."""
        self.runs[result.run_id] = result

    def task(self, ref: str) -> Task:
        """The task ``ref``, built once and kept (with its loaded data)."""
        from optbench.tasks import get_task

        if ref not in self._tasks:
            task = get_task(ref)
            self._data[ref] = task.load_data()
            self._tasks[ref] = task
        return self._tasks[ref]

    def try_run(self, spec: RunSpec, *, on_epoch: Callable[[EpochRecord], None] | None = None,
                accept_pruned: bool = False, annotate: Mapping[str, Any] | None = None) -> RunResult | None:
        """Train ``spec`` unless it is stored as finished/diverged (or pruned, when
        ``accept_pruned``), then return None; store the result with ``annotate`` merged into
        its environment."""
        previous = self.runs.get(spec.run_id)
        if previous is not None and (previous.status in _COMPLETED
                                     or (accept_pruned and previous.status is RunStatus.PRUNED)):
            return None
        from optbench.engine import split_data, train

        task = self.task(spec.task_ref)
        data = split_data(self._data[spec.task_ref], task.valid_size, spec.seed, spec.recipe.train_size)
        result = train(task, data, spec.recipe, spec.seed, device=self.device, on_epoch=on_epoch)
        result.environment.update(dict(annotate or {}))
        self.runs[spec.run_id] = result
        return result


def run_search_local(task_ref: str, task_name: str, base: Recipe, config: SearchConfig, *, run_seed: int = 0,
                     runs: LocalRuns | None = None) -> SearchOutcome:
    """:func:`~optbench.search.run_search` in this process on ``runs`` (a fresh
    :class:`LocalRuns` by default; pass one to resume or share history)."""
    runs = runs if runs is not None else LocalRuns()
    search_loop(runs.load_runs, runs.try_run, task_ref, task_name, base, config, run_seed=run_seed,
                record=runs.record, build_task=runs.task)
    return outcome_of(search_runs(runs.load_runs(), task_name, base, config.space, run_seed), config)


__all__ = ["LocalRuns", "run_search_local"]
