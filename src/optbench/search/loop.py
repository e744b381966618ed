"""The adaptive trial loop: ask a point, run it as an optbench run, store it, repeat.

Each trial is one optbench run (Task x Recipe x seed, content-hashed run id): the base recipe
with the sampled values applied (:func:`~optbench.search.space.apply_params`) and the search's
``run_seed``. Before every ask the loop rebuilds an in-memory Optuna study from the runs stored
for this (study, task, base recipe, space, run seed) — see :mod:`optbench.search.study` — and
seeds the sampler with (seed, trial number, retry). Hence:

* a sequential (1-worker) search is reproducible and resumable: after a kill, the interrupted
  trial is asked again with the same history and seed, gets the same point and therefore the
  same run id;
* N workers run the same loop and share history through the store; the executor claims runs
  atomically, and a refused claim (another worker runs or ran that point) makes the worker ask
  again (retry + 1, after a short growing wait) with the refused point marked as running. Trial numbers recorded by
  concurrent workers may tie; the outcome numbers trials by (recorded number, run id).
  Up to ``workers - 1`` trials more than ``n_trials`` may be stored.
* pruning decisions (``trial.report`` / ``should_prune`` after each epoch, raising
  :class:`optbench.engine.Pruned`; never after the last epoch) compare against the trials that
  were stored when the trial was asked: runs still running in other workers are not visible.

Architecture searches: a space with ``task.<parameter>`` paths samples define-by-run (Optuna's
``ask`` then ``suggest_*`` per parameter in space order, Akiba et al. 2019), skipping parameters
whose ``when`` condition fails; the task values go into the trial's task reference
(:func:`~optbench.search.space.trial_task`), the others into the recipe. A point whose task cannot
be built (``get_task`` raises ConfigError: an unrealizable architecture, a parameter budget
exceeded) is not trained: it is stored as a ``failed`` run whose error says why (through
``record``), so it counts as a trial and the sampler sees it as a failed trial.

Multi-objective searches (``SearchConfig.costs``, :mod:`optbench.search.objectives`): every trial is
told the metric and each cost its run recorded (an Optuna study with ``directions``); the outcome's
``front`` is the Pareto front of the stored trials, so it is derived from the store like everything else.

Tuning reads only the validation split: the objective must be a ``valid_*`` key.
Two searches in one study over the same task, base recipe, space and run seed share their
trials (same points are the same runs); give searches that must stay apart their own study.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from optbench.core.errors import ConfigError, OptbenchError
from optbench.core.spec import Direction, EpochRecord, Recipe, RunResult, RunStatus
from optbench.runs.plan import RunSpec
from optbench.search.objectives import ALLOWED, check_multi_objective, check_recorded, costs, non_dominated
from optbench.search.samplers import grid_size, pruners, samplers
from optbench.search.space import (
    SearchSpace,
    applies,
    apply_params,
    for_optimizer,
    has_task_paths,
    is_task_path,
    split_values,
    trial_task,
    trial_values,
)
from optbench.search.storage import check_storage
from optbench.search.study import build_study, objective_values

if TYPE_CHECKING:
    import torch

    from optbench.runs.executor import EventCallback, Worker
    from optbench.runs.store import Store

#: Asks since the last run that may propose a point stored already before the loop gives up.
MAX_RETRIES = 25
#: Seconds waited after the k-th refused claim in a row: ``min(k * CLAIM_WAIT_S, MAX_CLAIM_WAIT_S)``.
CLAIM_WAIT_S = 0.2
MAX_CLAIM_WAIT_S = 5.0
USES = ("best", "final")


class TryRun(Protocol):
    """The executor's ``Worker.try_run``: run ``spec`` unless it is completed or claimed
    elsewhere (then None); store the result with ``annotate`` merged into its environment."""

    def __call__(self, spec: RunSpec, *, on_epoch: Callable[[EpochRecord], None] | None = None,
                 accept_pruned: bool = False, annotate: Mapping[str, Any] | None = None) -> RunResult | None: ...


@dataclass(frozen=True)
class SearchConfig:
    """A tuning search.

    Args:
        space: the searched parameters.
        sampler: a ``samplers`` name (grid, random, qmc, tpe, gp, cmaes).
        pruner: a ``pruners`` name (none, median, asha, hyperband, curve).
        n_trials: trials to store (for the grid: at most its size, see :meth:`target_trials`).
        seed: the sampler's seed.
        objective: the validation metric tuned, ``"valid_<metric>"``.
        direction: whether the objective is maximized or minimized.
        use: ``"best"`` (best epoch of a run) or ``"final"`` (last epoch) value as the trial's value.
        grid_points: values per range axis of the grid sampler (None: the largest grid with
            at most ``n_trials`` points).
        optuna_storage: also write the trials, live, into this Optuna RDB storage (an SQLAlchemy
            URL, or ``"store"`` for the results database) for ``optuna-dashboard``; None (default):
            not. It never changes a trial (see :mod:`optbench.search.storage`).
        costs: further objectives, minimized (``optbench.search.objectives.costs`` names: ``params``,
            ``flops``, ``latency``); non-empty makes a multi-objective search whose answer is the Pareto
            front (:attr:`SearchOutcome.front`).

    Raises:
        ConfigError: for an empty space, unknown names, a test/train objective, ``n_trials < 1``,
            a bad ``use``, a grid whose size differs from an explicit ``n_trials``, or costs with a
            pruner, ``cmaes`` or an Optuna mirror.
    """

    space: SearchSpace
    sampler: str = "tpe"
    pruner: str = "none"
    n_trials: int = 20
    seed: int = 0
    objective: str = "valid_accuracy"
    direction: Direction = Direction.MAXIMIZE
    use: str = "best"
    grid_points: int | None = None
    optuna_storage: str | None = field(default=None, repr=False)  # a URL may hold a password
    costs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.space:
            raise ConfigError("search.space", self.space, "at least one parameter")
        object.__setattr__(self, "space", tuple(self.space))
        samplers.get(self.sampler)
        pruners.get(self.pruner)
        if isinstance(self.n_trials, bool) or not isinstance(self.n_trials, int) or self.n_trials < 1:
            raise ConfigError("search.n_trials", self.n_trials, "an integer >= 1")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError("search.seed", self.seed, "an integer >= 0")
        if not isinstance(self.objective, str) or not self.objective.startswith("valid_"):
            raise ConfigError("search.objective", self.objective,
                              "a validation metric key 'valid_<metric>' (tuning never reads test or train metrics)")
        if isinstance(self.direction, str) and self.direction in {d.value for d in Direction}:
            object.__setattr__(self, "direction", Direction(self.direction))
        if not isinstance(self.direction, Direction):
            raise ConfigError("search.direction", self.direction, [d.value for d in Direction])
        if self.use not in USES:
            raise ConfigError("search.use", self.use, USES)
        object.__setattr__(self, "optuna_storage", check_storage(self.optuna_storage))
        object.__setattr__(self, "costs", tuple(self.costs))
        if len(set(self.costs)) != len(self.costs) or any(c not in costs for c in self.costs):
            raise ConfigError("search.objectives", list(self.costs), ALLOWED)
        check_multi_objective(self.costs, sampler=self.sampler, pruner=self.pruner,
                              optuna_storage=self.optuna_storage)
        if any(p.when for p in self.space) and self.sampler == "grid":
            raise ConfigError("search.sampler", "grid", "a sampler other than grid for a space with 'when' "
                              "conditions (a grid needs every parameter in every trial)")
        if self.optuna_storage is not None and (has_task_paths(self.space) or any(p.when for p in self.space)):
            raise ConfigError("search.optuna_storage", "set", "none for a space with task paths or 'when' "
                              "conditions (the mirror reads every parameter from the recipe)")
        if self.sampler == "grid" and self.grid_points is not None:
            size = grid_size(self.space, self.n_trials, self.grid_points)
            if size != self.n_trials:
                raise ConfigError("search.n_trials", self.n_trials, f"the grid's size {size} (grid_points "
                                  f"{self.grid_points} per range axis)")

    @property
    def directions(self) -> tuple[Direction, ...]:
        """The direction of each objective: the metric's, then minimize per cost."""
        return (self.direction, *(Direction.MINIMIZE for _ in self.costs))

    @property
    def multi_objective(self) -> bool:
        """Whether the search has several objectives (an Optuna study with ``directions``)."""
        return bool(self.costs)

    def target_trials(self) -> int:
        """Trials the search stores: ``n_trials``, or the grid's size if that is smaller."""
        if self.sampler == "grid":
            return min(self.n_trials, grid_size(self.space, self.n_trials, self.grid_points))
        return self.n_trials


