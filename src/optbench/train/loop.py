"""The one training loop: every task, every optimizer, every seed goes through :func:`train`.

The harness owns data order, evaluation, RNG and timing; the optimizer sees only the model's
parameters and their gradients.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable

import torch
from torch import nn

from optbench.spec import EpochRecord, RunResult, RunStatus, Split, Task, TaskData, Recipe, run_id
from optbench.train.data import memory_format, ordered_batches, shuffled_batches, to_device
from optbench.train.environment import environment

EpochCallback = Callable[[EpochRecord], None]

#: Examples per evaluation batch (256 measured fastest on the reference CNN on 2 CPU threads: 2,976
#: samples/s versus 2,223 at 1024, where large activations thrash the allocator).
EVAL_BATCH_SIZE = 256


class _Diverged(Exception):
    """The training loss became NaN or infinite."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate(model: nn.Module, task: Task, split: Split, prefix: str) -> dict[str, float]:
    """Average every task metric over ``split`` in eval mode.

    Returns:
        ``{f"{prefix}_{metric}": value}``; each value is the metric's sum over the split
        divided by ``task.count`` of all targets (exact, independent of batch size).
    """
    model.eval()
    sums = {m.name: torch.zeros((), dtype=torch.float64, device=split.x.device) for m in task.metrics}
    count = 0
    with torch.no_grad():
        for x, y in ordered_batches(split, EVAL_BATCH_SIZE):
            output = model(x)
            for m in task.metrics:
                sums[m.name] += m.batch_sum(output, y).double()
            count += task.count(y)
    return {f"{prefix}_{name}": float(total) / count for name, total in sums.items()}


class _TrainMetrics:
    """Sums of a task's metrics over one epoch's training batches, computed in groups.

    Per step this only keeps references to the detached loss and output (no kernel launch);
    every ``group`` steps (or once ``max_elements`` output values are held) the group is
    concatenated and each metric is computed once, so a tiny model's step is not slowed by
    several small metric kernels. Sums are float64 and exact per group.
    """

    def __init__(self, task: Task, device: torch.device, group: int, max_elements: int = 1 << 22) -> None:
        self.task = task
        self.extra = [m for m in task.metrics if m.name != "loss"]
        self.sums = {m.name: torch.zeros((), dtype=torch.float64, device=device) for m in task.metrics}
        self.group, self.max_elements = group, max_elements
        self.losses: list[torch.Tensor] = []
        self.counts: list[int] = []
        self.outputs: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.held = 0
        self.count = 0

    def add(self, loss: torch.Tensor, output: torch.Tensor, y: torch.Tensor) -> None:
        """Record one step's mean ``loss``, ``output`` and targets ``y``; may flush and raise
        :class:`_Diverged` when the loss so far is not finite."""
        self.losses.append(loss.detach())
        self.counts.append(self.task.count(y))
        if self.extra:
            self.outputs.append(output.detach())
            self.targets.append(y)
            self.held += output.numel()
        if len(self.counts) >= self.group or self.held >= self.max_elements:
            self.flush()

    def flush(self) -> None:
        """Compute the held group's metric sums; raise :class:`_Diverged` on a non-finite loss."""
        if not self.losses:
            return
        self.count += sum(self.counts)
        with torch.no_grad():
            weights = torch.tensor(self.counts, dtype=torch.float64, device=self.losses[0].device)
            self.sums["loss"] += torch.stack(self.losses).double() @ weights  # mean * count per step
            if self.extra:
                output, y = torch.cat(self.outputs), torch.cat(self.targets)
                for m in self.extra:
                    self.sums[m.name] += m.batch_sum(output, y).double()
        self.losses, self.counts, self.outputs, self.targets, self.held = [], [], [], [], 0
        if not math.isfinite(self.sums["loss"].item()):  # NaN/inf stays in the running sum
            raise _Diverged("non-finite training loss")

    def result(self) -> dict[str, float]:
        """``{"train_<metric>": average}`` over the epoch (flushes first)."""
        self.flush()
        return {f"train_{name}": float(total) / self.count for name, total in self.sums.items()}


