"""Worker failures: each mode with a worker killed mid-job against the same job undisturbed.

One task and recipe (digits_mlp, SGD, 2 workers, batch 16 per worker, the whole training split), one
worker sent SIGKILL before its global step ``--kill-step`` (``kill_worker``), on several seeds:

* ``ps-async`` and ``ps-ssp:1`` go on with the remaining worker: reported are the final validation and
  test accuracy beside the undisturbed run's, the gradients the server received of those planned and
  how long after the exit the server noticed;
* ``ddp`` and ``ps-sync`` restart from their last per-epoch checkpoint (``max_restarts=1``): reported
  are the seconds to recover (from the failure to training going on), the steps computed again and the
  final accuracy, which on CPU equals the undisturbed run's exactly.

Each (mode, seed) runs undisturbed and disturbed back to back; the ratio column is disturbed over
undisturbed final test accuracy, and the time ratio disturbed over undisturbed wall seconds.

Usage: python bench/worker_failure.py [--seeds 3] [--epochs 4] [--kill-step 60]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

from optbench.core.spec import Recipe
from optbench.engine.distributed import DistributedConfig, run_distributed

MODES = ("ps-async", "ps-ssp:1", "ddp", "ps-sync")


def _run(config: DistributedConfig) -> tuple[object, float]:
    started = time.perf_counter()
    run = run_distributed(config)
    return run, time.perf_counter() - started


def main() -> None:
    """Run the comparison and print one line per mode (medians over seeds)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--kill-step", type=int, default=60, help="global step the killed worker does not compute")
    args = parser.parse_args()
    recipe = Recipe("sgd", {"lr": 0.1}, batch_size=16, epochs=args.epochs, train_size=None)
    print(f"digits_mlp, 2 workers, batch 16/worker, {args.epochs} epochs, worker 1 killed before step "
          f"{args.kill_step}, seeds 0..{args.seeds - 1}")
    print(f"{'mode':10} {'test acc calm':>13} {'killed':>8} {'ratio':>6} {'time ratio':>10}  what happened")
    for mode in MODES:
        calm_acc, killed_acc, times, notes = [], [], [], []
        for seed in range(args.seeds):
            base = DistributedConfig("digits_mlp", recipe, mode=mode, nproc=2, seed=seed, timeout=900,
                                     comm_timeout=120)
            restarts = 0 if base.parsed_mode.survives_worker_loss else 1
            calm, calm_seconds = _run(base)
            killed, killed_seconds = _run(dataclasses.replace(base, kill_worker=(1, args.kill_step),
                                                              max_restarts=restarts))
            calm_acc.append(calm.result.epochs[-1].metrics["test_accuracy"])
            killed_acc.append(killed.result.epochs[-1].metrics["test_accuracy"])
            times.append(killed_seconds / calm_seconds)
            if restarts:
                elastic = killed.result.environment["elastic"]
                notes.append(f"recover {elastic['recover_seconds']:.2f} s, {elastic['steps_redone']} steps redone")
            else:
                (lost,) = killed.server["lost_workers"]
                notes.append(f"{killed.server['gradients_received']}/{killed.server['gradients_planned']} "
                             f"gradients, noticed {lost['detect_seconds']:.2f} s after the exit")
        calm_m, killed_m = statistics.median(calm_acc), statistics.median(killed_acc)
        print(f"{mode:10} {calm_m:13.4f} {killed_m:8.4f} {killed_m / calm_m:6.3f} {statistics.median(times):10.2f}  "
              f"{notes[0]}")


if __name__ == "__main__":
    main()
