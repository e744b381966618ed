"""The contracts every part of optbench builds on: Task, Recipe, RunResult.

Vocabulary (DESIGN.md section 2):

* **Task** — data + model + loss + metrics + a target value for time-to-target
  (a DeepOBS "test problem").
* **Recipe** — everything about *how* to train: optimizer and hyperparameters, batch size,
  epoch budget, training-set size.
* **Run** — one Task x Recipe x seed, producing a :class:`RunResult`.

Shapes and units used throughout:

* ``Split.x`` has shape ``(N, *input_shape)`` (float32), ``Split.y`` shape ``(N,)`` (int64
  class indices) for classification; ``N`` is the number of examples.
* A metric function returns the **sum** over a batch (a 0-d tensor); the harness divides
  by the number of counted units (``Task.count(y)``, examples for classification) so that
  per-epoch metrics are exact averages however the data is batched.
* Times are seconds of wall clock (``time.perf_counter``); throughput is samples/s.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch
from torch import Tensor, nn

from optbench.errors import ConfigError, require_positive


class Direction(str, Enum):
    """Whether larger or smaller values of a metric are better. Always stated, never guessed."""

    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"

    def better(self, a: float, b: float) -> bool:
        """True when ``a`` is strictly better than ``b``."""
        return a > b if self is Direction.MAXIMIZE else a < b

    def reached(self, value: float, target: float) -> bool:
        """True when ``value`` meets ``target`` (>= for maximize, <= for minimize)."""
        return value >= target if self is Direction.MAXIMIZE else value <= target


class RunStatus(str, Enum):
    """How a run ended: ``finished`` (budget spent), ``diverged`` (non-finite loss),
    ``failed`` (an exception; the message is kept)."""

    FINISHED = "finished"
    DIVERGED = "diverged"
    FAILED = "failed"


SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Metric:
    """A per-batch metric.

    Args:
        name: e.g. ``"accuracy"``; stored per split as ``"{split}_{name}"``.
        direction: whether larger or smaller is better.
        batch_sum: ``(output, y) -> 0-d tensor``, the metric **summed** over the batch.
    """

    name: str
    direction: Direction
    batch_sum: Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Split:
    """In-memory examples: ``x`` of shape ``(N, ...)`` and targets ``y`` of shape ``(N, ...)``."""

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"x has {self.x.shape[0]} examples but y has {self.y.shape[0]}")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, index: Tensor) -> Split:
        """The examples at ``index`` (a 1-d int64 tensor), copied."""
        return Split(self.x[index], self.y[index])


@dataclass(frozen=True)
class Dataset:
    """A task's data before the validation split: the training pool and the test set."""

    train: Split
    test: Split


@dataclass(frozen=True)
class TaskData:
    """The three splits one run uses. ``valid`` is carved from the training pool."""

    train: Split
    valid: Split
    test: Split


@dataclass(frozen=True)
class Target:
    """The value that defines time-to-target, e.g. ``valid`` ``accuracy`` >= 0.85.

    The direction is the metric's own (:attr:`Metric.direction`)."""

    split: str
    metric: str
    value: float

    @property
    def key(self) -> str:
        """The stored metric name, e.g. ``"valid_accuracy"``."""
        return f"{self.split}_{self.metric}"


def _count_examples(y: Tensor) -> int:
    return int(y.shape[0])


@dataclass(frozen=True)
class Task:
    """A test problem: data, model, loss, metrics and a target.

    Args:
        name: registry name, e.g. ``"fmnist_cnn3"``.
        description: architecture, parameter count, source (shown by ``optbench list``).
        make_model: ``() -> nn.Module`` mapping ``x`` of shape ``(B, *input_shape)`` to the
            output the loss expects (logits ``(B, classes)`` for classification). Called after
            the harness seeded the RNG, so initialization is reproducible.
        load_data: ``() -> Dataset``; may download and is called once per process and task.
        loss: ``(output, y) -> 0-d tensor``, the **mean** loss over the batch (differentiated).
        metrics: per-batch metrics; must include one named ``"loss"`` (the summed loss).
        target: the value for time-to-target.
        valid_size: number of examples carved from the training pool for validation.
        count: ``y -> int``, the number of units metrics are averaged over (examples).
        recipe: a working recipe (hyperparameters that reach the target), as a dict.

    Raises:
        ConfigError: when ``metrics`` lack ``"loss"`` or the target's metric, or a size is
            not positive.
    """

    name: str
    description: str
    make_model: Callable[[], nn.Module]
    load_data: Callable[[], Dataset]
    loss: Callable[[Tensor, Tensor], Tensor]
    metrics: tuple[Metric, ...]
    target: Target
    valid_size: int
    count: Callable[[Tensor], int] = _count_examples
    recipe: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [m.name for m in self.metrics]
        if "loss" not in names:
            raise ConfigError(f"task {self.name} metrics", names, "a list that includes 'loss'")
        if self.target.metric not in names:
            raise ConfigError(f"task {self.name} target metric", self.target.metric, names)
        if self.target.split not in SPLITS:
            raise ConfigError(f"task {self.name} target split", self.target.split, SPLITS)
        require_positive(f"task {self.name} valid_size", self.valid_size, integer=True)

    def metric(self, name: str) -> Metric:
        """The metric called ``name`` (without split prefix)."""
        for m in self.metrics:
            if m.name == name:
                return m
        raise ConfigError("metric", name, [m.name for m in self.metrics])

    def direction(self, key: str) -> Direction:
        """Direction of a stored metric key such as ``"test_accuracy"``."""
        split, _, name = key.partition("_")
        if split not in SPLITS:
            raise ConfigError("metric key", key, "'{split}_{metric}' with split in train, valid, test")
        return self.metric(name).direction