def _train_epoch(model: nn.Module, task: Task, split: Split, optimizer: torch.optim.Optimizer,
                 batch_size: int, generator: torch.Generator, check_every: int) -> tuple[dict[str, float], int]:
    """One pass over ``split``; returns averaged train metrics and the number of steps.

    Divergence (a NaN/inf loss) is detected within ``check_every`` steps."""
    model.train()
    metrics = _TrainMetrics(task, split.x.device, group=check_every)
    steps = 0
    for x, y in shuffled_batches(split, batch_size, generator):
        optimizer.zero_grad(set_to_none=True)
        output = model(x)
        loss = task.loss(output, y)
        loss.backward()
        optimizer.step()
        steps += 1
        metrics.add(loss, output, y)
    return metrics.result(), steps


def train(task: Task, data: TaskData, recipe: Recipe, seed: int, *, device: torch.device | None = None,
          on_epoch: EpochCallback | None = None) -> RunResult:
    """Train ``task``'s model with ``recipe`` from ``seed`` and measure every epoch.

    Per epoch: train loss/metrics (averaged over the epoch's steps), validation and test
    loss/metrics (after the epoch), train and eval wall time (seconds) and samples/s.

    Reproducibility: the model is initialized and trained under ``torch.manual_seed(seed)``
    inside :func:`torch.random.fork_rng` (the caller's RNG state is restored), data order comes
    from a generator seeded with ``seed``; on CPU with the same thread count two runs are
    bitwise identical.

    A NaN/inf training loss ends the run with status ``diverged``; any other exception ends it
    with status ``failed`` and the message (the caller's study goes on either way).

    Args:
        task: the test problem.
        data: train/valid/test splits (see :func:`optbench.train.data.split_data`).
        recipe: optimizer, hyperparameters, batch size, epochs. ``recipe.train_size`` is
            expected to be applied already when the splits were made.
        seed: integer seed of initialization, dropout and data order.
        device: where to train; CUDA when available by default.
        on_epoch: called with each :class:`EpochRecord` as soon as it is measured.

    Returns:
        the :class:`RunResult` (never raises for a failing run).
    """
    from optbench.optim import create_optimizer, resolved_hyperparams

    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    result = RunResult(run_id=run_id(task.name, recipe, seed), task=task.name, recipe=recipe, seed=seed,
                       status=RunStatus.FINISHED, environment=environment(device))
    start = time.perf_counter()
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        try:
            result.hyperparams = resolved_hyperparams(recipe.optimizer, **recipe.hyperparams)
            layout = memory_format(data)
            data = to_device(data, device, layout)
            model = task.make_model().to(device, memory_format=layout)
            optimizer = create_optimizer(recipe.optimizer, model.parameters(), device=device, **recipe.hyperparams)
            generator = torch.Generator().manual_seed(seed)
            check_every = 32 if device.type == "cpu" else 64  # each check is a host sync
            for epoch in range(1, recipe.epochs + 1):
                t0 = time.perf_counter()
                train_metrics, steps = _train_epoch(model, task, data.train, optimizer, recipe.batch_size,
                                                    generator, check_every)
                _sync(device)
                t1 = time.perf_counter()
                metrics = train_metrics | evaluate(model, task, data.valid, "valid") \
                    | evaluate(model, task, data.test, "test")
                _sync(device)
                t2 = time.perf_counter()
                result.steps += steps
                result.train_seconds += t1 - t0
                result.eval_seconds += t2 - t1
                record = EpochRecord(epoch=epoch, step=result.steps, metrics=metrics, train_seconds=t1 - t0,
                                     eval_seconds=t2 - t1, samples_per_second=len(data.train) / (t1 - t0),
                                     lr=float(optimizer.param_groups[0]["lr"]))
                result.epochs.append(record)
                if on_epoch is not None:
                    on_epoch(record)
        except _Diverged as exc:
            result.status, result.error = RunStatus.DIVERGED, str(exc)
        except Exception as exc:  # a failing run is recorded, the study goes on
            result.status = RunStatus.FAILED
            result.error = f"{type(exc).__name__}: {exc}"
            result.environment["traceback"] = traceback.format_exc(limit=8)
    result.total_seconds = time.perf_counter() - start
    return result


__all__ = ["EVAL_BATCH_SIZE", "EpochCallback", "evaluate", "train"]
