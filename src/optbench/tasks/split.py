"""Split tasks for continual learning: a base classification task's data filtered to one pair of
classes, ``pair k = {2k, 2k + 1}`` (Zenke et al. 2017; van de Ven & Tolias 2019, "Three scenarios for
continual learning"): ``split_mnist``, ``split_fmnist``, ``split_mnist1d``, ``split_digits`` with
``pair`` in 0..4 (``get_task("split_mnist[pair=1]")``: digits 2 and 3), or any range of classes
``classes="A-B"`` (``split_mnist1d[classes=0-4]``: a source task for transfer to ``[classes=5-9]``).

The model is the base task's, with one output layer over all 10 classes (a single head).
``scenario`` picks what a prediction may choose from (van de Ven & Tolias 2019, sec. 2):

* ``class`` (default, *class-incremental*): the base task's loss and metrics over all 10 logits; the
  model must also tell which pair an example comes from.
* ``task`` (*task-incremental*): loss and metrics over the pair's two logits only (the task identity
  is given, as with one head per task).

Train, validation and test examples are the base task's of the chosen classes; the validation split
is the base task's scaled by the share of classes (a fifth for a pair).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from torch import Tensor
from torch.nn import functional as F

from optbench.core.errors import ConfigError
from optbench.core.spec import Dataset, Direction, Metric, Split, Target, Task

PAIRS = 5
SCENARIOS = ("class", "task")
#: split task name -> the base task it filters.
BASES = {"split_mnist": "mnist_mlp", "split_fmnist": "fmnist_mlp", "split_mnist1d": "mnist1d_mlp",
         "split_digits": "digits_mlp"}


def pair_classes(pair: int) -> tuple[int, int]:
    """The classes of pair ``pair``: ``(2 * pair, 2 * pair + 1)``."""
    return 2 * pair, 2 * pair + 1


def parse_classes(name: str, text: str) -> tuple[int, ...]:
    """``"0-4"`` -> ``(0, 1, 2, 3, 4)``; a single class ``"3"`` is refused (nothing to classify).

    Raises:
        ConfigError: not ``A-B`` with ``0 <= A < B <= 9``.
    """
    low, sep, high = str(text).partition("-")
    if sep and low.strip().isdigit() and high.strip().isdigit() and 0 <= int(low) < int(high) < 2 * PAIRS:
        return tuple(range(int(low), int(high) + 1))
    raise ConfigError(f"{name} classes", text, f"a range A-B of classes with 0 <= A < B <= {2 * PAIRS - 1}, e.g. 0-4")


def _filter(split: Split, classes: tuple[int, ...]) -> Split:
    keep = (split.y.unsqueeze(1) == split.y.new_tensor(classes)).any(dim=1)
    return Split(split.x[keep].contiguous(), split.y[keep].contiguous())


def _pair_logits(output: Tensor, classes: tuple[int, ...]) -> Tensor:
    return output[:, list(classes)]


def _task_incremental(classes: tuple[int, ...]) -> tuple[Callable[[Tensor, Tensor], Tensor], tuple[Metric, ...]]:
    """Loss and metrics over the classes' own logits (targets ``y - first class``; contiguous classes)."""
    low = classes[0]

    def loss(output: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(_pair_logits(output, classes), y - low)

    def loss_sum(output: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(_pair_logits(output, classes), y - low, reduction="sum")

    def correct(output: Tensor, y: Tensor) -> Tensor:
        return (_pair_logits(output, classes).argmax(dim=1) == y - low).sum()

    return loss, (Metric("loss", Direction.MINIMIZE, loss_sum), Metric("accuracy", Direction.MAXIMIZE, correct))


def split_task(base_name: str, name: str, pair: int, scenario: str, classes: str = "") -> Task:
    """The task ``name``: base task ``base_name``'s data of pair ``pair``'s classes (or of the range
    ``classes``, ``"A-B"``, when given).

    Raises:
        ConfigError: ``pair`` not in 0..4, a bad ``classes`` range or an unknown ``scenario``.
    """
    from optbench.tasks import get_task

    if isinstance(pair, bool) or not isinstance(pair, int) or not 0 <= pair < PAIRS:
        raise ConfigError(f"{name} pair", pair, f"an integer in [0, {PAIRS - 1}] (pair k holds classes 2k, 2k+1)")
    if scenario not in SCENARIOS:
        raise ConfigError(f"{name} scenario", scenario, SCENARIOS)
    base = get_task(base_name)
    chosen = parse_classes(name, classes) if classes else pair_classes(pair)

    def load() -> Dataset:
        data = base.load_data()
        return Dataset(train=_filter(data.train, chosen), test=_filter(data.test, chosen))

    loss, metrics = (base.loss, base.metrics) if scenario == "class" else _task_incremental(chosen)
    return dataclasses.replace(
        base, name=name,
        description=f"{base.description.rstrip('.')}; classes {chosen[0]}-{chosen[-1]} only "
                    f"({scenario}-incremental)",
        load_data=load, loss=loss, metrics=metrics,
        valid_size=max(1, base.valid_size * len(chosen) // (2 * PAIRS)),
        target=Target("valid", "accuracy", base.target.value))


def split_mnist(pair: int = 0, scenario: str = "class", classes: str = "") -> Task:
    """Split MNIST: the digits 2k and 2k+1 of MNIST (pair k), DeepOBS's MLP with 10 outputs."""
    return split_task("mnist_mlp", "split_mnist", pair, scenario, classes)


def split_fmnist(pair: int = 0, scenario: str = "class", classes: str = "") -> Task:
    """Split Fashion-MNIST: classes 2k and 2k+1 (pair k), DeepOBS's MLP with 10 outputs."""
    return split_task("fmnist_mlp", "split_fmnist", pair, scenario, classes)


def split_mnist1d(pair: int = 0, scenario: str = "class", classes: str = "") -> Task:
    """Split MNIST-1D: classes 2k and 2k+1 (pair k), MLP 40-100-100-10. No download."""
    return split_task("mnist1d_mlp", "split_mnist1d", pair, scenario, classes)


def split_digits(pair: int = 0, scenario: str = "class", classes: str = "") -> Task:
    """Split digits (scikit-learn 8x8): digits 2k and 2k+1 (pair k), MLP 64-128-10. No download."""
    return split_task("digits_mlp", "split_digits", pair, scenario, classes)


__all__ = ["BASES", "PAIRS", "SCENARIOS", "pair_classes", "parse_classes", "split_digits", "split_fmnist",
           "split_mnist", "split_mnist1d", "split_task"]
