"""Samplers and pruners by name: Optuna used as a library of search methods.

Samplers (``samplers`` registry):

* ``grid`` — every point of a grid (:func:`~optbench.search.space.grid_values` per axis),
  in an order shuffled by the seed (Optuna ``GridSampler``).
* ``random`` — independent uniform / log-uniform draws (Bergstra & Bengio 2012).
* ``qmc`` — a scrambled Sobol sequence (Optuna ``QMCSampler``; Bergstra & Bengio 2012 sec. 5).
* ``tpe`` — the Tree-structured Parzen Estimator (Bergstra et al. 2011), multivariate
  (Falkner et al. 2018), ``max(2, min(10, n_trials // 4))`` random startup trials; for a space with
  ``when`` conditions, grouped (Optuna's ``group=True``: the space is split into groups of parameters
  that always occur together, each modelled jointly on the trials that have it, so a conditional
  parameter and those sharing its condition get a joint model instead of independent draws; where no
  trial with a conditional parameter was proposed yet, nothing differs); with several objectives,
  MOTPE (Ozaki et al. 2020, Optuna's TPESampler on a multi-objective study).
* ``gp`` — Gaussian-process Bayesian optimization with log-EI (Optuna ``GPSampler``;
  Snoek et al. 2012), same startup trials.
* ``cmaes`` — CMA-ES (Hansen 2016; Optuna ``CmaEsSampler``, needs the ``cmaes`` package).
* ``nsga2`` — NSGA-II (Deb et al. 2002, "A fast and elitist multiobjective genetic algorithm";
  Optuna ``NSGAIISampler``, seeded): generations of ``max(4, min(50, n_trials // 4))`` trials, the
  first random, each next one bred (uniform crossover, mutation) from the elite of non-dominated
  sorting and crowding distance; parameters absent from some trials (``when``) are drawn at random.
  For multi-objective searches (``[search] objectives``), also runs with one objective.

Pruners (``pruners`` registry), fed the per-epoch validation objective (step = epoch, 1-based):

* ``none`` — never prune.
* ``median`` — stop a trial whose value is worse than the median of completed trials at
  the same epoch (Golovin et al. 2017, "median stopping rule"), after 4 startup trials and
  ``min_epochs`` epochs.
* ``asha`` — asynchronous successive halving (Li et al. 2020), rungs at
  ``min_epochs * 3**k`` epochs, keeping the best third at each rung.
* ``hyperband`` — Hyperband (Li et al. 2018) over ASHA brackets between ``min_epochs`` and
  ``max_epochs``, reduction factor 3.
* ``curve`` — learning-curve extrapolation (Domhan et al. 2015): after ``max(min_epochs, 3)``
  epochs, stop a trial whose value extrapolated to ``max_epochs`` by a parametric curve family
  is worse than the best completed trial
  (:class:`~optbench.search.curve_pruner.LearningCurvePruner`, ``k = 0``).

How a search rebuilds a sampler before each ask (see :mod:`optbench.search.loop`): a fresh
sampler is built over a copy of the stored trials. ``random``, ``tpe``, ``gp``, ``cmaes`` and ``nsga2``
get a seed derived from (search seed, trial number, retry), so that every ask draws fresh,
reproducible numbers; ``grid`` and ``qmc`` keep the search seed, as their order is a function
of it, and take the point of index = trial number (``qmc``: Sobol point ``number - 1``, trial
0 being a random draw as in Optuna). ``cmaes`` is rebuilt each ask from the finished trials
by warm starting (WS-CMA-ES, Nomura et al. 2021: the initial Gaussian is fitted to the best
10% of them; random draws until 10 trials finished), since Optuna keeps a CMA-ES state only as a
pickle in trial attributes, which optbench never stores or loads. ``nsga2`` gets each stored trial's
generation back (:func:`optbench.search.study.ga_generations`).
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from optbench.core.errors import ConfigError
from optbench.core.registry import Registry
from optbench.search.curve_pruner import LearningCurvePruner
from optbench.search.space import Param, SearchSpace, grid_values


@dataclass(frozen=True)
class SamplerEntry:
    """How to build one sampler.

    Attributes:
        build: ``(space, seed, n_trials, grid_points, history) -> BaseSampler``; ``history``
            is the stored trials (Optuna FrozenTrials), used only by samplers built from it.
        description: one line for ``optbench list``.
        per_trial_seed: build it with a seed derived from (seed, trial, retry) before each ask.
    """

    build: Callable[[SearchSpace, int, int, int | None, Sequence[FrozenTrial]], optuna.samplers.BaseSampler]
    description: str
    per_trial_seed: bool = True


@dataclass(frozen=True)
class PrunerEntry:
    """How to build one pruner: ``(min_epochs, max_epochs) -> BasePruner``."""

    build: Callable[[int, int], optuna.pruners.BasePruner]
    description: str


samplers: Registry[SamplerEntry] = Registry("sampler")
pruners: Registry[PrunerEntry] = Registry("pruner")


def distribution(param: Param) -> BaseDistribution:
    """The Optuna distribution of ``param`` (float/int range, log or not, or categorical)."""
    if param.kind == "categorical":
        return CategoricalDistribution(list(param.choices or ()))
    if param.kind == "int":
        return IntDistribution(int(param.low), int(param.high), log=param.log)  # type: ignore[arg-type]
    return FloatDistribution(float(param.low), float(param.high), log=param.log)  # type: ignore[arg-type]


def distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    """``{path: distribution}`` of every parameter of ``space``."""
    return {p.path: distribution(p) for p in space}


def grid_axes(space: SearchSpace, n_trials: int, grid_points: int | None) -> dict[str, list[Any]]:
    """The grid of ``space``: ``{path: values}``.

    ``grid_points`` values per range axis; when None, the largest per-axis count whose grid
    has at most ``n_trials`` points (at least 2). Categorical axes use all their choices.
    """
    ranges = [p for p in space if p.kind != "categorical"]
    n = grid_points
    if n is None:
        fixed = math.prod(len(p.choices or ()) for p in space if p.kind == "categorical")
        n = 2
        while ranges and math.prod(len(grid_values(p, n + 1)) for p in ranges) * fixed <= n_trials:
            n += 1
    return {p.path: grid_values(p, n) for p in space}


def grid_size(space: SearchSpace, n_trials: int, grid_points: int | None) -> int:
    """Number of points of :func:`grid_axes`."""
    return math.prod(len(v) for v in grid_axes(space, n_trials, grid_points).values())


_CMA_MIN_SOURCE = 10


def _startup(n_trials: int) -> int:
    return max(2, min(10, n_trials // 4))


def _grid(space: SearchSpace, seed: int, n_trials: int, grid_points: int | None,
          history: Sequence[FrozenTrial]) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GridSampler(grid_axes(space, n_trials, grid_points), seed=seed)


def _random(space: SearchSpace, seed: int, n_trials: int, grid_points: int | None,
            history: Sequence[FrozenTrial]) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


class _IndexedQMCSampler(optuna.samplers.QMCSampler):
    """Optuna's QMCSampler, taking the Sobol point of index ``trial number - 1`` instead of a
    counter kept in study attributes (a rebuilt study has none), so that the sequence
    continues across rebuilds."""

    def _find_sample_id(self, study: optuna.Study, search_space: dict[str, BaseDistribution]) -> int:
        # every trial of the study, the asking one included; trial 0 was an independent draw
        return max(0, len(study._storage.get_all_trials(study._study_id, deepcopy=False)) - 2)


def _qmc(space: SearchSpace, seed: int, n_trials: int, grid_points: int | None,
         history: Sequence[FrozenTrial]) -> optuna.samplers.BaseSampler:
    return _IndexedQMCSampler(qmc_type="sobol", scramble=True, seed=seed,
                              independent_sampler=optuna.samplers.RandomSampler(seed=seed),
                              warn_independent_sampling=False, warn_asynchronous_seeding=False)


def _tpe(space: SearchSpace, seed: int, n_trials: int, grid_points: int | None,
         history: Sequence[FrozenTrial]) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=_startup(n_trials), multivariate=True,
                                      group=any(p.when for p in space))


def _population(n_trials: int) -> int:
    return max(4, min(50, n_trials // 4))


def _nsga2(space: SearchSpace, seed: int, n_trials: int, grid_points: int | None,
           history: Sequence[FrozenTrial]) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=_population(n_trials))


def _gp(space: SearchSpace, seed: int, n_trials: int, grid_points: int | None,
        history: Sequence[FrozenTrial]) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=_startup(n_trials))


def _cmaes(space: SearchSpace, seed: int, n_trials: int, grid_points: int | None,
           history: Sequence[FrozenTrial]) -> optuna.samplers.BaseSampler:
    if importlib.util.find_spec("cmaes") is None:
        raise ConfigError("search.sampler", "cmaes", "an installed 'cmaes' package (pip install cmaes) "
                          "or one of grid, random, qmc, tpe, gp")
    done = [t for t in history if t.state == TrialState.COMPLETE]
    if len(done) < _CMA_MIN_SOURCE:  # random startup trials; warm starting needs >= 1 / gamma = 10 of them
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=0, source_trials=done,
                                        warn_independent_sampling=False)


samplers.register("grid", SamplerEntry(_grid, "full grid, log-spaced on log axes (shuffled order)",
                                       per_trial_seed=False))
samplers.register("random", SamplerEntry(_random, "independent (log-)uniform draws (Bergstra & Bengio 2012)"))
samplers.register("qmc", SamplerEntry(_qmc, "scrambled Sobol sequence", per_trial_seed=False))
samplers.register("tpe", SamplerEntry(_tpe, "multivariate TPE (Bergstra et al. 2011)"))
samplers.register("gp", SamplerEntry(_gp, "Gaussian-process BO with log-EI (Snoek et al. 2012)"))
samplers.register("cmaes", SamplerEntry(_cmaes, "warm-started CMA-ES (Hansen 2016; Nomura et al. 2021; "
                                        "needs the cmaes package)"))
samplers.register("nsga2", SamplerEntry(_nsga2, "NSGA-II, multi-objective genetic search (Deb et al. 2002)"))

pruners.register("none", PrunerEntry(lambda lo, hi: optuna.pruners.NopPruner(), "never prune"))
pruners.register("median", PrunerEntry(
    lambda lo, hi: optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=lo),
    "median stopping rule (Golovin et al. 2017)"))
pruners.register("asha", PrunerEntry(
    lambda lo, hi: optuna.pruners.SuccessiveHalvingPruner(min_resource=lo, reduction_factor=3),
    "asynchronous successive halving (Li et al. 2020)"))
pruners.register("hyperband", PrunerEntry(
    lambda lo, hi: optuna.pruners.HyperbandPruner(min_resource=lo, max_resource=hi, reduction_factor=3),
    "Hyperband over ASHA brackets (Li et al. 2018)"))
pruners.register("curve", PrunerEntry(
    lambda lo, hi: LearningCurvePruner(min_epochs=min(max(lo, 3), hi), max_epochs=hi),
    "learning-curve extrapolation (Domhan et al. 2015)"))


def make_sampler(name: str, space: SearchSpace, *, seed: int, n_trials: int, grid_points: int | None = None,
                 history: Sequence[FrozenTrial] = ()) -> optuna.samplers.BaseSampler:
    """The Optuna sampler ``name`` for ``space``.

    Args:
        name: a ``samplers`` registry name.
        space: the searched parameters (non-empty).
        seed: the sampler's seed (an int >= 0).
        n_trials: the search budget in trials (sets TPE/GP startup trials and the grid size
            when ``grid_points`` is None).
        grid_points: values per range axis of the grid sampler.
        history: the trials so far (only ``cmaes`` is built from them; the others read the study).

    Raises:
        UnknownNameError: for an unknown sampler name (lists the known ones).
        ConfigError: for an empty space, a bad seed / n_trials / grid_points, or ``cmaes``
            without the ``cmaes`` package.
    """
    entry = samplers.get(name)
    if not space:
        raise ConfigError("search.space", space, "at least one parameter")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError("search.seed", seed, "an integer >= 0")
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ConfigError("search.n_trials", n_trials, "an integer >= 1")
    if grid_points is not None and (isinstance(grid_points, bool) or not isinstance(grid_points, int)
                                    or grid_points < 2):
        raise ConfigError("search.grid_points", grid_points, "an integer >= 2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return entry.build(tuple(space), seed, n_trials, grid_points, history)


def make_pruner(name: str, *, min_epochs: int, max_epochs: int) -> optuna.pruners.BasePruner:
    """The Optuna pruner ``name``; steps are epochs (1-based).

    Args:
        name: a ``pruners`` registry name.
        min_epochs: epochs every trial runs before it may be pruned (>= 1).
        max_epochs: the full budget of a trial (>= min_epochs).

    Raises:
        UnknownNameError: for an unknown pruner name.
        ConfigError: when ``min_epochs < 1`` or ``max_epochs < min_epochs``.
    """
    entry = pruners.get(name)
    if isinstance(min_epochs, bool) or not isinstance(min_epochs, int) or min_epochs < 1:
        raise ConfigError("search.min_epochs", min_epochs, "an integer >= 1")
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < min_epochs:
        raise ConfigError("search.max_epochs", max_epochs, f"an integer >= min_epochs ({min_epochs})")
    return entry.build(min_epochs, max_epochs)


def grid_trial_attrs(sampler: optuna.samplers.BaseSampler, params: dict[str, Any]) -> dict[str, Any]:
    """System attributes that mark a stored trial as a visited point of ``sampler``'s grid
    (Optuna's GridSampler keeps them per trial; a rebuilt study needs them back). Empty for
    other samplers or a point off the grid."""
    if not isinstance(sampler, optuna.samplers.GridSampler):
        return {}
    space = sampler._search_space  # Optuna (4.x-5.x) keeps the grid and its shuffled order here
    key = tuple(params.get(name) for name in space)
    for grid_id, point in enumerate(sampler._all_grids):
        if tuple(point) == key:
            return {"search_space": space, "grid_id": grid_id}
    return {}


__all__ = ["PrunerEntry", "SamplerEntry", "distribution", "distributions", "grid_axes", "grid_size",
           "grid_trial_attrs", "make_pruner", "make_sampler", "pruners", "samplers"]
