"""Learning-curve figures, drawn with matplotlib's object-oriented API on the Agg canvas.

No pyplot: figures are :class:`matplotlib.figure.Figure` objects that nobody else holds,
so nothing global is created, nothing needs closing, no style is changed, and nothing is
shown. The data come from :func:`optbench.analysis.curve_bands`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from optbench.analysis.curves import curve_bands
from optbench.core.errors import ConfigError
from optbench.core.fileio import atomic_writer
from optbench.core.spec import RunResult

# matplotlib's "tab10" followed by the light half of "tab20": 20 distinct colours.
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
    "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)
DEFAULT_KEYS = ("train_loss", "test_loss", "train_accuracy", "test_accuracy")
X_LABELS = {"epoch": "epoch", "step": "optimizer step", "seconds": "wall-clock time (s)"}
SAVE_FORMATS = ("png", "svg")


def label_colors(labels: Iterable[str]) -> dict[str, str]:
    """A colour (hex string) per label: :data:`PALETTE` assigned in sorted label order.

    The same set of labels always gets the same colours, whatever order they come in;
    pass every label of a report at once to keep colours constant across its plots.
    Beyond 20 labels the palette repeats.
    """
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(sorted(set(labels)))}


def _title(key: str) -> str:
    return key.replace("_", " ")


def plot_curves(results: Sequence[RunResult], *, keys: Sequence[str] = DEFAULT_KEYS,
                x: str = "epoch", band: str = "minmax",
                colors: Mapping[str, str] | None = None, log_keys: Collection[str] = (),
                title: str | None = None) -> Figure:
    """Learning curves of one task: a panel per metric key, a line per label, a band over seeds.

    Args:
        results: runs of a single task; failed runs are left out (see
            :func:`optbench.analysis.curve_bands`).
        keys: metric keys, one panel each, two panels a row (four keys give 2x2).
        x: ``"epoch"``, ``"step"`` or ``"seconds"`` (mean cumulative train + eval seconds).
        band: ``"minmax"`` (lowest to highest seed) or ``"std"`` (mean ± std).
        colors: label -> colour; default :func:`label_colors` of the labels present. Must
            cover every label when given.
        log_keys: keys whose panel uses a logarithmic y axis (e.g. losses).
        title: figure title (suptitle), optional.

    Returns:
        A new :class:`~matplotlib.figure.Figure` on an Agg canvas. Each panel holds exactly
        one ``Line2D`` per label with data (the mean) plus one filled band per label; the
        legend is drawn once, below the panels. A curve with a single point is drawn as a
        marker (its band is not visible).

    Raises:
        ConfigError: no keys, unknown ``x`` or ``band``, a key recorded by no run,
            ``colors`` missing a label, runs of several tasks.
    """
    if not keys:
        raise ConfigError("keys", list(keys), "one or more metric keys")
    bands = {key: curve_bands(results, key, x=x, band=band) for key in keys}
    labels = sorted({label for per_key in bands.values() for label in per_key})
    palette = label_colors(labels) if colors is None else dict(colors)
    missing = [label for label in labels if label not in palette]
    if missing:
        raise ConfigError("colors", f"no colour for {', '.join(missing)}",
                          "a mapping with a colour for every label")
    ncols = 1 if len(keys) == 1 else 2
    nrows = math.ceil(len(keys) / ncols)
    fig = Figure(figsize=(5.5 * ncols, 3.6 * nrows + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    handles: dict[str, Line2D] = {}
    for ax, key in zip(axes, keys, strict=False):
        for label in labels:
            curve = bands[key].get(label)
            if curve is None:
                continue
            color = palette[label]
            (line,) = ax.plot(curve.x, curve.mean, color=color, label=label, linewidth=1.6,
                              marker="o" if curve.x.size <= 15 else None, markersize=3)
            ax.fill_between(curve.x, curve.low, curve.high, color=color, alpha=0.18,
                            linewidth=0)
            handles.setdefault(label, line)
        ax.set_title(_title(key))
        ax.set_xlabel(X_LABELS[x])
        ax.set_ylabel(key.partition("_")[2].replace("_", " ") or key)
        if key in log_keys:
            ax.set_yscale("log")
        if x == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    if handles:
        shown = [label for label in labels if label in handles]
        fig.legend(handles=[handles[label] for label in shown], labels=shown,
                   loc="outside lower center", ncols=min(len(handles), 7), frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` atomically (temporary file in the same folder + ``os.replace``).

    A reader never sees a half-written file; on error the temporary file is removed and
    an existing file at ``path`` is left as it was. Missing parent folders are created.

    Args:
        fig: the figure.
        path: destination; its suffix chooses the format: ``.png`` (raster, ``dpi`` dots
            per inch) or ``.svg``.
        dpi: resolution of PNG output.

    Returns:
        The destination path.

    Raises:
        ConfigError: for another suffix.
        OSError: when the folder cannot be written.
    """
    target = Path(path)
    fmt = target.suffix.lower().lstrip(".")
    if fmt not in SAVE_FORMATS:
        raise ConfigError("figure path suffix", target.suffix or target.name,
                          [f".{f}" for f in SAVE_FORMATS])
    with atomic_writer(target) as stream:
        metadata = {"Date": None} if fmt == "svg" else None
        fig.savefig(stream, format=fmt, dpi=dpi, metadata=metadata)
    return target
