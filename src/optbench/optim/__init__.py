"""Optimizers by name: ``create_optimizer("adam", model.parameters(), lr=1e-3)``.

Every ``torch.optim`` optimizer (``torch.<name>``), every pytorch-optimizer optimizer
(``pytorch_optimizer.<name>``), eighteen reference presets with documented defaults (``gd``,
``sgd``, ``momentum``, ``nesterov``, ``adagrad``, ``rmsprop``, ``adadelta``, ``adam``,
``adamw``, ``nadam``, ``radam``, ``adabelief``, ``sam``, ``lbfgs``, ``sophia``, ``lion``,
``lars``, ``lamb``) and SAM over any of them (``sam:adam``). See :mod:`optbench.optim.catalog`
for names and the alias rule, :mod:`optbench.optim.factory` for validation and the fast-path
rule, :mod:`optbench.optim.capabilities` for what the training loop dispatches on.
Importing this package imports nothing beyond torch.
"""

from __future__ import annotations

from optbench.optim.base import Capabilities, OptimizerSpec
from optbench.optim.capabilities import capabilities, create_graph_now
from optbench.optim.catalog import (
    PRESETS,
    OptimizerRegistry,
    build_registry,
    optimizers,
)
from optbench.optim.factory import (
    IMPLEMENTATIONS,
    RANGE_RULES,
    create_optimizer,
    describe,
    implementation_of,
    resolved_hyperparams,
)
from optbench.optim.lamb import Lamb
from optbench.optim.sam import SAM, parse_optimizer_name

__all__ = [
    "IMPLEMENTATIONS",
    "PRESETS",
    "RANGE_RULES",
    "SAM",
    "Capabilities",
    "Lamb",
    "OptimizerRegistry",
    "OptimizerSpec",
    "build_registry",
    "capabilities",
    "create_graph_now",
    "create_optimizer",
    "describe",
    "implementation_of",
    "optimizers",
    "parse_optimizer_name",
    "resolved_hyperparams",
]
