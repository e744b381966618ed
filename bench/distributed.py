"""Distributed throughput: samples/s of every mode at 1 and 2 worker processes on a CNN, the
all-reduce / synchronous-parameter-server ratio, and the cost model checked against the measurements.

Task: ``fmnist_cnn3`` (the reference 3-conv CNN, 104,202 parameters, dropout) when Fashion-MNIST is
in the cache (``optbench data fetch fashion_mnist``), else random tensors of the same shape (1x28x28,
10 classes) with the same network — the output says which. Every process has one CPU thread. Rounds
are interleaved (mode and process count alternate) and the median over rounds is reported.

Cost-model check: the latency and bandwidth of the local transport are measured by ping-pong
(:func:`optbench.engine.distributed.probe.probe_link`); the 2-process step is predicted from the
1-process compute time (``ddp`` at 1 process: forward + backward + update) plus the modelled
communication (ring all-reduce for ``ddp``, 2 N M / beta for ``ps-sync``; one bucket, so no overlap),
and from the compute time measured at 2 processes (which isolates the communication model from
CPU contention).

Target: all-reduce beats the synchronous parameter server in samples/s at 2+
workers.

Usage: python bench/distributed.py [--rounds 3] [--train-size 3072] [--batch-size 64] [--modes ...]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch

from optbench.core.spec import Dataset, Recipe, Split, Task
from optbench.tasks.classification import classification_task
from optbench.tasks.models import cnn3

HERE = Path(__file__).resolve()


def synthetic_cnn3() -> Task:
    """Random tensors shaped like Fashion-MNIST (12,000 train / 2,000 test, 1x28x28, 10 classes) and
    the reference CNN: the same compute and message sizes, without the download."""

    def load() -> Dataset:
        g = torch.Generator().manual_seed(0)
        return Dataset(Split(torch.randn(12_000, 1, 28, 28, generator=g), torch.randint(0, 10, (12_000,), generator=g)),
                       Split(torch.randn(2_000, 1, 28, 28, generator=g), torch.randint(0, 10, (2_000,), generator=g)))

    return classification_task("synthetic_cnn3", "random 1x28x28 tensors, reference CNN", lambda: cnn3(), load,
                               target_accuracy=0.85, valid_size=1_000, recipe={})


def main() -> None:
    from optbench.analysis.scaling import Network, Workload, parameter_server_seconds, ring_allreduce_seconds
    from optbench.data import is_cached
    from optbench.engine.distributed import DistributedConfig, run_distributed
    from optbench.engine.distributed.probe import probe_link

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train-size", type=int, default=3072)
    parser.add_argument("--batch-size", type=int, default=64, help="per worker")
    parser.add_argument("--modes", default="ddp,ps-sync,ps-async,ps-ssp:2")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",")]
    real = is_cached("fashion_mnist")
    task = "fmnist_cnn3" if real else f"{HERE}:synthetic_cnn3"
    what = ("fmnist_cnn3 (Fashion-MNIST from the cache)" if real else
            "synthetic_cnn3 (random tensors of the shape of Fashion-MNIST: the data are not cached)")
    print(f"task: {what}; "
          f"{args.train_size} training examples, 1 epoch, batch {args.batch_size} per worker, sgd lr 0.01, 1 thread "
          f"per process, {args.rounds} interleaved rounds (median)")
    recipe = Recipe("sgd", {"lr": 0.01}, batch_size=args.batch_size, epochs=1, train_size=args.train_size)
    sps: dict[tuple[str, int], list[float]] = defaultdict(list)
    medians: dict[tuple[str, int], list[dict[str, float]]] = defaultdict(list)
    started = time.perf_counter()
    for r in range(args.rounds):
        order = [(m, n) for n in (1, 2) for m in modes]
        for mode, n in (order if r % 2 == 0 else order[::-1]):
            run = run_distributed(DistributedConfig(task, recipe, mode=mode, nproc=n, timeout=900))
            sps[(mode, n)].append(run.samples_per_second)
            medians[(mode, n)].append(run.step_summary())
    med = {k: statistics.median(v) for k, v in sps.items()}
    parts = {k: {name: statistics.median(d[name] for d in v) for name in v[0]} for k, v in medians.items()}
    print(f"measured in {time.perf_counter() - started:.0f} s\n")
    base = med[("ddp", 1)]
    print(f"{'mode':<10} {'1 proc samples/s':>17} {'2 proc samples/s':>17} {'speedup':>8} {'eff. vs ddp x1':>15}   "
          "per step at 2 proc (ms): compute / comm / wait")
    for mode in modes:
        one, two = med[(mode, 1)], med[(mode, 2)]
        p = parts[(mode, 2)]
        print(f"{mode:<10} {one:>17,.0f} {two:>17,.0f} {two / one:>8.2f} {two / (2 * base):>15.0%}   "
              f"{p['compute_seconds'] * 1e3:.1f} / {p['comm_seconds'] * 1e3:.1f} / {p['wait_seconds'] * 1e3:.1f}")
    if "ps-sync" in modes:
        for n in (1, 2):
            print(f"all-reduce / sync-PS samples/s at {n} process(es): {med[('ddp', n)] / med[('ps-sync', n)]:.2f}"
                  + ("  (target > 1 at 2+ workers)" if n == 2 else ""))

    params = sum(p.numel() for p in cnn3().parameters())
    link = probe_link(nbytes=params * 4, repeats=30)
    net = Network(bandwidth=link.bandwidth, latency=link.latency)
    print(f"\ncost model: M = {params:,} parameters x 4 bytes = {params * 4 / 1e6:.2f} MB; local gloo transport "
          f"(ping-pong): latency {link.latency * 1e6:.0f} us, bandwidth {link.bandwidth / 1e9:.2f} GB/s")
    b = args.batch_size
    compute_1 = parts[("ddp", 1)]["compute_seconds"]
    workload = Workload("cnn3", params, compute_1, b)
    print(f"{'mode x2':<10} {'measured':>10} {'predicted (1-proc compute)':>27} {'predicted (2-proc compute)':>27}")
    for mode, comm in (("ddp", ring_allreduce_seconds(workload.model_bytes, 2, net)),
                       ("ps-sync", parameter_server_seconds(workload.model_bytes, 2, net))):
        if (mode, 2) not in med:
            continue
        from_one = 2 * b / (compute_1 + comm)
        from_two = 2 * b / (parts[(mode, 2)]["compute_seconds"] + comm)
        print(f"{mode:<10} {med[(mode, 2)]:>10,.0f} {from_one:>27,.0f} {from_two:>27,.0f}")
    print(f"modelled communication per step: ring all-reduce "
          f"{ring_allreduce_seconds(workload.model_bytes, 2, net) * 1e3:.2f} ms, parameter server "
          f"{parameter_server_seconds(workload.model_bytes, 2, net) * 1e3:.2f} ms; compute {compute_1 * 1e3:.1f} ms "
          "(ddp x1). Not modelled: CPU contention (2 cores), the server's update, per-message wake-up latency.")


if __name__ == "__main__":
    main()
