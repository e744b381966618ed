"""The CUDA paths, checked on a GPU machine in one run: device selection, fused optimizers, bf16
autocast, fp16 with a gradient scaler, the engines' parity on CUDA (single process vs DDP on NCCL vs
the parameter server), and the harness's speed against a hand-written loop on the GPU.

Prints one line per check (``ok`` / ``FAILED`` with the numbers) and exits 1 when a check failed.
Needs a CUDA device; does nothing useful without one.

Usage: python bench/cuda_checks.py [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
TASK_FILE = HERE.parent / "tests" / "test_engine_parity.py"


def _line(name: str, ok: bool, detail: str) -> bool:
    print(f"{'ok    ' if ok else 'FAILED'} {name}: {detail}", flush=True)
    return ok


def _max_rel(a, b, keys) -> float:
    worst = 0.0
    for x, y in zip(a.epochs, b.epochs, strict=True):
        for k in keys:
            worst = max(worst, abs(x.metrics[k] - y.metrics[k]) / max(abs(x.metrics[k]), 1e-12))
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds in the speed comparison")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    from optbench.core.spec import Recipe, RunStatus, default_device
    from optbench.engine import split_data, train
    from optbench.engine.distributed import DistributedConfig, run_distributed
    from optbench.optim import create_optimizer
    from optbench.tasks import get_task

    device = torch.device("cuda")
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
          f"NCCL {'.'.join(map(str, torch.cuda.nccl.version()))}", flush=True)
    good = [_line("default device", default_device().type == "cuda", str(default_device()))]

    model = torch.nn.Linear(4, 2).to(device)
    for name in ("adam", "adamw", "sgd", "momentum", "adagrad"):
        opt = create_optimizer(name, model.parameters(), lr=0.1, device=device)
        good.append(_line(f"fused {name}", opt.defaults.get("fused") is True,
                          f"{type(opt).__name__} fused={opt.defaults.get('fused')}"))

    task = get_task("digits_mlp")
    data = split_data(task.load_data(), task.valid_size, 0, 1024)
    base = Recipe("adam", {"lr": 1e-3}, batch_size=64, epochs=3, train_size=1024)
    runs = {}
    for precision in ("fp32", "bf16", "fp16"):
        recipe = dataclasses.replace(base, precision=precision)
        t0 = time.perf_counter()
        result = train(task, data, recipe, 0, device=device)
        runs[precision] = result
        loss = [e.metrics["train_loss"] for e in result.epochs]
        good.append(_line(f"train {precision} on cuda", result.status is RunStatus.FINISHED
                          and loss[-1] < loss[0] and result.environment.get("device", "").startswith("cuda"),
                          f"train loss {loss[0]:.4f} -> {loss[-1]:.4f}, valid acc "
                          f"{result.epochs[-1].metrics['valid_accuracy']:.4f}, {time.perf_counter() - t0:.1f} s, "
                          f"{result.epochs[-1].samples_per_second:,.0f} samples/s"))
    gap = abs(runs["fp16"].epochs[-1].metrics["valid_accuracy"] - runs["fp32"].epochs[-1].metrics["valid_accuracy"])
    good.append(_line("fp16 (gradient scaler) close to fp32", gap <= 0.03, f"valid accuracy gap {gap:.4f}"))

    sys.path.insert(0, str(TASK_FILE.parent))
    keys = ("train_loss", "valid_loss", "valid_accuracy", "test_loss")
    parity = Recipe("momentum", {"lr": 0.05, "weight_decay": 1e-3}, batch_size=32, epochs=2, train_size=192,
                    schedule="cosine", schedule_params={"warmup_steps": 3},
                    techniques=["l2:strength=0.01", "label_smoothing:epsilon=0.1", "clip_norm:max_norm=1.0",
                                "gaussian_noise:std=0.3", "ema:decay=0.9"])
    import test_engine_parity as cases  # the parity test's tasks (importable in the spawned ranks too)

    l2_task = cases.digits_images_l2()
    single = train(l2_task, split_data(l2_task.load_data(), l2_task.valid_size, 0, 192), parity, 0, device=device)
    for mode in ("ddp", "ps-sync"):
        config = DistributedConfig(f"{TASK_FILE}:digits_images_l2", parity, mode=mode, nproc=1, seed=0,
                                   device="cuda", timeout=300)
        t0 = time.perf_counter()
        run = run_distributed(config)
        backend = "nccl" if mode == "ddp" else "gloo"
        rel = _max_rel(single, run.result, keys) if run.result.status is RunStatus.FINISHED else math.inf
        good.append(_line(f"parity single vs {mode} ({backend}) on cuda", rel <= 1e-4,
                          f"max relative difference {rel:.2e} over {len(single.epochs)} epochs "
                          f"({time.perf_counter() - t0:.1f} s)"))

    import harness_overhead  # bench/harness_overhead.py

    rounds = 3 if args.quick else 7
    for task_name, shape, n, batch, optimizer in (("fmnist_cnn3", (1, 28, 28), 16384, 128, "adam"),
                                                  ("mnist1d_mlp", (40,), 65536, 128, "adam")):
        hand, ours, ratio = harness_overhead.bench(task_name, shape, n, batch, optimizer, rounds, device)
        good.append(_line(f"harness vs hand loop on cuda, {task_name}/{optimizer}", ratio >= 0.97,
                          f"hand {hand:,.0f} samples/s, optbench {ours:,.0f} samples/s, ratio {ratio:.3f} "
                          f"(target >= 0.97, {rounds} rounds)"))
    print(f"{sum(good)} passed, {len(good) - sum(good)} failed")
    return 0 if all(good) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