@dataclass
class Trial:
    """One stored trial: its number in the search, sampled values, run and value (the run's
    objective; NaN for a failed run or one without epochs; partial for a pruned run); ``values``: every
    objective's value (the metric's, then each cost's, NaN when not recorded)."""

    number: int
    params: dict[str, Any]
    result: RunResult
    value: float
    values: tuple[float, ...] = ()


@dataclass
class SearchOutcome:
    """Every stored trial of a search, the best one and the epochs it cost.

    Attributes:
        trials: in trial order.
        best: the best trial among finished runs with a finite value (None if there is none); with
            several objectives, the best by the first (the metric).
        epochs_spent: epochs run, summed over trials (pruned trials count their epochs).
        front: the Pareto front of the finished trials with every objective finite (no other such trial
            is as good in every objective and better in one; :func:`~optbench.search.objectives.non_dominated`),
            best first by the first objective, then by trial number. One objective: the trials tied best.
    """

    trials: list[Trial]
    best: Trial | None
    epochs_spent: int
    front: list[Trial] = field(default_factory=list)


def search_runs(runs: list[RunResult], task_name: str, base: Recipe, space: SearchSpace,
                run_seed: int | None) -> list[RunResult]:
    """The runs among ``runs`` that are trials of the search (task, base recipe with only the
    space's paths changed, run seed; None: any seed), in trial order (recorded
    ``environment["trial"]``, then run id). With task paths in ``space``, a trial's task is
    ``task_name`` with the trial's task parameters merged in (read back from the stored name)."""
    mine = []
    tasks = has_task_paths(space)
    for run in runs:
        if (run.task != task_name and not tasks) or (run_seed is not None and run.seed != run_seed):
            continue
        try:
            values = trial_values(run.task, run.recipe, space, task_name)
            task_values, recipe_values = split_values(values)
            same = (apply_params(base, recipe_values) == run.recipe
                    and trial_task(task_name, task_name, task_values)[1] == run.task)
        except (KeyError, ConfigError):
            continue
        if same:
            mine.append(run)
    return sorted(mine, key=lambda r: (_recorded_number(r), r.run_id))


