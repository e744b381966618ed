"""Tuning searches through Optuna: search spaces, samplers, pruners and the adaptive trial loop.

The store is the single source of truth; Optuna is used as a library of samplers and pruners
(see :mod:`optbench.search.loop`)."""

from optbench.search.loop import SearchConfig, SearchOutcome, Trial, run_search, search_loop, search_outcome
from optbench.search.samplers import grid_axes, make_pruner, make_sampler, pruners, samplers
from optbench.search.space import Param, SearchSpace, apply_params, grid_values, parse_space, read_params

__all__ = ["Param", "SearchConfig", "SearchOutcome", "SearchSpace", "Trial", "apply_params", "grid_axes",
           "grid_values", "make_pruner", "make_sampler", "parse_space", "pruners", "read_params", "run_search",
           "samplers", "search_loop", "search_outcome"]
