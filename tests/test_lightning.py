"""A user's LightningModule as a task: its training_step is the loss (one forward per step), the recipe's
optimizer replaces configure_optimizers, and a run equals the same network as a plain task."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from optbench.core.errors import ConfigError
from optbench.core.spec import Recipe, RunStatus
from optbench.engine import split_data, train
from optbench.tasks import check_task, get_task
from optbench.tasks.classification import classification_task
from optbench.tasks.lightning import LightningModel, lightning_task

CALLS = {"forward": 0}


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(40, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 10))


class DigitsModule(L.LightningModule):
    """An MLP on MNIST-1D written the Lightning way."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _net()

    def forward(self, x):
        CALLS["forward"] += 1
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return {"loss": loss}

    def configure_optimizers(self):  # never called: the recipe decides
        raise AssertionError("configure_optimizers must not be called")


def test_a_lightning_module_trains_like_the_same_network_as_a_plain_task() -> None:
    base = get_task("mnist1d_mlp")
    plain = classification_task("plain", "plain", _net, base.load_data, target_accuracy=0.9,
                                valid_size=base.valid_size, recipe={})
    wrapped = lightning_task("lit", DigitsModule, base.load_data, valid_size=base.valid_size)
    check_task(wrapped, wrapped.load_data())
    recipe = Recipe("adam", {"lr": 3e-3}, batch_size=100, epochs=2, techniques=["clip_norm:max_norm=1.0"])
    data = split_data(base.load_data(), base.valid_size, 0, 2000)
    expected = train(plain, data, recipe, seed=0)
    CALLS["forward"] = 0
    got = train(wrapped, data, recipe, seed=0)
    assert got.status is RunStatus.FINISHED, got.error
    assert got.steps == expected.steps == 40
    evaluated = 2 * sum(-(-len(s) // 256) for s in (data.valid, data.test))  # eval batches of 256, 2 epochs
    assert CALLS["forward"] == got.steps + evaluated  # one forward per step: training_step reuses it
    for a, b in zip(got.epochs, expected.epochs, strict=True):
        assert a.metrics.keys() == b.metrics.keys()
        for key in a.metrics:
            assert a.metrics[key] == pytest.approx(b.metrics[key], rel=1e-5), key


def test_manual_optimization_and_non_lightning_modules_are_refused() -> None:
    class Manual(DigitsModule):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False

    with pytest.raises(ConfigError, match="automatic_optimization"):
        LightningModel(Manual())
    with pytest.raises(ConfigError, match="a lightning.LightningModule"):
        LightningModel(nn.Linear(2, 2))
    x = torch.zeros(3, 40)
    model = LightningModel(DigitsModule())
    with pytest.raises(ConfigError, match="an output not produced by LightningModel"):
        lightning_task("lit", DigitsModule, lambda: None, valid_size=1).loss(torch.zeros(3, 10), torch.zeros(3))
    assert model(x).shape == (3, 10)
