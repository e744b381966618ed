"""What every process of a distributed job runs: join the process group, train the epochs of its
mode, gather the measurements on rank 0, and leave cleanly.

Epoch protocol (all modes): rank 0 broadcasts whether to go on (it stops after a non-finite training
loss), which also lines the ranks up; every rank trains the epoch; rank 0 then measures train
metrics (averaged over all workers' batches) and evaluates on the validation and test splits while
the others wait in the next broadcast, so evaluation never counts as training time.

The server modes run this protocol on point-to-point messages with the remaining workers instead of
collectives, so that ``ps-async``/``ps-ssp`` survive a lost worker (:mod:`.failures`).

Shutdown: a barrier before ``destroy_process_group`` on the success path, so that no rank tears down
its connections while a peer still uses them (without one, about one two-process run
in five crashed). Measured here: 24 consecutive two-worker jobs (all four modes) ended
cleanly. On an error the process exits without the barrier and the launcher stops the others.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from optbench.core.spec import EpochRecord
from optbench.engine.distributed.common import (
    RankContext,
    backend_for,
    broadcast_json,
    now,
    resolve_device,
    setup_rank,
    sync,
)
from optbench.engine.distributed.config import DistributedConfig, distributed_run_id
from optbench.engine.distributed.elastic import LoopState, RankCheckpoint, elastic_record
from optbench.engine.distributed.failures import restart_count
from optbench.engine.distributed.records import staleness_histogram, steps_to_columns


def make_trainer(ctx: RankContext) -> Any:
    """The mode's object for this rank: ``DdpTrainer``, ``FsdpTrainer``, ``PsServer`` (rank 0) or ``PsWorker``."""
    if ctx.mode.kind == "fsdp":
        from optbench.engine.distributed.fsdp import FsdpTrainer

        return FsdpTrainer(ctx)
    if ctx.mode.kind == "ddp":
        from optbench.engine.distributed.ddp import DdpTrainer

        return DdpTrainer(ctx)
    from optbench.engine.distributed.ps import PsServer, PsWorker

    return PsServer(ctx) if ctx.is_server else PsWorker(ctx)


def _train(ctx: RankContext, trainer: Any, run_id: str) -> dict[str, Any]:
    """The epoch loop; returns rank 0's epochs, status and error (empty lists elsewhere). With a
    checkpoint directory, every rank resumes from and saves its per-epoch checkpoint (:mod:`.elastic`)."""
    from optbench.engine.data import ordered_batches
    from optbench.engine.loop import EVAL_BATCH_SIZE, evaluate

    config = ctx.config
    loop = LoopState([], 0, 0.0, {}, torch.Generator().manual_seed(config.seed))
    status, error, go_on = "finished", None, True
    every_rank = ctx.mode.kind in ("ddp", "fsdp") and trainer.setup.needs_epoch_end
    n_train = len(ctx.data.train)
    coordination = trainer.coordination  # point-to-point in the server modes, else collectives
    checkpoint = RankCheckpoint(ctx, run_id) if config.checkpoint_dir is not None else None
    first = 1 + (checkpoint.resume(trainer, loop) if checkpoint is not None else 0)
    elastic = elastic_record(first - 1, ctx.steps_per_epoch) if checkpoint is not None else None
    for epoch in range(first, config.recipe.epochs + 1):
        if checkpoint is not None and epoch > first:  # the state after the previous epoch
            checkpoint.save(epoch - 1, trainer, loop)
        if not coordination.agree(ctx, go_on):
            break
        perm = torch.randperm(n_train, generator=loop.generator).to(ctx.device)
        trainer.before_train_epoch(epoch)
        t0 = now()
        trainer.train_epoch(epoch, perm)
        sync(ctx.device)
        t1 = now()
        train_metrics = trainer.epoch_metrics()
        trainer.after_train_epoch(epoch)
        metrics: dict[str, float] | None = None
        if ctx.rank == 0:
            model = trainer.eval_model(lambda: (x for x, _ in ordered_batches(ctx.data.train, EVAL_BATCH_SIZE)))
            metrics = train_metrics | evaluate(model, ctx.task, ctx.data.valid, "valid") \
                | evaluate(model, ctx.task, ctx.data.test, "test") | trainer.setup.extra_metrics()
            sync(ctx.device)
            t2 = now()
            loop.train_seconds += t1 - t0
            loop.global_steps += ctx.steps_per_epoch
            if not math.isfinite(metrics.get("train_loss", math.nan)):  # as the single-process loop: a
                status, error, go_on = "diverged", f"non-finite training loss in epoch {epoch}", False
            else:  # diverged epoch is not recorded
                loop.epochs.append(EpochRecord(epoch=epoch, step=loop.global_steps, metrics=metrics,
                                               train_seconds=t1 - t0, eval_seconds=t2 - t1,
                                               samples_per_second=_epoch_samples(ctx, trainer) / (t1 - t0),
                                               lr=trainer.lr()))
        if every_rank:  # every DDP rank steps its own optimizer and schedule: all see rank 0's metrics
            metrics = broadcast_json(ctx, metrics)
        if metrics is None or not math.isfinite(metrics.get("train_loss", math.nan)):
            continue
        reasons = trainer.on_epoch_end(epoch, metrics)  # schedule and components; never test metrics
        if ctx.rank == 0:
            budget = config.recipe.max_train_seconds
            if budget is not None and loop.train_seconds >= budget:
                reasons = {"time_budget": {"stopped_epoch": epoch, "seconds": loop.train_seconds}}
            if reasons:
                loop.stop_reasons.update(reasons)
                go_on = False
    out = {"epochs": [asdict(e) for e in loop.epochs], "status": status, "error": error, "steps": loop.global_steps,
           "stop_reasons": loop.stop_reasons}
    return out | ({"elastic": elastic} if elastic is not None else {})


