"""Optimizer step cost: ns per parameter per step, and the memory bandwidth it implies.

For every preset (and each implementation it has: fused / foreach / single; ``*`` marks the one
``implementation="auto"`` picks), on float32 parameters laid out as one 1M tensor, one 10M
tensor, and the reference CNN's eight tensors (fmnist_cnn3, 104,202 parameters), times
``optimizer.step()`` with fixed gradients (blocks of ~30 ms of steps after warm-up, the
implementations of a preset timed round-robin so that machine noise hits them alike; median and
min over repeats) and reports:

* ns/param/step = step time / number of parameters;
* implied bandwidth = (bytes moved per parameter per step) * parameters / step time, where the
  bytes are a *minimal* model of the update: every tensor the rule must read once and write
  once, 4 bytes each (e.g. Adam reads p, g, m, v and writes p, m, v: 7 * 4 = 28 B; see BYTES);
* its ratio to the machine's copy bandwidth (``dst.copy_(src)`` of a 256 MB tensor, counting
  the read and the write), measured in the same run.

A ratio near 1 means the step runs at memory speed; well below 1 means it is bound by kernel
launches / Python (small tensors) or by extra passes the minimal model does not count. The CNN
layout fits in cache, so its ratio can exceed 1.

Special cases: ``sam`` (over momentum) is timed with a closure that only re-installs the fixed
gradients, so it measures SAM's own work (norm, perturb, restore) plus the base step; ``sophia``
is timed on the steps between Hessian estimates (the estimate is a Hessian-vector product,
i.e. a backward pass, not optimizer work); ``lbfgs`` is timed per iteration (max_iter=1, no line
search) with a full history of 100 pairs on a diagonal quadratic whose gradient the closure
computes without autograd, 1M and CNN layouts only (10M would take minutes per step block).

Usage: python bench/optimizer_step.py [--repeats 7] [--threads N] [--only adam,sgd]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from optbench.optim import capabilities, create_optimizer, implementation_of

#: Minimal words (4-byte float32 tensors) read + written per parameter per step.
BYTES = {
    "gd": 3 * 4, "sgd": 3 * 4,                      # r p g, w p
    "momentum": 5 * 4, "nesterov": 5 * 4,           # r p g v, w p v
    "adagrad": 5 * 4, "rmsprop": 5 * 4,             # r p g G, w p G
    "adadelta": 7 * 4,                              # r p g Eg Edx, w p Eg Edx
    "adam": 7 * 4, "adamw": 7 * 4, "nadam": 7 * 4, "radam": 7 * 4, "adabelief": 7 * 4,
    "lion": 5 * 4,                                  # r p g m, w p m
    "lars": 5 * 4,                                  # r p g v, w p v (norms: extra passes)
    "lamb": 7 * 4,                                  # as Adam (norms: extra passes)
    "sophia": 6 * 4,                                # r p g m h, w p m
    "sam": (5 + 8) * 4,  # momentum + norm(g) 1, save p 2, perturb r p g w p 3, restore 2
    "lbfgs": (10 * 100 + 6) * 4,  # two-loop recursion: 10 words per pair * 100 pairs + update
}
PRESETS = tuple(BYTES)
LAYOUTS = ("1M", "10M", "cnn")


def cnn_shapes() -> list[torch.Size]:
    """The reference CNN's parameter shapes (fmnist_cnn3)."""
    from optbench.tasks.models import cnn3

    return [p.shape for p in cnn3().parameters()]


def make_params(layout: str) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(0)
    shapes = {"1M": [torch.Size([1_000_000])], "10M": [torch.Size([10_000_000])],
              "cnn": cnn_shapes()}[layout]
    params = []
    for shape in shapes:
        p = torch.nn.Parameter(torch.randn(shape, generator=g) * 0.05)
        p.grad = torch.randn(shape, generator=g) * 1e-3
        params.append(p)
    return params


def copy_bandwidth(repeats: int) -> float:
    """Bytes/s of ``dst.copy_(src)`` on 256 MB float32 tensors (read + write counted)."""
    src = torch.randn(64_000_000)
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - t0)
    return 2 * src.numel() * 4 / statistics.median(times)


def implementations(name: str) -> list[str]:
    caps = capabilities(name)
    return (["fused"] if caps.supports_fused else []) + \
        (["foreach"] if caps.supports_foreach else []) + ["single"]


