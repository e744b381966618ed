"""TrainMetrics: grouped sums, the all-reduce vector, averages over workers, reset, divergence."""

from __future__ import annotations

import math

import pytest
import torch

from optbench.engine.metrics import Diverged, TrainMetrics
from optbench.tasks import get_task

CPU = torch.device("cpu")


def _batches(n: int = 7, size: int = 16, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 10, generator=g), torch.randint(0, 10, (size,), generator=g)) for _ in range(n)]


def _add(metrics: TrainMetrics, batches) -> None:
    for output, y in batches:
        metrics.add(metrics.task.loss(output, y), output, y)


@pytest.fixture(scope="module")
def task():
    return get_task("digits_mlp")


def test_vector_layout_and_averages_equal_result(task):
    batches = _batches()
    m = TrainMetrics(task, CPU, group=3)
    _add(m, batches)
    v = m.vector()
    names = [metric.name for metric in task.metrics]
    assert v.dtype == torch.float64 and v.shape == (TrainMetrics.vector_length(task),) == (len(names) + 1,)
    assert v[-1].item() == 7 * 16
    output, y = torch.cat([o for o, _ in batches]), torch.cat([t for _, t in batches])
    for i, metric in enumerate(task.metrics):
        assert v[i].item() == pytest.approx(metric.batch_sum(output, y).item(), rel=1e-6)
    assert m.averages(v) == m.result()
    assert m.result()["train_loss"] == pytest.approx(task.loss(output, y).item(), rel=1e-6)


def test_vectors_of_workers_add_up_to_one_process(task):
    """What ddp's all-reduce and the parameter server's headers do: sums of per-worker vectors."""
    batches = _batches(8)
    whole = TrainMetrics(task, CPU, group=32)
    _add(whole, batches)
    workers = [TrainMetrics(task, CPU, group=1) for _ in range(2)]
    for w, m in enumerate(workers):
        _add(m, batches[w::2])
    total = workers[0].vector() + workers[1].vector()
    for key, value in whole.result().items():
        assert workers[0].averages(total)[key] == pytest.approx(value, rel=1e-12), key


def test_reset_starts_over(task):
    a, b = TrainMetrics(task, CPU, group=2), TrainMetrics(task, CPU, group=2)
    _add(a, _batches(5, seed=1))
    a.add(torch.tensor(1.0), torch.zeros(16, 10), torch.zeros(16, dtype=torch.long))  # held, not flushed
    a.reset()
    _add(a, _batches(3, seed=2))
    _add(b, _batches(3, seed=2))
    assert torch.equal(a.vector(), b.vector()) and a.result() == b.result()
    assert math.isnan(TrainMetrics(task, CPU, group=1).averages(torch.zeros(len(task.metrics) + 1))["train_loss"])


def test_divergence_raises_unless_disabled(task):
    out, y = torch.zeros(4, 10), torch.zeros(4, dtype=torch.long)
    checked = TrainMetrics(task, CPU, group=1)
    with pytest.raises(Diverged):
        checked.add(torch.tensor(float("nan")), out, y)
    quiet = TrainMetrics(task, CPU, group=1, check_finite=False)
    quiet.add(torch.tensor(float("inf")), out, y)
    assert math.isinf(quiet.result()["train_loss"])
