"""A Flower client that trains an optbench task's model on its shard (docs/federated.md).

The client is a :class:`flwr.client.NumPyClient`: the server sends the global weights as a list of
numpy arrays, the client trains ``local_epochs`` passes over its examples and answers with its
weights, its example count (the FedAvg weight) and its mean training loss. The step is the
engine's own (:class:`optbench.engine.step.TrainStep`, docs/architecture.md "The step, and the
engines"): the task's loss and its own L2 (:func:`optbench.engine.build.build_components`), an
optimizer built by name from optbench's registry (:func:`optbench.optim.create_optimizer`), fresh
in every round (cross-device clients keep no optimizer state between rounds; Reddi et al. 2021,
Algorithm 1, clients run SGD).

FedProx (Li et al., *Federated Optimization in Heterogeneous Networks*, MLSys 2020): when the fit
instructions carry ``proximal_mu`` (flwr's ``FedProx`` strategy puts it there), the client adds
``mu / 2 * ||w - w_global||^2`` over its trainable parameters to every step's objective
(:class:`ProximalTerm`, a component ``penalty``), ``w_global`` being the weights it received.

The weights exchanged are the model's floating-point ``state_dict`` entries in order (parameters
and floating buffers such as batch-norm statistics); integer buffers (``num_batches_tracked``)
stay local.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from flwr.client import NumPyClient
from torch import Tensor, nn

from optbench.core.component import Component
from optbench.core.spec import Recipe, Split, Task
from optbench.engine.build import build_components
from optbench.engine.data import shuffled_batches
from optbench.engine.loop import evaluate
from optbench.engine.metrics import TrainMetrics
from optbench.engine.step import TrainStep
from optbench.optim import capabilities, create_optimizer


def exchanged_keys(model: nn.Module) -> list[str]:
    """The ``state_dict`` keys whose tensors travel between server and clients (floating ones)."""
    return [k for k, v in model.state_dict().items() if torch.is_floating_point(v)]


def get_weights(model: nn.Module) -> list[np.ndarray]:
    """The model's exchanged tensors as numpy arrays (copies, on the CPU), in ``state_dict`` order."""
    state = model.state_dict()
    return [state[k].detach().cpu().numpy().copy() for k in exchanged_keys(model)]


def set_weights(model: nn.Module, weights: list[np.ndarray]) -> None:
    """Load ``weights`` (as :func:`get_weights` orders them) into ``model`` in place.

    Raises:
        ValueError: when the number or the shapes of the arrays do not match the model.
    """
    keys = exchanged_keys(model)
    if len(keys) != len(weights):
        raise ValueError(f"got {len(weights)} arrays for {len(keys)} tensors of the model")
    state = model.state_dict()
    with torch.no_grad():
        for key, array in zip(keys, weights, strict=True):
            target = state[key]
            if tuple(array.shape) != tuple(target.shape):
                raise ValueError(f"{key}: got shape {tuple(array.shape)}, the model has {tuple(target.shape)}")
            target.copy_(torch.as_tensor(array, dtype=target.dtype))


class ProximalTerm(Component):
    """FedProx's proximal term ``mu / 2 * sum ||w - w_anchor||^2`` over the trainable parameters
    (Li et al. 2020, eq. 2), ``w_anchor`` the global weights at the start of the round.

    Args:
        model: the client's model; its current weights become the anchor.
        mu: the proximal strength (>= 0; 0 adds exactly nothing to the gradient).
    """

    name = "fedprox_proximal"
    engines = ("single",)

    def __init__(self, model: nn.Module, mu: float) -> None:
        self.mu = float(mu)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.anchor = [p.detach().clone() for p in self.params]

    def penalty(self) -> Tensor:
        total = sum(((p - a) ** 2).sum() for p, a in zip(self.params, self.anchor, strict=True))
        return 0.5 * self.mu * total  # type: ignore[return-value]


