"""Today's optimizers and 2:4 sparsity on a GPU, in one run: every modern preset trained through the
engine on CUDA (its contract honoured, its cost recorded with the device's peak memory), and the 2:4
semi-structured kernel (``torch.sparse.to_sparse_semi_structured``) against the dense matmul of the
same pruned weight, side by side, with the ratio printed.

Prints one line per check (``ok`` / ``FAILED`` with the numbers) and exits 1 when a check failed.
Needs a CUDA device.

Usage: python bench/cuda_modern.py
"""

from __future__ import annotations

import sys

import torch

PRESETS = ("adam", "muon", "schedulefree_adamw", "schedulefree_sgd", "soap", "shampoo", "prodigy", "dadapt_adam",
           "ademamix", "adopt", "mars", "lion", "sophia")


def _line(name: str, ok: bool, detail: str) -> bool:
    print(f"{'ok    ' if ok else 'FAILED'} {name}: {detail}", flush=True)
    return ok


def _time_ms(fn, repeats: int = 50) -> float:
    """Median milliseconds of ``fn()`` over ``repeats`` calls after 10 warm-up calls (CUDA events)."""
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def presets_on_cuda() -> list[bool]:
    from optbench.core.spec import Recipe, RunStatus
    from optbench.engine import split_data, train
    from optbench.tasks import get_task

    device = torch.device("cuda")
    task = get_task("mnist1d_cnn")
    data = split_data(task.load_data(), task.valid_size, 0, 4000)
    good = []
    for name in PRESETS:
        result = train(task, data, Recipe(name, {}, batch_size=128, epochs=3, train_size=4000), 0, device=device)
        cost = result.environment.get("optimizer_cost", {})
        ok = (result.status is RunStatus.FINISHED and result.final("test_accuracy") > 0.15
              and cost.get("peak_memory_bytes") is not None)
        good.append(_line(f"{name} on cuda", ok,
                          f"status {result.status.value}, test acc {result.final('test_accuracy'):.3f}, state "
                          f"{cost.get('state_bytes_per_param', float('nan')):.2f} B/param, step "
                          f"{cost.get('step_us_median', float('nan')):.0f} us, peak "
                          f"{(cost.get('peak_memory_bytes') or 0) / 2**20:.1f} MiB"
                          + (f", error {result.error}" if result.error else "")))
    return good


def sparse_2_4_kernel() -> list[bool]:
    from torch.sparse import to_sparse_semi_structured

    good = []
    for m, k, n in ((4096, 4096, 4096), (8192, 8192, 2048)):
        w = torch.randn(m, k, dtype=torch.float16, device="cuda")
        groups = w.abs().reshape(m, k // 4, 4)
        keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, groups.topk(2, dim=-1).indices, True)
        w = w * keep.reshape(m, k)  # 2 of every 4 along the input dimension
        x = torch.randn(n, k, dtype=torch.float16, device="cuda")
        sparse = to_sparse_semi_structured(w)
        dense_ms = _time_ms(lambda: torch.nn.functional.linear(x, w))  # noqa: B023 - timed at once
        sparse_ms = _time_ms(lambda: torch.nn.functional.linear(x, sparse))  # noqa: B023
        err = ((torch.nn.functional.linear(x, sparse) - torch.nn.functional.linear(x, w)).abs().max()
               / torch.nn.functional.linear(x, w).abs().max()).item()
        good.append(_line(f"2:4 kernel {n}x{k} @ {k}x{m} fp16", err < 1e-2,
                          f"dense {dense_ms:.3f} ms, 2:4 sparse {sparse_ms:.3f} ms, speed-up "
                          f"{dense_ms / sparse_ms:.2f}x, max relative difference {err:.1e}"))
    return good


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    good = presets_on_cuda()
    try:
        good += sparse_2_4_kernel()
    except (RuntimeError, NotImplementedError) as exc:
        good.append(_line("2:4 kernel", False, f"{type(exc).__name__}: {exc}"))
    print(f"{sum(good)} passed, {len(good) - sum(good)} failed")
    return 0 if all(good) else 1


if __name__ == "__main__":
    sys.exit(main())
