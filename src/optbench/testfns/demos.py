"""Built-in trajectory demos: the classic pictures of optimization lectures, with measured numbers.

Each demo fixes a function, optimizers, steps, start, gradient noise and either given
learning rates or learning rates tuned on the function (:mod:`optbench.testfns.tuning`).
:func:`run_demo` runs one and measures what the picture is meant to show (escape time
from the saddle, final value, distance to the minimum).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from optbench.core.errors import require_positive
from optbench.core.registry import Registry
from optbench.testfns.functions import TestFunction, get_function
from optbench.testfns.trajectory import Trajectory, trajectory
from optbench.testfns.tuning import TuningResult, tune_lr

ESCAPE_BELOW = 0.01


@dataclass(frozen=True)
class Demo:
    """One built-in demonstration.

    Attributes:
        name: registry name (also the stem of the files ``optbench trajectory --demo`` writes).
        title: one line for the plot.
        function: test-function name; ``function_params`` its parameters (e.g. ``condition``).
        optimizers: optimizer registry names, one path each.
        steps: optimizer steps of every path.
        start: start point (None: the function's default).
        noise: std of the Gaussian noise added to every gradient (0: exact gradients).
        seed: seed of that noise.
        lrs: learning rate per optimizer; None means tuned on the function (:func:`tune_lr`).
        expectation: what the demo shows, in words.
    """

    name: str
    title: str
    function: str
    optimizers: tuple[str, ...]
    steps: int
    expectation: str
    lrs: Mapping[str, float] | None = None
    start: tuple[float, float] | None = None
    noise: float = 0.0
    seed: int = 0
    function_params: Mapping[str, float] = field(default_factory=dict)


@dataclass
class DemoResult:
    """What :func:`run_demo` returns.

    Attributes:
        demo: the demo that ran; function: its test function.
        paths: one :class:`Trajectory` per optimizer, in the demo's order (``notes["tuned"]``
            is True for tuned learning rates).
        tuning: the :class:`TuningResult` per tuned optimizer (empty when lrs were given).
        metrics: per optimizer: ``lr``, ``final_value``, ``best_value``, ``distance`` (to the
            nearest known minimum, NaN for saddles), ``escape_step`` (saddles only: first step
            with f < f(saddle) - :data:`ESCAPE_BELOW`, NaN if never) and ``diverged`` (0/1).
    """

    demo: Demo
    function: TestFunction
    paths: list[Trajectory]
    tuning: dict[str, TuningResult]
    metrics: dict[str, dict[str, float]]


def escape_step(path: Trajectory, level: float = 0.0, below: float = ESCAPE_BELOW) -> float:
    """First step at which the path's value is below ``level - below`` (a saddle's value is ``level``).

    Returns:
        the step (0 = start) as a float, or NaN when the path never gets there.
    """
    hits = np.nonzero(path.values < level - below)[0]
    return float(hits[0]) if hits.size else math.nan


def path_metrics(function: TestFunction, path: Trajectory) -> dict[str, float]:
    """The numbers :class:`DemoResult` reports for one path (see its ``metrics``)."""
    if function.minima:
        distance = float(min(path.distance_to(m)[-1] for m in function.minima))
        escape = math.nan
    else:
        distance = math.nan
        escape = escape_step(path)
    return {"lr": float(path.hyperparams.get("lr", math.nan)), "final_value": path.final_value,
            "best_value": float(np.min(path.values)), "distance": distance, "escape_step": escape,
            "diverged": float(path.diverged)}


def run_demo(demo: str | Demo, *, tune: bool = False, steps: int | None = None,
             grid: tuple[float, ...] | None = None) -> DemoResult:
    """Run a built-in demo (a name from :data:`demos`) or a :class:`Demo` of one's own.

    Args:
        demo: registry name or a Demo.
        tune: tune every learning rate on the function even when the demo gives them.
        steps: override the demo's steps (e.g. for quick tests).
        grid: learning-rate grid of the tuning (default :func:`~optbench.testfns.tuning.lr_grid`).

    Raises:
        UnknownNameError: unknown demo name; ConfigError: bad steps, or a tuning with no stable lr.
    """
    spec = demos.get(demo) if isinstance(demo, str) else demo
    n = spec.steps if steps is None else steps
    require_positive("steps", n, integer=True)
    function = get_function(spec.function, **spec.function_params)
    common = {"steps": n, "start": spec.start, "noise": spec.noise, "seed": spec.seed}
    tuning: dict[str, TuningResult] = {}
    paths = []
    for name in spec.optimizers:
        if tune or spec.lrs is None:
            tuning[name] = tune_lr(function, name, grid=grid, **common)
            lr = tuning[name].lr
        else:
            lr = spec.lrs[name]
        path = trajectory(function, name, lr=lr, **common)
        path.notes["tuned"] = name in tuning
        paths.append(path)
    metrics = {p.optimizer: path_metrics(function, p) for p in paths}
    return DemoResult(spec, function, paths, tuning, metrics)


demos: Registry[Demo] = Registry("trajectory demo")
demos.register("saddle", Demo(
    "saddle", "saddle point x^2 - y^2, start near the ridge, same lr 0.05 for all", "saddle",
    ("sgd", "momentum", "adagrad", "rmsprop", "adam", "adabelief"), 100,
    "Near the ridge the gradient along y is tiny: SGD's y grows by only (1 + 2 lr) a step and "
    "momentum's faster but still geometrically, while RMSprop, Adam and AdaBelief divide by the "
    "gradient's running scale and step about lr along y from the start, escaping first (escape_step). "
    "AdaGrad's accumulator keeps the large early x-gradients, so its y-steps shrink: it escapes "
    "sooner than SGD but about as late as momentum.",
    lrs={"sgd": 0.05, "momentum": 0.05, "adagrad": 0.05, "rmsprop": 0.05, "adam": 0.05, "adabelief": 0.05}))
demos.register("rosenbrock", Demo(
    "rosenbrock", "Rosenbrock's long narrow valley, learning rates tuned per optimizer", "rosenbrock",
    ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adabelief"), 500,
    "The valley floor is flat and curved: plain SGD must keep a small lr for the steep walls and "
    "crawls along the floor; momentum and the adaptive methods get much further in the same steps."))
demos.register("ill_conditioned_quadratic", Demo(
    "ill_conditioned_quadratic",
    "ill-conditioned quadratic (condition 50): SGD near its best lr, momentum at a smaller one",
    "ill_conditioned_quadratic", ("sgd", "momentum", "nesterov"), 100,
    "The steep direction limits the lr (lr < 2/L; the best constant lr is 2/(L + mu) = 0.039), so "
    "plain SGD zig-zags across the narrow direction and crawls along the flat one at rate 1 - lr*mu a "
    "step; heavy-ball and Nesterov momentum, even with a smaller lr, reach the minimum much sooner "
    "(rate about 1 - 1/sqrt(kappa), Polyak 1964).",
    lrs={"sgd": 0.035, "momentum": 0.01, "nesterov": 0.01}, function_params={"condition": 50.0}))
demos.register("rastrigin", Demo(
    "rastrigin", "Rastrigin's local minima with noisy gradients (std 20)", "rastrigin",
    ("sgd", "momentum", "adam"), 500,
    "Without noise every method stops in the local minimum next to the start (f = 17.9 at about "
    "(2.98, 2.98)); with gradient noise SGD's steps hop between basins, while Adam's normalized "
    "steps shrink the noise and it stays near the start's basin.",
    lrs={"sgd": 0.01, "momentum": 0.002, "adam": 0.1}, noise=20.0, seed=0))
