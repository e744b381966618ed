"""Theory check: SGD on a strongly convex quadratic with noisy gradients, measured against its bounds.

Problem: ``f(x) = 1/2 (x - x*)^T A (x - x*)`` in ``dim`` dimensions, ``A = diag(lambda_1..lambda_d)``
with eigenvalues evenly spaced in ``[mu, L]`` (so f is mu-strongly convex and L-smooth), and
stochastic gradients ``g_k = A (x_k - x*) + sigma * xi_k`` with ``xi_k ~ N(0, I)`` independent
(unbiased, variance ``dim * sigma^2``). ``x_0 = x* + R u`` with ``u`` a unit vector of equal
components.

**Constant step** ``alpha`` — the standard bound (Nemirovski, Juditsky, Lan & Shapiro 2009,
SIAM J. Optim. 19(4), eq. (2.8); the same recursion as Bottou, Curtis & Nocedal 2018, Thm 4.6,
stated there for ``f - f*``). Assumptions: (i) f is mu-strongly convex, so
``<grad f(x), x - x*> >= mu ||x - x*||^2``; (ii) ``E[g_k | x_k] = grad f(x_k)``; (iii)
``E ||g_k||^2 <= B^2`` for every k; (iv) ``0 < alpha <= 1/(2 mu)``. Expanding
``||x_{k+1} - x*||^2`` and taking expectations gives ``e_{k+1} <= (1 - 2 alpha mu) e_k + alpha^2 B^2``, so

    E ||x_k - x*||^2 <= (1 - 2 alpha mu)^k R^2 + alpha B^2 / (2 mu).

**Decaying step** ``alpha_k = c / (k + k0)`` with ``c > 1/(2 mu)`` and ``k0 >= 2 c mu``: the same
recursion and induction (Nemirovski et al. 2009, eq. (2.9)-(2.10)) give
``E ||x_k - x*||^2 <= nu / (k + k0)`` with ``nu = max(c^2 B^2 / (2 c mu - 1), k0 R^2)`` -> 0.

``B^2`` must bound ``E ||g_k||^2 = sum_i lambda_i^2 e_{k,i} + dim sigma^2`` along the whole run.
For this quadratic the per-eigendirection expectation is exact:
``e_{k+1,i} = (1 - alpha_k lambda_i)^2 e_{k,i} + alpha_k^2 sigma^2``; ``B^2`` is the maximum over k
of the resulting ``E ||g_k||^2`` (the smallest constant for which (iii) holds; each run has its
own). The measured runs use optbench's ``sgd`` preset (torch.optim.SGD) on a ``(seeds, dim)``
parameter: SGD is elementwise, so each row is an independent run with its own noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from optbench.core.errors import ConfigError, require_positive


@dataclass(frozen=True)
class TheoryCheck:
    """Data of :func:`theory_check`; arrays have shape ``(steps + 1,)``, index k = iteration.

    Attributes:
        mu, L, dim, sigma, radius (R), seeds: the problem and the number of independent runs.
        alpha: the constant step; c, k0: the decaying step ``c / (k + k0)``.
        constant_mean / decaying_mean: measured mean over seeds of ``||x_k - x*||^2``.
        constant_exact / decaying_exact: the exact expectation (recursion in the module doc).
        constant_bound / decaying_bound: the two bounds of the module doc.
        b2_constant / b2_decaying: the ``B^2`` used by each bound.
        measured_grad_sq: max over k of the measured mean ``||g_k||^2`` of the constant run.
    """

    mu: float
    L: float
    dim: int
    sigma: float
    radius: float
    seeds: int
    alpha: float
    c: float
    k0: float
    constant_mean: np.ndarray
    constant_exact: np.ndarray
    constant_bound: np.ndarray
    decaying_mean: np.ndarray
    decaying_exact: np.ndarray
    decaying_bound: np.ndarray
    b2_constant: float
    b2_decaying: float
    measured_grad_sq: float

    @property
    def floor(self) -> float:
        """The constant-step bound's limit ``alpha B^2 / (2 mu)``."""
        return self.alpha * self.b2_constant / (2 * self.mu)

    @property
    def max_ratio(self) -> float:
        """Largest measured-mean / bound ratio over both runs and all k (<= 1 when the bounds hold)."""
        return float(max(np.max(self.constant_mean / self.constant_bound),
                         np.max(self.decaying_mean / self.decaying_bound)))


def _exact(lams: np.ndarray, r2: np.ndarray, sigma: float, rates: np.ndarray) -> tuple[np.ndarray, float]:
    """Exact E||x_k - x*||^2 for every k and max_k E||g_k||^2, given the step of every k."""
    e = r2.copy()
    dist, grad = [e.sum()], [(lams**2 * e).sum()]
    for a in rates:
        e = (1 - a * lams) ** 2 * e + a**2 * sigma**2
        dist.append(e.sum())
        grad.append((lams**2 * e).sum())
    return np.asarray(dist), float(max(grad)) + len(lams) * sigma**2


def _measure(lams: torch.Tensor, x0: torch.Tensor, sigma: float, rates: np.ndarray, seeds: int,
             seed: int) -> tuple[np.ndarray, float]:
    """Mean over seeds of ||x_k - x*||^2 (x* = 0 here) with optbench's sgd, and max mean ||g_k||^2."""
    from optbench.optim import create_optimizer

    x = x0.repeat(seeds, 1).requires_grad_(True)
    opt = create_optimizer("sgd", [x], lr=float(rates[0]))
    generator = torch.Generator().manual_seed(seed)
    dist, grad_sq = [float(x.detach().pow(2).sum(1).mean())], 0.0
    for a in rates:
        for group in opt.param_groups:
            group["lr"] = float(a)
        with torch.no_grad():
            g = x * lams + sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype)
        grad_sq = max(grad_sq, float(g.pow(2).sum(1).mean()))
        x.grad = g
        opt.step()
        dist.append(float(x.detach().pow(2).sum(1).mean()))
    return np.asarray(dist), grad_sq


