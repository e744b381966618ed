"""Federated learning with Flower (``flwr``): clients holding IID or Dirichlet non-IID shards of an
optbench task, trained locally with an optimizer of optbench's registry, and the server strategies
FedAvg (McMahan et al. 2017), FedProx (Li et al. 2020) and the adaptive server optimizers
FedAdagrad/FedAdam/FedYogi (Reddi et al. 2021), compared over seeds (``docs/federated.md``).

Modules: :mod:`~optbench.federated.partition` (client shards), :mod:`~optbench.federated.client`
(the Flower ``NumPyClient``), :mod:`~optbench.federated.strategies` (the strict strategy registry),
:mod:`~optbench.federated.simulation` (rounds in one process), :mod:`~optbench.federated.summary`
(means and confidence intervals over seeds; data only) and :mod:`~optbench.federated.plot` (the
figure). Nothing is imported here: ``flwr`` is the optional extra ``optbench[federated]``.
"""
