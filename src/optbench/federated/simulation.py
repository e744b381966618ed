"""Federated rounds in one process, driven through Flower's own strategy objects (docs/federated.md).

Why not ``flwr.simulation.run_simulation``: Flower's simulation engine runs clients as Ray actors
(the ``flwr[simulation]`` extra pins ``ray``, several hundred MB); on a 2-core machine each round
pays actor scheduling and object-store serialization larger than the local training of a small
model, and Ray's workers make the run order (and so floating-point sums) depend on timing.
Instead :func:`run_federated` does what Flower's server does in a round (``Server.fit_round``),
sequentially and with Flower's own objects: ``strategy.configure_fit`` samples clients from a
``ClientManager`` and builds their ``FitIns``; each client is a :class:`flwr.client.NumPyClient`
(:class:`~optbench.federated.client.TaskClient`) reached through an in-process ``ClientProxy`` and
Flower's ``NumPyClient.to_client()`` wrapper, which converts ``Parameters`` <-> numpy arrays and
builds the ``FitRes``; ``strategy.aggregate_fit`` returns the new global ``Parameters``. The same
client and strategy deploy across machines with Flower's ``ClientApp``/``ServerApp``.

Seeds: one ``seed`` fixes the validation split (:func:`optbench.engine.data.split_data`), the
client shards (:mod:`~optbench.federated.partition`), the global model's initialization (under
``torch.manual_seed(seed)``, in :func:`torch.random.fork_rng`), each client's data order
(client ``k``: ``seed + 1_000_003 * k``) and the client sampling (:class:`SeededClientManager`).
One client holding all data with FedAvg therefore trains exactly as
:func:`optbench.engine.loop.train` does with the same seed (tests/test_federated.py).
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from flwr.common import FitIns, FitRes, Parameters, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.client_manager import SimpleClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.criterion import Criterion

from optbench.core.errors import ConfigError
from optbench.core.spec import Dataset, Task
from optbench.engine.data import split_data
from optbench.engine.loop import evaluate
from optbench.engine.metrics import Diverged
from optbench.federated.client import TaskClient, get_weights, set_weights
from optbench.federated.partition import SCHEMES, label_counts, partition
from optbench.federated.strategies import (
    DEFAULT_MU,
    DEFAULT_SERVER_LR,
    DEFAULT_TAU,
    STRATEGIES,
    StrategySettings,
    make_strategy,
)
from optbench.optim import capabilities

#: Offset between the data-order seeds of consecutive clients (client 0 uses the run's seed).
CLIENT_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class FederatedConfig:
    """One federated experiment's settings (the ``optbench federated`` options).

    Attributes:
        strategy: a name of :data:`optbench.federated.strategies.STRATEGIES`.
        clients: number of clients the training split is divided among.
        fraction: fraction of clients sampled per round, in (0, 1] (at least one client).
        rounds: communication rounds.
        local_epochs: passes over its shard each sampled client makes per round.
        partition: ``"iid"`` or ``"dirichlet"``.
        alpha: the Dirichlet concentration (``partition="dirichlet"``).
        optimizer: the clients' optimizer, a name of optbench's registry.
        lr: the clients' learning rate.
        batch_size: examples per local step.
        mu: FedProx's proximal strength.
        server_lr: ``eta`` of FedAdagrad/FedAdam/FedYogi.
        tau: ``tau`` of FedAdagrad/FedAdam/FedYogi.
        train_size: training examples kept after the validation carve-out (a seeded subset,
            :func:`optbench.engine.data.split_data`), divided among the clients; None: all.
    """

    strategy: str = "fedavg"
    clients: int = 10
    fraction: float = 0.5
    rounds: int = 20
    local_epochs: int = 1
    partition: str = "iid"
    alpha: float = 0.5
    optimizer: str = "sgd"
    lr: float = 0.1
    batch_size: int = 32
    mu: float = DEFAULT_MU
    server_lr: float = DEFAULT_SERVER_LR
    tau: float = DEFAULT_TAU
    train_size: int | None = None

    def validate(self) -> None:
        """Check every setting before anything runs.

        Raises:
            ConfigError / UnknownNameError: one line naming the setting and what is allowed.
        """
        STRATEGIES.canonical(self.strategy)
        for name in ("clients", "rounds", "local_epochs", "batch_size", "train_size"):
            value = getattr(self, name)
            if name == "train_size" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"--{name.replace('_', '-')}", value, "an integer >= 1")
        if not _number(self.fraction) or not 0 < self.fraction <= 1:
            raise ConfigError("--fraction", self.fraction, "a number in (0, 1]")
        if self.partition not in SCHEMES:
            raise ConfigError("--partition", self.partition, SCHEMES)
        for name in ("alpha", "lr", "server_lr", "tau"):
            value = getattr(self, name)
            if not _number(value) or not 0 < value < math.inf:
                raise ConfigError(f"--{name.replace('_', '-')}", value, "a finite number > 0")
        if not _number(self.mu) or not 0 <= self.mu < math.inf:
            raise ConfigError("--mu", self.mu, "a finite number >= 0")
        caps = capabilities(self.optimizer)  # UnknownNameError lists the optimizers
        if caps.full_batch_only or caps.train_eval_modes:
            raise ConfigError("--optimizer", self.optimizer,
                              "an optimizer that takes mini-batches and has no train/eval modes (sgd, adam, ...)")


def _number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and not math.isnan(value)


@dataclass
class FederatedResult:
    """What one federated run measured.

    Attributes:
        task, strategy, seed: what ran.
        config: the :class:`FederatedConfig` as a dict.
        client_sizes: examples per client, shape ``(clients,)``.
        label_counts: examples per client and class, shape ``(clients, classes)``; None for
            targets that are not class labels.
        rounds: one record per round, round 0 being the initial model: ``round``, ``clients``
            (ids sampled), ``examples`` (trained on), ``bytes_down`` / ``bytes_up`` (the ndarrays'
            ``nbytes`` sent to / received from the sampled clients), ``bytes`` (cumulative, both
            ways), ``train_loss`` (the clients' mean local loss, weighted by examples),
            ``valid_*`` / ``test_*`` (the global model's metrics, e.g. ``test_accuracy``),
            ``seconds`` (the round's wall time, evaluation included).
        status: ``finished`` or ``diverged`` (a NaN/inf local or global loss ended the run).
        error: why the run stopped early, else None.
        seconds: the run's wall time.
    """

    task: str
    strategy: str
    seed: int
    config: dict[str, Any]
    client_sizes: list[int]
    label_counts: list[list[int]] | None
    rounds: list[dict[str, Any]] = field(default_factory=list)
    status: str = "finished"
    error: str | None = None
    seconds: float = 0.0

    def final(self, key: str = "test_accuracy") -> float:
        """``key`` of the last round measured (NaN when it was not measured)."""
        return float(self.rounds[-1].get(key, math.nan)) if self.rounds else math.nan

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return asdict(self)


class SeededClientManager(SimpleClientManager):
    """Flower's ``SimpleClientManager`` with reproducible sampling: its own ``random.Random(seed)``
    instead of the module-level ``random`` (clients sampled in registration order, without
    replacement)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self._rng = random.Random(seed)

    def sample(self, num_clients: int, min_num_clients: int | None = None,
               criterion: Criterion | None = None) -> list[ClientProxy]:
        available = [cid for cid, proxy in self.clients.items() if criterion is None or criterion.select(proxy)]
        if num_clients > len(available):
            return []
        return [self.clients[cid] for cid in self._rng.sample(available, num_clients)]


class LocalClientProxy(ClientProxy):
    """A ``ClientProxy`` calling a :class:`~optbench.federated.client.TaskClient` in this process
    through Flower's ``NumPyClient.to_client()`` wrapper (parameter conversion and ``FitRes``)."""

    def __init__(self, cid: str, client: TaskClient) -> None:
        super().__init__(cid)
        self.client = client

    def get_properties(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
        return self.client.to_client().get_properties(ins)

    def get_parameters(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
        return self.client.to_client().get_parameters(ins)

    def fit(self, ins: FitIns, timeout: float | None, group_id: int | None) -> FitRes:
        return self.client.to_client().fit(ins)

    def evaluate(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
        return self.client.to_client().evaluate(ins)

    def reconnect(self, ins: Any, timeout: float | None, group_id: int | None) -> Any:
        raise NotImplementedError("in-process clients do not reconnect")


def _as_model_dtypes(parameters: Parameters, dtypes: list[np.dtype]) -> Parameters:
    """The global weights in the model's own dtypes: flwr's FedOpt strategies (FedAdam, FedYogi,
    FedAdagrad) return float64 arrays from their float64 server state, which would double the bytes
    sent to the clients for no difference in what they train (they load float32 weights); the
    server keeps its own state in float64."""
    arrays = parameters_to_ndarrays(parameters)
    if all(a.dtype == d for a, d in zip(arrays, dtypes, strict=True)):
        return parameters
    return ndarrays_to_parameters([a.astype(d) for a, d in zip(arrays, dtypes, strict=True)])


def _nbytes(parameters: Parameters) -> int:
    return int(sum(a.nbytes for a in parameters_to_ndarrays(parameters)))


def check_federated(task: Task, config: FederatedConfig, dataset: Dataset | None = None) -> None:
    """Check ``config`` against ``task``'s data without training: the settings, the validation
    split and the client partition of seed 0 (enough clients' worth of examples, class labels for
    a Dirichlet split).

    Raises:
        ConfigError / UnknownNameError: what :func:`run_federated` would raise before training.
    """
    config.validate()
    dataset = dataset if dataset is not None else task.load_data()
    data = split_data(dataset, task.valid_size, 0, config.train_size)
    partition(data.train.y.cpu().numpy(), config.clients, config.partition, 0, config.alpha)


def run_federated(task: Task, config: FederatedConfig, seed: int, *, dataset: Dataset | None = None,
                  device: torch.device | None = None) -> FederatedResult:
    """Run ``config.rounds`` rounds of ``config.strategy`` on ``task`` from ``seed``.

    Args:
        task: an optbench task (:func:`optbench.tasks.get_task`).
        config: the settings (validated here first).
        seed: see the module docstring for everything it fixes.
        dataset: the task's data when already loaded (``task.load_data()`` otherwise).
        device: where clients train and the server evaluates; the CPU by default.

    Returns:
        A :class:`FederatedResult`; a run whose loss became NaN/inf stops with status ``diverged``.

    Raises:
        ConfigError: a bad setting, more clients than training examples, a Dirichlet split of a
            task without class labels (before any training).
    """
    config.validate()
    device = device or torch.device("cpu")
    start = time.perf_counter()
    dataset = dataset if dataset is not None else task.load_data()
    data = split_data(dataset, task.valid_size, seed, config.train_size)
    labels = data.train.y.cpu().numpy()
    parts = partition(labels, config.clients, config.partition, seed, config.alpha)
    counts = None
    if labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer):
        counts = label_counts(labels, parts, int(labels.max()) + 1).tolist()
    result = FederatedResult(task=task.name, strategy=STRATEGIES.canonical(config.strategy), seed=seed,
                             config=asdict(config), client_sizes=[len(p) for p in parts], label_counts=counts)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = task.make_model().to(device)
        manager = SeededClientManager(seed)
        for cid, part in enumerate(parts):
            client = TaskClient(task, data.train.subset(torch.as_tensor(part)), copy.deepcopy(model),
                                optimizer=config.optimizer, lr=config.lr, batch_size=config.batch_size,
                                local_epochs=config.local_epochs, device=device,
                                generator=torch.Generator().manual_seed(seed + CLIENT_SEED_STRIDE * cid))
            manager.register(LocalClientProxy(str(cid), client))
        settings = StrategySettings(initial_parameters=ndarrays_to_parameters(get_weights(model)),
                                    fraction=config.fraction, n_clients=config.clients,
                                    local_epochs=config.local_epochs, mu=config.mu, server_lr=config.server_lr,
                                    tau=config.tau, client_lr=config.lr)
        strategy = make_strategy(config.strategy, settings)
        parameters = strategy.initialize_parameters(manager) or settings.initial_parameters
        dtypes = [a.dtype for a in get_weights(model)]
        total_bytes = 0

        def measure(record: dict[str, Any]) -> dict[str, Any]:
            set_weights(model, parameters_to_ndarrays(parameters))
            record |= evaluate(model, task, data.valid, "valid") | evaluate(model, task, data.test, "test")
            return record

        t0 = time.perf_counter()
        result.rounds.append(measure({"round": 0, "clients": [], "examples": 0, "bytes_down": 0, "bytes_up": 0,
                                      "bytes": 0, "train_loss": math.nan}))
        result.rounds[-1]["seconds"] = time.perf_counter() - t0
        for server_round in range(1, config.rounds + 1):
            t0 = time.perf_counter()
            instructions = strategy.configure_fit(server_round, parameters, manager)
            try:
                replies = [(proxy, proxy.fit(ins, timeout=None, group_id=server_round)) for proxy, ins in instructions]
            except Diverged as exc:
                result.status, result.error = "diverged", f"round {server_round}: {exc}"
                break
            down = sum(_nbytes(ins.parameters) for _, ins in instructions)
            up = sum(_nbytes(res.parameters) for _, res in replies)
            total_bytes += down + up
            aggregated, fit_metrics = strategy.aggregate_fit(server_round, replies, [])
            if aggregated is not None:
                parameters = _as_model_dtypes(aggregated, dtypes)
            examples = sum(res.num_examples for _, res in replies)
            train_loss = float(fit_metrics.get("train_loss", math.nan))
            record = measure({"round": server_round, "clients": sorted(int(p.cid) for p, _ in replies),
                              "examples": examples, "bytes_down": down, "bytes_up": up, "bytes": total_bytes,
                              "train_loss": train_loss})
            record["seconds"] = time.perf_counter() - t0
            result.rounds.append(record)
            if not math.isfinite(record["valid_loss"]):
                result.status, result.error = "diverged", f"round {server_round}: the global model's loss is not finite"
                break
    result.seconds = time.perf_counter() - start
    return result


__all__ = ["CLIENT_SEED_STRIDE", "FederatedConfig", "FederatedResult", "LocalClientProxy", "SeededClientManager",
           "check_federated", "run_federated"]
