"""Figures of the report sections beyond learning curves: lr sensitivity, performance profiles,
the applied lr schedule, distributed throughput and scaling, a metric against communication, an
architecture search's trials.

Each function takes data from :mod:`optbench.analysis.report_data` and returns a new
:class:`matplotlib.figure.Figure` on an Agg canvas (object-oriented API: no pyplot, no global
style, nothing shown). Each axis holds exactly one ``Line2D`` per label it draws (plus, where
stated, one reference line), so tests can count them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from optbench.analysis.communication import CommunicationCurve
from optbench.analysis.report_data import AppliedSchedule, DistributedData, LrCurve, Profiles
from optbench.analysis.search_trials import ArchitectureSearch
from optbench.report.plots import label_colors


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False).ravel().tolist()
    return fig, axes


def _colors(labels, colors: Mapping[str, str] | None) -> dict[str, str]:
    palette = label_colors(labels) if colors is None else dict(colors)
    fallback = label_colors(labels)
    return {label: palette.get(label, fallback[label]) for label in labels}


def plot_lr_sensitivity(curves: Mapping[str, LrCurve], *, colors: Mapping[str, str] | None = None,
                        ylabel: str = "final metric", title: str | None = None) -> Figure:
    """Final metric versus learning rate (log x axis): a line per optimizer (mean over runs) with a
    min-max band; lrs where every run failed or diverged are marked with an ``x`` at the bottom.

    Args:
        curves: from :func:`optbench.analysis.report_data.lr_sensitivity`.
        colors: optimizer -> colour (default :func:`label_colors`).
    """
    fig, (ax,) = _figure(6.0, 3.8)
    palette = _colors(list(curves), colors)
    for name, c in curves.items():
        ax.plot(c.lr, c.mean, color=palette[name], marker="o", markersize=4, linewidth=1.6, label=name)
        ok = np.isfinite(c.mean)
        ax.fill_between(c.lr[ok], c.low[ok], c.high[ok], color=palette[name], alpha=0.18, linewidth=0)
        lost = c.lr[(c.n == 0) & (c.n_lost > 0)]
        if lost.size:
            ax.scatter(lost, np.zeros_like(lost), marker="x", color=palette[name], transform=ax.get_xaxis_transform())
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(frameon=False, fontsize="small")
    if title:
        ax.set_title(title)
    return fig


def plot_profiles(profiles: Profiles, *, colors: Mapping[str, str] | None = None) -> Figure:
    """Performance profiles: ``rho_s(tau)`` as a step line per label, the integrated score in the
    legend (Dolan & Moré 2002; Dahl et al. 2023)."""
    fig, (ax,) = _figure(6.0, 3.8)
    palette = _colors(list(profiles.labels), colors)
    for label in profiles.labels:
        ax.step(profiles.taus, profiles.rho[label], where="post", color=palette[label], linewidth=1.6,
                label=f"{label} (score {profiles.score[label]:.3f})")
    ax.set_xlim(1.0, float(profiles.taus[-1]))
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("tau (performance ratio to the best on the task)")
    ax.set_ylabel("fraction of tasks within tau")
    ax.set_title(f"performance profiles on {profiles.quantity}, {len(profiles.tasks)} tasks")
    ax.grid(True, alpha=0.3)
    ax.legend(frameon=False, fontsize="small", loc="lower right")
    return fig


def plot_schedules(schedules: Mapping[str, AppliedSchedule], *,
                   colors: Mapping[str, str] | None = None) -> Figure:
    """The lr applied per recipe: the reconstructed per-step schedule as a line, the values recorded
    at the end of each epoch as markers (one ``Line2D`` per label each; the markers carry no
    line). A log y axis when the lr spans more than a factor of 20."""
    fig, (ax,) = _figure(6.0, 3.6)
    palette = _colors(list(schedules), colors)
    values = []
    for label, s in schedules.items():
        if s.steps.size:
            ax.plot(s.steps, s.lr, color=palette[label], linewidth=1.4, label=f"{label} ({s.schedule})", alpha=0.9)
            values.append(s.lr)
        ax.plot(s.epoch_steps, s.epoch_lr, linestyle="none", marker="o", markersize=4, color=palette[label],
                label=None if s.steps.size else f"{label} ({s.schedule}, recorded)")
        values.append(s.epoch_lr)
    finite = np.concatenate(values) if values else np.empty(0)
    finite = finite[np.isfinite(finite) & (finite > 0)]
    if finite.size and finite.max() / finite.min() > 20:
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.set_title("learning rate applied (line: schedule per step; dots: recorded at epoch end)", fontsize="medium")
    ax.grid(True, alpha=0.3)
    if schedules:
        ax.legend(frameon=False, fontsize="small")
    return fig


def plot_distributed(data: DistributedData, predicted: Mapping[tuple[str, int], float] | None = None) -> Figure:
    """Two panels: samples/s versus workers per mode, and scaling efficiency versus workers per mode
    with the ideal (1.0) as a dashed reference line; ``predicted`` (``{(mode, workers): samples/s}``,
    the cost model's) drawn as hollow markers on dotted lines beside the measurements."""
    fig, (left, right) = _figure(10.0, 3.8, ncols=2)
    modes = sorted({p.mode for p in data.points})
    palette = label_colors(modes)
    predicted = predicted or {}
    for mode in modes:
        pts = sorted((p for p in data.points if p.mode == mode), key=lambda p: p.nproc)
        n = [p.nproc for p in pts]
        left.plot(n, [p.samples_per_second for p in pts], marker="o", color=palette[mode], label=mode)
        right.plot(n, [data.efficiency.get((mode, p.nproc), math.nan) for p in pts], marker="o",
                   color=palette[mode], label=mode)
        model = [p for p in pts if (mode, p.nproc) in predicted]
        if model:
            start = [p for p in pts if p.nproc == 1][:1]  # the measurement the prediction starts from
            xs = [p.nproc for p in (*start, *model)]
            ys = [p.samples_per_second for p in start] + [predicted[(mode, p.nproc)] for p in model]
            left.plot(xs, ys, linestyle=":", marker="o", mfc="white", color=palette[mode], label=f"{mode} (model)")
            # the same baseline as the measured efficiency: scale it by predicted / measured
            right.plot([p.nproc for p in model],
                       [data.efficiency.get((mode, p.nproc), math.nan) * predicted[(mode, p.nproc)]
                        / p.samples_per_second for p in model],
                       linestyle="none", marker="o", mfc="white", color=palette[mode])
    right.axhline(1.0, color="0.4", linestyle="--", linewidth=1.0)
    left.set_xlabel("workers")
    left.set_ylabel("samples/s (all workers)")
    left.set_title("throughput")
    right.set_xlabel("workers")
    right.set_ylabel("scaling efficiency")
    right.set_title("efficiency vs ideal (dashed)")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        ax.legend(frameon=False, fontsize="small")
    return fig


def plot_communication(curves: Sequence[CommunicationCurve], metric: str) -> Figure:
    """Two panels, a line per (mode, workers): ``metric`` after each epoch against the cumulative bytes one
    worker communicated (log x) and against cumulative training seconds; ``curves`` from
    :func:`optbench.analysis.communication.communication_curves`."""
    fig, (left, right) = _figure(10.0, 3.8, ncols=2)
    labels = [f"{c.mode} x{c.nproc}" for c in curves]
    palette = label_colors(labels)
    for label, curve in zip(labels, curves, strict=True):
        left.plot(curve.bytes, curve.values, marker="o", color=palette[label], label=label)
        right.plot(curve.seconds, curve.values, marker="o", color=palette[label], label=label)
    left.set_xscale("log")
    left.set_xlabel("bytes communicated per worker")
    left.set_title(f"{metric} vs communication")
    right.set_xlabel("training seconds")
    right.set_title(f"{metric} vs wall clock")
    for ax in (left, right):
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
        ax.legend(frameon=False, fontsize="small")
    return fig


def plot_architecture_search(search: ArchitectureSearch) -> Figure:
    """Three panels: every finished trial's metric against its trainable parameters (log x; the Pareto
    front ringed and joined), and the best so far against the trial number and against cumulative
    seconds; with retrained trials, a fourth: each one's retrained mean validation metric (over seeds,
    with its standard deviation) against its search-time value, Kendall's tau in the title; ``search``
    from :func:`optbench.analysis.search_trials.architecture_searches`."""
    fig, axes = _figure(17.0 if search.retrained else 13.0, 3.8, ncols=4 if search.retrained else 3)
    plane, by_trial, by_time = axes[:3]
    done = [(p, f) for p, f in zip(search.points, search.front, strict=True)
            if math.isfinite(p.value) and p.parameters is not None]
    plane.plot([p.parameters for p, _ in done], [p.value for p, _ in done], linestyle="none", marker="o",
               alpha=0.6, label="trials")
    front = sorted((p for p, f in done if f), key=lambda p: p.parameters)
    plane.plot([p.parameters for p in front], [p.value for p in front], marker="o", mfc="none", markersize=10,
               color="black", label="Pareto front")
    plane.set_xscale("log")
    plane.xaxis.set_minor_formatter(NullFormatter())  # the decade labels only: minor ones collide
    plane.set_xlabel("trainable parameters")
    plane.set_title(f"{search.metric} vs size")
    numbers = [p.number for p in search.points]
    by_trial.plot(numbers, search.best_so_far, drawstyle="steps-post", label="best so far")
    by_trial.set_xlabel("trial")
    by_trial.set_title("search progress")
    by_time.plot(search.cumulative_seconds, search.best_so_far, drawstyle="steps-post", label="best so far")
    by_time.set_xlabel("seconds (sum of trials)")
    by_time.set_title("search cost")
    if search.retrained:
        fidelity = axes[3]
        rows = search.retrained
        fidelity.errorbar([r.search_value for r in rows], [r.valid.mean for r in rows],
                          yerr=[0.0 if math.isnan(r.valid.std) else r.valid.std for r in rows], linestyle="none",
                          marker="o", capsize=3, label="retrained trials")
        for r in rows:
            fidelity.annotate(str(r.number), (r.search_value, r.valid.mean), textcoords="offset points",
                              xytext=(4, 4), fontsize="small")
        fidelity.set_xlabel(f"{search.metric} in the search")
        tau = search.tau
        fidelity.set_title("retrained vs search" + ("" if math.isnan(tau.tau) else f" (Kendall tau {tau.tau:.2f})"))
    for ax in axes:
        ax.set_ylabel(search.metric if ax is not axes[-1] or not search.retrained else f"retrained {search.metric}")
        ax.grid(True, alpha=0.3)
        ax.legend(frameon=False, fontsize="small")
    return fig
