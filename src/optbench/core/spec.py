"""The contracts every part of optbench builds on: Task, Recipe, RunResult.

Vocabulary (docs/architecture.md):

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from enum import Enum
from typing import Any

import torch
from torch import Tensor, nn

from optbench.core.errors import ConfigError, require_positive
from optbench.core.splits import AnySplit, Split, StreamSplit  # noqa: F401 - re-exported: the contract's splits


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
    ``failed`` (an exception; the message is kept), ``pruned`` (stopped early by a tuning
    pruner after an epoch; its epochs so far are kept — a study decision, not a property of the
    recipe, so a study that needs the full run redoes it)."""

    FINISHED = "finished"
    DIVERGED = "diverged"
    FAILED = "failed"
    PRUNED = "pruned"


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
class DerivedMetric:
    """A metric computed from another metric's average over a split, e.g. perplexity =
    ``exp(loss)`` of a language model (not a per-batch sum, so it cannot be a :class:`Metric`).

    Args:
        name: e.g. ``"perplexity"``; stored per split as ``"{split}_{name}"``.
        direction: whether larger or smaller is better.
        source: the :class:`Metric` it is computed from (e.g. ``"loss"``).
        compute: ``average of source -> value``.
    """

    name: str
    direction: Direction
    source: str
    compute: Callable[[float], float]


def _exp_or_inf(value: float) -> float:
    try:
        return math.exp(value)
    except OverflowError:
        return math.inf


#: Perplexity of a language model: ``exp`` of the mean cross-entropy in nats per token.
PERPLEXITY = DerivedMetric("perplexity", Direction.MINIMIZE, "loss", _exp_or_inf)


@dataclass(frozen=True)
class Dataset:
    """A task's data before the validation split: the training pool, the test set and, when the user
    has one, a separate validation set (then the whole pool trains and ``Task.valid_size`` is not
    used). Each split is in memory (:class:`Split`) or streamed (:class:`StreamSplit`)."""

    train: AnySplit
    test: AnySplit
    valid: AnySplit | None = None


