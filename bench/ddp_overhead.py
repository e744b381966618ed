"""DDP worker overhead: optbench's DDP worker (the one step, per-step communication timing, metrics)
versus a raw hand-written DDP loop, in the same processes.

Both run on the same ranks, model, data shards, optimizer class and settings, per-worker batch size:
the job's processes alternate (raw, optbench, raw, optbench, ... in alternating order per round), so
machine noise hits both; each epoch is timed on rank 0 between two barriers. samples/s counts all
workers' examples. Target (docs/architecture.md, "Targets"): optbench >= 0.97 x the raw loop.

Usage: python bench/ddp_overhead.py [--nproc 2] [--rounds 7] [--task mnist1d_mlp] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raw_epoch(ctx, perm: torch.Tensor, state: dict) -> None:
    """The hand-written DDP loop: shard, zero_grad, forward through DDP, cross-entropy, backward, step."""
    ddp, optimizer = state["ddp"], state["optimizer"]
    train = ctx.data.train
    ddp.train()
    for c in range(ctx.steps_per_epoch):
        index = ctx.shard(perm, c)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(ddp(train.x[index]), train.y[index]).backward()
        optimizer.step()


def _rank(rank: int, world: int, port: int, args: argparse.Namespace, out: mp.SimpleQueue) -> None:
    from optbench.core.spec import Recipe
    from optbench.engine.distributed.common import setup_rank
    from optbench.engine.distributed.config import DistributedConfig
    from optbench.engine.distributed.ddp import DdpTrainer
    from optbench.optim import create_optimizer

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    recipe = Recipe(args.optimizer, {"lr": 1e-3}, batch_size=args.batch_size, epochs=1, train_size=args.train_size)
    config = DistributedConfig(args.task, recipe, mode="ddp", nproc=world, seed=0, device="cpu")
    ctx = setup_rank(rank, world, config, 0)
    trainer = DdpTrainer(ctx)
    model = ctx.make_model()
    reference = create_optimizer(args.optimizer, [torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    raw = {"ddp": DistributedDataParallel(model)}
    raw["optimizer"] = type(reference)(raw["ddp"].parameters(), **reference.defaults)
    generator = torch.Generator().manual_seed(0)
    samples = ctx.steps_per_epoch * config.global_batch
    times: dict[str, list[float]] = {"raw": [], "optbench": []}
    for r in range(args.rounds + 1):  # round 0 warms both up
        order = ("raw", "optbench") if r % 2 else ("optbench", "raw")
        for which in order:
            perm = torch.randperm(len(ctx.data.train), generator=generator)
            dist.barrier()
            t0 = time.perf_counter()
            if which == "raw":
                raw_epoch(ctx, perm, raw)
            else:
                trainer.train_epoch(r, perm)
            dist.barrier()
            if r:
                times[which].append(samples / (time.perf_counter() - t0))
    if rank == 0:
        out.put(times)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--task", default="mnist1d_mlp")
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--train-size", type=int, default=3500)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    out = ctx.SimpleQueue()
    port = _free_port()
    procs = [ctx.Process(target=_rank, args=(r, args.nproc, port, args, out)) for r in range(args.nproc)]
    for p in procs:
        p.start()
    times = out.get()
    for p in procs:
        p.join()
    ratios = [o / h for o, h in zip(times["optbench"], times["raw"], strict=True)]
    raw, ours, ratio = statistics.median(times["raw"]), statistics.median(times["optbench"]), statistics.median(ratios)
    print(f"ddp nproc={args.nproc} task={args.task} optimizer={args.optimizer} batch={args.batch_size}/worker "
          f"rounds={args.rounds} (median samples/s, interleaved)")
    print(f"raw DDP loop {raw:,.0f} samples/s; optbench DDP worker {ours:,.0f} samples/s; ratio {ratio:.3f} "
          f"({'ok' if ratio >= 0.97 else 'BELOW TARGET'} >= 0.97)")


if __name__ == "__main__":
    main()
