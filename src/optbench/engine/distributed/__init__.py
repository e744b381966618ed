"""Distributed training: all-reduce (``ddp``) versus a parameter server (``ps-sync``, ``ps-async``,
``ps-ssp:S``), measured per step (docs/distributed.md).

Public API::

    from optbench.core.spec import Recipe
    from optbench.engine.distributed import DistributedConfig, run_distributed

    run = run_distributed(DistributedConfig(task="digits_mlp", recipe=Recipe("sgd", {"lr": 0.1}, batch_size=32,
                                                                             epochs=3), mode="ps-ssp:2", nproc=2))
    run.samples_per_second, run.step_summary(), run.staleness, run.result.epochs

* :mod:`.config` — modes, :class:`DistributedConfig`, run ids.
* :mod:`.launcher` — local processes (spawn) and ``torchrun``; failures and timeouts end the job.
* :mod:`.ddp`, :mod:`.ps` — the modes; :mod:`.rank` — one process's life; :mod:`.records` — measurements.
* :mod:`.probe` — latency and bandwidth of the local transport (for the cost model).

Importing this package starts nothing.
"""

from __future__ import annotations

from optbench.engine.distributed.config import (
    MODES_ALLOWED,
    DistributedConfig,
    Mode,
    distributed_run_id,
    parse_counts,
    parse_mode,
    parse_modes,
    validate,
)
from optbench.engine.distributed.launcher import (
    DistributedError,
    run_distributed,
    run_under_torchrun,
    torchrun_nproc,
    under_torchrun,
)
from optbench.engine.distributed.records import DistributedRun, StepRecord, TimeToTarget, run_from_record

__all__ = [
    "MODES_ALLOWED",
    "DistributedConfig",
    "DistributedError",
    "DistributedRun",
    "Mode",
    "StepRecord",
    "TimeToTarget",
    "distributed_run_id",
    "parse_counts",
    "parse_mode",
    "parse_modes",
    "run_distributed",
    "run_from_record",
    "run_under_torchrun",
    "torchrun_nproc",
    "under_torchrun",
    "validate",
]