@dataclass(frozen=True)
class TaskData:
    """The three splits one run uses. ``valid`` is carved from the training pool unless the
    :class:`Dataset` has its own."""

    train: AnySplit
    valid: AnySplit
    test: AnySplit


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
        valid_size: number of examples carved from the training pool for validation (0 when the
            task's :class:`Dataset` has its own validation set).
        count: ``y -> int``, the number of units metrics are averaged over (examples).
        recipe: a working recipe (hyperparameters that reach the target), as a dict.
        augmentations: the augmentations valid for this task's inputs and labels (e.g. no
            horizontal flip for digits, no crop for flat vectors).
        derived: metrics computed from others' averages (perplexity from loss); the target may
            name one.
        l2: the problem's own L2 regularization (DeepOBS defines some problems with it, e.g.
            ``cifar10_3c3d`` 0.002): ``l2 / 2 * sum w^2`` over weights (not biases or
            normalization weights) is added to the training objective by the harness; the
            reported ``loss`` metric stays the data loss. Part of the task, not of a recipe.

    Raises:
        ConfigError: when ``metrics`` lack ``"loss"`` or the target's metric, a metric has no
            :class:`Direction`, names repeat, a derived metric's source is not a metric, or a
            size is not positive.
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
    augmentations: tuple[str, ...] = ("gaussian_noise",)
    derived: tuple[DerivedMetric, ...] = ()
    l2: float = 0.0

    def __post_init__(self) -> None:
        for m in (*self.metrics, *self.derived):
            if not isinstance(m, Metric | DerivedMetric):
                raise ConfigError(f"task {self.name} metrics", type(m).__name__,
                                  "optbench.core.spec.Metric or DerivedMetric objects")
            if not isinstance(m.direction, Direction):
                raise ConfigError(f"task {self.name} metric {m.name} direction", m.direction,
                                  [d.value for d in Direction] + ["(as optbench.core.spec.Direction)"])
        base = [m.name for m in self.metrics]
        names = base + [d.name for d in self.derived]
        if len(set(names)) != len(names):
            raise ConfigError(f"task {self.name} metrics", names, "distinct metric names")
        if "loss" not in base:
            raise ConfigError(f"task {self.name} metrics", base, "a list that includes 'loss'")
        for d in self.derived:
            if d.source not in base:
                raise ConfigError(f"task {self.name} derived metric {d.name} source", d.source, base)
        if self.target.metric not in names:
            raise ConfigError(f"task {self.name} target metric", self.target.metric, names)
        if self.target.split not in SPLITS:
            raise ConfigError(f"task {self.name} target split", self.target.split, SPLITS)
        if isinstance(self.valid_size, bool) or not isinstance(self.valid_size, int) or self.valid_size < 0:
            raise ConfigError(f"task {self.name} valid_size", self.valid_size,
                              "an integer >= 0 (0 only when the data has its own validation set)")
        if isinstance(self.l2, bool) or not isinstance(self.l2, int | float) or not 0 <= self.l2 < math.inf:
            raise ConfigError(f"task {self.name} l2", self.l2, "a finite number >= 0")

    def metric(self, name: str) -> Metric | DerivedMetric:
        """The metric called ``name`` (without split prefix), measured or derived."""
        for m in (*self.metrics, *self.derived):
            if m.name == name:
                return m
        raise ConfigError("metric", name, [m.name for m in (*self.metrics, *self.derived)])

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Every metric name, measured then derived (``("loss", "accuracy")``)."""
        return tuple(m.name for m in (*self.metrics, *self.derived))

    def add_derived(self, values: dict[str, float], prefix: str) -> dict[str, float]:
        """``values`` (``{"valid_loss": ...}``) with the derived metrics of split ``prefix``
        added (``"valid_perplexity"``); returns the same dict."""
        for d in self.derived:
            source = values.get(f"{prefix}_{d.source}")
            if source is not None:
                values[f"{prefix}_{d.name}"] = d.compute(source) if math.isfinite(source) else math.nan
        return values

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
    if isinstance(value, Mapping):
        for v in value.values():
            _check_jsonable(field_name, v)
        return
    raise ConfigError(field_name, value, "a number, string, boolean or list of those")


def _canonical(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


#: The form of a technique on the command line and in study files.
TECHNIQUE_SYNTAX = "NAME or NAME:key=value,key=value (e.g. label_smoothing:epsilon=0.1)"


@dataclass(frozen=True)
class TechniqueSpec:
    """One training technique of a recipe: a registry name (``optbench list techniques``) and its
    parameters, plain JSON values. The component it names is built by the engine
    (:func:`optbench.techniques.build_components`).

    Raises:
        ConfigError: a name that is not an identifier, or a parameter that is not a plain value.
    """

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ConfigError("technique", self.name, TECHNIQUE_SYNTAX)
        if not isinstance(self.params, Mapping):
            raise ConfigError(f"technique {self.name} parameters", self.params, "a mapping of names to values")
        for key, value in self.params.items():
            _check_jsonable(f"technique {self.name} parameter {key}", value)
        object.__setattr__(self, "params", _canonical(self.params))

    @classmethod
    def parse(cls, text: str) -> TechniqueSpec:
        """``"clip_norm:max_norm=1.0"`` -> ``TechniqueSpec("clip_norm", {"max_norm": 1.0})``; values by the
        literal rule of :mod:`optbench.core.options` (one literal per key).

        Raises:
            ConfigError: naming ``--technique`` for a malformed text.
        """
        from optbench.core.options import parse_options

        name, _, rest = text.strip().partition(":")
        pairs = [p for p in (part.strip() for part in rest.split(",")) if p]
        params = parse_options(pairs, field="--technique", example=TECHNIQUE_SYNTAX, lists=False)
        if not name.strip().isidentifier():
            raise ConfigError("--technique", text, TECHNIQUE_SYNTAX)
        return cls(name.strip(), params)

    @classmethod
    def coerce(cls, value: Any) -> TechniqueSpec:
        """A spec from a spec, a ``"name:k=v"`` string, a ``(name, params)`` pair or a
        ``{"name": ..., "params": ...}`` mapping (the stored form).

        Raises:
            ConfigError: for anything else.
        """
        if isinstance(value, TechniqueSpec):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, Mapping) and set(value) <= {"name", "params"} and "name" in value:
            return cls(value["name"], value.get("params") or {})
        if isinstance(value, list | tuple) and len(value) == 2 and isinstance(value[0], str):
            return cls(value[0], value[1] or {})
        raise ConfigError("technique", value, TECHNIQUE_SYNTAX)

    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., "params": {...}}`` (the stored form)."""
        return {"name": self.name, "params": dict(self.params)}

    def __str__(self) -> str:
        from optbench.core.options import format_literal

        if not self.params:
            return self.name
        return self.name + ":" + ",".join(f"{k}={format_literal(v)}" for k, v in self.params.items())


