"""A sweep of distributed jobs (``optbench scale``): run each job not stored yet, store it as it ends.

Jobs run one after another (each one already uses ``nproc`` processes); a finished job in the store
is loaded instead of repeated (run ids are content hashes of task, recipe, seed, mode and process
count), so an interrupted sweep resumes where it stopped. A job that fails is stored as ``failed``
with its error, and the sweep goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from optbench.core.spec import RunResult, RunStatus
from optbench.engine.distributed.config import DistributedConfig, distributed_run_id
from optbench.engine.distributed.launcher import DistributedError, run_distributed
from optbench.engine.distributed.records import DistributedRun, run_from_record


def run_sweep(configs: Sequence[DistributedConfig], store: Any, study: str, task_name: str,
              emit: Callable[[str], None] = lambda line: None) -> list[DistributedRun]:
    """Run (or load) every job of ``configs`` in order and return the finished ones.

    Args:
        configs: the jobs (usually modes x process counts of one task and recipe).
        store: an open :class:`optbench.runs.store.Store`; ``study`` must exist in it.
        study: study name the runs are linked to.
        task_name: the task's name (``Task.name``), part of the run id.
        emit: receives one progress line per job.

    Raises:
        ConfigError: a job's input is bad (the sweep stops: the others would fail alike).
    """
    runs = []
    for config in configs:
        run_id = distributed_run_id(task_name, config.recipe, config.seed, config.mode, config.nproc,
                                    config.kill_worker)
        store.add_runs_to_study(study, [run_id])
        if run_id in store.completed_run_ids([run_id]):
            emit(f"{config.mode} x{config.nproc}: already stored (run {run_id})")
            runs.append(run_from_record(config, store.get_run(run_id)))
            continue
        emit(f"{config.mode} x{config.nproc}: running ({config.world_size} processes)")
        try:
            run = run_distributed(config)
        except DistributedError as exc:
            emit(f"{config.mode} x{config.nproc}: FAILED: {exc}")
            store.save_run(RunResult(run_id=run_id, task=task_name, recipe=config.recipe, seed=config.seed,
                                     status=RunStatus.FAILED, error=str(exc),
                                     environment={"distributed": {"mode": config.mode, "nproc": config.nproc}}),
                           study=study)
            continue
        store.save_run(run.result, study=study)
        emit(f"{config.mode} x{config.nproc}: {run.samples_per_second:,.0f} samples/s")
        runs.append(run)
    return runs


__all__ = ["run_sweep"]
