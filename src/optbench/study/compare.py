"""`optbench compare`: the reference protocol (``seed004``) as a function.

Several optimizers are trained with the *same* hyperparameters (one shared learning rate and
batch size) on one task over several seeds; the answer is a ranking with 95% confidence
intervals over seeds, learning curves and a summary. This is the protocol of the reference
experiment (seven optimizers, same hyperparameters, a 3-conv CNN); the tuned protocols are
studies (:mod:`optbench.study.protocols`).

Runs are identified by content hash, so running the same comparison again (after an
interruption, say) executes only the runs that are not finished yet.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import torch

from optbench.core.errors import ConfigError, require_positive
from optbench.core.spec import Recipe, RunResult, Task, TechniqueSpec
from optbench.optim.lr_semantics import shared_lr
from optbench.runs.executor import EventCallback, RunContext, RunDone, execute_plan
from optbench.runs.plan import plan_runs
from optbench.study.reference import (  # noqa: F401
    DEFAULT_EPOCHS,
    DEFAULT_SEEDS,
    DEFAULT_TRAIN_SIZE,
    FULL_PROTOCOL_EPOCHS,
    REFERENCE_BATCH_SIZE,
    REFERENCE_LR,
    REFERENCE_OPTIMIZERS,
    REFERENCE_TASK,
)

#: The Recipe fields a comparison sets per optimizer and budget (the rest is shared: :meth:`CompareConfig.shared`).
_OWN_FIELDS = ("optimizer", "hyperparams", "batch_size", "epochs", "train_size")


@dataclass(frozen=True)
class CompareConfig:
    """A comparison: the same hyperparameters for every optimizer, several seeds.

    Args:
        task: task registry name or ``module:factory``.
        optimizers: optimizer registry names.
        seeds: number of seeds (seeds are 0 .. seeds-1).
        epochs: epochs per run.
        batch_size: examples per step, shared by all optimizers.
        lr: learning rate shared by all optimizers.
        train_size: training examples used (a seeded subset), None for all, ``"auto"`` for
            :data:`DEFAULT_TRAIN_SIZE` or all when the task has fewer (resolved once the data
            are loaded; the resolved number is what the runs record).
        target: validation target for time-to-target, None for the task's own.
        workers: parallel runs in separate processes.
        study: study name in the store; None derives one from the configuration.
        schedule / schedule_params: the learning-rate schedule of every recipe (``warmup_steps``
            is a schedule parameter).
        precision: ``fp32``, ``bf16`` or ``fp16``.
        techniques: the training techniques of every recipe, in order: :class:`TechniqueSpec`
            objects or what :meth:`TechniqueSpec.coerce` takes (``"label_smoothing:epsilon=0.1"``).
            A mapping is read as the older form: further Recipe fields and flat technique keys
            (``{"schedule": "cosine", "label_smoothing": 0.1}``, :meth:`Recipe.from_dict`), and sets
            ``schedule``, ``schedule_params``, ``precision`` and ``techniques`` from them.

    Raises:
        ConfigError: for empty optimizer lists, repeated optimizers, non-positive numbers, a
            malformed technique or an unknown key of the older mapping form.
    """

    task: str = REFERENCE_TASK
    optimizers: tuple[str, ...] = REFERENCE_OPTIMIZERS
    seeds: int = DEFAULT_SEEDS
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = REFERENCE_BATCH_SIZE
    lr: float = REFERENCE_LR
    train_size: int | None | Literal["auto"] = "auto"
    target: float | None = None
    workers: int = 1
    study: str | None = None
    schedule: str = "constant"
    schedule_params: Mapping[str, Any] = field(default_factory=dict)
    precision: str = "fp32"
    techniques: tuple[TechniqueSpec, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.techniques, Mapping):
            shared = _shared_recipe(self.techniques)
            object.__setattr__(self, "schedule", shared.schedule)
            object.__setattr__(self, "schedule_params", shared.schedule_params)
            object.__setattr__(self, "precision", shared.precision)
            object.__setattr__(self, "techniques", shared.techniques)
        elif isinstance(self.techniques, str) or not isinstance(self.techniques, Sequence):
            raise ConfigError("techniques", self.techniques, "a list of techniques (NAME or NAME:key=value,...)")
        object.__setattr__(self, "techniques", tuple(TechniqueSpec.coerce(t) for t in self.techniques))
        object.__setattr__(self, "schedule_params", dict(self.schedule_params))
        if not self.optimizers:
            raise ConfigError("optimizers", "", "a comma-separated list of optimizer names")
        if len(set(self.optimizers)) != len(self.optimizers):
            raise ConfigError("optimizers", ",".join(self.optimizers), "a list without repeated names")
        require_positive("seeds", self.seeds, integer=True)
        require_positive("workers", self.workers, integer=True)
        if self.target is not None and not math.isfinite(self.target):
            raise ConfigError("target", self.target, "a finite number")

    def recipes(self) -> list[Recipe]:
        """One recipe per optimizer, all with the shared hyperparameters (``train_size`` resolved);
        a learning-rate-free optimizer (Prodigy, D-Adaptation) gets lr 1.0, its step-size multiplier
        (:func:`optbench.optim.lr_semantics.shared_lr`)."""
        if self.train_size == "auto":
            raise ValueError("train_size 'auto' must be resolved first (resolve_train_size)")
        return [Recipe(optimizer=name, hyperparams={"lr": shared_lr(name, self.lr)}, batch_size=self.batch_size,
                       epochs=self.epochs, train_size=self.train_size, schedule=self.schedule,
                       schedule_params=self.schedule_params, precision=self.precision, techniques=self.techniques)
                for name in self.optimizers]

    def shared(self) -> dict[str, Any]:
        """What every recipe shares beyond optimizer, lr, batch size and budget, in the form run ids
        hash (:meth:`Recipe.identity`: flat keys where the older form expresses them)."""
        identity = Recipe(optimizer="-", schedule=self.schedule, schedule_params=self.schedule_params,
                          precision=self.precision, techniques=self.techniques).identity()
        return {k: v for k, v in identity.items() if k not in _OWN_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (stored with the study): the fields, techniques as their text form."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["optimizers"] = list(self.optimizers)
        out["schedule_params"] = dict(self.schedule_params)
        out["techniques"] = [str(t) for t in self.techniques]
        return out

    def study_name(self, task_name: str) -> str:
        """The given study name, or ``compare-<task>-<hash of the configuration>`` (the techniques
        hashed in their run-id form, so a name never changes with the form they were given in)."""
        if self.study:
            return self.study
        payload = {k: v for k, v in asdict(self).items()
                   if k not in ("workers", "study", "schedule", "schedule_params", "precision")}
        payload["techniques"] = self.shared()
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:8]
        return f"compare-{task_name}-{digest}"


def _shared_recipe(data: Mapping[str, Any]) -> Recipe:
    """The older mapping form of :attr:`CompareConfig.techniques` as a Recipe (optimizer ``-``).

    Raises:
        ConfigError: a key that is not a shared Recipe field or flat technique key, or a bad value.
    """
    from optbench.core.legacy import LEGACY_KEYS

    allowed = ("schedule", "schedule_params", "precision", "techniques", *LEGACY_KEYS)
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError("technique", unknown[0], allowed)
    return Recipe.from_dict({"optimizer": "-", **data})


@dataclass
class CompareOutcome:
    """What a comparison produced: the study name, its task, every run and the written files."""

    study: str
    task: Task
    config: CompareConfig
    results: list[RunResult]
    executed: int
    skipped: int
    summaries: list = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


def validate(config: CompareConfig) -> Task:
    """Check every name and number of ``config`` without side effects; return the task.

    Raises:
        UnknownNameError: unknown task, optimizer or technique name (lists the known names).
        ConfigError: unknown hyperparameter or technique parameter, or a value out of range.
    """
    from optbench.engine.validate import check_recipe
    from optbench.tasks import get_task

    task = get_task(config.task)
    unresolved = config.train_size == "auto"  # resolved once the data are loaded
    for recipe in replace(config, train_size=None).recipes() if unresolved else config.recipes():
        check_recipe(recipe, task)  # Recipe itself validates sizes and lr
    return task


def resolve_train_size(config: CompareConfig, task: Task, pool: int) -> CompareConfig:
    """``config`` with ``train_size`` resolved against the training pool of ``pool`` examples.

    Raises:
        ConfigError: when more training examples are asked for than the pool has after the
            validation split.
    """
    available = pool - task.valid_size
    size = config.train_size
    if size == "auto":
        size = DEFAULT_TRAIN_SIZE if available > DEFAULT_TRAIN_SIZE else None
    elif size is not None and size > available:
        raise ConfigError("train_size", size, f"an integer in [1, {available}] or 'all'")
    return replace(config, train_size=size)


def ranking_keys(task: Task) -> tuple[str, str]:
    """The metric keys a comparison ranks by: the task's target metric on the test split
    (final value) and on the validation split (best value), e.g. ``test_accuracy``/``valid_accuracy``."""
    return f"test_{task.target.metric}", f"valid_{task.target.metric}"


def metric_directions(task: Task) -> dict:
    """Direction of every stored metric key of ``task`` (``"test_accuracy"`` -> maximize ...)."""
    return {f"{split}_{m.name}": m.direction for split in ("train", "valid", "test")
            for m in (*task.metrics, *task.derived)}


def run_compare(config: CompareConfig, store_path: str | Path, *, device: torch.device | None = None,
                on_event: EventCallback | None = None,
                on_result: Callable[[RunResult, bool], None] | None = None,
                create_store_dir: bool = False, save_weights: bool = False,
                weights_dir: str | Path | None = None) -> CompareOutcome:
    """Run (or resume) a comparison and return its runs, in plan order.

    Everything is validated before anything is written: names, numbers, the data (fetched if
    needed), the training-set size and the store path. Finished runs in the store are not
    executed again; each new run is stored, in one transaction, as soon as it ends. Runs are
    executed by :func:`~optbench.runs.executor.execute_plan` (claimed atomically, so several
    processes or machines on one store share the work; a killed comparison resumes).

    Args:
        config: the comparison.
        store_path: SQLite file path or SQLAlchemy URL.
        device: training device (CUDA when available by default).
        on_event: progress events (run started, epoch done).
        on_result: called with ``(result, skipped)`` for every run, finished before or now.
        create_store_dir: create the store file's directory (after validation) if missing.
        save_weights: store every finished run's final weights in ``weights_dir`` (default
            ``<store>.weights`` next to a SQLite store); runs that start from or learn from stored
            runs (``init_from``, ``lwf``, ``ewc``) load them from there either way
            (:mod:`optbench.runs.weights`).

    Raises:
        ConfigError / UnknownNameError: bad input (nothing written).
        DataUnavailableError: the task's data cannot be obtained.
    """
    from optbench.engine.validate import canonical_recipe
    from optbench.runs.store import open_store
    from optbench.runs.weights import check_available, weights_for

    task = validate(config)
    weights = weights_for(store_path, weights_dir, saving=save_weights)
    context = RunContext()
    context.tasks[config.task] = task
    dataset = context.dataset(config.task)  # fetches and checks the data before anything is stored
    config = resolve_train_size(config, task, len(dataset.train))
    check_available(config.recipes(), weights)  # stored runs named by techniques, before anything is written
    specs = plan_runs(config.task, task.name, [canonical_recipe(r) for r in config.recipes()], range(config.seeds))
    study = config.study_name(task.name)
    if create_store_dir:
        Path(store_path).parent.mkdir(parents=True, exist_ok=True)
    with open_store(store_path) as store:  # checks the path / URL before anything runs
        store.ensure_study(study, {"protocol": "seed004", **config.to_dict()})
    counts = {False: 0, True: 0}

    def handle(event: Any) -> None:
        if isinstance(event, RunDone):
            counts[event.skipped] += 1
            if on_result is not None:
                on_result(event.result, event.skipped)
        elif on_event is not None:
            on_event(event)

    results = execute_plan(str(store_path), study, specs, workers=config.workers, device=device, on_event=handle,
                           context=context, weights=weights)
    return CompareOutcome(study=study, task=task, config=config, results=results,
                          executed=counts[False], skipped=counts[True])


def target_of(config: CompareConfig, task: Task) -> tuple[str, float]:
    """The (metric key, value) used for time-to-target."""
    return task.target.key, (config.target if config.target is not None else task.target.value)


def parse_optimizers(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"adam, sgd"`` -> ``("adam", "sgd")``."""
    items = text.split(",") if isinstance(text, str) else list(text)
    return tuple(name.strip() for name in items if name.strip())
