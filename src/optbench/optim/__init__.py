"""Optimizers by name: ``create_optimizer("adam", model.parameters(), lr=1e-3)``.

Every ``torch.optim`` optimizer (``torch.<name>``), every pytorch-optimizer optimizer
(``pytorch_optimizer.<name>``) and seven reference presets (``sgd``, ``momentum``,
``nesterov``, ``rmsprop``, ``adam``, ``adagrad``, ``nadam``) with documented defaults; see
:mod:`optbench.optim.catalog` for names and the alias rule, :mod:`optbench.optim.factory` for
validation and the fast-path rule. Importing this package imports nothing beyond torch.
"""

from __future__ import annotations

from optbench.optim.catalog import (
    PRESETS,
    Capabilities,
    OptimizerRegistry,
    OptimizerSpec,
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

__all__ = [
    "IMPLEMENTATIONS",
    "PRESETS",
    "RANGE_RULES",
    "Capabilities",
    "OptimizerRegistry",
    "OptimizerSpec",
    "build_registry",
    "create_optimizer",
    "describe",
    "implementation_of",
    "optimizers",
    "resolved_hyperparams",
]
