"""Learning curves aggregated over seeds: per label and epoch, a mean and a band.

Which runs count follows :mod:`optbench.analysis.summary`: finished and diverged runs
contribute every recorded epoch; failed runs are left out. A diverged run stops
contributing after its last recorded epoch, so later points average over fewer seeds
(:attr:`CurveBand.n` says how many) and favour the runs that survived.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from optbench.core.errors import ConfigError
from optbench.core.spec import RunResult, RunStatus

X_AXES = ("epoch", "step", "seconds")
BANDS = ("minmax", "std")


@dataclass(frozen=True)
class CurveBand:
    """One label's curve of a metric over seeds.

    All arrays have shape ``(T,)``, one entry per epoch at which at least one seed recorded
    the metric, in increasing epoch order.

    Attributes:
        label: display name (``Recipe.label``).
        key: the metric key, e.g. ``"test_loss"``.
        x_kind: ``"epoch"``, ``"step"`` or ``"seconds"``.
        epochs: the 1-based epoch numbers (int64).
        x: the x coordinates: the epoch numbers, the mean optimizer step count, or the mean
            cumulative wall time in seconds (training + evaluation) at the end of each epoch.
        mean: mean of the metric over the seeds with a value at that epoch.
        low / high: the band; see :func:`curve_bands`.
        n: number of seeds contributing at each point (int64).
    """

    label: str
    key: str
    x_kind: str
    epochs: np.ndarray
    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: np.ndarray


def _points(run: RunResult, key: str) -> list[tuple[int, float, float, float]]:
    """(epoch, step, cumulative seconds, value) of each recorded epoch with a finite value."""
    out: list[tuple[int, float, float, float]] = []
    seconds = 0.0
    for record in run.epochs:
        seconds += record.train_seconds + record.eval_seconds
        value = record.metrics.get(key, math.nan)
        if math.isfinite(value):
            out.append((record.epoch, float(record.step), seconds, float(value)))
    return out


def _band(label: str, key: str, x: str, band: str,
          by_epoch: dict[int, list[tuple[float, float, float]]]) -> CurveBand:
    epochs = sorted(by_epoch)
    size = len(epochs)
    xs, mean, low, high, n = (np.empty(size) for _ in range(5))
    for i, epoch in enumerate(epochs):
        columns = zip(*by_epoch[epoch], strict=True)
        steps, seconds, values = (np.asarray(c, dtype=np.float64) for c in columns)
        xs[i] = {"epoch": float(epoch), "step": steps.mean(), "seconds": seconds.mean()}[x]
        mean[i] = values.mean()
        n[i] = values.size
        if band == "minmax":
            low[i], high[i] = values.min(), values.max()
        elif values.size < 2:
            low[i] = high[i] = mean[i]
        else:
            std = values.std(ddof=1)
            low[i], high[i] = mean[i] - std, mean[i] + std
    return CurveBand(label, key, x, np.asarray(epochs, dtype=np.int64), xs, mean, low, high,
                     n.astype(np.int64))


def curve_bands(results: Sequence[RunResult], key: str, x: str = "epoch",
                band: str = "minmax") -> dict[str, CurveBand]:
    """Per label, the mean over seeds of metric ``key`` at each epoch, with a band.

    Args:
        results: runs of a single task; grouped by ``recipe.label``.
        key: metric key, e.g. ``"train_loss"``; non-finite values are treated as missing.
        x: ``"epoch"`` (x = epoch number), ``"step"`` (mean optimizer steps) or
            ``"seconds"`` (mean over seeds of cumulative train + eval seconds). Seeds are
            always aligned by epoch, then x is averaged, so a point is "epoch e, reached on
            average after x seconds".
        band: ``"minmax"`` (default): the lowest and highest seed. With the 3-5 seeds a
            benchmark affords, this shows the seeds actually observed, assumes no
            distribution, and stays inside the metric's range (an accuracy band never
            passes 1), whereas a standard deviation from 3 values is itself very noisy.
            ``"std"``: mean ± sample std (``ddof=1``), collapsing to the mean where only one
            seed has a value.

    Returns:
        ``{label: CurveBand}`` in sorted label order, for labels with at least one value
        (a label whose runs all failed is absent).

    Raises:
        ConfigError: unknown ``x`` or ``band``; runs of several tasks; ``key`` recorded by
            none of the counted runs (the message lists the recorded keys).
    """
    if x not in X_AXES:
        raise ConfigError("x", x, X_AXES)
    if band not in BANDS:
        raise ConfigError("band", band, BANDS)
    tasks = sorted({r.task for r in results})
    if len(tasks) > 1:
        raise ConfigError("results task", ", ".join(tasks), "runs of a single task (filter by task first)")
    # failed runs have no trustworthy curve; pruned ones stop where a tuner chose (listed as problems)
    counted = [r for r in results if r.status not in (RunStatus.FAILED, RunStatus.PRUNED)]
    groups: dict[str, dict[int, list[tuple[float, float, float]]]] = {}
    for run in counted:
        for epoch, step, seconds, value in _points(run, key):
            groups.setdefault(run.recipe.label, {}).setdefault(epoch, []).append((step, seconds, value))
    if not groups and any(r.epochs for r in counted):
        recorded = sorted({k for r in counted for e in r.epochs for k in e.metrics})
        raise ConfigError("metric key", key, recorded)
    return {label: _band(label, key, x, band, groups[label]) for label in sorted(groups)}
