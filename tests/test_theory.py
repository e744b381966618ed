"""Theory check: SGD on a noisy strongly convex quadratic stays under its bounds; a decaying step goes to zero."""

from __future__ import annotations

import numpy as np
import pytest

from optbench.core.errors import ConfigError
from optbench.testfns.theory import plot_theory, theory_check


@pytest.fixture(scope="module")
def check():
    return theory_check(steps=400, seeds=400, seed=3)


def test_measured_mean_stays_under_the_constant_step_bound(check):
    assert check.constant_mean[0] == pytest.approx(check.radius**2)
    assert (check.constant_mean <= check.constant_bound).all()
    assert check.max_ratio < 1
    # the measurement agrees with the exact expectation (a check of the harness, not of the bound)
    assert np.abs(check.constant_mean / check.constant_exact - 1).max() < 0.15
    # B^2 really bounds E||g||^2 (measured over the seeds, up to sampling error)
    assert check.measured_grad_sq <= 1.05 * check.b2_constant
    # the plateau sits under alpha B^2 / (2 mu) and well above zero: constant steps do not converge
    plateau = check.constant_mean[-100:].mean()
    assert 0.1 * check.floor < plateau < check.floor
    eigenvalues = np.linspace(check.mu, check.L, check.dim)
    expected = check.alpha * check.sigma**2 * np.sum(1 / (eigenvalues * (2 - check.alpha * eigenvalues)))
    assert plateau == pytest.approx(expected, rel=0.1)


def test_decaying_step_goes_to_zero_under_its_bound(check):
    assert (check.decaying_mean <= check.decaying_bound).all()
    early, late = check.decaying_mean[40], check.decaying_mean[-1]
    assert late < early / 5  # O(1/k): 10x the iterations, about 10x smaller
    assert late < 0.1 * check.constant_mean[-100:].mean()
    assert check.decaying_bound[-1] < check.decaying_bound[100] < check.decaying_bound[0]


def test_plot_and_bad_parameters(check):
    fig = plot_theory(check)
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 6 and ax.get_yscale() == "log"
    assert np.array_equal(ax.get_lines()[0].get_ydata(), check.constant_mean)
    with pytest.raises(ConfigError, match="alpha"):
        theory_check(alpha=0.6, steps=10, seeds=2)  # > 1/(2 mu)
    with pytest.raises(ConfigError, match="c"):
        theory_check(c=0.4, steps=10, seeds=2)  # <= 1/(2 mu)
    with pytest.raises(ConfigError, match="L"):
        theory_check(mu=2.0, L=1.0, steps=10, seeds=2)
