"""Write a search's trials into a real Optuna RDB storage as they run, so that
``optuna-dashboard <url>`` shows them with their intermediate values (see docs/architecture.md).

The optbench store stays the single source of truth and the sampler keeps reading its in-memory
study rebuilt from it (:mod:`optbench.search.study`): the RDB study is a mirror, written only,
and never changes a trial's point, pruning or result. It is fed, in the process that started the
search, by the executor's progress events (``RunStarted``, ``EpochDone``, ``RunDone``), so worker
processes never open it:

* a run that starts is a ``RUNNING`` trial with its parameters (``study.enqueue_trial`` +
  ``study.ask``), the user attribute ``optbench.run_id`` naming its run;
* each epoch ``trial.report(value, epoch)`` of the search objective (finite values only);
* at the end ``study.tell``: ``COMPLETE`` with the run's objective (its best or final value,
  :func:`~optbench.search.study.objective`), ``PRUNED``, or ``FAIL`` for failed and diverged
  runs (the user attribute ``optbench.status`` says which);
* trials stored before (a resumed search) are added once, complete, from the store
  (:meth:`OptunaMirror.sync`). A trial left ``RUNNING`` by an interrupted session is completed
  from the store when its run is stored, or marked ``FAIL`` (``optbench.status`` =
  ``interrupted``) when the run starts again here.

Storage: ``[search] optuna_storage`` in a study file or ``optbench study run --optuna-storage``:
an SQLAlchemy URL (``sqlite:///optuna.db``, ``postgresql+psycopg://host/db``) or ``store``, the
study's own results database (optbench's tables are prefixed ``optbench_``, so Optuna's tables
live beside them). Default: none (no mirror). The Optuna study of one search is named
``<study>/<task>/<optimizer>/seed<run seed>/<8 hex digits>`` (the digits hash the base recipe,
space, sampler, pruner, objective and seed: two searches that share trials share the name).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState, create_trial

from optbench.core.errors import ConfigError
from optbench.core.spec import Recipe, RunResult, RunStatus
from optbench.search.samplers import distributions
from optbench.search.space import read_params
from optbench.search.study import intermediate, objective, quiet_optuna

if TYPE_CHECKING:
    from optbench.search.loop import SearchConfig

#: The ``optuna_storage`` value that means the study's own results database.
STORE = "store"
ALLOWED = "an SQLAlchemy URL (sqlite:///optuna.db, postgresql+psycopg://host/db) or 'store' (the results database)"
RUN_ID_ATTR = "optbench.run_id"
STATUS_ATTR = "optbench.status"


def check_storage(value: Any, field: str = "search.optuna_storage") -> str | None:
    """``value`` when it is None, :data:`STORE` or a URL (``scheme://...``).

    Raises:
        ConfigError: naming ``field``, otherwise.
    """
    if value is None:
        return None
    if not isinstance(value, str) or not (value.strip() == STORE or "://" in value):
        raise ConfigError(field, value, ALLOWED)
    return value.strip()


def storage_url(option: str, store_url: str) -> str:
    """The SQLAlchemy URL of an ``optuna_storage`` value: :data:`STORE` is ``store_url`` (a SQLite
    path becomes ``sqlite:///<absolute path>``); a URL is kept."""
    if option != STORE:
        return option
    if "://" in store_url:
        return store_url
    return f"sqlite:///{Path(store_url).expanduser().absolute()}"


def mirror_name(study: str, task_name: str, base: Recipe, config: SearchConfig, run_seed: int) -> str:
    """The Optuna study name of one search (see the module docstring)."""
    payload = {"recipe": base.identity(), "space": [repr(p) for p in config.space], "sampler": config.sampler,
               "pruner": config.pruner, "objective": config.objective, "use": config.use, "seed": config.seed,
               "grid_points": config.grid_points}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{study}/{task_name}/{base.label}/seed{run_seed}/{digest}"


class OptunaMirror:
    """One search's Optuna study in an RDB storage, written from executor events.

    Args:
        url: the storage's SQLAlchemy URL.
        name: the Optuna study name (:func:`mirror_name`).
        config: the search (objective, direction, space).
        attrs: study user attributes (optbench study, task, objective).

    Raises:
        ConfigError: (field ``search.optuna_storage``) Optuna cannot open the storage.
    """

    def __init__(self, url: str, name: str, config: SearchConfig, attrs: dict[str, Any] | None = None) -> None:
        from optbench.core.urls import redact_url

        self.config = config
        self._dists = distributions(config.space)
        try:
            with quiet_optuna():
                self.storage = optuna.storages.RDBStorage(url)
                self.study = optuna.create_study(storage=self.storage, study_name=name, load_if_exists=True,
                                                 direction=config.direction.value,
                                                 sampler=optuna.samplers.RandomSampler(seed=0))
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy and Optuna raise many kinds for a bad URL
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError("search.optuna_storage", redact_url(url), f"{ALLOWED}; Optuna could not open it "
                                                                        f"({reason})") from exc
        self._study_id = self.storage.get_study_id_from_name(name)
        for key, value in (attrs or {}).items():
            self.study.set_user_attr(key, value)
        self._live: dict[str, optuna.Trial] = {}
        self.failure: str | None = None

    def _known(self) -> dict[str, optuna.trial.FrozenTrial]:
        """The trials in the storage by optbench run id (the last one of a run id wins)."""
        return {t.user_attrs[RUN_ID_ATTR]: t for t in self.study.get_trials(deepcopy=False)
                if RUN_ID_ATTR in t.user_attrs}

    def sync(self, history: Sequence[RunResult]) -> None:
        """Add every run of ``history`` (the stored trials, in trial order) not in the storage
        yet, complete; complete trials left ``RUNNING`` whose run is stored now."""
        known = self._known()
        with quiet_optuna():
            for run in history:
                trial = known.get(run.run_id)
                if run.run_id in self._live:
                    continue
                if trial is None:
                    state, value = self._outcome(run)
                    self.study.add_trial(create_trial(
                        state=state, value=value, params=read_params(run.recipe, self.config.space),
                        distributions=self._dists, intermediate_values=intermediate(run, self.config.objective),
                        user_attrs=self._attrs(run)))
                elif trial.state == TrialState.RUNNING:
                    self._complete_stale(trial, run)

    def finish(self, history: Sequence[RunResult]) -> None:
        """:meth:`sync` at the end of a search (runs others stored meanwhile); a failure to write is
        a warning (the search is done), never an error."""
        if self.failure is None:
            self._guarded(lambda: self.sync(history))

    def _guarded(self, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - the mirror must never fail or change a run
            self.failure = f"{type(exc).__name__}: {exc}".splitlines()[0]
            warnings.warn(f"Optuna storage mirror of {self.study.study_name!r} stopped: {self.failure}",
                          RuntimeWarning, stacklevel=3)

    def _complete_stale(self, trial: optuna.trial.FrozenTrial, run: RunResult) -> None:
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self._study_id, trial.number)
        for step, value in intermediate(run, self.config.objective).items():
            self.storage.set_trial_intermediate_value(trial_id, step, value)
        for key, value in self._attrs(run).items():
            self.storage.set_trial_user_attr(trial_id, key, value)
        state, value = self._outcome(run)
        self.storage.set_trial_state_values(trial_id, state, None if value is None else [value])

    def _outcome(self, run: RunResult) -> tuple[TrialState, float | None]:
        value = objective(run, self.config)
        if run.status is RunStatus.FINISHED and math.isfinite(value):
            return TrialState.COMPLETE, value
        if run.status is RunStatus.PRUNED:
            return TrialState.PRUNED, None
        return TrialState.FAIL, None

    @staticmethod
    def _attrs(run: RunResult) -> dict[str, Any]:
        attrs: dict[str, Any] = {RUN_ID_ATTR: run.run_id, STATUS_ATTR: run.status.value}
        number = run.environment.get("trial")
        if isinstance(number, int) and not isinstance(number, bool):
            attrs["optbench.trial"] = number
        return attrs

    def on_event(self, event: Any) -> None:
        """An executor event of the search's runs (see the module docstring). A failure to write
        (a locked or unreachable database) stops the mirror with a warning: it never fails a run."""
        if self.failure is None:
            self._guarded(lambda: self._on_event(event))

    def _on_event(self, event: Any) -> None:
        from optbench.runs.executor import EpochDone, RunDone, RunStarted

        with quiet_optuna():
            if isinstance(event, RunStarted):
                self._start(event.spec.run_id, event.spec.recipe)
            elif isinstance(event, EpochDone):
                trial = self._live.get(event.spec.run_id)
                value = event.record.metrics.get(self.config.objective)
                if trial is not None and value is not None and math.isfinite(value):
                    trial.report(float(value), event.record.epoch)
            elif isinstance(event, RunDone):
                self._done(event.result)

    def _start(self, run_id: str, recipe: Recipe) -> None:
        if run_id in self._live:
            return
        stale = self._known().get(run_id)
        if stale is not None:
            if stale.state != TrialState.RUNNING:
                return  # complete in the storage already
            trial_id = self.storage.get_trial_id_from_study_id_trial_number(self._study_id, stale.number)
            self.storage.set_trial_user_attr(trial_id, STATUS_ATTR, "interrupted")
            self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        self.study.enqueue_trial(read_params(recipe, self.config.space), user_attrs={RUN_ID_ATTR: run_id},
                                 skip_if_exists=False)
        self._live[run_id] = self.study.ask(self._dists)

    def _done(self, run: RunResult) -> None:
        trial = self._live.pop(run.run_id, None)
        if trial is None:
            self.sync([run])
            return
        for key, value in self._attrs(run).items():
            trial.set_user_attr(key, value)
        state, value = self._outcome(run)
        if state == TrialState.COMPLETE:
            self.study.tell(trial, value)
        else:
            self.study.tell(trial, state=state)

    def chain(self, on_event: Callable[[Any], None] | None) -> Callable[[Any], None]:
        """A callback feeding this mirror, then ``on_event`` (when given)."""

        def both(event: Any) -> None:
            self.on_event(event)
            if on_event is not None:
                on_event(event)

        return both

    def close(self) -> None:
        """Release the storage's connections."""
        self.storage.remove_session()
        self.storage.engine.dispose()


__all__ = ["ALLOWED", "RUN_ID_ATTR", "STATUS_ATTR", "STORE", "OptunaMirror", "check_storage", "mirror_name",
           "storage_url"]
