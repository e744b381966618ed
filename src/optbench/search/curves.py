"""Parametric learning curves: fit a trial's first epochs, extrapolate to the last, with an uncertainty.

The family is a subset of Domhan, Springenberg & Hutter 2015 ("Speeding up automatic
hyperparameter optimization of deep neural networks by extrapolation of learning curves",
IJCAI), table 1. With ``x`` the epoch (1-based) and ``y`` a value that *increases* towards its
asymptote (a metric to maximize; a metric to minimize is fitted negated, see ``sign``):

* ``pow3``       y = c - a * x^(-alpha)                 (a >= 0, alpha > 0; asymptote c)
* ``exp3``       y = c - a * exp(-b * x)                (a >= 0, b > 0; asymptote c)
* ``log_power``  y = a / (1 + (x / e^b)^(-c))           (c > 0; asymptote a; Domhan's "log power"
  with the sign of c fixed so that the curve rises)
* ``ilog2``      y = c - a / log(x + 1)                 (a >= 0; Domhan's ilog2 with x + 1 so that
  epoch 1 is defined; two parameters, hence fitted from 3 points)

Each member is fitted by bounded nonlinear least squares (:func:`scipy.optimize.curve_fit`, trust
region reflective); a member whose fit fails or that has fewer than ``parameters + 1`` points is
left out. Domhan et al. combine the members in a weighted ensemble sampled by MCMC; here the
members are combined by Akaike weights (``w_m ∝ exp(-AIC_m / 2)``, ``AIC_m = n log(SSR_m / n) + 2 p_m``,
Burnham & Anderson 2002) and the uncertainty of the prediction at ``T`` is the standard deviation
of the mixture: ``var = Σ w_m (s_m² + (μ_m - μ)²) + σ²``, where ``μ_m`` is member m's
value at ``T``, ``s_m²`` its variance by the delta method from the fit's parameter covariance
(``g_mᵀ Σ_m g_m``, ``g_m`` the gradient of the curve at ``T`` in the parameters), ``μ = Σ w_m μ_m``
and ``σ²`` the weighted residual variance (the noise of one observed value). The spread across
the members is the model uncertainty, the delta-method term the parameter uncertainty.

**Shapes from finished curves.** From a few noisy points the curvature of a 3-parameter member
is not identified (at 4 points of this project's MNIST-1D curves the free fits above spread over
several accuracy units). :func:`extrapolate_with_shapes` therefore takes the *shape* parameters of
each member (pow3's alpha, exp3's b, log_power's b and c; ilog2 has none) from curves that ran to
the end (:func:`curve_shapes`) and fits only the level parameters of the partial curve, which
enter linearly: ``y = c - a * phi(x)`` with ``phi`` = ``x^(-alpha)``, ``exp(-b x)``,
``1 / log(x + 1)``, or ``y = a * g(x)`` for log_power — the idea of extrapolating a partial
curve through the curves of earlier, complete trials (Chandrashekaran & Lane 2017, ECML-PKDD,
"Speeding up hyper-parameter optimization by extrapolation of learning curves using previous
builds") applied to Domhan et al.'s family. Each (member, shape) is ordinary least squares with
the noise variance ``σ²`` known (estimated from the complete curves' residuals): its prediction
variance at ``T`` is ``σ² (1 + b_Tᵀ (AᵀA)⁻¹ b_T)`` (``A`` the design at the observed epochs,
``b_T`` its row at ``T``); members are weighted by their likelihood ``exp(-SSR / 2σ²)`` and
combined as a mixture as above.

Pure functions of plain sequences; nothing is cached or kept between calls.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

_Curve = Callable[..., np.ndarray]


def pow3(x: np.ndarray, c: float, a: float, alpha: float) -> np.ndarray:
    """``c - a * x^(-alpha)`` (Domhan et al. 2015, table 1, "pow3")."""
    return c - a * np.power(x, -alpha)


def exp3(x: np.ndarray, c: float, a: float, b: float) -> np.ndarray:
    """``c - a * exp(-b * x)`` (Domhan et al. 2015, table 1, "exp3" reparametrized)."""
    return c - a * np.exp(-b * x)


def log_power(x: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """``a / (1 + (x / e^b)^(-c))`` (Domhan et al. 2015, table 1, "log power", rising for c > 0)."""
    return a / (1.0 + np.power(x / math.exp(b), -c))


def ilog2(x: np.ndarray, c: float, a: float) -> np.ndarray:
    """``c - a / log(x + 1)`` (Domhan et al. 2015, table 1, "ilog2", shifted so x = 1 is defined)."""
    return c - a / np.log(x + 1.0)


@dataclass(frozen=True)
class CurveModel:
    """One member of the family: the curve, its parameter names, and how to start and bound a fit.

    Attributes:
        name: ``pow3``, ``exp3``, ``log_power`` or ``ilog2``.
        f: ``f(x, *params)`` on an array of epochs.
        params: parameter names, in ``f``'s order.
    """

    name: str
    f: _Curve
    params: tuple[str, ...]

    def start_and_bounds(self, x: np.ndarray, y: np.ndarray) -> tuple[list[float], tuple[list[float], list[float]]]:
        """An initial point and (lower, upper) bounds for fitting ``y`` (rising) at epochs ``x``.

        The asymptote is bounded to ``[min(y) - span, max(y) + 10 * (span + |max(y)|) + 1e-3]``
        (``span = max(y) - min(y)``): wide, but finite, so that a nearly linear start cannot send
        it to infinity.
        """
        lo, hi = float(np.min(y)), float(np.max(y))
        span = hi - lo
        top = hi + 10.0 * (span + abs(hi)) + 1e-3
        bottom = lo - span - 1e-3
        c0 = min(hi + span + 1e-6, top)
        a0 = max(c0 - float(y[0]), 1e-6)
        if self.name == "pow3":
            return [c0, a0, 0.5], ([bottom, 0.0, 1e-3], [top, np.inf, 5.0])
        if self.name == "exp3":
            return [c0, a0 * math.e ** 0.3, 0.3], ([bottom, 0.0, 1e-3], [top, np.inf, 5.0])
        if self.name == "log_power":
            if bottom <= 0.0 <= top:  # the asymptote's sign fixes the curve's; keep a away from 0
                bottom = 1e-9 if c0 > 0 else bottom
                top = top if c0 > 0 else -1e-9
            return [c0, math.log(max(float(x[-1]), 1.0)) / 2, 1.0], ([bottom, -10.0, 1e-3], [top, 10.0, 10.0])
        return [c0, a0 * math.log(2.0)], ([bottom, 0.0], [top, np.inf])


MODELS: tuple[CurveModel, ...] = (
    CurveModel("pow3", pow3, ("c", "a", "alpha")),
    CurveModel("exp3", exp3, ("c", "a", "b")),
    CurveModel("log_power", log_power, ("a", "b", "c")),
    CurveModel("ilog2", ilog2, ("c", "a")),
)
"""The family fitted by :func:`extrapolate` (Domhan et al. 2015, table 1)."""


@dataclass(frozen=True)
class CurveFit:
    """One member's fit.

    Attributes:
        name: the member (:data:`MODELS`).
        params: fitted parameters (in the member's order, on the rising scale ``sign * y``).
        prediction: the curve at the target epoch, on the caller's scale (``sign`` undone).
        std: its standard deviation by the delta method (inf when the covariance is not finite).
        ssr: sum of squared residuals over the fitted points.
        n: points fitted.
    """

    name: str
    params: tuple[float, ...]
    prediction: float
    std: float
    ssr: float
    n: int


@dataclass(frozen=True)
class Extrapolation:
    """The family's prediction of the value at the target epoch.

    Attributes:
        target: the epoch predicted (T).
        mean: the Akaike-weighted mean of the members' predictions (caller's scale).
        std: the mixture's standard deviation (see the module docstring); inf when it cannot be
            estimated (no member fitted with a finite covariance).
        fits: every member that fitted.
        weights: their Akaike weights (summing to 1), in ``fits``' order.
    """

    target: int
    mean: float
    std: float
    fits: tuple[CurveFit, ...]
    weights: tuple[float, ...]

    def optimistic(self, k: float, sign: float = 1.0) -> float:
        """``mean + k * std`` in the better direction: ``+`` for ``sign`` > 0 (maximize), ``-``
        otherwise (minimize)."""
        return self.mean + (k if sign > 0 else -k) * self.std


def fit_curve(model: CurveModel, epochs: Sequence[float], values: Sequence[float], target: float, *,
              sign: float = 1.0) -> CurveFit | None:
    """Fit ``model`` to ``(epochs, sign * values)`` and predict the value at epoch ``target``.

    Args:
        model: a member of :data:`MODELS`.
        epochs: 1-based epochs, shape (n,).
        values: observed values at those epochs, shape (n,), finite.
        target: the epoch to predict (usually the last epoch of the budget).
        sign: +1 when the values rise towards their asymptote (a metric maximized), -1 when they
            fall (a loss minimized; fitted negated, predicted back on the caller's scale).

    Returns:
        The fit, or None when there are fewer than ``len(model.params) + 1`` points or the
        least-squares fit fails (no convergence, non-finite values).
    """
    from scipy.optimize import OptimizeWarning, curve_fit  # here: scipy.optimize costs ~0.5 s to import

    x = np.asarray(epochs, dtype=float)
    y = sign * np.asarray(values, dtype=float)
    p = len(model.params)
    if x.shape != y.shape or x.ndim != 1 or len(x) < p + 1 or not np.all(np.isfinite(y)) or np.any(x <= 0):
        return None
    start, bounds = model.start_and_bounds(x, y)
    start = list(np.clip(start, bounds[0], bounds[1]))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            params, cov = curve_fit(model.f, x, y, p0=start, bounds=bounds, maxfev=2000)
    except (RuntimeError, ValueError, FloatingPointError):
        return None
    with np.errstate(all="ignore"):
        fitted = model.f(x, *params)
        mean = float(model.f(np.array([float(target)]), *params)[0])
    if not (np.all(np.isfinite(fitted)) and math.isfinite(mean)):
        return None
    ssr = float(np.sum((y - fitted) ** 2))
    std = _delta_std(model, params, cov, float(target))
    return CurveFit(model.name, tuple(float(v) for v in params), sign * mean, std, ssr, len(x))


def _delta_std(model: CurveModel, params: np.ndarray, cov: np.ndarray, target: float) -> float:
    """``sqrt(gᵀ Σ g)``, g the central-difference gradient of the curve at ``target``."""
    if not np.all(np.isfinite(cov)):
        return math.inf
    grad = np.empty(len(params))
    x = np.array([target])
    with np.errstate(all="ignore"):
        for i, value in enumerate(params):
            h = 1e-6 * max(abs(float(value)), 1.0)
            up, down = params.copy(), params.copy()
            up[i] += h
            down[i] -= h
            grad[i] = (model.f(x, *up)[0] - model.f(x, *down)[0]) / (2 * h)
    var = float(grad @ cov @ grad)
    return math.sqrt(var) if math.isfinite(var) and var >= 0 else math.inf


def extrapolate(epochs: Sequence[float], values: Sequence[float], target: int, *, sign: float = 1.0,
                models: Sequence[CurveModel] = MODELS) -> Extrapolation | None:
    """Fit every member of ``models`` to a learning curve and predict its value at ``target``.

    Args:
        epochs: 1-based epochs observed, shape (n,), increasing.
        values: the objective at those epochs, shape (n,), finite.
        target: the epoch to predict (T >= the last observed epoch).
        sign: +1 for a metric maximized (rising curves), -1 for one minimized.
        models: the family (default :data:`MODELS`).

    Returns:
        The Akaike-weighted prediction with its mixture standard deviation (see the module
        docstring), or None when no member could be fitted (too few points, every fit failed).
    """
    fits = [f for m in models if (f := fit_curve(m, epochs, values, target, sign=sign)) is not None]
    if any(math.isfinite(f.std) for f in fits):  # a member without a finite covariance says nothing of its spread
        fits = [f for f in fits if math.isfinite(f.std)]
    if not fits:
        return None
    spread = max(abs(float(np.max(values)) - float(np.min(values))), 1e-12)
    floor = (1e-6 * spread) ** 2  # an exact fit must not get an infinite weight
    aic = np.array([f.n * math.log(max(f.ssr / f.n, floor)) + 2 * (len(f.params)) for f in fits])
    w = np.exp(-(aic - aic.min()) / 2)
    w = w / w.sum()
    mus = np.array([f.prediction for f in fits])
    mean = float(w @ mus)
    var_param = np.array([f.std ** 2 for f in fits])
    noise = np.array([f.ssr / max(f.n - len(f.params), 1) for f in fits])
    with np.errstate(invalid="ignore"):
        var = float(w @ (var_param + (mus - mean) ** 2) + w @ noise)
    std = math.sqrt(var) if math.isfinite(var) else math.inf
    return Extrapolation(int(target), mean, std, tuple(fits), tuple(float(v) for v in w))


@dataclass(frozen=True)
class Shape:
    """The shape of one member fitted to a complete curve.

    Attributes:
        model: the member's name (:data:`MODELS`).
        shape: its shape parameters (pow3: alpha; exp3: b; log_power: b, c; ilog2: none).
        noise: the fit's residual variance ``SSR / (n - p)`` (on the curve's scale).
    """

    model: str
    shape: tuple[float, ...]
    noise: float


def _design(model: str, shape: tuple[float, ...], x: np.ndarray) -> np.ndarray:
    """Columns of the linear model of ``model`` with its shape fixed, at epochs ``x``: shape (n, k)."""
    with np.errstate(all="ignore"):
        if model == "pow3":
            return np.stack([np.ones_like(x), -np.power(x, -shape[0])], axis=1)
        if model == "exp3":
            return np.stack([np.ones_like(x), -np.exp(-shape[0] * x)], axis=1)
        if model == "ilog2":
            return np.stack([np.ones_like(x), -1.0 / np.log(x + 1.0)], axis=1)
        if model == "log_power":
            return (1.0 / (1.0 + np.power(x / math.exp(shape[0]), -shape[1])))[:, None]
    raise ValueError(f"unknown curve model {model!r}")


_SHAPE_SLICE = {"pow3": slice(2, 3), "exp3": slice(2, 3), "log_power": slice(1, 3), "ilog2": slice(0, 0)}


def curve_shapes(epochs: Sequence[float], values: Sequence[float], *, sign: float = 1.0,
                 models: Sequence[CurveModel] = MODELS) -> list[Shape]:
    """Fit every member to a complete curve and return the members' shapes.

    Args:
        epochs: 1-based epochs, shape (n,).
        values: the objective at those epochs, shape (n,), finite.
        sign: +1 for a metric maximized, -1 for one minimized.
        models: the family.

    Returns:
        One :class:`Shape` per member that fitted with at least one residual degree of freedom
        (empty when none did).
    """
    shapes = []
    for model in models:
        fit = fit_curve(model, epochs, values, float(epochs[-1]) if len(epochs) else 1.0, sign=sign)
        if fit is None or fit.n <= len(fit.params):
            continue
        shapes.append(Shape(model.name, fit.params[_SHAPE_SLICE[model.name]], fit.ssr / (fit.n - len(fit.params))))
    return shapes


def extrapolate_with_shapes(epochs: Sequence[float], values: Sequence[float], target: int, shapes: Sequence[Shape],
                            *, sign: float = 1.0, noise: float | None = None) -> Extrapolation | None:
    """Predict a partial curve's value at ``target`` with each member's shape taken from complete curves.

    Args:
        epochs: 1-based epochs observed, shape (n,), n >= 2.
        values: the objective at those epochs, shape (n,), finite.
        target: the epoch to predict.
        shapes: shapes from complete curves (:func:`curve_shapes`), one or more.
        sign: +1 for a metric maximized, -1 for one minimized.
        noise: the variance of one observed value; default: the median of ``shapes``' residual
            variances.

    Returns:
        The likelihood-weighted mixture (see the module docstring; ``fits`` name each
        (member, shape) ``"<model>@<shape>"``, ``ssr`` on the partial curve), or None when
        nothing could be fitted (fewer than 2 points, no shapes, a zero noise estimate with
        no spread).
    """
    x = np.asarray(epochs, dtype=float)
    y = sign * np.asarray(values, dtype=float)
    if x.ndim != 1 or x.shape != y.shape or len(x) < 2 or not shapes or not np.all(np.isfinite(y)):
        return None
    if noise is None:
        noise = float(np.median([s.noise for s in shapes]))
    noise = max(noise, 1e-12 * max(float(np.max(np.abs(y))), 1.0) ** 2)
    xt = np.array([float(target)])
    fits, mus, vars_, ssrs = [], [], [], []
    seen = set()
    for s in shapes:
        key = (s.model, s.shape)
        if key in seen:
            continue
        seen.add(key)
        a_obs, a_t = _design(s.model, s.shape, x), _design(s.model, s.shape, xt)[0]
        if not (np.all(np.isfinite(a_obs)) and np.all(np.isfinite(a_t))) or a_obs.shape[1] >= len(x):
            continue
        coef, *_ = np.linalg.lstsq(a_obs, y, rcond=None)
        if a_obs.shape[1] == 2 and coef[1] < 0:  # a falling curve: the level alone (rising members only)
            a_obs, a_t = a_obs[:, :1], a_t[:1]
            coef, *_ = np.linalg.lstsq(a_obs, y, rcond=None)
        gram = np.linalg.pinv(a_obs.T @ a_obs)
        mu = float(a_t @ coef)
        var = noise * (1.0 + float(a_t @ gram @ a_t))
        ssr = float(np.sum((y - a_obs @ coef) ** 2))
        if not (math.isfinite(mu) and math.isfinite(var)):
            continue
        fits.append(CurveFit(f"{s.model}@" + ",".join(f"{v:.4g}" for v in s.shape), tuple(float(v) for v in coef),
                             sign * mu, math.sqrt(var), ssr, len(x)))
        mus.append(mu)
        vars_.append(var)
        ssrs.append(ssr)
    if not fits:
        return None
    log_w = -np.array(ssrs) / (2 * noise)
    w = np.exp(log_w - log_w.max())
    w = w / w.sum()
    mu_arr = np.array(mus)
    mean = float(w @ mu_arr)
    var = float(w @ (np.array(vars_) + (mu_arr - mean) ** 2))
    return Extrapolation(int(target), sign * mean, math.sqrt(var), tuple(fits), tuple(float(v) for v in w))


__all__ = ["MODELS", "CurveFit", "CurveModel", "Extrapolation", "Shape", "curve_shapes", "exp3", "extrapolate",
           "extrapolate_with_shapes", "fit_curve", "ilog2", "log_power", "pow3"]
