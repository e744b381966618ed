"""Continual-learning metrics of an accuracy matrix (Chaudhry et al. 2018, "Riemannian Walk for
Incremental Learning: Understanding Forgetting and Intransigence", ECCV, sec. 4, eq. 5-6; Lopez-Paz &
Ranzato 2017 for the matrix).

``a[l][j]`` is the accuracy on task ``j``'s test set after training on tasks ``0..l`` (row ``l`` = the
model after stage ``l``; entries with ``j > l`` may be NaN: never trained on). With ``T`` stages
(0-based last row ``T - 1``):

* average accuracy ``A_T = mean_{j <= T-1} a[T-1][j]`` (eq. 5: every task seen so far);
* forgetting of task ``j < T-1``: ``f_j = max_{l < T-1} a[l][j] - a[T-1][j]`` (the best accuracy it
  had at an earlier stage, minus its final one), and ``F_T = mean_{j < T-1} f_j`` (eq. 6); NaN for a
  single stage. The max runs over every earlier stage whose entry is given: entries ``l < j`` (task
  ``j`` not learned yet) count when finite, as in the paper, and are skipped when NaN (the continual
  protocol evaluates tasks ``j <= l`` only; the stages ``l >= j`` are always there).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from optbench.analysis.stats import Summary, summarize

Matrix = Sequence[Sequence[float]]


def _check(matrix: Matrix) -> int:
    """The number of stages of a square matrix with the needed entries finite.

    Raises:
        ValueError: not square, empty, or a needed entry (``j <= l``) not finite.
    """
    t = len(matrix)
    if t == 0 or any(len(row) != t for row in matrix):
        raise ValueError(f"an accuracy matrix must be square and non-empty, got rows of {[len(r) for r in matrix]}")
    for stage, row in enumerate(matrix):
        for j in range(stage + 1):
            if not math.isfinite(row[j]):
                raise ValueError(f"accuracy a[{stage}][{j}] must be finite, got {row[j]!r}")
    return t


def average_accuracy(matrix: Matrix, stage: int | None = None) -> float:
    """``A`` after ``stage`` (0-based; default the last): the mean of ``a[stage][j]`` over ``j <= stage``."""
    t = _check(matrix)
    k = t - 1 if stage is None else stage
    return sum(matrix[k][j] for j in range(k + 1)) / (k + 1)


def forgetting_per_task(matrix: Matrix, stage: int | None = None) -> list[float]:
    """``f_j = max_{l < stage} a[l][j] - a[stage][j]`` for every ``j < stage`` (default stage: the
    last), the max over the finite entries (those with ``l >= j`` always are)."""
    t = _check(matrix)
    k = t - 1 if stage is None else stage
    return [max(matrix[s][j] for s in range(k) if math.isfinite(matrix[s][j])) - matrix[k][j] for j in range(k)]


def forgetting(matrix: Matrix, stage: int | None = None) -> float:
    """``F`` after ``stage`` (default the last): the mean of :func:`forgetting_per_task`; NaN for the
    first stage (nothing to forget yet)."""
    per_task = forgetting_per_task(matrix, stage)
    return sum(per_task) / len(per_task) if per_task else math.nan


@dataclass(frozen=True)
class ContinualScores:
    """The scores of one accuracy matrix: average accuracy and forgetting after the last stage, and
    the average accuracy after every stage."""

    average_accuracy: float
    forgetting: float
    average_accuracy_per_stage: tuple[float, ...]

    @classmethod
    def of(cls, matrix: Matrix) -> ContinualScores:
        t = _check(matrix)
        return cls(average_accuracy(matrix), forgetting(matrix),
                   tuple(average_accuracy(matrix, k) for k in range(t)))


@dataclass(frozen=True)
class ContinualMethod:
    """One method (e.g. ``ewc``) of a continual study over seeds.

    Attributes:
        label: the method and, with several recipes, the recipe (``ewc adam``).
        seeds: the seeds whose whole sequence finished (a chain with a failed stage is left out).
        matrices: one accuracy matrix per seed (``a[l][j]``, NaN for ``j > l``).
        average_accuracy / forgetting: ``A_T`` and ``F_T`` over those seeds (mean, std, bootstrap CI).
        mean_matrix: the entry-wise mean of the matrices.
    """

    label: str
    seeds: tuple[int, ...]
    matrices: tuple[tuple[tuple[float, ...], ...], ...]
    average_accuracy: Summary
    forgetting: Summary
    mean_matrix: tuple[tuple[float, ...], ...]


def continual_method(label: str, seeds: Sequence[int], matrices: Sequence[Matrix]) -> ContinualMethod:
    """Summarize a method's matrices (one per seed) into ``A_T`` and ``F_T`` with CIs over seeds."""
    mats = tuple(tuple(tuple(float(v) for v in row) for row in m) for m in matrices)
    scores = [ContinualScores.of(m) for m in mats]
    t = len(mats[0]) if mats else 0
    mean = tuple(tuple(math.fsum(m[i][j] for m in mats) / len(mats) if mats and j <= i else math.nan
                       for j in range(t)) for i in range(t))
    finite = [s.forgetting for s in scores if math.isfinite(s.forgetting)]
    return ContinualMethod(label, tuple(seeds), mats, summarize([s.average_accuracy for s in scores]),
                           summarize(finite), mean)


@dataclass(frozen=True)
class ContinualResult:
    """The answer of the ``continual`` protocol: per method, average accuracy and forgetting after the
    last task, and the accuracy matrices.

    Attributes:
        tasks: the sequence, in training order (task names).
        metric: the evaluated metric (the tasks' target metric, ``accuracy``) on each test set.
        methods: one per (method, recipe).
    """

    tasks: tuple[str, ...]
    metric: str
    methods: tuple[ContinualMethod, ...]
    protocol: str = "continual"

    def table(self) -> tuple[list[str], list[list[str]], list[str]]:
        """``(headers, rows, notes)`` of the summary table (for the report's renderers)."""
        headers = ["method", "seeds", f"average {self.metric} A_T", "95% CI", "forgetting F_T", "95% CI",
                   f"A after each of {len(self.tasks)} tasks"]

        def ci(s: Summary) -> str:
            return "-" if math.isnan(s.ci_low) else f"[{s.ci_low:.4f}, {s.ci_high:.4f}]"

        rows = []
        for m in sorted(self.methods, key=lambda m: -m.average_accuracy.mean if m.average_accuracy.n else math.inf):
            stages = [average_accuracy(m.mean_matrix, k) for k in range(len(self.tasks))] if m.matrices else []
            rows.append([m.label, str(len(m.seeds)), f"{m.average_accuracy.mean:.4f}", ci(m.average_accuracy),
                         f"{m.forgetting.mean:.4f}", ci(m.forgetting), " ".join(f"{v:.3f}" for v in stages)])
        notes = [f"tasks in order: {', '.join(self.tasks)}",
                 "A_T = mean_j a[T][j], F_T = mean_{j<T} max_{l<T}(a[l][j] - a[T][j]) (Chaudhry et al. 2018, "
                 "eq. 5-6); a[l][j]: test " + self.metric + " on task j after training on tasks 0..l; "
                 "95% bootstrap CIs over seeds"]
        return headers, rows, notes


__all__ = ["ContinualMethod", "ContinualResult", "ContinualScores", "Matrix", "average_accuracy", "continual_method",
           "forgetting", "forgetting_per_task"]
