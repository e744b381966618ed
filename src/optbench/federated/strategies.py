"""The server strategies by name: a strict registry of constructors of flwr's own strategy classes.

* ``fedavg`` (flwr ``FedAvg``): McMahan et al., *Communication-Efficient Learning of Deep Networks
  from Decentralized Data*, AISTATS 2017: the clients' weights averaged with their example counts
  as weights.
* ``fedprox`` (flwr ``FedProx``): Li et al., *Federated Optimization in Heterogeneous Networks*,
  MLSys 2020: FedAvg's aggregation; the clients add ``mu/2 ||w - w_global||^2`` to their objective
  (:class:`optbench.federated.client.ProximalTerm`; flwr sends ``proximal_mu`` in the fit config).
* ``fedadagrad`` / ``fedadam`` / ``fedyogi`` (flwr ``FedAdagrad`` / ``FedAdam`` / ``FedYogi``):
  Reddi et al., *Adaptive Federated Optimization*, ICLR 2021: the weighted-average client update
  ``Delta`` is a pseudo-gradient for Adagrad/Adam/Yogi on the server.

Server defaults (:data:`DEFAULT_SERVER_LR`, :data:`DEFAULT_TAU`, betas): FedAdam/FedYogi use
``beta_1 = 0.9`` and ``beta_2 = 0.99``, flwr's defaults and the values of Reddi et al.'s
experiments. flwr's ``FedAdagrad`` takes no betas and runs without server momentum
(``beta_1 = 0``), where Reddi et al.'s Algorithm 2 applies ``beta_1`` to all three. The adaptivity
``tau`` (added to ``sqrt(v)``) is 1e-3, the value Reddi et al. use in their main experiments,
instead of flwr's 1e-9: with a tiny ``tau`` the first server steps are sign steps of size ``eta``
on every coordinate, even those the clients barely moved. The server learning rate ``eta`` has no
universal value: Reddi et al. tune it per task on a log10 grid. The default 0.03 was chosen on
``mnist1d_mlp``'s validation accuracy (seed 0; 10 clients, Dirichlet alpha 0.3, fraction 0.5, 20
rounds of 1 local SGD epoch at lr 0.1) from {0.01, 0.03, 0.1}: best or tied-best for all three
(docs/federated.md); pass ``--server-lr`` for other tasks. FedProx's ``mu`` defaults to 0.01, in
the grid {0.001, 0.01, 0.1, 1} Li et al. search.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flwr.common import Parameters
from flwr.server.strategy import FedAdagrad, FedAdam, FedAvg, FedProx, FedYogi, Strategy

from optbench.core.registry import Registry

#: Server learning rate ``eta`` of the adaptive strategies (Reddi et al. 2021 tune it per task).
DEFAULT_SERVER_LR = 0.03
#: Adaptivity ``tau`` of the adaptive strategies (Reddi et al. 2021's main experiments).
DEFAULT_TAU = 1e-3
#: FedProx's proximal strength ``mu`` (Li et al. 2020's grid).
DEFAULT_MU = 0.01


@dataclass(frozen=True)
class StrategySettings:
    """What every strategy constructor gets.

    Attributes:
        initial_parameters: the global model's starting weights (flwr ``Parameters``).
        fraction: fraction of the clients sampled per round, in (0, 1].
        n_clients: clients available (all of them are, in a simulation).
        local_epochs: sent to the clients in every fit instruction.
        mu: FedProx's proximal strength.
        server_lr: ``eta`` of FedAdagrad/FedAdam/FedYogi.
        tau: ``tau`` of FedAdagrad/FedAdam/FedYogi.
        client_lr: the clients' learning rate (``eta_l``; flwr's adaptive strategies store it but
            the clients here use their own ``--lr``).
    """

    initial_parameters: Parameters
    fraction: float
    n_clients: int
    local_epochs: int = 1
    mu: float = DEFAULT_MU
    server_lr: float = DEFAULT_SERVER_LR
    tau: float = DEFAULT_TAU
    client_lr: float = 0.1


def weighted_mean(results: list[tuple[int, dict[str, Any]]]) -> dict[str, float]:
    """The clients' numeric fit metrics averaged with their example counts as weights (flwr's
    ``fit_metrics_aggregation_fn``): ``[(n_k, {"train_loss": l_k})] -> {"train_loss": sum n_k l_k / sum n_k}``."""
    total = sum(n for n, _ in results)
    keys = {k for _, m in results for k, v in m.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    return {k: sum(n * float(m[k]) for n, m in results if k in m) / total for k in sorted(keys)} if total else {}


def _common(s: StrategySettings) -> dict:
    """Keyword arguments shared by every flwr strategy: sampling (at least one client per round),
    no client-side evaluation (the server evaluates the global model itself), the local epochs
    in every fit instruction, fit metrics averaged by example counts."""
    epochs = int(s.local_epochs)
    return dict(fraction_fit=s.fraction, fraction_evaluate=0.0, min_fit_clients=1, min_evaluate_clients=1,
                min_available_clients=s.n_clients, initial_parameters=s.initial_parameters,
                on_fit_config_fn=lambda server_round: {"local_epochs": epochs},
                fit_metrics_aggregation_fn=weighted_mean)


def _adaptive(s: StrategySettings, **betas: float) -> dict:
    return dict(_common(s), eta=s.server_lr, eta_l=s.client_lr, tau=s.tau, **betas)


STRATEGIES: Registry[Callable[[StrategySettings], Strategy]] = Registry("federated strategy")
STRATEGIES.register("fedavg", lambda s: FedAvg(**_common(s)))
STRATEGIES.register("fedprox", lambda s: FedProx(**_common(s), proximal_mu=s.mu))
STRATEGIES.register("fedadagrad", lambda s: FedAdagrad(**_adaptive(s)))  # flwr's class: no betas
STRATEGIES.register("fedadam", lambda s: FedAdam(**_adaptive(s, beta_1=0.9, beta_2=0.99)))
STRATEGIES.register("fedyogi", lambda s: FedYogi(**_adaptive(s, beta_1=0.9, beta_2=0.99)))


def make_strategy(name: str, settings: StrategySettings) -> Strategy:
    """The flwr strategy registered as ``name``, built with ``settings``.

    Raises:
        UnknownNameError: an unknown name (lists the known names).
    """
    return STRATEGIES.get(name)(settings)


__all__ = ["DEFAULT_MU", "DEFAULT_SERVER_LR", "DEFAULT_TAU", "STRATEGIES", "StrategySettings", "make_strategy",
           "weighted_mean"]