def _recorded_number(run: RunResult) -> float:
    number = run.environment.get("trial")
    return float(number) if isinstance(number, int) and not isinstance(number, bool) else math.inf


def outcome_of(runs: list[RunResult], config: SearchConfig, task_name: str | None = None) -> SearchOutcome:
    """The :class:`SearchOutcome` of a search's runs (already in trial order); ``task_name`` (the
    study task's name; default: each run's task without the searched task parameters) reads task
    parameters back from run task names."""
    trials = []
    for k, r in enumerate(runs):
        values = objective_values(r, config)
        trials.append(Trial(k, trial_values(r.task, r.recipe, config.space,
                                            task_name or _study_task(r.task, config.space)), r, values[0], values))
    best = None
    for t in trials:
        if t.result.status is RunStatus.FINISHED and math.isfinite(t.value) and (
                best is None or config.direction.better(t.value, best.value)):
            best = t
    done = [t for t in trials if t.result.status is RunStatus.FINISHED and all(map(math.isfinite, t.values))]
    front = [t for t, on in zip(done, non_dominated([t.values for t in done], config.directions), strict=True) if on]
    sign = 1.0 if config.direction is Direction.MINIMIZE else -1.0
    front.sort(key=lambda t: (sign * t.value, t.number))
    return SearchOutcome(trials, best, sum(len(t.result.epochs) for t in trials), front)


def _study_task(task: str, space: SearchSpace) -> str:
    """``task`` without the task parameters ``space`` searches (``nas_cnn[block=plain,depth=2]`` ->
    ``nas_cnn[depth=2]`` for a space over ``task.block``)."""
    from optbench.tasks import parse_task_ref, task_name

    if not has_task_paths(space):
        return task
    base, params = parse_task_ref(task)
    searched = {p.path.partition(".")[2] for p in space if is_task_path(p.path)}
    return task_name(base, {k: v for k, v in params.items() if k not in searched})


def sample(trial: Any, space: SearchSpace) -> dict[str, Any]:
    """Sample ``space`` define-by-run on an Optuna ``trial`` (Akiba et al. 2019): ``suggest_*``
    per parameter in space order, skipping a parameter whose ``when`` condition fails on the values
    sampled before it. Returns ``{path: value}`` of the sampled parameters."""
    values: dict[str, Any] = {}
    for p in space:
        if not applies(p, values):
            continue
        if p.kind == "categorical":
            values[p.path] = trial.suggest_categorical(p.path, list(p.choices or ()))
        elif p.kind == "int":
            values[p.path] = trial.suggest_int(p.path, int(p.low), int(p.high), log=p.log)  # type: ignore[arg-type]
        else:
            values[p.path] = trial.suggest_float(p.path, float(p.low), float(p.high), log=p.log)  # type: ignore[arg-type]
    return values


