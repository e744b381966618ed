"""What the training loop asks about an optimizer: :func:`capabilities` by name, and
:func:`create_graph_now` per step.

The loop dispatches on this metadata only, never on names::

    caps = capabilities(recipe.optimizer)
    if caps.needs_closure:           # L-BFGS, SAM (calls it twice itself), AliG
        @torch.enable_grad()         # AliG calls the closure under no_grad
        def closure():
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward(create_graph=caps.create_graph)
            return loss
        loss = optimizer.step(closure)
    else:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward(create_graph=caps.create_graph and create_graph_now(optimizer))
        optimizer.step()
"""

from __future__ import annotations

import torch

from optbench.optim.base import Capabilities
from optbench.optim.catalog import optimizers


def capabilities(name: str) -> Capabilities:
    """The :class:`~optbench.optim.base.Capabilities` of the optimizer registered as ``name``
    (``"sam:adam"`` too).

    Raises:
        UnknownNameError: for an unknown name (lists the known names).
        ConfigError: for ``sam:<base>`` with a base SAM cannot wrap.
    """
    return optimizers.get(name).capabilities()


def create_graph_now(optimizer: torch.optim.Optimizer) -> bool:
    """Whether the coming ``step()`` of a ``create_graph`` optimizer uses the graph.

    pytorch-optimizer's Hessian-based classes (AdaHessian, Sophia-H) estimate the Hessian
    diagonal only on the steps ``k`` with ``k % update_period == 0`` (counting from 0: steps 1,
    11, 21, ... for Sophia's ``update_period=10``) and read plain gradients otherwise; a
    ``backward(create_graph=True)`` on the other steps costs time and memory for nothing.
    ``tests/test_optim_capabilities.py`` checks that training with the graph only on these
    steps is identical to building it every step. For any other optimizer (no
    ``update_period`` attribute) this is True, so ``caps.create_graph and
    create_graph_now(optimizer)`` is always correct.

    Returns:
        True when the next step estimates the Hessian (or the period is unknown).
    """
    period = getattr(optimizer, "update_period", None)
    if not isinstance(period, int) or period < 1 or not optimizer.param_groups:
        return True
    done = optimizer.param_groups[0].get("step", 0)
    return int(done) % period == 0
