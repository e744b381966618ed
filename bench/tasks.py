"""Train catalogue tasks with their working recipes and record the cost and time to target.

For every task: load its data (a task whose data cannot be obtained is skipped with a line
saying so), check it (:func:`optbench.tasks.check_task`), train the task's own recipe
(``Task.recipe``) from seed 0 — at most ``--max-epochs`` epochs, on at most ``--train-size``
training examples — and stop after the epoch that reaches the target (unless ``--full``).

The table (Markdown, to stdout and ``--out``): task, parameters, training examples, mean training
seconds per epoch (evaluation excluded), epochs to target (or "not in N"), the final value of the
target metric and the target.

Usage: python bench/tasks.py [--tasks mnist_2c2d,fmnist_2c2d] [--max-epochs 3] [--train-size 10000]
                             [--seed 0] [--threads 2] [--full] [--out bench/tasks.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import time
from pathlib import Path

import torch

from optbench.core.errors import DataUnavailableError
from optbench.core.spec import EpochRecord, Recipe, RunResult
from optbench.engine import Pruned, split_data, train
from optbench.tasks import check_task, get_task

DEFAULT_TASKS = ("mnist_2c2d", "fmnist_2c2d", "shakespeare_char_lstm", "shakespeare_char_transformer",
                 "brown_word_lstm")


def bench_task(name: str, max_epochs: int | None, train_size: int | None, seed: int, full: bool,
               log=print) -> dict[str, object] | str:
    """One task's row, or a line explaining why it was skipped."""
    task = get_task(name)
    try:
        dataset = task.load_data()
    except DataUnavailableError as exc:
        return f"{name}: skipped, data not available ({str(exc).splitlines()[0]})"
    check_task(task, dataset)
    recipe = Recipe.from_dict(task.recipe)
    if max_epochs is not None:
        recipe = dataclasses.replace(recipe, epochs=min(recipe.epochs, max_epochs))
    available = len(dataset.train) - task.valid_size
    size = recipe.train_size if recipe.train_size is not None else available
    if train_size is not None:
        size = min(size, train_size)
    recipe = dataclasses.replace(recipe, train_size=size if size < available else None)
    data = split_data(dataset, task.valid_size, seed, recipe.train_size)
    key, direction = task.target.key, task.direction(task.target.key)

    def on_epoch(record: EpochRecord) -> None:
        log(f"  {name} epoch {record.epoch}: {key} {record.metrics.get(key, float('nan')):.4g} "
            f"({record.train_seconds:.1f} s training, {record.eval_seconds:.1f} s evaluation)")
        if not full and direction.reached(record.metrics.get(key, float("nan")), task.target.value):
            raise Pruned("target reached")

    result: RunResult = train(task, data, recipe, seed, on_epoch=on_epoch)
    if result.error and not result.error.startswith("pruned"):
        return f"{name}: run {result.status.value}: {result.error}"
    epochs = result.epochs_to_target(key, task.target.value, direction)
    per_epoch = result.train_seconds / max(1, len(result.epochs))
    return {"task": name, "parameters": sum(p.numel() for p in task.make_model().parameters()),
            "train examples": len(data.train), "s/epoch": round(per_epoch, 1),
            "epochs to target": epochs if epochs is not None else f"not in {len(result.epochs)}",
            "final": f"{key} {result.final(key):.4g}",
            "target": f"{'>=' if direction.value == 'maximize' else '<='} {task.target.value:g}",
            "recipe": f"{recipe.optimizer} lr {recipe.hyperparams.get('lr')} batch {recipe.batch_size}"}


def markdown(rows: list[dict[str, object]], notes: list[str], header: str) -> str:
    """The rows as a Markdown table, with the header line and skipped-task notes."""
    lines = [header, ""]
    if rows:
        cols = list(rows[0])
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(f"{r[c]:,}" if isinstance(r[c], int) else str(r[c]) for c in cols) + " |"
                  for r in rows]
    lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the tasks, print and write the table; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="comma-separated task names")
    parser.add_argument("--max-epochs", type=int, default=None, help="cap on each recipe's epochs")
    parser.add_argument("--train-size", type=int, default=None, help="cap on training examples (windows for LMs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="train all epochs even after reaching the target")
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown table here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows: list[dict[str, object]] = []
    notes: list[str] = []
    start = time.perf_counter()
    for name in filter(None, (t.strip() for t in args.tasks.split(","))):
        print(f"{name} ...", file=sys.stderr, flush=True)
        row = bench_task(name, args.max_epochs, args.train_size, args.seed, args.full,
                         log=lambda line: print(line, file=sys.stderr, flush=True))
        (notes if isinstance(row, str) else rows).append(row)  # type: ignore[arg-type]
    header = (f"bench/tasks.py: seed {args.seed}, {args.threads} threads, torch {torch.__version__}, "
              f"{platform.processor() or platform.machine()}, max epochs {args.max_epochs or 'recipe'}, "
              f"train size cap {args.train_size or 'recipe'}; total {time.perf_counter() - start:.0f} s")
    text = markdown(rows, notes, header)
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