def unrealizable(spec: RunSpec, error: ConfigError, annotate: Mapping[str, Any]) -> RunResult:
    """The ``failed`` run stored for a trial whose task cannot be built (nothing trained)."""
    return RunResult(run_id=spec.run_id, task=spec.task, recipe=spec.recipe, seed=spec.seed, status=RunStatus.FAILED,
                     error=f"unrealizable architecture: {error}", environment=dict(annotate))


def search_loop(load_runs: Callable[[], list[RunResult]], try_run: TryRun, task_ref: str, task_name: str,
                base: Recipe, config: SearchConfig, *, record: Callable[[RunResult], None],
                run_seed: int = 0, build_task: Callable[[str], Any] | None = None) -> None:
    """Ask, run and store trials until ``config.target_trials()`` are stored.

    Args:
        load_runs: the stored runs of the study (and task), fresh on every call.
        try_run: the executor's ``Worker.try_run`` (or an in-process stand-in).
        task_ref / task_name: how to build the task, and its stored name.
        base: the recipe the sampled values are applied to.
        config: the search.
        run_seed: the seed of every trial's run.
        record: stores a ``failed`` run for a point whose task cannot be built (see the module doc)
            where ``load_runs`` will find it.
        build_task: builds a task reference; pass the one ``try_run`` uses (the executor's cached
            ``RunContext.task``) so that a point is built, and a measured budget such as
            ``max_latency_ms`` judged, once: built twice, a latency measured within the budget the first
            time and over it the second would stop the search instead of recording a failed trial.
            None: ``optbench.tasks.get_task``.

    Raises:
        ConfigError: when the objective key is not among a run's epoch metrics, a sampled value is
            not valid for the recipe, or ``base`` does not record a cost objective (before any trial).
        OptbenchError: when the sampler keeps proposing stored points (:data:`MAX_RETRIES` asks
            since the last run), e.g. a space with fewer points than ``n_trials``. Points claimed
            by other workers are asked again after a growing wait (never an error).
    """
    config = replace(config, space=for_optimizer(config.space, base.optimizer))  # lr-free: the multiplier
    check_recorded(config.costs, base)
    target = config.target_trials()
    max_epochs = max([base.epochs, *(int(v) for p in config.space if p.path == "epochs"
                                     for v in (p.choices or (p.high,)))])
    skipped: list[dict[str, Any]] = []  # points asked since the last run: stored already or claimed elsewhere
    duplicates = refusals = 0
    while True:
        history = search_runs(load_runs(), task_name, base, config.space, run_seed)
        if len(history) >= target:
            return
        if duplicates >= MAX_RETRIES:
            raise OptbenchError(f"search {config.sampler}: {duplicates} asks proposed points stored already; "
                                f"the space may have fewer distinct points than n_trials={config.n_trials}")
        number = len(history)
        study = build_study(history, config, number=number, retry=len(skipped), refused=skipped,
                            max_epochs=max_epochs, task_name=task_name)
        trial = study.ask()
        params = sample(trial, config.space)
        task_values, recipe_values = split_values(params)
        ref, name = trial_task(task_ref, task_name, task_values)
        spec = RunSpec(ref, name, apply_params(base, recipe_values), run_seed)
        if spec.run_id in {r.run_id for r in history}:
            skipped.append(params)
            duplicates += 1
            continue
        annotate = {"trial": number, "search": config.sampler}
        if task_values:
            from optbench.tasks import get_task

            try:
                (build_task or get_task)(ref)
            except ConfigError as exc:  # an architecture that cannot be realized: a failed trial
                record(unrealizable(spec, exc, annotate))
                duplicates = refusals = 0
                skipped.clear()
                continue
        result = try_run(spec, on_epoch=_pruning_callback(trial, config, max_epochs), accept_pruned=True,
                         annotate=annotate)
        if result is None:  # claimed by another worker (or stored meanwhile): ask again, waiting longer each time
            skipped.append(params)
            refusals += 1
            time.sleep(min(CLAIM_WAIT_S * refusals, MAX_CLAIM_WAIT_S))
            continue
        duplicates = refusals = 0
        skipped.clear()
        if result.epochs and config.objective not in result.epochs[0].metrics:
            raise ConfigError("search.objective", config.objective,
                              sorted(k for k in result.epochs[0].metrics if k.startswith("valid_")))


