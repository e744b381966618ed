"""2-D test functions with known minima, for optimizer trajectories and teaching.

Every function takes a tensor ``xy`` of shape ``(..., 2)`` and returns values of shape
``(...)``; gradients come from autograd (each function is a closed-form expression, so
autograd's gradient is the analytic one, checked against the hand-derived formulas in the
tests).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from optbench.core.errors import require_positive
from optbench.core.registry import Registry


@dataclass(frozen=True)
class TestFunction:
    """A 2-D function with its known minima, a default start point and plot bounds.

    Attributes:
        name: registry name.
        formula: the closed form, for legends and docs.
        fn: ``xy (..., 2) -> values (...)``.
        minima: known global minimizers ``((x, y), ...)``; empty when unbounded below (saddles).
        minimum_value: the function value at the minima (NaN when unbounded below).
        start: default start point of trajectories.
        bounds: plot window ``((x_min, x_max), (y_min, y_max))``.
        source: where the function comes from.
    """

    __test__ = False  # not a pytest test class

    name: str
    formula: str
    fn: Callable[[Tensor], Tensor]
    minima: tuple[tuple[float, float], ...]
    minimum_value: float
    start: tuple[float, float]
    bounds: tuple[tuple[float, float], tuple[float, float]]
    source: str

    def __call__(self, xy: Tensor) -> Tensor:
        return self.fn(xy)

    def gradient(self, xy: Tensor) -> Tensor:
        """The gradient at ``xy`` of shape ``(..., 2)`` (same shape), by autograd."""
        point = xy.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.fn(point).sum(), point)
        return grad


def _rosenbrock(xy: Tensor) -> Tensor:
    x, y = xy[..., 0], xy[..., 1]
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def _beale(xy: Tensor) -> Tensor:
    x, y = xy[..., 0], xy[..., 1]
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


def _rastrigin(xy: Tensor) -> Tensor:
    return 20 + (xy**2 - 10 * torch.cos(2 * math.pi * xy)).sum(-1)


def _himmelblau(xy: Tensor) -> Tensor:
    x, y = xy[..., 0], xy[..., 1]
    return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2


def _saddle(xy: Tensor) -> Tensor:
    return xy[..., 0] ** 2 - xy[..., 1] ** 2


def _monkey_saddle(xy: Tensor) -> Tensor:
    x, y = xy[..., 0], xy[..., 1]
    return x**3 - 3 * x * y**2


def ill_conditioned_quadratic(condition: float = 50.0) -> TestFunction:
    """``f(x, y) = (x^2 + condition * y^2) / 2``: Hessian eigenvalues 1 and ``condition``.

    Gradient descent needs ``lr < 2 / condition`` to converge and then crawls along x at
    rate ``1 - lr`` per step; momentum (Polyak 1964) improves the rate from about
    ``1 - 1/kappa`` to ``1 - 1/sqrt(kappa)``.

    Raises:
        ConfigError: for a condition number <= 0.
    """
    require_positive("condition", condition)

    def fn(xy: Tensor) -> Tensor:
        return 0.5 * (xy[..., 0] ** 2 + condition * xy[..., 1] ** 2)

    return TestFunction("ill_conditioned_quadratic", f"(x^2 + {condition:g} y^2) / 2", fn, ((0.0, 0.0),), 0.0,
                        (-4.0, 1.0), ((-5.0, 5.0), (-1.5, 1.5)), "quadratic model; Polyak 1964")


functions: Registry[Callable[..., TestFunction]] = Registry("test function")
functions.register("rosenbrock", lambda: TestFunction(
    "rosenbrock", "(1 - x)^2 + 100 (y - x^2)^2", _rosenbrock, ((1.0, 1.0),), 0.0, (-1.5, 2.0),
    ((-2.0, 2.0), (-1.0, 3.0)), "Rosenbrock 1960: the long narrow curved valley"))
functions.register("beale", lambda: TestFunction(
    "beale", "(1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2", _beale, ((3.0, 0.5),), 0.0,
    (1.0, 1.5), ((-4.5, 4.5), (-4.5, 4.5)), "Beale 1958"))
functions.register("rastrigin", lambda: TestFunction(
    "rastrigin", "20 + sum(x_i^2 - 10 cos(2 pi x_i))", _rastrigin, ((0.0, 0.0),), 0.0, (3.2, 2.7),
    ((-5.12, 5.12), (-5.12, 5.12)), "Rastrigin 1974: many local minima"))
functions.register("himmelblau", lambda: TestFunction(
    "himmelblau", "(x^2 + y - 11)^2 + (x + y^2 - 7)^2", _himmelblau,
    ((3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186), (3.584428, -1.848126)), 0.0, (0.0, 0.0),
    ((-5.0, 5.0), (-5.0, 5.0)), "Himmelblau 1972: four global minima"))
functions.register("saddle", lambda: TestFunction(
    "saddle", "x^2 - y^2", _saddle, (), math.nan, (1.0, 1e-3), ((-1.5, 1.5), (-1.5, 1.5)),
    "saddle point at the origin, unbounded below along y"))
functions.register("monkey_saddle", lambda: TestFunction(
    "monkey_saddle", "x^3 - 3 x y^2", _monkey_saddle, (), math.nan, (1.0, 1e-3), ((-1.5, 1.5), (-1.5, 1.5)),
    "monkey saddle: a degenerate saddle (zero Hessian) at the origin"))
functions.register("ill_conditioned_quadratic", ill_conditioned_quadratic)


def get_function(name: str, **params: float) -> TestFunction:
    """The test function registered as ``name``, built with ``params`` (e.g. ``condition=100``).

    Raises:
        UnknownNameError: for an unknown name; ConfigError: for a bad parameter.
    """
    from optbench.core.errors import ConfigError

    factory = functions.get(name)
    try:
        return factory(**params)
    except TypeError:
        raise ConfigError(f"parameter of {name}", ", ".join(params), "condition (ill_conditioned_quadratic only)"
                          ) from None