def _epoch_samples(ctx: RankContext, trainer: Any) -> int:
    """Examples trained on in the epoch: every worker's batches, or what the server received (a lost
    worker's batches are missing)."""
    received = getattr(trainer, "epoch_samples", None)
    return ctx.steps_per_epoch * ctx.config.global_batch if received is None else received


def _memory(trainer: Any) -> dict[str, Any]:
    """``{"memory_per_worker": {parameters, gradients, optimizer_state bytes}}`` of rank 0 (``ddp``/``fsdp``)."""
    memory = getattr(trainer, "memory", None)
    return {"memory_per_worker": memory} if memory is not None else {}


def attempt_store(rank: int, world_size: int, comm_timeout: float) -> dist.Store:
    """The rendezvous store of a ``torchrun`` (or other ``env://``) launch, as ``init_method="env://"``
    builds it (``MASTER_ADDR``/``MASTER_PORT``; a client of the elastic agent's store, or hosted by rank 0
    without one), with the keys of this attempt apart (``TORCHELASTIC_RESTART_COUNT``): the agent keeps
    its store across restarts, and a restarted rank could otherwise read a dead peer's address of the
    previous attempt (measured here: the restarted process group failed to connect in 2 of 3 runs)."""
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size,
                          is_master=rank == 0 and not agent, timeout=timedelta(seconds=comm_timeout),
                          multi_tenant=not agent)
    return dist.PrefixStore(f"optbench/attempt-{restart_count()}/", store)


def run_rank(rank: int, world_size: int, config: DistributedConfig, *, local_rank: int = 0,
             store: dist.Store | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor] | None] | None:
    """Run one process of the job ``config``.

    Args:
        rank / world_size: this process and the job size (``config.world_size``).
        local_rank: index on this machine (chooses the GPU).
        store: a rendezvous store (the local launcher's TCPStore); None reads ``MASTER_ADDR``,
            ``MASTER_PORT`` from the environment (``torchrun``).

    Returns:
        on rank 0: ``(summary, state)`` — the JSON-ready summary (epochs, status, every worker's steps
        as columns, staleness histogram, server statistics, resolved hyperparameters, environment)
        and the final parameters when ``config.keep_state`` (else None); None on other ranks.

    Raises:
        whatever the training raises (ConfigError for bad input, RuntimeError from the process group
        when a peer fails or a wait exceeds ``config.comm_timeout``).
    """
    from optbench.engine.environment import environment
    from optbench.optim import resolved_hyperparams

    torch.set_num_threads(config.threads)
    device = resolve_device(config.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    started = time.perf_counter()
    options: dict[str, Any] = {"backend": backend_for(config.parsed_mode, device), "rank": rank,
                               "world_size": world_size, "timeout": timedelta(seconds=config.comm_timeout)}
    options["store"] = store if store is not None else attempt_store(rank, world_size, config.comm_timeout)
    dist.init_process_group(**options)
    clean = False
    try:
        ctx = setup_rank(rank, world_size, config, local_rank)
        trainer = make_trainer(ctx)
        run_id = distributed_run_id(ctx.task.name, config.recipe, config.seed, config.mode, config.nproc,
                                    config.kill_worker)
        summary = _train(ctx, trainer, run_id)
        staleness, server = trainer.server_stats()
        coordination = trainer.coordination  # point-to-point in the server modes, else collectives
        gathered = coordination.gather(ctx, {"rank": rank, "worker": ctx.worker,
                                             "steps": steps_to_columns(trainer.steps)})
        coordination.finish(ctx)
        clean = True
        if config.checkpoint_dir is not None:  # the job is done: its checkpoints are not needed any more
            RankCheckpoint(ctx, run_id).delete()
        if rank != 0:
            return None
        columns: dict[str, list] = {}
        for part in sorted(gathered or [], key=lambda item: item["worker"]):  # type: ignore[index]
            for name, values in part["steps"].items():  # type: ignore[index]
                columns.setdefault(name, []).extend(values)
        histogram = staleness_histogram(staleness)
        summary |= {"workers_steps": columns, "staleness": {str(k): v for k, v in histogram.items()},
                    "server": server, "hyperparams": resolved_hyperparams(config.recipe.optimizer,
                                                                          **trainer.setup.hyperparams),
                    # records(): optimizer cost, parameter partition, model cost (as the single engine)
                    "environment": environment(device) | trainer.setup.records() | _memory(trainer)
                    | ({"elastic": summary.pop("elastic")} if "elastic" in summary else {}),
                    "task_name": ctx.task.name,
                    "train_size": len(ctx.data.train), "rank0_seconds": time.perf_counter() - started}
        state = None
        if config.keep_state:
            state = {k: v.detach().cpu().clone() for k, v in trainer.final_model().state_dict().items()}
        return summary, state
    finally:
        if clean:
            dist.destroy_process_group()


__all__ = ["attempt_store", "make_trainer", "run_rank"]
