"""Harness overhead: optbench's training loop versus a minimal hand-written PyTorch loop.

Same model, same in-memory data tensors (in the same memory layout: channels_last for images),
same optimizer class and settings, same batch size;
the two are interleaved in one process (A, B, A, B, ...) so that machine noise hits both.
Both are timed from outside over the whole call (model and optimizer construction included).
optbench's evaluation is given one-example validation/test splits so that it costs ~nothing:
this measures the training loop, which is what the target is about.

Target: optbench samples/s >= 0.97 x the hand-written loop's.

Usage: python bench/harness_overhead.py [--rounds 15] [--threads N] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

from optbench.core.spec import Recipe, Split, TaskData
from optbench.engine import train
from optbench.optim import create_optimizer
from optbench.tasks import get_task

CPU = torch.device("cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def hand_loop(make_model, x, y, optimizer_name: str, lr: float, batch_size: int, seed: int,
              device: torch.device = CPU) -> float:
    """The minimal loop: shuffle indices, gather, forward, cross-entropy, backward, step. Returns seconds."""
    _sync(device)
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    layout = torch.channels_last if x.dim() == 4 else torch.contiguous_format  # as optbench does
    model = make_model().to(device, memory_format=layout)
    x, y = x.to(device).contiguous(memory_format=layout), y.to(device)
    # same optimizer class and flags as optbench picks (e.g. fused=True)
    reference = create_optimizer(optimizer_name, [nn.Parameter(torch.zeros(1, device=device))], lr=lr,
                                 device=device)
    optimizer = type(reference)(model.parameters(), **reference.defaults)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for index in torch.randperm(x.shape[0], generator=generator).to(device).split(batch_size):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x[index]), y[index])
        loss.backward()
        optimizer.step()
    _sync(device)
    return time.perf_counter() - t0


def optbench_loop(task, x, y, optimizer_name: str, lr: float, batch_size: int, seed: int,
                  device: torch.device = CPU) -> float:
    """optbench's :func:`train` for one epoch on the same tensors. Returns seconds."""
    tiny = Split(x[:1], y[:1])
    data = TaskData(Split(x, y), tiny, tiny)
    recipe = Recipe(optimizer=optimizer_name, hyperparams={"lr": lr}, batch_size=batch_size, epochs=1)
    _sync(device)
    t0 = time.perf_counter()
    result = train(task, data, recipe, seed, device=device)
    _sync(device)
    elapsed = time.perf_counter() - t0
    assert result.status.value == "finished", result.error
    return elapsed


def bench(task_name: str, input_shape: tuple[int, ...], n: int, batch_size: int, optimizer: str,
          rounds: int, device: torch.device = CPU) -> tuple[float, float, float]:
    """Median samples/s of each loop and the median of the per-round ratios optbench / hand.

    The ratio of each round pairs two adjacent measurements, so slow drifts of a shared
    machine cancel; the order within a round alternates to cancel warm-cache effects."""
    task = get_task(task_name)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((n, *input_shape), generator=generator)
    y = torch.randint(0, 10, (n,), generator=generator)
    hand, ours = [], []
    for r in range(rounds + 1):  # round 0 warms up both
        if r % 2:
            h = hand_loop(task.make_model, x, y, optimizer, 1e-3, batch_size, seed=r, device=device)
            o = optbench_loop(task, x, y, optimizer, 1e-3, batch_size, seed=r, device=device)
        else:
            o = optbench_loop(task, x, y, optimizer, 1e-3, batch_size, seed=r, device=device)
            h = hand_loop(task.make_model, x, y, optimizer, 1e-3, batch_size, seed=r, device=device)
        if r:
            hand.append(n / h)
            ours.append(n / o)
    ratio = statistics.median(o / h for o, h in zip(ours, hand, strict=True))
    return statistics.median(hand), statistics.median(ours), ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    cases = [  # (task whose model is used, input shape, examples, batch size, optimizer)
        ("fmnist_cnn3", (1, 28, 28), 4096, 128, "adam"),
        ("fmnist_cnn3", (1, 28, 28), 4096, 128, "sgd"),
        ("mnist1d_mlp", (40,), 65536, 128, "adam"),  # tiny model: per-step overhead shows most
        ("mnist1d_cnn", (40,), 32768, 128, "momentum"),
    ]
    print(f"device={device} threads={args.threads} rounds={args.rounds} (median samples/s over rounds, interleaved; "
          "ratio = median of per-round ratios)")
    print(f"{'model':<12} {'optimizer':<9} {'batch':>5} {'hand samples/s':>15} {'optbench samples/s':>19} "
          f"{'ratio':>6}  target >= 0.97")
    worst = float("inf")
    for task_name, shape, n, batch_size, optimizer in cases:
        hand, ours, ratio = bench(task_name, shape, n, batch_size, optimizer, args.rounds, device)
        worst = min(worst, ratio)
        print(f"{task_name:<12} {optimizer:<9} {batch_size:>5} {hand:>15,.0f} {ours:>19,.0f} {ratio:>6.3f}  "
              f"{'ok' if ratio >= 0.97 else 'BELOW TARGET'}")
    print(f"worst ratio: {worst:.3f}")


if __name__ == "__main__":
    main()