def theory_check(*, mu: float = 1.0, L: float = 4.0, dim: int = 10, sigma: float = 2.0, radius: float = 3.0,
                 alpha: float = 0.05, c: float | None = None, k0: float | None = None, steps: int = 1000,
                 seeds: int = 1000, seed: int = 0) -> TheoryCheck:
    """Run SGD with a constant and a decaying step on the noisy quadratic of the module doc.

    Args:
        mu, L: smallest and largest Hessian eigenvalue (0 < mu <= L).
        dim: dimension; sigma: noise std per coordinate; radius: ``R = ||x_0 - x*||``.
        alpha: constant step, 0 < alpha <= 1/(2 mu) (and < 2/L, else the iterates blow up).
        c: decaying-step numerator (default 1/mu; must be > 1/(2 mu)).
        k0: decaying-step offset (default ``max(2 c mu, c L)``, so the first step is <= 1/L).
        steps: iterations; seeds: independent runs averaged; seed: noise seed.

    Returns:
        a :class:`TheoryCheck` (data only; draw it with :func:`plot_theory`).

    Raises:
        ConfigError: parameters outside the bounds' assumptions listed above.
    """
    for name, value in (("mu", mu), ("L", L), ("sigma", sigma), ("radius", radius), ("alpha", alpha)):
        require_positive(name, value)
    for name, value in (("dim", dim), ("steps", steps), ("seeds", seeds)):
        require_positive(name, value, integer=True)
    if mu > L:
        raise ConfigError("L", L, f"a number >= mu ({mu:g})")
    if alpha > 1 / (2 * mu) or alpha >= 2 / L:
        raise ConfigError("alpha", alpha, f"0 < alpha <= 1/(2 mu) = {1 / (2 * mu):g} and < 2/L = {2 / L:g}")
    c = 1 / mu if c is None else c
    if not c > 1 / (2 * mu):
        raise ConfigError("c", c, f"a number > 1/(2 mu) = {1 / (2 * mu):g}")
    k0 = max(2 * c * mu, c * L) if k0 is None else k0
    if not k0 >= 2 * c * mu or c / k0 >= 2 / L:
        raise ConfigError("k0", k0, f"k0 >= 2 c mu = {2 * c * mu:g} and c/k0 < 2/L")
    lams = np.linspace(mu, L, dim)
    r2 = np.full(dim, radius**2 / dim)
    k = np.arange(steps + 1)
    constant = np.full(steps, alpha)
    decaying = c / (np.arange(steps) + k0)
    const_exact, b2c = _exact(lams, r2, sigma, constant)
    dec_exact, b2d = _exact(lams, r2, sigma, decaying)
    x0 = torch.full((dim,), radius / math.sqrt(dim), dtype=torch.float64)
    lam_t = torch.tensor(lams, dtype=torch.float64)
    const_mean, grad_sq = _measure(lam_t, x0, sigma, constant, seeds, seed)
    dec_mean, _ = _measure(lam_t, x0, sigma, decaying, seeds, seed + 1)
    const_bound = (1 - 2 * alpha * mu) ** k * radius**2 + alpha * b2c / (2 * mu)
    nu = max(c**2 * b2d / (2 * c * mu - 1), k0 * radius**2)
    return TheoryCheck(mu, L, dim, sigma, radius, seeds, alpha, c, k0, const_mean, const_exact, const_bound,
                       dec_mean, dec_exact, nu / (k + k0), b2c, b2d, grad_sq)


def plot_theory(check: TheoryCheck, *, title: str | None = None) -> Figure:
    """``||x_k - x*||^2`` versus k (log-log): measured means, exact expectations and both bounds.

    Returns:
        a new Figure on an Agg canvas with one axes: lines for the constant-step measured mean,
        its exact expectation (dotted) and bound (dashed), and the same three for the
        decaying step; no pyplot, nothing global.
    """
    fig = Figure(figsize=(7.0, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    k = np.arange(1, check.constant_mean.size + 1)  # shifted by one for the log axis
    for name, mean, exact, bound, color in (
            (f"constant alpha={check.alpha:g}", check.constant_mean, check.constant_exact, check.constant_bound,
             "#1f77b4"),
            (f"decaying alpha_k={check.c:g}/(k+{check.k0:g})", check.decaying_mean, check.decaying_exact,
             check.decaying_bound, "#d62728")):
        ax.plot(k, mean, color=color, linewidth=1.8, label=f"{name}: measured mean ({check.seeds} seeds)")
        ax.plot(k, exact, color=color, linewidth=1.0, linestyle=":", label=f"{name}: exact expectation")
        ax.plot(k, bound, color=color, linewidth=1.4, linestyle="--", label=f"{name}: bound")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("iteration k + 1")
    ax.set_ylabel("E ||x_k - x*||^2")
    ax.grid(True, which="both", alpha=0.25)
    ax.set_title(title or (f"SGD on a noisy quadratic: mu={check.mu:g}, L={check.L:g}, d={check.dim}, "
                           f"sigma={check.sigma:g}, R={check.radius:g}"), fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    return fig