class TaskClient(NumPyClient):
    """One federated client holding ``train`` (its shard) of ``task``.

    Args:
        task: the optbench task (loss, metrics, its own L2).
        train: the client's examples.
        model: the client's module (its weights are replaced by the server's in every round).
        optimizer: a name of optbench's optimizer registry (``"sgd"``, ``"adam"``, ...).
        lr: the local learning rate (> 0).
        batch_size: examples per local step.
        local_epochs: passes over ``train`` per round unless the fit config sets ``local_epochs``.
        generator: the client's data-order random source (kept across rounds).
        device: where the client trains.

    Raises:
        UnknownNameError / ConfigError: from :meth:`fit` for an unknown optimizer or bad hyperparameter.
    """

    def __init__(self, task: Task, train: Split, model: nn.Module, *, optimizer: str, lr: float,
                 batch_size: int, local_epochs: int, generator: torch.Generator,
                 device: torch.device | None = None) -> None:
        self.task, self.train, self.model = task, train, model
        self.optimizer, self.lr, self.batch_size, self.local_epochs = optimizer, lr, batch_size, local_epochs
        self.generator = generator
        self.device = device or torch.device("cpu")

    def get_parameters(self, config: Mapping[str, Any]) -> list[np.ndarray]:
        """The client's current weights (:func:`get_weights`)."""
        return get_weights(self.model)

    def _step(self, mu: float | None) -> TrainStep:
        recipe = Recipe(optimizer=self.optimizer, hyperparams={"lr": self.lr}, batch_size=self.batch_size)
        components = build_components(self.task, recipe)
        if mu is not None:
            components.append(ProximalTerm(self.model, mu))
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt = create_optimizer(self.optimizer, params, device=self.device, lr=self.lr)
        return TrainStep(task=self.task, model=self.model, forward=self.model, optimizer=opt, components=components,
                         precision="fp32", device=self.device, caps=capabilities(self.optimizer),
                         batch_size=self.batch_size)

    def fit(self, parameters: list[np.ndarray], config: Mapping[str, Any]
            ) -> tuple[list[np.ndarray], int, dict[str, float]]:
        """Train from the global ``parameters`` for ``local_epochs`` passes over the shard.

        ``config`` may hold ``local_epochs`` (int) and ``proximal_mu`` (FedProx, float >= 0).

        Returns:
            ``(weights, number of local examples, {"train_loss": mean task loss over the local
            steps, "steps": optimizer steps})``.

        Raises:
            optbench.engine.metrics.Diverged: the local loss became NaN or infinite.
        """
        set_weights(self.model, parameters)
        epochs = int(config.get("local_epochs", self.local_epochs))
        mu = float(config["proximal_mu"]) if "proximal_mu" in config else None
        step = self._step(mu)
        metrics = TrainMetrics(self.task, self.device, group=32, loss_is_task_loss=step.loss_is_task_loss)
        self.model.train()
        steps = 0
        for _ in range(epochs):
            for x, y in shuffled_batches(self.train, self.batch_size, self.generator):
                step(x, y, metrics)
                steps += 1
        return get_weights(self.model), len(self.train), {"train_loss": metrics.result()["train_loss"],
                                                          "steps": steps}

    def evaluate(self, parameters: list[np.ndarray], config: Mapping[str, Any]
                 ) -> tuple[float, int, dict[str, float]]:
        """The task's metrics of ``parameters`` on the client's own examples.

        Returns:
            ``(mean loss, number of examples, {metric: value})`` (e.g. ``accuracy``), as
            :func:`optbench.engine.loop.evaluate` measures them.
        """
        set_weights(self.model, parameters)
        values = evaluate(self.model, self.task, self.train, "client")
        metrics = {k.removeprefix("client_"): float(v) for k, v in values.items()}
        return metrics["loss"], len(self.train), metrics


__all__ = ["ProximalTerm", "TaskClient", "exchanged_keys", "get_weights", "set_weights"]
