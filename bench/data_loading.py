"""Data loading: the streamed path (StreamSplit through a DataLoader) against the in-memory path on the same data.

One task (the reference 3-conv CNN on 1x28x28 inputs, 10 classes; random pixels and labels, seeded, so
nothing is downloaded), one recipe (Adam, batch 128, one epoch), the same examples read five ways:

* ``memory``       — in-memory tensors, batches by index gather (the built-in tasks' path);
* ``items/w0``     — the same tensors read item by item through a DataLoader in the training process;
* ``items/wN``     — the same through N DataLoader worker processes;
* ``npy/w0``, ``npy/wN`` — the examples in a ``.npy`` file on disk, read row by row (NpyArrays).

The variants run interleaved (round 1: all five, round 2: all five, ...) so that machine noise hits every
one; reported are the median training samples/s, the median seconds per epoch the steps waited for their
batches (``environment["data_wait_seconds"]``) and the ratio to the in-memory path. Evaluation is given
one-example splits so that the numbers are about training.

Usage: python bench/data_loading.py [--examples 12800] [--rounds 3] [--workers N] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from optbench.core.spec import Recipe, Split, StreamSplit, TaskData
from optbench.data.readers import NpyArrays, TensorItems
from optbench.engine import train
from optbench.tasks.classification import classification_task
from optbench.tasks.models import cnn3


def _task():
    return classification_task("bench_cnn3", "cnn3 on random 1x28x28", lambda: cnn3(1, 10, 28), lambda: None,
                               target_accuracy=0.9, valid_size=1, recipe={})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=12_800)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers of the wN variants")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(args.examples, 1, 28, 28, generator=generator)
    y = torch.randint(0, 10, (args.examples,), generator=generator)
    one = Split(x[:1].clone(), y[:1].clone())
    task = _task()
    recipe = Recipe("adam", {"lr": 1e-3}, batch_size=128, epochs=1)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "x.npy", x.numpy())
        np.save(Path(tmp) / "y.npy", y.numpy())
        npy = NpyArrays(Path(tmp) / "x.npy", Path(tmp) / "y.npy")
        variants = {
            "memory": Split(x, y),
            "items/w0": StreamSplit(TensorItems(x, y), workers=0),
            f"items/w{args.workers}": StreamSplit(TensorItems(x, y), workers=args.workers),
            "npy/w0": StreamSplit(npy, workers=0),
            f"npy/w{args.workers}": StreamSplit(npy, workers=args.workers),
        }
        rates: dict[str, list[float]] = {name: [] for name in variants}
        waits: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, split in variants.items():
                result = train(task, TaskData(split, one, one), recipe, seed=0, device=torch.device("cpu"))
                assert result.status.value == "finished", result.error
                rates[name].append(result.epochs[0].samples_per_second)
                waits[name].append(result.environment["data_wait_seconds"])
    base = statistics.median(rates["memory"])
    print(f"{args.examples} examples 1x28x28, cnn3, Adam, batch 128, 1 epoch, {args.threads} threads, "
          f"median of {args.rounds} rounds")
    print(f"{'path':<10} {'samples/s':>10} {'wait s/epoch':>13} {'ratio to memory':>16}")
    for name in variants:
        rate = statistics.median(rates[name])
        print(f"{name:<10} {rate:>10,.0f} {statistics.median(waits[name]):>13.2f} {rate / base:>16.2f}")


if __name__ == "__main__":
    main()
