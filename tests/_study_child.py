"""A small study run as a subprocess by the kill/resume and multi-machine tests.

Usage: ``python tests/_study_child.py STORE_URL LOG [--study S] [--workers N] [--threads K] [--seeds S]
[--epochs E] [--train-size T] [--ready-file PATH --go-file PATH]``

Runs a digits_mlp plan (4 optimizers x seeds) with :func:`optbench.runs.executor.execute_plan` and
appends one line per event to LOG (``started RUN_ID PID``, ``done RUN_ID PID SKIPPED``), so that a
test can count how often each run was started and executed. With ``--ready-file``/``--go-file``
the child creates the first once everything is imported and waits for the second to exist, so
that a test can start several children at the same instant. ``--threads`` is set explicitly so
that an interrupted and an uninterrupted study compute bitwise the same numbers on CPU.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("log")
    parser.add_argument("--study", default="child")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--ready-file", default=None)
    parser.add_argument("--go-file", default=None)
    args = parser.parse_args()

    import torch

    from optbench.core.spec import Recipe
    from optbench.runs.executor import RunDone, RunStarted, execute_plan
    from optbench.runs.plan import plan_runs
    from optbench.runs.store import open_store

    torch.set_num_threads(args.threads)
    recipes = [Recipe(name, {"lr": 0.01}, batch_size=64, epochs=args.epochs, train_size=args.train_size)
               for name in ("adam", "sgd", "momentum", "rmsprop")]
    specs = plan_runs("digits_mlp", "digits_mlp", recipes, range(args.seeds))
    with open_store(args.store) as store:
        store.ensure_study(args.study, {"test": "child"})
    log = open(args.log, "a", buffering=1)  # noqa: SIM115 - one line per event, flushed at once

    def on_event(event: object) -> None:
        if isinstance(event, RunStarted):
            log.write(f"started {event.spec.run_id} {os.getpid()}\n")
        elif isinstance(event, RunDone):
            pid = event.result.environment.get("worker", {}).get("pid", 0)
            log.write(f"done {event.spec.run_id} {pid} {int(event.skipped)}\n")

    if args.ready_file:
        Path(args.ready_file).touch()
    if args.go_file:
        deadline = time.monotonic() + 300
        while not Path(args.go_file).exists() and time.monotonic() < deadline:
            time.sleep(0.005)
    results = execute_plan(args.store, args.study, specs, workers=args.workers, device=torch.device("cpu"),
                           on_event=on_event)
    log.write(f"end {len(results)} {os.getpid()}\n")
    log.close()


if __name__ == "__main__":
    main()
