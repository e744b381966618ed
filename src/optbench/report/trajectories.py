"""Optimizer paths on a 2-D test function: a contour plot (Figure) and an animated GIF of the paths growing.

Drawn with matplotlib's object-oriented API on the Agg canvas (no pyplot, no global
state); the GIF's frames are blitted on that canvas and written by Pillow into a temporary
file next to the destination that is renamed over it, so a reader never sees half a GIF.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from optbench.core.errors import ConfigError, require_positive
from optbench.core.fileio import atomic_writer
from optbench.report.plots import label_colors
from optbench.testfns.functions import TestFunction
from optbench.testfns.trajectory import Trajectory

PATH_GID = "trajectory-path"
END_GID = "trajectory-end"
GRID_POINTS = 240


def trajectory_label(path: Trajectory) -> str:
    """Legend text of a path: ``"adam lr=0.0464 (tuned)"``, plus ``"(diverged)"`` when it diverged.

    The lr is read from ``path.hyperparams``; "(tuned)" is shown when ``path.notes["tuned"]``
    is set (see :func:`optbench.testfns.demos.run_demo`).
    """
    lr = path.hyperparams.get("lr")
    text = path.optimizer if lr is None else f"{path.optimizer} lr={float(lr):.3g}"
    if path.notes.get("tuned"):
        text += " (tuned)"
    if path.diverged:
        text += " (diverged)"
    return text


def _surface(function: TestFunction) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    (x0, x1), (y0, y1) = function.bounds
    xs = torch.linspace(x0, x1, GRID_POINTS, dtype=torch.float64)
    ys = torch.linspace(y0, y1, GRID_POINTS, dtype=torch.float64)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    with torch.no_grad():
        z = function(torch.stack([gx, gy], -1))
    return gx.numpy(), gy.numpy(), z.numpy()


def _contours(ax, function: TestFunction) -> None:  # noqa: ANN001 (matplotlib Axes)
    gx, gy, z = _surface(function)
    if np.isfinite(function.minimum_value):  # bounded below: log-spaced levels of f - f*
        gap = np.maximum(z - function.minimum_value, 0.0)
        positive = gap[gap > 0]
        low = max(float(positive.min()) if positive.size else 1e-3, float(gap.max()) * 1e-7)
        levels = np.geomspace(low, float(gap.max()), 25)
        ax.contourf(gx, gy, np.maximum(gap, low), levels=levels, norm=LogNorm(), cmap="Greys_r", alpha=0.55)
        ax.contour(gx, gy, np.maximum(gap, low), levels=levels, norm=LogNorm(), colors="0.35", linewidths=0.4)
    else:  # unbounded below (saddles): linear levels
        ax.contourf(gx, gy, z, levels=25, cmap="Greys_r", alpha=0.55)
        ax.contour(gx, gy, z, levels=25, colors="0.35", linewidths=0.4)


def plot_trajectories(function: TestFunction, paths: Sequence[Trajectory], *,
                      colors: Mapping[str, str] | None = None, title: str | None = None,
                      figsize: tuple[float, float] = (7.0, 5.6)) -> Figure:
    """The contour plot of ``function`` over its bounds with each optimizer's path.

    Args:
        function: the 2-D test function (contours over ``function.bounds``; log-spaced
            levels of ``f - f*`` when the minimum is known, linear levels for saddles).
        paths: one :class:`~optbench.testfns.Trajectory` per optimizer (distinct optimizers).
        colors: optimizer -> colour; default :func:`~optbench.report.label_colors` of the
            optimizer names, so an optimizer has the same colour as in the learning curves.
        title: axes title (default: the function's name and formula).
        figsize: inches.

    Returns:
        A new Figure on an Agg canvas. Its axes hold exactly one ``Line2D`` per path (gid
        :data:`PATH_GID`, label :func:`trajectory_label`); the start points (black circle),
        the known minima (star) and each path's current end (coloured dot) are scatter
        collections, not lines. Paths leaving the bounds are clipped by the view.

    Raises:
        ConfigError: no paths, the same optimizer twice, or ``colors`` missing an optimizer.
    """
    if not paths:
        raise ConfigError("trajectories", "none", "one or more optimizer paths")
    names = [p.optimizer for p in paths]
    if len(set(names)) != len(names):
        raise ConfigError("trajectories", ", ".join(names), "distinct optimizers")
    palette = label_colors(names) if colors is None else dict(colors)
    missing = [n for n in names if n not in palette]
    if missing:
        raise ConfigError("colors", f"no colour for {', '.join(missing)}", "a colour for every optimizer")
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    _contours(ax, function)
    for path in paths:
        ax.plot(path.points[:, 0], path.points[:, 1], color=palette[path.optimizer], linewidth=1.8,
                label=trajectory_label(path), gid=PATH_GID, zorder=3)
    ends = np.array([p.points[-1] for p in paths])
    ax.scatter(ends[:, 0], ends[:, 1], c=[palette[n] for n in names], s=30, edgecolors="black",
               linewidths=0.6, zorder=4, gid=END_GID)
    starts = np.unique(np.array([p.points[0] for p in paths]), axis=0)
    ax.scatter(starts[:, 0], starts[:, 1], marker="o", s=45, c="black", zorder=5, label="start")
    if function.minima:
        minima = np.array(function.minima)
        ax.scatter(minima[:, 0], minima[:, 1], marker="*", s=180, c="gold", edgecolors="black",
                   linewidths=0.8, zorder=5, label="minimum")
    (x0, x1), (y0, y1) = function.bounds
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title or f"{function.name}: {function.formula}", fontsize=10)
    ax.legend(loc="best", fontsize=8, framealpha=0.85)
    return fig


def frame_indices(steps: int, frames: int) -> np.ndarray:
    """Path lengths shown by the ``frames`` frames of an animation of ``steps`` steps, ascending, unique.

    Always starts at 1 point (the start) and ends at ``steps + 1`` (the whole path).
    """
    require_positive("frames", frames, integer=True)
    return np.unique(np.linspace(1, steps + 1, max(frames, 2)).round().astype(int))


def animate_trajectories(function: TestFunction, paths: Sequence[Trajectory], path: str | os.PathLike[str], *,
                         frames: int = 60, fps: int = 15, hold: int = 15, dpi: int = 72,
                         colors: Mapping[str, str] | None = None, title: str | None = None) -> Path:
    """Write an animated GIF of the paths growing over the contour plot of :func:`plot_trajectories`.

    The contours, legend and axes are drawn once; each frame restores that background and
    draws only the path prefixes and their end dots (matplotlib's blitting technique), so a
    frame costs milliseconds instead of a full redraw. All frames share one adaptive
    256-colour palette (taken from the last frame, which contains every colour) and are not
    dithered, which keeps the file small. Pillow (a matplotlib dependency) writes the GIF.

    Args:
        function, paths, colors, title: as for :func:`plot_trajectories`.
        path: destination, must end in ``.gif``; written atomically (temporary file in the
            same folder, then :func:`os.replace`, see :func:`optbench.core.fileio.atomic_writer`).
        frames: frames showing growing paths (evenly spaced in steps, see :func:`frame_indices`).
        fps: frames per second.
        hold: extra copies of the last frame, so a looping GIF pauses on the whole picture.
        dpi: resolution (the default 7 x 5.6 in figure at 72 dpi is 504 x 403 pixels).

    Returns:
        the destination path.

    Raises:
        ConfigError: a suffix other than ``.gif``, bad ``frames``/``fps``/``hold``, or the
            errors of :func:`plot_trajectories`. OSError: the folder cannot be written.
    """
    from PIL import Image

    target = Path(path)
    if target.suffix.lower() != ".gif":
        raise ConfigError("animation path suffix", target.suffix or target.name, ".gif")
    require_positive("fps", fps, integer=True)
    require_positive("dpi", dpi, integer=True)
    if not isinstance(hold, int) or hold < 0:
        raise ConfigError("hold", hold, "an integer >= 0")
    fig = plot_trajectories(function, paths, colors=colors, title=title)
    fig.set_dpi(dpi)
    ax = fig.axes[0]
    canvas = fig.canvas
    lines = [line for line in ax.get_lines() if line.get_gid() == PATH_GID]
    (ends,) = [c for c in ax.collections if c.get_gid() == END_GID]
    moving = [*lines, ends]
    for artist in moving:
        artist.set_visible(False)
    canvas.draw()
    fig.set_layout_engine("none")  # keep the drawn layout fixed for the frames
    background = canvas.copy_from_bbox(fig.bbox)
    for artist in moving:
        artist.set_visible(True)
    legend = ax.get_legend()
    images = []
    for count in frame_indices(max(len(p.points) for p in paths) - 1, frames):
        canvas.restore_region(background)
        for line, p in zip(lines, paths, strict=True):
            line.set_data(p.points[:count, 0], p.points[:count, 1])
            ax.draw_artist(line)
        ends.set_offsets(np.array([p.points[min(count, len(p.points)) - 1] for p in paths]))
        ax.draw_artist(ends)
        if legend is not None:
            ax.draw_artist(legend)
        images.append(Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3].copy()))
    palette = images[-1].quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    frames_p = [im.quantize(palette=palette, dither=Image.Dither.NONE) for im in images]
    frames_p += [frames_p[-1]] * hold
    with atomic_writer(target) as stream:
        frames_p[0].save(stream, format="GIF", save_all=True, append_images=frames_p[1:],
                         duration=round(1000 / fps), loop=0)
    return target
