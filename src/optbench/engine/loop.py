"""The one training loop: every task, every optimizer, every seed goes through :func:`train`.

The harness owns data order, evaluation, RNG and timing; the optimizer sees only the model's
parameters and their gradients. Techniques of the recipe (schedule, warmup, penalties, label
smoothing, augmentation, precision, clipping, accumulation, weight averaging, early stopping,
batch-size rules) are composed here from their registries; the per-batch work is
:class:`~optbench.engine.step.TrainStep`.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor, nn

from optbench.core.spec import EpochRecord, Recipe, RunResult, RunStatus, Task, TaskData, default_device, run_id
from optbench.core.splits import AnySplit
from optbench.engine.data import memory_format, ordered_batches, shuffled_batches, to_device
from optbench.engine.environment import environment
from optbench.engine.metrics import Diverged, TrainMetrics

if TYPE_CHECKING:
    from optbench.engine.build import RunSetup
    from optbench.engine.checkpoint import Checkpointer

EpochCallback = Callable[[EpochRecord], None]


class Weights(Protocol):
    """Stored final weights of runs by run id (:class:`optbench.runs.weights.WeightsDir`): ``load``
    for components that start from or learn from another run, ``save`` of a finished run's final
    weights when ``saving`` is on."""

    saving: bool

    def load(self, run_id: str) -> Mapping[str, Tensor]: ...

    def save(self, run_id: str, state_dict: Mapping[str, Tensor]) -> object: ...


class Pruned(Exception):  # noqa: N818 - the field's word (Optuna: TrialPruned)
    """Raised by an ``on_epoch`` callback to stop a run after the epoch just recorded: a tuning
    pruner (median, ASHA, Hyperband) decided it will not be among the best. The run ends with
    status ``pruned`` and keeps its epochs."""

#: Examples per evaluation batch (256 measured fastest on the reference CNN on 2 CPU threads: 2,976
#: samples/s versus 2,223 at 1024, where large activations thrash the allocator).
EVAL_BATCH_SIZE = 256


def sync(device: torch.device) -> None:
    """Wait for queued GPU work (no-op on CPU), so that wall-clock times are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate(model: nn.Module, task: Task, split: AnySplit, prefix: str) -> dict[str, float]:
    """Average every task metric over ``split`` in eval mode.

    Returns:
        ``{f"{prefix}_{metric}": value}``; each value is the metric's sum over the split
        divided by ``task.count`` of all targets (exact, independent of batch size).
    """
    was_training = model.training
    model.eval()
    sums = {m.name: torch.zeros((), dtype=torch.float64, device=split.device) for m in task.metrics}
    count = 0
    with torch.inference_mode():
        for x, y in ordered_batches(split, EVAL_BATCH_SIZE):
            output = model(x)
            for m in task.metrics:
                sums[m.name] += m.batch_sum(output, y).double()
            count += task.count(y)
    model.train(was_training)
    return task.add_derived({f"{prefix}_{name}": float(total) / count for name, total in sums.items()}, prefix)


def _prepare(task: Task, data: TaskData, recipe: Recipe, seed: int, device: torch.device, result: RunResult,
             checkpoint: Checkpointer | None, load_weights: Callable[[str], Mapping[str, Tensor]] | None = None
             ) -> tuple[RunSetup, torch.Generator, int, bool]:
    """Seed and build the run, then restore its checkpoint when there is a usable one.

    Returns ``(setup, data-order generator, last epoch done, stopped)``; ``(.., 0, False)`` for a
    fresh start. A checkpoint that does not fit the run is ignored with a warning (built again)."""
    from optbench.core.component import overriding
    from optbench.engine.build import build_run
    from optbench.engine.checkpoint import restore
    from optbench.optim import capabilities

    state = checkpoint.load() if checkpoint is not None else None
    batch_size = len(data.train) if capabilities(recipe.optimizer).full_batch_only else recipe.batch_size
    steps_per_epoch = math.ceil(len(data.train) / batch_size)
    while True:
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model = task.make_model().to(device, memory_format=memory_format(data))
        setup = build_run(task, replace(recipe, batch_size=batch_size), model, device=device,
                          generator=torch.Generator().manual_seed(seed + 1), engine="single",
                          batch_size=batch_size, steps_per_epoch=steps_per_epoch, seed=seed,
                          load_weights=load_weights)
        if "lr" in setup.hyperparams and overriding(setup.components, "adjust_hyperparams"):
            result.hyperparams["lr"] = float(setup.lr())  # record the learning rate a component chose
        if state is None or checkpoint is None:
            return setup, generator, 0, False
        try:
            return (setup, generator, *restore(state, setup, result, generator, device))
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            checkpoint.warn_ignored(f"it does not fit the run ({type(exc).__name__}: {exc})")
            state = None


