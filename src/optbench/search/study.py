"""Rebuild an in-memory Optuna study from stored runs (the store is the single source of truth).

Mapping of runs to Optuna trials (in the search's trial order):

* ``finished`` -> ``COMPLETE`` with the run's objective value;
* ``pruned`` -> ``PRUNED`` (its per-epoch objective values as intermediate values);
* ``diverged`` -> ``COMPLETE`` with the *worst* objective value of all stored trials (so that
  model-based samplers learn to avoid the region), or ``FAIL`` when no trial has a finite value
  yet;
* ``failed`` -> ``FAIL`` (samplers ignore it); an architecture that cannot be realized is stored
  as a failed run (see :mod:`optbench.search.loop`).

A trial holds only the parameters sampled for it: a conditional parameter (``when``) whose
condition failed is absent, as in Optuna's define-by-run spaces (Akiba et al. 2019); task
parameters are read back from the stored task name (:func:`~optbench.search.space.trial_values`).

Intermediate values are the per-epoch objective metric (step = epoch, 1-based). Every stored
trial is replayed through ``ask`` / ``report`` + ``should_prune`` / ``tell`` so that pruners
that keep per-trial state (ASHA's rung values, Hyperband's brackets) see what they would have
seen live; the sampler then gets a copy of those trials (with the grid's point ids).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import TrialState, create_trial

from optbench.core.spec import Direction, RunResult, RunStatus
from optbench.search.samplers import distributions, grid_trial_attrs, make_pruner, make_sampler, samplers
from optbench.search.space import read_params, trial_values

if TYPE_CHECKING:
    from optbench.search.loop import SearchConfig

STUDY_NAME = "optbench-search"
"""Name of every rebuilt study (Hyperband hashes it with the trial number to pick brackets)."""


@contextmanager
def quiet_optuna() -> Iterator[None]:
    """Silence Optuna's per-trial INFO lines while a study is rebuilt (the level is restored)."""
    logger = logging.getLogger("optuna")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def trial_seed(seed: int, number: int, retry: int) -> int:
    """A sampler seed for trial ``number``'s ``retry``-th ask (numpy SeedSequence of the three)."""
    return int(np.random.SeedSequence([seed, number, retry]).generate_state(1)[0])


def objective(result: RunResult, config: SearchConfig) -> float:
    """The run's objective: its best or final value of ``config.objective`` over epochs (NaN
    when it has none, and for failed runs)."""
    if result.status is RunStatus.FAILED:
        return math.nan
    if config.use == "final":
        return result.final(config.objective)
    return result.best(config.objective, config.direction)


def intermediate(result: RunResult, key: str) -> dict[int, float]:
    """``{epoch: value}`` of ``key``, finite values only."""
    out = {}
    for record in result.epochs:
        value = record.metrics.get(key)
        if value is not None and math.isfinite(value):
            out[record.epoch] = float(value)
    return out


def _worst(history: Sequence[RunResult], config: SearchConfig) -> float | None:
    values = [v for r in history if math.isfinite(v := objective(r, config))]
    if not values:
        return None
    return min(values) if config.direction is Direction.MAXIMIZE else max(values)


def build_study(history: Sequence[RunResult], config: SearchConfig, *, number: int, retry: int,
                refused: Sequence[Mapping[str, Any]], max_epochs: int, task_name: str | None = None) -> optuna.Study:
    """The in-memory study of ``history`` (stored trials, in order) plus ``refused`` points (as
    running trials), with the sampler seeded for trial ``number``'s ``retry``-th ask.

    ``task_name``: the study task's name, needed to read task parameters back from a run's task
    name (None: every parameter is read from the recipe).

    Raises:
        KeyError: a run of ``history`` is not a trial of ``config.space``.
    """
    entry = samplers.get(config.sampler)
    seed = trial_seed(config.seed, number, retry) if entry.per_trial_seed else config.seed
    pruner = make_pruner(config.pruner, min_epochs=1, max_epochs=max_epochs)
    direction = config.direction.value
    dists = distributions(config.space)
    worst = _worst(history, config)
    with quiet_optuna():
        replay = optuna.create_study(study_name=STUDY_NAME, direction=direction, pruner=pruner,
                                     sampler=optuna.samplers.RandomSampler(seed=0))
        for run in history:
            values = read_params(run.recipe, config.space) if task_name is None else \
                trial_values(run.task, run.recipe, config.space, task_name)
            replay.enqueue_trial(values, skip_if_exists=False)
            trial = replay.ask({k: dists[k] for k in values})
            for epoch, value in intermediate(run, config.objective).items():
                trial.report(value, epoch)
                trial.should_prune()  # side effects only: ASHA/Hyperband record rung values
            if run.status is RunStatus.FINISHED and math.isfinite(value := objective(run, config)):
                replay.tell(trial, value)
            elif run.status is RunStatus.PRUNED:
                replay.tell(trial, state=TrialState.PRUNED)
            elif run.status is RunStatus.DIVERGED and worst is not None:
                replay.tell(trial, worst)
            else:
                replay.tell(trial, state=TrialState.FAIL)
        replayed = replay.get_trials(deepcopy=False)
        sampler = make_sampler(config.sampler, config.space, seed=seed, n_trials=config.n_trials,
                               grid_points=config.grid_points, history=replayed)
        study = optuna.create_study(study_name=STUDY_NAME, direction=direction, sampler=sampler, pruner=pruner)
        study.add_trials([_copy(t, sampler) for t in replayed])
        # refused points as running trials: the next ask gets a new number (grid, qmc); the grid skips them
        study.add_trials([create_trial(state=TrialState.RUNNING, params=dict(p), distributions={k: dists[k] for k in p},
                                       system_attrs=grid_trial_attrs(sampler, dict(p))) for p in refused])
    return study


def _copy(trial: optuna.trial.FrozenTrial, sampler: optuna.samplers.BaseSampler) -> optuna.trial.FrozenTrial:
    attrs = {k: v for k, v in trial.system_attrs.items() if k != "fixed_params"}
    attrs.update(grid_trial_attrs(sampler, trial.params))
    return create_trial(state=trial.state, value=trial.value if trial.state == TrialState.COMPLETE else None,
                        params=trial.params, distributions=trial.distributions,
                        intermediate_values=trial.intermediate_values, system_attrs=attrs,
                        user_attrs=trial.user_attrs)


__all__ = ["STUDY_NAME", "build_study", "intermediate", "objective", "quiet_optuna", "trial_seed"]