def build(name: str, params: list[torch.nn.Parameter], implementation: str
          ) -> tuple[torch.optim.Optimizer, Callable[[], None]]:
    """The optimizer and a function doing one step of it."""
    grads = [p.grad.clone() for p in params]
    if name == "lbfgs":
        h = [torch.rand(p.shape, generator=torch.Generator().manual_seed(1)) * 9 + 1
             for p in params]
        opt = create_optimizer(name, params, implementation=implementation, lr=0.05,
                               max_iter=1, line_search_fn=None, history_size=100,
                               tolerance_grad=0.0, tolerance_change=0.0)

        def closure() -> torch.Tensor:
            with torch.no_grad():
                loss = sum(0.5 * (hi * p * p).sum() for hi, p in zip(h, params, strict=True))
                for hi, p in zip(h, params, strict=True):
                    p.grad = hi * p
            return loss
        return opt, lambda: opt.step(closure)
    if capabilities(name).needs_closure:  # SAM: the closure re-installs the fixed gradients
        opt = create_optimizer(name, params, implementation=implementation, lr=1e-4)

        def closure() -> torch.Tensor:
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            return torch.zeros(())
        return opt, lambda: opt.step(closure)
    if name == "sophia":
        opt = create_optimizer(name, params, implementation=implementation, lr=1e-4)
        opt.step(hessian=[torch.ones_like(p) for p in params])  # one estimate, then none
        opt.update_period = 1 << 62
        return opt, opt.step
    opt = create_optimizer(name, params, implementation=implementation, lr=1e-4)
    return opt, opt.step


def block_size(step: Callable[[], None]) -> int:
    """Steps per timed block (~30 ms), after a warm-up step."""
    step()
    singles = []
    for _ in range(3):
        t0 = time.perf_counter()
        step()
        singles.append(time.perf_counter() - t0)
    return max(1, min(500, int(0.03 / max(min(singles), 1e-7))))


def time_interleaved(steps: list[Callable[[], None]], repeats: int) -> list[tuple[float, float]]:
    """(median, min) seconds per step of each function, timed round-robin (A, B, C, A, B, C,
    ...) so that machine noise hits all alike."""
    blocks = [block_size(step) for step in steps]
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(repeats):
        for step, block, out in zip(steps, blocks, times, strict=True):
            t0 = time.perf_counter()
            for _ in range(block):
                step()
            out.append((time.perf_counter() - t0) / block)
    return [(statistics.median(t), min(t)) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--only", default="", help="comma-separated presets (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [n for n in args.only.split(",") if n] or list(PRESETS)
    copy_bw = copy_bandwidth(args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; copy bandwidth "
          f"{copy_bw / 1e9:.2f} GB/s (dst.copy_(src), 256 MB, read + write)")
    print("ns/param and GB/s: median over repeats (min in brackets); x copy: median GB/s / copy")
    print(f"{'preset':<10} {'impl':<9} {'layout':<6} {'ns/param':>17} {'B/param':>8} "
          f"{'GB/s':>14} {'x copy':>7}")
    for name in names:
        auto = implementation_of(create_optimizer(name, make_params("cnn")))
        for layout in LAYOUTS:
            if name == "lbfgs" and layout == "10M":
                continue
            impls = implementations(name)
            runs = []
            for impl in impls:
                params = make_params(layout)
                opt, step = build(name, params, impl)
                if name == "lbfgs":
                    for _ in range(100):  # fill the history
                        step()
                runs.append((impl, opt, step, sum(p.numel() for p in params)))
            timings = time_interleaved([step for _, _, step, _ in runs], args.repeats)
            for (impl, opt, _, numel), (seconds, best) in zip(runs, timings, strict=True):
                bw, bw_best = BYTES[name] * numel / seconds, BYTES[name] * numel / best
                chosen = implementation_of(opt) == auto or (auto == "default" and impl == "foreach")
                ns = f"{seconds / numel * 1e9:.3f} ({best / numel * 1e9:.3f})"
                gbs = f"{bw / 1e9:.2f} ({bw_best / 1e9:.2f})"
                print(f"{name:<10} {impl + ('*' if chosen else ' '):<9} {layout:<6} {ns:>17} "
                      f"{BYTES[name]:>8} {gbs:>14} {bw / copy_bw:>7.2f}", flush=True)
            del runs

if __name__ == "__main__":
    main()
