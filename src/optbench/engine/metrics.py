"""Running sums of a task's metrics over an epoch's training batches."""

from __future__ import annotations

import math

import torch

from optbench.core.spec import Task


class Diverged(Exception):
    """The training loss became NaN or infinite."""


class TrainMetrics:
    """Sums of a task's metrics over one epoch's training batches, computed in groups.

    Per step this only keeps references to the detached loss and output (no kernel launch);
    every ``group`` steps (or once ``max_elements`` output values are held) the group is
    concatenated and each metric is computed once, so a tiny model's step is not slowed by
    several small metric kernels. Sums are float64 and exact per group.

    The same object serves the single-process loop and the distributed modes: :meth:`vector`
    gives the raw sums and the example count as one float64 vector (to all-reduce, or to send in a
    parameter-server header), and :meth:`averages` turns such a vector, summed over workers, into
    the epoch's averages.

    Args:
        task: gives the metrics and ``count``.
        device: where the sums live.
        group: batches per metric computation; also the divergence check interval.
        loss_is_task_loss: the loss passed to :meth:`add` is the task's loss (mean), so its
            sum is ``mean * count``; when False (label smoothing, say) the task's ``loss``
            metric is computed from the outputs instead, so that ``train_loss`` is always the
            task's loss, comparable across recipes.
        max_elements: output values held before a group is computed early (bounds memory).
        check_finite: raise :class:`Diverged` when a group's loss is not finite (one host sync per
            group). False in the distributed modes, whose ranks must not stop on their own: they
            read the non-finite ``train_loss`` of the averages instead.
    """

    def __init__(self, task: Task, device: torch.device, group: int, *, loss_is_task_loss: bool = True,
                 max_elements: int = 1 << 22, check_finite: bool = True) -> None:
        self.task = task
        self.device = device
        self.loss_is_task_loss = loss_is_task_loss
        self.check_finite = check_finite
        self.from_outputs = [m for m in task.metrics if m.name != "loss" or not loss_is_task_loss]
        self.sums = {m.name: torch.zeros((), dtype=torch.float64, device=device) for m in task.metrics}
        self.group, self.max_elements = group, max_elements
        self.losses: list[torch.Tensor] = []
        self.counts: list[int] = []
        self.outputs: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.held = 0
        self.count = 0

    def add(self, loss: torch.Tensor, output: torch.Tensor, y: torch.Tensor) -> None:
        """Record one batch's mean ``loss``, ``output`` and targets ``y``; may flush and raise
        :class:`Diverged` when the loss so far is not finite."""
        self.losses.append(loss.detach())
        self.counts.append(self.task.count(y))
        if self.from_outputs:
            self.outputs.append(output.detach())
            self.targets.append(y)
            self.held += output.numel()
        if len(self.counts) >= self.group or self.held >= self.max_elements:
            self.flush()

    def flush(self) -> None:
        """Compute the held group's metric sums; raise :class:`Diverged` on a non-finite loss
        (when ``check_finite``)."""
        if not self.counts:
            return
        self.count += sum(self.counts)
        with torch.no_grad():
            weights = torch.tensor(self.counts, dtype=torch.float64, device=self.losses[0].device)
            objective = torch.stack(self.losses).double() @ weights  # mean * count per batch
            if self.loss_is_task_loss:
                self.sums["loss"] += objective
            if self.from_outputs:
                output, y = torch.cat(self.outputs).float(), torch.cat(self.targets)
                for m in self.from_outputs:
                    self.sums[m.name] += m.batch_sum(output, y).double()
        self.losses, self.counts, self.outputs, self.targets, self.held = [], [], [], [], 0
        if self.check_finite and not math.isfinite(objective.item()):  # NaN/inf stays in the sum of the group
            raise Diverged("non-finite training loss")

    def reset(self) -> None:
        """Forget every batch (held or summed): start a new epoch, or a new step of a worker."""
        for total in self.sums.values():
            total.zero_()
        self.losses, self.counts, self.outputs, self.targets, self.held = [], [], [], [], 0
        self.count = 0

    @staticmethod
    def vector_length(task: Task) -> int:
        """Length of :meth:`vector` for ``task``: one per metric plus the count."""
        return len(task.metrics) + 1

    def vector(self) -> torch.Tensor:
        """The raw sums and the example count (flushes first): float64, shape
        ``(len(task.metrics) + 1,)`` = ``[sum_metric_0, ..., sum_metric_k, count]`` in the order of
        ``task.metrics``, on ``device``. Vectors of several workers add up (all-reduce, headers)."""
        self.flush()
        count = torch.tensor([float(self.count)], dtype=torch.float64, device=self.device)
        return torch.cat([torch.stack(list(self.sums.values())), count])

    def averages(self, vector: torch.Tensor) -> dict[str, float]:
        """``{"train_<metric>": sum / count}`` (plus the task's derived metrics) from a
        :meth:`vector`, or a sum of vectors over workers; NaN when the count is 0."""
        *sums, count = vector.double().cpu().tolist()
        names = [m.name for m in self.task.metrics]
        return self.task.add_derived(
            {f"train_{name}": (total / count if count else math.nan) for name, total in zip(names, sums, strict=True)},
            "train")

    def result(self) -> dict[str, float]:
        """``{"train_<metric>": average}`` over the epoch (flushes first)."""
        return self.averages(self.vector())
