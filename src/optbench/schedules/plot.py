"""A learning-rate schedule as a figure (matplotlib object-oriented API, no pyplot)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from optbench.core.errors import ConfigError


def plot_schedule(values: Sequence[float] | np.ndarray, title: str, *, steps_per_epoch: int | None = None,
                  log_y: bool = False) -> Figure:
    """Plot learning rate against optimizer step.

    Args:
        values: lr per step, shape ``(steps,)`` (from :func:`~optbench.schedules.schedule_values`).
        title: figure title, e.g. the schedule's repr (wrapped at 90 characters).
        steps_per_epoch: when given, a top axis shows epochs.
        log_y: logarithmic lr axis (exponential, inverse-time decays).

    Returns:
        a :class:`matplotlib.figure.Figure` on an Agg canvas (save it with
        ``optbench.report.plots.save_figure`` or ``fig.savefig``); nothing global is touched.

    Raises:
        ConfigError: for empty ``values`` or, with ``log_y``, a non-positive value.
    """
    y = np.asarray(values, dtype=np.float64).reshape(-1)
    if y.size == 0:
        raise ConfigError("schedule values", "[]", "at least one step")
    if log_y and not (y > 0).all():
        raise ConfigError("log_y", True, "false when a learning rate is <= 0")
    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(np.arange(y.size), y, color="#1f77b4", linewidth=1.5)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.set_title(textwrap.fill(title, 90), fontsize=9)
    ax.set_xlim(0, max(y.size - 1, 1))
    if log_y:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=min(0.0, float(y.min())))
    ax.grid(True, alpha=0.3)
    if steps_per_epoch is not None:
        spe = float(steps_per_epoch)
        top = ax.secondary_xaxis("top", functions=(lambda s: s / spe, lambda e: e * spe))
        top.set_xlabel("epoch")
    return fig


__all__ = ["plot_schedule"]
