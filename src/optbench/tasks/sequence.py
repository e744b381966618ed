"""MNIST-1D sequence tasks (Greydanus 2020, "Scaling down deep learning", arXiv:2011.14439):
logistic regression and a GRU over the 40-step signal. The paper's baselines on 4,000 training
examples: logistic regression 32%, MLP 68%, CNN 94%, GRU 91% test accuracy.
"""

from __future__ import annotations

from torch import Tensor, nn

from optbench.core.spec import Task
from optbench.tasks.classification import array_dataset_loader, classification_task
from optbench.tasks.models import logreg, scaled


class GRUClassifier(nn.Module):
    """A GRU reading a sequence one scalar per step; its last hidden state -> linear -> logits.

    Input ``(B, L)`` -> ``(B, L, 1)`` -> GRU(1, hidden) -> ``h_L`` ``(B, hidden)`` -> ``(B, classes)``.
    Parameters: ``3 * (hidden * (1 + hidden) + 2 * hidden) + (hidden + 1) * classes``
    (13,514 for hidden 64, 10 classes). PyTorch's default initialization.
    """

    def __init__(self, hidden: int = 64, classes: int = 10) -> None:
        super().__init__()
        self.gru = nn.GRU(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: Tensor) -> Tensor:
        _, h = self.gru(x.unsqueeze(-1))
        return self.head(h[-1])


def mnist1d_logreg() -> Task:
    """MNIST-1D, multinomial logistic regression 40 -> 10 (zero initialization, as DeepOBS's logreg).

    410 parameters. Loss: cross-entropy (nats); metrics: loss (minimize), accuracy (maximize).
    Data: 4,000 training (500 carved for validation) and 1,000 test sequences, generated locally.
    Target: validation accuracy 0.30 (the paper's logistic regression: 32% test). Working recipe:
    adam, lr 1e-2, batch 100, 10 epochs (seed 0: 0.30 after epoch 2, 0.32 after epoch 10; checked in the tests).
    Cost: ~0.02 s per epoch on 2 CPU threads.
    """
    return classification_task(
        "mnist1d_logreg", mnist1d_logreg.__doc__.splitlines()[0], lambda: logreg(40, 10),
        array_dataset_loader("mnist1d", 1.0, add_channel=False), target_accuracy=0.30, valid_size=500,
        recipe={"optimizer": "adam", "hyperparams": {"lr": 1e-2}, "batch_size": 100, "epochs": 10})


def mnist1d_gru(width: float = 1.0) -> Task:
    """MNIST-1D, a GRU (hidden 64) over the 40 steps, linear 64 -> 10 on the last hidden state.

    13,514 parameters. Loss: cross-entropy; metrics: loss (minimize), accuracy (maximize). Target:
    validation accuracy 0.80. Option: ``width`` x the hidden size. Working recipe: adam, lr 1e-2,
    batch 100, 10 epochs (seed 0: 0.77 after epoch 7, 0.89 after epoch 8, 0.93 after epoch 10; checked
    in the tests). Cost: ~0.5 s per epoch on 2 idle CPU threads.
    """
    from optbench.core.errors import require_positive

    require_positive("width", width)
    hidden = scaled(width, (64,))[0]
    return classification_task(
        "mnist1d_gru", mnist1d_gru.__doc__.splitlines()[0], lambda: GRUClassifier(hidden),
        array_dataset_loader("mnist1d", 1.0, add_channel=False), target_accuracy=0.80, valid_size=500,
        recipe={"optimizer": "adam", "hyperparams": {"lr": 1e-2}, "batch_size": 100, "epochs": 10})