def _check_jsonable(field_name: str, value: Any) -> None:
    if isinstance(value, bool | int | str) or value is None:
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(field_name, value, "a finite number")
        return
    if isinstance(value, list | tuple):
        for v in value:
            _check_jsonable(field_name, v)
        return
    raise ConfigError(field_name, value, "a number, string, boolean or list of those")


@dataclass(frozen=True)
class Recipe:
    """How to train: an optimizer by registry name with hyperparameters, and a budget.

    Args:
        optimizer: optimizer registry name (``"adam"``, ``"momentum"``, ``"torch.rprop"``).
        hyperparams: keyword arguments of the optimizer (``lr`` in 1/gradient units,
            ``momentum``, ``betas``, ``weight_decay`` ...); unknown names are rejected when
            the optimizer is built.
        batch_size: examples per step.
        epochs: passes over the training split.
        train_size: use only this many training examples (a seeded subset), or all.

    Raises:
        ConfigError: for a non-positive batch size, epoch count, train size or learning rate,
            or a hyperparameter that is not a plain number/string/bool/list.
    """

    optimizer: str
    hyperparams: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int = 128
    epochs: int = 1
    train_size: int | None = None

    def __post_init__(self) -> None:
        # canonical JSON form: sorted keys, tuples as lists (so a stored recipe compares equal)
        hyperparams = {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(dict(self.hyperparams).items())}
        object.__setattr__(self, "hyperparams", hyperparams)
        require_positive("batch_size", self.batch_size, integer=True)
        require_positive("epochs", self.epochs, integer=True)
        if self.train_size is not None:
            require_positive("train_size", self.train_size, integer=True)
        for key, value in self.hyperparams.items():
            _check_jsonable(f"hyperparameter {key}", value)
        if "lr" in self.hyperparams:
            lr = self.hyperparams["lr"]
            if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
                raise ConfigError("lr", lr, "a number > 0")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with sorted keys; the inverse of :meth:`from_dict`."""
        return {
            "optimizer": self.optimizer,
            "hyperparams": dict(self.hyperparams),
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "train_size": self.train_size,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        """Build from :meth:`to_dict` output. Unknown keys raise :class:`ConfigError`."""
        allowed = {"optimizer", "hyperparams", "batch_size", "epochs", "train_size"}
        unknown = set(data) - allowed
        if unknown:
            raise ConfigError("recipe key", sorted(unknown)[0], allowed)
        return cls(**dict(data))

    @property
    def label(self) -> str:
        """Short display name: the optimizer name."""
        return self.optimizer


def run_id(task: str, recipe: Recipe, seed: int) -> str:
    """Content hash identifying a run: sha256 of canonical JSON of (task, recipe, seed), 16 hex chars.

    Two runs with the same id are the same experiment; a finished one is never redone.
    """
    payload = json.dumps({"task": task, "recipe": recipe.to_dict(), "seed": seed},
                         sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class EpochRecord:
    """Measurements at the end of one epoch.

    Attributes:
        epoch: 1-based epoch number.
        step: optimizer steps taken so far.
        metrics: ``{"train_loss": ..., "valid_accuracy": ...}``; train metrics are averaged
            over the epoch's steps (model in training mode), valid/test ones measured after it.
        train_seconds: wall time of this epoch's training steps.
        eval_seconds: wall time of this epoch's evaluation.
        samples_per_second: training examples / train_seconds.
        lr: learning rate of the first parameter group at the end of the epoch.
    """

    epoch: int
    step: int
    metrics: dict[str, float]
    train_seconds: float
    eval_seconds: float
    samples_per_second: float
    lr: float


@dataclass
class RunResult:
    """The outcome of one run (Task x Recipe x seed).

    Attributes:
        run_id: :func:`run_id` of (task, recipe, seed).
        status: finished, diverged or failed.
        epochs: one record per completed epoch (a diverged epoch is not recorded).
        error: message for diverged/failed runs, else None.
        train_seconds / eval_seconds / total_seconds: summed wall time (s).
        steps: optimizer steps taken.
        environment: versions, device, threads (see :func:`optbench.train.environment`).
        hyperparams: the optimizer's full resolved hyperparameters (defaults filled in).
    """

    run_id: str
    task: str
    recipe: Recipe
    seed: int
    status: RunStatus
    epochs: list[EpochRecord] = field(default_factory=list)
    error: str | None = None
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    total_seconds: float = 0.0
    steps: int = 0
    environment: dict[str, Any] = field(default_factory=dict)
    hyperparams: dict[str, Any] = field(default_factory=dict)

    def final(self, key: str) -> float:
        """``key``'s value at the last recorded epoch (NaN if none)."""
        return self.epochs[-1].metrics.get(key, math.nan) if self.epochs else math.nan

    def best(self, key: str, direction: Direction) -> float:
        """Best value of ``key`` over epochs under ``direction`` (NaN if none)."""
        values = [e.metrics[key] for e in self.epochs if key in e.metrics]
        if not values:
            return math.nan
        return max(values) if direction is Direction.MAXIMIZE else min(values)

    def epochs_to_target(self, key: str, target: float, direction: Direction) -> int | None:
        """First epoch whose ``key`` reached ``target``; None when never reached (censored)."""
        for record in self.epochs:
            if key in record.metrics and direction.reached(record.metrics[key], target):
                return record.epoch
        return None


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