def _pruning_callback(trial: Any, config: SearchConfig, max_epochs: int) -> Callable[[EpochRecord], None] | None:
    if config.pruner == "none":
        return None

    def on_epoch(record: EpochRecord) -> None:
        from optbench.engine import Pruned

        value = record.metrics.get(config.objective)
        if value is None or not math.isfinite(value):
            return
        trial.report(float(value), record.epoch)
        if record.epoch < max_epochs and trial.should_prune():
            raise Pruned(f"{config.pruner}: {config.objective} {value:.4g} at epoch {record.epoch}")

    return on_epoch


@dataclass(frozen=True)
class _Payload:
    task_ref: str
    task_name: str
    base: Recipe
    config: SearchConfig
    run_seed: int


def _search_worker(worker: Worker, payload: _Payload) -> None:
    """One worker's loop (the ``run_workers`` target; module-level so that it pickles)."""
    task = None if has_task_paths(payload.config.space) else payload.task_name
    search_loop(lambda: worker.store.load_runs(study=worker.study, task=task), worker.try_run,
                payload.task_ref, payload.task_name, payload.base, payload.config, run_seed=payload.run_seed,
                record=lambda result: _record(worker, result), build_task=worker.context.task)


def _record(worker: Worker, result: RunResult) -> None:
    """Store an unrealizable trial's failed run in the worker's study (no claim: nothing runs)."""
    worker.store.save_run(result, study=worker.study)


def run_search(store_url: str, study: str, task_ref: str, task_name: str, base: Recipe, config: SearchConfig, *,
               run_seed: int = 0, workers: int = 1, device: torch.device | None = None,
               on_event: EventCallback | None = None) -> SearchOutcome:
    """Run a search in ``workers`` processes on the store, until ``config.target_trials()``
    trials are stored for (study, task, base, space, run seed), counting finished, pruned,
    diverged and failed trials; then return every trial. The caller has already called
    ``Store.ensure_study(study, ...)``. A killed search resumes where it stopped.

    With ``config.optuna_storage``, the trials are also written into that Optuna RDB storage, from
    this process, as the runs progress (:class:`optbench.search.storage.OptunaMirror`: the trials
    stored before first, then each run live, then any run others stored meanwhile).

    Raises:
        ConfigError: see :func:`search_loop`; for a store the executor cannot open, or an Optuna
            storage that cannot be opened (before any run starts).
        OptbenchError: see :func:`search_loop`, or when a worker dies.
    """
    from optbench.runs.executor import run_workers
    from optbench.runs.store import open_store

    payload = _Payload(task_ref, task_name, base, config, run_seed)
    mirror = None if config.optuna_storage is None else _open_mirror(store_url, study, task_name, base, config,
                                                                       run_seed)
    try:
        run_workers(_search_worker, payload, store_url=store_url, study=study, workers=workers, device=device,
                    on_event=on_event if mirror is None else mirror.chain(on_event))
        with open_store(store_url) as store:
            outcome = search_outcome(store, study, task_name, base, config, run_seed=run_seed)
        if mirror is not None:
            mirror.finish([t.result for t in outcome.trials])
        return outcome
    finally:
        if mirror is not None:
            mirror.close()


def _open_mirror(store_url: str, study: str, task_name: str, base: Recipe, config: SearchConfig,
                 run_seed: int) -> Any:
    """The :class:`~optbench.search.storage.OptunaMirror` of a search, holding its stored trials."""
    from optbench.runs.store import open_store
    from optbench.search.storage import OptunaMirror, mirror_name, storage_url

    assert config.optuna_storage is not None
    mirror = OptunaMirror(storage_url(config.optuna_storage, store_url),
                          mirror_name(study, task_name, base, config, run_seed), config,
                          {"optbench.study": study, "optbench.task": task_name, "optbench.objective": config.objective})
    with open_store(store_url) as store:
        mirror.sync(search_runs(store.load_runs(study=study, task=task_name), task_name, base, config.space,
                                run_seed))
    return mirror


def search_outcome(store: Store, study: str, task_name: str, base: Recipe, config: SearchConfig, *,
                   run_seed: int | None = None) -> SearchOutcome:
    """The outcome of a search read back from ``store`` (no training), for reports/status.

    ``run_seed`` None takes trials of any run seed.

    Raises:
        ConfigError: for an unknown study.
    """
    task = None if has_task_paths(config.space) else task_name
    runs = search_runs(store.load_runs(study=study, task=task), task_name, base, config.space, run_seed)
    return outcome_of(runs, config, task_name)


__all__ = ["MAX_RETRIES", "SearchConfig", "SearchOutcome", "Trial", "TryRun", "outcome_of", "run_search", "sample",
           "search_loop", "search_outcome", "search_runs", "unrealizable"]
