"""The figure of a federated comparison: a metric against the communication round, one line per
strategy (mean over seeds) with its confidence band. Draws what
:func:`optbench.federated.summary.round_curves` computed; computes nothing itself.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from optbench.core.fileio import atomic_writer
from optbench.federated.summary import RoundCurve


def accuracy_figure(curves: Mapping[str, RoundCurve], *, title: str | None = None) -> Figure:
    """Lines of ``curve.mean`` against ``curve.rounds`` with ``[ci_low, ci_high]`` bands (where
    defined), one per strategy; the y label is the curves' metric."""
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    key = "value"
    for i, (name, c) in enumerate(curves.items()):
        key = c.key
        color = f"C{i % 10}"
        x = np.asarray(c.rounds)
        ax.plot(x, c.mean, color=color, label=name, linewidth=1.6, marker="o" if x.size <= 25 else None, markersize=3)
        low, high = np.asarray(c.ci_low, float), np.asarray(c.ci_high, float)
        ok = np.isfinite(low) & np.isfinite(high)
        if ok.any():
            ax.fill_between(x, np.where(ok, low, np.nan), np.where(ok, high, np.nan), color=color, alpha=0.18,
                            linewidth=0)
    ax.set_xlabel("communication round")
    ax.set_ylabel(key.replace("_", " "))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.legend(frameon=False)
    if title:
        ax.set_title(textwrap.fill(title, 80), fontsize=9)
    return fig


def save_accuracy_plot(curves: Mapping[str, RoundCurve], path: Path, *, title: str | None = None) -> Path:
    """Write :func:`accuracy_figure` as a PNG at ``path`` (atomically); returns ``path``."""
    fig = accuracy_figure(curves, title=title)
    with atomic_writer(path) as handle:
        fig.savefig(handle, format="png", dpi=130)
    return path


__all__ = ["accuracy_figure", "save_accuracy_plot"]
