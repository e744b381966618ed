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

With several objectives (``SearchConfig.costs``) the study has ``directions`` and a trial's values are
the metric's and each cost's (:func:`objective_values`); a diverged trial gets, per objective, its own
value when it is finite (a cost) or else the worst stored one; a finished trial missing a cost is
``FAIL``; no intermediate values are reported (Optuna prunes single-objective studies only).
A genetic sampler (``nsga2``) keeps each trial's generation in the trial's system attributes; a rebuilt
study gets them back by Optuna's own rule (:func:`ga_generations`), so parents are selected from
the stored trials as they would have been live.

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
from optbench.search.objectives import cost_value
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


def objective_values(result: RunResult, config: SearchConfig) -> tuple[float, ...]:
    """The run's value of every objective: :func:`objective`, then each cost of ``config.costs``
    (:func:`~optbench.search.objectives.cost_value`; NaN when not recorded, and for failed runs)."""
    first = objective(result, config)
    if result.status is RunStatus.FAILED:
        return (first, *(math.nan for _ in config.costs))
    return (first, *(cost_value(result, c) for c in config.costs))


def _worst(history: Sequence[RunResult], config: SearchConfig) -> list[float | None]:
    """Per objective, the worst finite value stored (None when there is none)."""
    out: list[float | None] = []
    rows = [objective_values(r, config) for r in history]
    for j, direction in enumerate(config.directions):
        values = [row[j] for row in rows if math.isfinite(row[j])]
        out.append(None if not values else min(values) if direction is Direction.MAXIMIZE else max(values))
    return out


def _told(run: RunResult, config: SearchConfig, worst: Sequence[float | None]) -> list[float] | None:
    """What a stored run tells the study (None: a failed trial): its values when finished and all finite;
    for a diverged run, the worst stored metric and its own costs (the worst where not recorded)."""
    values = objective_values(run, config)
    if run.status is RunStatus.FINISHED and all(map(math.isfinite, values)):
        return list(values)
    if run.status is RunStatus.DIVERGED:
        told = [worst[0], *(v if math.isfinite(v) else w for v, w in zip(values[1:], worst[1:], strict=True))]
        return None if any(v is None for v in told) else [float(v) for v in told]  # type: ignore[arg-type]
    return None


def ga_generations(trials: Sequence[optuna.trial.FrozenTrial], population_size: int) -> list[int]:
    """The generation of each trial (in order) as Optuna's ``BaseGASampler.get_trial_generation`` gives
    it when every earlier trial has finished: the newest generation among completed trials, or the next
    one once that generation has ``population_size`` completed trials."""
    newest, members, out = 0, 0, []
    for trial in trials:
        generation = newest + 1 if members >= population_size else newest
        out.append(generation)
        if trial.state == TrialState.COMPLETE:
            if generation > newest:
                newest, members = generation, 1
            elif generation == newest:
                members += 1
    return out


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
    multi = config.multi_objective
    pruner = optuna.pruners.NopPruner() if multi else make_pruner(config.pruner, min_epochs=1, max_epochs=max_epochs)
    directions: dict[str, Any] = {"directions": [d.value for d in config.directions]} if multi else \
        {"direction": config.direction.value}
    dists = distributions(config.space)
    worst = _worst(history, config)
    with quiet_optuna():
        replay = optuna.create_study(study_name=STUDY_NAME, pruner=pruner,
                                     sampler=optuna.samplers.RandomSampler(seed=0), **directions)
        for run in history:
            values = read_params(run.recipe, config.space) if task_name is None else \
                trial_values(run.task, run.recipe, config.space, task_name)
            replay.enqueue_trial(values, skip_if_exists=False)
            trial = replay.ask({k: dists[k] for k in values})
            for epoch, value in ({} if multi else intermediate(run, config.objective)).items():
                trial.report(value, epoch)
                trial.should_prune()  # side effects only: ASHA/Hyperband record rung values
            told = _told(run, config, worst)
            if run.status is RunStatus.PRUNED:
                replay.tell(trial, state=TrialState.PRUNED)
            elif told is not None:
                replay.tell(trial, told if multi else told[0])
            else:
                replay.tell(trial, state=TrialState.FAIL)
        replayed = replay.get_trials(deepcopy=False)
        sampler = make_sampler(config.sampler, config.space, seed=seed, n_trials=config.n_trials,
                               grid_points=config.grid_points, history=replayed)
        generations = _generation_attrs(sampler, replayed)
        study = optuna.create_study(study_name=STUDY_NAME, sampler=sampler, pruner=pruner, **directions)
        study.add_trials([_copy(t, sampler, extra) for t, extra in zip(replayed, generations, strict=True)])
        # refused points as running trials: the next ask gets a new number (grid, qmc); the grid skips them
        study.add_trials([create_trial(state=TrialState.RUNNING, params=dict(p), distributions={k: dists[k] for k in p},
                                       system_attrs=grid_trial_attrs(sampler, dict(p))) for p in refused])
    return study


def _generation_attrs(sampler: optuna.samplers.BaseSampler, trials: Sequence[optuna.trial.FrozenTrial]
                      ) -> list[dict[str, int]]:
    """Per trial, the system attribute holding its generation for a genetic sampler (else empty)."""
    if not isinstance(sampler, optuna.samplers.BaseGASampler) or sampler.population_size is None:
        return [{} for _ in trials]
    key = sampler._get_generation_key()  # Optuna (4.x-5.x) keeps a trial's generation under this key
    return [{key: g} for g in ga_generations(trials, sampler.population_size)]


def _copy(trial: optuna.trial.FrozenTrial, sampler: optuna.samplers.BaseSampler,
          extra: Mapping[str, Any]) -> optuna.trial.FrozenTrial:
    attrs = {k: v for k, v in trial.system_attrs.items() if k != "fixed_params"}
    attrs.update(grid_trial_attrs(sampler, trial.params))
    attrs.update(extra)
    return create_trial(state=trial.state, values=trial.values if trial.state == TrialState.COMPLETE else None,
                        params=trial.params, distributions=trial.distributions,
                        intermediate_values=trial.intermediate_values, system_attrs=attrs,
                        user_attrs=trial.user_attrs)


__all__ = ["STUDY_NAME", "build_study", "ga_generations", "intermediate", "objective", "objective_values",
           "quiet_optuna", "trial_seed"]