#: Fields always present in :meth:`Recipe.to_dict`; the others only when not at their default,
#: so that adding a field never changes the id of runs stored before it existed.
_BASE_FIELDS = ("optimizer", "hyperparams", "batch_size", "epochs", "train_size")


@dataclass(frozen=True)
class Recipe:
    """How to train: an optimizer by registry name with hyperparameters, a budget, a learning-rate
    schedule, a precision, and an ordered list of training techniques (each a component of the
    engine, docs/architecture.md).

    Args:
        optimizer: optimizer registry name (``"adam"``, ``"momentum"``, ``"sam:adam"``).
        hyperparams: keyword arguments of the optimizer (``lr``, ``momentum``, ``betas``,
            ``weight_decay`` ...); unknown names are rejected when the optimizer is built.
        batch_size: examples per optimizer step (per worker in the distributed engines).
        epochs: passes over the training split.
        train_size: use only this many training examples (a seeded subset), or all.
        schedule / schedule_params: learning-rate schedule name (``constant``, ``cosine`` ...)
            and its parameters, ``warmup_steps`` included (see :mod:`optbench.schedules`).
        precision: ``fp32``, ``bf16`` (autocast) or ``fp16`` (autocast + gradient scaler, CUDA).
        max_train_seconds: a time budget: the run ends after the epoch in which its summed
            training time reached this many seconds (status ``finished``; None: epochs only).
            Wall-clock budgets are not reproducible in the number of epochs.
        techniques: the training techniques in order, each a :class:`TechniqueSpec` (or anything
            :meth:`TechniqueSpec.coerce` takes: ``"clip_norm:max_norm=1"``, ``("l2", {...})``).
            Names and parameters are checked against the registry when a study is planned.

    Raises:
        ConfigError: for a non-positive batch size, epoch count, train size or learning rate,
            or a parameter that is not a plain number/string/bool/list.
    """

    optimizer: str
    hyperparams: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int = 128
    epochs: int = 1
    train_size: int | None = None
    schedule: str = "constant"
    schedule_params: Mapping[str, Any] = field(default_factory=dict)
    precision: str = "fp32"
    max_train_seconds: float | None = None
    techniques: tuple[TechniqueSpec, ...] = ()

    def __post_init__(self) -> None:
        # canonical JSON form: sorted keys, tuples as lists (so a stored recipe compares equal)
        for name in ("hyperparams", "schedule_params"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise ConfigError(name, value, "a mapping of names to values")
            object.__setattr__(self, name, _canonical(value))
            prefix = "hyperparameter" if name == "hyperparams" else "schedule parameter"
            for key, item in getattr(self, name).items():
                _check_jsonable(f"{prefix} {key}", item)
        if isinstance(self.techniques, str | Mapping) or not isinstance(self.techniques, Sequence):
            raise ConfigError("techniques", self.techniques, f"a list of {TECHNIQUE_SYNTAX}")
        object.__setattr__(self, "techniques", tuple(TechniqueSpec.coerce(t) for t in self.techniques))
        require_positive("batch_size", self.batch_size, integer=True)
        require_positive("epochs", self.epochs, integer=True)
        if self.train_size is not None:
            require_positive("train_size", self.train_size, integer=True)
        if self.max_train_seconds is not None:
            require_positive("max_train_seconds", self.max_train_seconds)
        if "lr" in self.hyperparams:
            lr = self.hyperparams["lr"]
            if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
                raise ConfigError("lr", lr, "a number > 0")
            self.hyperparams["lr"] = float(lr)  # lr=1 and lr=1.0 are the same run

    def technique(self, name: str) -> TechniqueSpec | None:
        """The first technique called ``name``, or None."""
        return next((t for t in self.techniques if t.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; the inverse of :meth:`from_dict`. Fields at their default are left out
        (except the base fields), so adding a field never changes the form of older recipes."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            default = f.default_factory() if f.default_factory is not MISSING else f.default  # type: ignore[misc]
            if f.name == "techniques":
                if value:
                    out["techniques"] = [t.to_dict() for t in value]
            elif f.name in _BASE_FIELDS or value != default:
                out[f.name] = dict(value) if isinstance(value, Mapping) else value
        return out

    def identity(self) -> dict[str, Any]:
        """The form hashed into run ids: :meth:`to_dict`, except that techniques the flat form of
        older stores can express are written in that form (:mod:`optbench.core.legacy`), so the
        ids of runs stored before techniques became a list never change."""
        from optbench.core.legacy import legacy_form

        out = self.to_dict()
        flat = legacy_form([(t.name, t.params) for t in self.techniques], self.schedule_params)
        if flat is None:
            return out
        out.pop("techniques", None)
        out.pop("schedule_params", None)
        params = flat.pop("schedule_params")
        if params:
            out["schedule_params"] = params
        return out | flat

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        """Build from :meth:`to_dict` output, or from a stored recipe of the older flat form
        (``label_smoothing``, ``clip_norm`` ... keys: :mod:`optbench.core.legacy`).

        Raises:
            ConfigError: an unknown key (lists the allowed ones) or a bad value.
        """
        from optbench.core.legacy import LEGACY_KEYS, split_legacy

        allowed = {f.name for f in fields(cls)}
        unknown = set(data) - allowed - set(LEGACY_KEYS)
        if unknown:
            raise ConfigError("recipe key", sorted(unknown)[0], sorted(allowed | set(LEGACY_KEYS)))
        try:
            rest, flat = split_legacy(data)
        except ValueError as exc:
            raise ConfigError("recipe", dict(data), f"a valid recipe ({exc})") from None
        explicit = list(rest.pop("techniques", None) or [])
        return cls(**rest, techniques=(*flat, *explicit))

    @property
    def label(self) -> str:
        """Short display name: the optimizer name."""
        return self.optimizer


def run_id(task: str, recipe: Recipe, seed: int) -> str:
    """Content hash identifying a run: sha256 of canonical JSON of (task, :meth:`Recipe.identity`,
    seed), 16 hex chars.

    Two runs with the same id are the same experiment; a finished one is never redone.
    """
    payload = json.dumps({"task": task, "recipe": recipe.identity(), "seed": seed},
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
        environment: versions, device, threads (see :func:`optbench.engine.environment`).
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

    def time_to_target(self, key: str, target: float, direction: Direction) -> tuple[int, int, float] | None:
        """``(epoch, step, seconds)`` of the first epoch whose ``key`` reached ``target``, where
        seconds are the training seconds summed up to and including that epoch (evaluation
        excluded); None when never reached (censored, never dropped)."""
        seconds = 0.0
        for record in self.epochs:
            seconds += record.train_seconds
            if key in record.metrics and direction.reached(record.metrics[key], target):
                return record.epoch, record.step, seconds
        return None

    def epochs_to_target(self, key: str, target: float, direction: Direction) -> int | None:
        """First epoch whose ``key`` reached ``target``; None when never reached (censored)."""
        reached = self.time_to_target(key, target, direction)
        return None if reached is None else reached[0]


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