def _train_epoch(setup: RunSetup, task: Task, split: AnySplit, generator: torch.Generator, batch_size: int,
                 first_step: int, check_every: int) -> tuple[dict[str, float], int, float]:
    """One pass over ``split``; returns averaged train metrics, the number of steps and the seconds the
    steps waited for their batches (the gather in memory; the DataLoader's wait when streamed).

    Divergence (a NaN/inf loss) is detected within ``check_every`` steps."""
    setup.model.train()
    metrics = TrainMetrics(task, split.device, group=check_every, loss_is_task_loss=setup.step.loss_is_task_loss)
    steps, waited = 0, 0.0
    controller, step = setup.controller, setup.step
    batches = shuffled_batches(split, batch_size, generator)
    while True:
        t0 = time.perf_counter()
        batch = next(batches, None)
        waited += time.perf_counter() - t0
        if batch is None:
            return metrics.result(), steps, waited
        if controller is not None:
            controller.apply(first_step + steps)
        step(*batch, metrics)
        steps += 1


def train(task: Task, data: TaskData, recipe: Recipe, seed: int, *, device: torch.device | None = None,
          on_epoch: EpochCallback | None = None, checkpoint: Checkpointer | None = None,
          weights: Weights | None = None) -> RunResult:
    """Train ``task``'s model with ``recipe`` from ``seed`` and measure every epoch.

    Per epoch: train loss/metrics (averaged over the epoch's steps, always the task's own
    loss even when label smoothing or a penalty changes the objective), validation and test
    loss/metrics after the epoch (of the averaged weights when SWA/EMA is on), train and eval
    wall time (seconds), samples/s and the learning rate of the epoch's last step.

    Reproducibility: the model is initialized and trained under ``torch.manual_seed(seed)``
    inside :func:`torch.random.fork_rng` (the caller's RNG state is restored), data order and
    augmentation come from generators seeded with ``seed``; on CPU with the same thread count
    two runs are bitwise identical.

    ``environment["data_wait_seconds"]``: seconds the training steps waited for their batches, summed
    over epochs (index gathers in memory; the DataLoader's wait for a streamed split).

    A NaN/inf training loss ends the run with status ``diverged``; any other exception ends it
    with status ``failed`` and the message (the caller's study goes on either way). Early
    stopping ends a run with status ``finished`` before its epoch budget (recorded in
    ``environment["early_stopping"]``), and so does ``recipe.max_train_seconds`` (recorded in
    ``environment["time_budget"]``). A finished run records what its optimizer cost
    (``environment["optimizer_cost"]``: state bytes per parameter, median step time; see
    :mod:`optbench.engine.cost`) and, for an optimizer that partitions the model (Muon), how
    (``environment["param_partition"]``).

    Checkpoints (opt-in, ``checkpoint``): after every epoch (its record emitted, schedule and early
    stopping updated) the run's whole state is saved (:mod:`optbench.engine.checkpoint`); a run
    given a usable checkpoint of itself continues after the saved epoch, bitwise as if never
    interrupted on CPU. The restored epochs are not passed to ``on_epoch`` again;
    ``environment["checkpoint"]`` records ``{"resumed_epoch": k}``. The file is left in place:
    whoever stores the result deletes it (:meth:`Checkpointer.delete`).

    Args:
        task: the test problem.
        data: train/valid/test splits (see :func:`optbench.engine.data.split_data`).
        recipe: how to train. ``recipe.train_size`` is expected to be applied already when
            the splits were made.
        seed: integer seed of initialization, dropout, data order and augmentation.
        device: where to train; CUDA when available by default.
        on_epoch: called with each :class:`EpochRecord` as soon as it is measured; it may raise
            :class:`Pruned` to end the run there (status ``pruned``).
        checkpoint: save (and resume from) per-epoch checkpoints of this run; None: none.
        weights: stored final weights of runs: components that start from or learn from another run
            load through it (``init_from``, ``lwf``, ``ewc``); with ``weights.saving`` a finished run
            saves the weights of the model it evaluated at its end under its run id (what
            ``RunSetup.eval_model`` returns: the averaged iterate x of a schedule-free optimizer, the
            EMA/SWA weights when those are on, else the trained weights). A save that fails fails
            the run. None: no access to stored weights.

    Returns:
        the :class:`RunResult` (never raises for a failing run).
    """
    from optbench.optim import resolved_hyperparams

    device = device or default_device()
    result = RunResult(run_id=run_id(task.name, recipe, seed), task=task.name, recipe=recipe, seed=seed,
                       status=RunStatus.FINISHED, environment=environment(device))
    start = time.perf_counter()
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        try:
            result.hyperparams = resolved_hyperparams(recipe.optimizer, **recipe.hyperparams)
            data = to_device(data, device, memory_format(data))
            setup, generator, done, stopped = _prepare(task, data, recipe, seed, device, result, checkpoint,
                                                       None if weights is None else weights.load)
            check_every = 32 if device.type == "cpu" else 64  # each check is a host sync
            batch_size = len(data.train) if setup.step.caps.full_batch_only else recipe.batch_size
            last = done if stopped else recipe.epochs  # a run restored after its last epoch trains no more
            for epoch in range(done + 1, last + 1):
                setup.before_train_epoch(epoch)
                t0 = time.perf_counter()
                train_metrics, steps, waited = _train_epoch(setup, task, data.train, generator, batch_size,
                                                            result.steps, check_every)
                result.environment["data_wait_seconds"] = result.environment.get("data_wait_seconds", 0.0) + waited
                setup.after_train_epoch(epoch)
                sync(device)
                t1 = time.perf_counter()
                model = setup.eval_model(lambda: (x for x, _ in ordered_batches(data.train, EVAL_BATCH_SIZE)))
                metrics = train_metrics | evaluate(model, task, data.valid, "valid") \
                    | evaluate(model, task, data.test, "test") | setup.extra_metrics()
                sync(device)
                t2 = time.perf_counter()
                result.steps += steps
                result.train_seconds += t1 - t0
                result.eval_seconds += t2 - t1
                record = EpochRecord(epoch=epoch, step=result.steps, metrics=metrics, train_seconds=t1 - t0,
                                     eval_seconds=t2 - t1, samples_per_second=len(data.train) / (t1 - t0),
                                     lr=setup.lr())
                result.epochs.append(record)
                if on_epoch is not None:
                    on_epoch(record)
                reasons = setup.on_epoch_end(epoch, metrics)  # schedule and components; never test metrics
                if recipe.max_train_seconds is not None and result.train_seconds >= recipe.max_train_seconds:
                    reasons = {"time_budget": {"stopped_epoch": epoch, "seconds": result.train_seconds}}
                result.environment.update(reasons)
                stop = bool(reasons)
                if checkpoint is not None:
                    _save(checkpoint, setup, result, generator, device, epoch, stop, time.perf_counter() - start)
                if stop:
                    break
            result.environment.update(setup.records())  # optimizer cost and parameter partition
            if weights is not None and weights.saving:  # the final evaluated weights, for later runs
                final = setup.eval_model(lambda: (x for x, _ in ordered_batches(data.train, EVAL_BATCH_SIZE)))
                state = final.state_dict()
                if not all(isinstance(v, torch.Tensor) for v in state.values()):
                    state = setup.model.state_dict()  # a converted (int8) model: store the trained float weights
                weights.save(result.run_id, state)
        except Diverged as exc:
            result.status, result.error = RunStatus.DIVERGED, f"{exc} in epoch {len(result.epochs) + 1}"
        except Pruned as exc:
            result.status, result.error = RunStatus.PRUNED, f"pruned after epoch {len(result.epochs)}: {exc}"
        except Exception as exc:  # a failing run is recorded, the study goes on
            result.status = RunStatus.FAILED
            result.error = f"{type(exc).__name__}: {exc}"
            result.environment["traceback"] = traceback.format_exc(limit=8)
    result.total_seconds += time.perf_counter() - start  # += : the seconds before a resume are kept
    return result


def _save(checkpoint: Checkpointer, setup: RunSetup, result: RunResult, generator: torch.Generator,
          device: torch.device, epoch: int, stopped: bool, seconds: float) -> None:
    """Save the run's state after ``epoch`` (``seconds``: wall time of this process's part). A
    checkpoint that cannot be written is warned about; the run goes on without it."""
    from optbench.engine.checkpoint import capture

    try:
        checkpoint.save(capture(setup, result, generator, device, epoch=epoch, stopped=stopped,
                                elapsed=result.total_seconds + seconds))
    except OSError as exc:
        checkpoint.warn_ignored(f"it cannot be written ({exc})", then="the run goes on without it")


__all__ = ["EVAL_BATCH_SIZE", "EpochCallback", "Pruned", "Weights", "evaluate", "train"]
