"""LAMB as published (You et al. 2020, Algorithm 2), because pytorch-optimizer's ``Lamb`` is not.

You, Li, Reddi, Hseu, Kumar, Bhojanapalli, Song, Demmel, Keutzer & Hsieh 2020, "Large Batch
Optimization for Deep Learning: Training BERT in 76 minutes" (ICLR), Algorithm 2, per layer
(parameter tensor) ``x``::

    m = b1 m + (1 - b1) g            v = b2 v + (1 - b2) g^2
    m_hat = m / (1 - b1^t)           v_hat = v / (1 - b2^t)
    r = m_hat / (sqrt(v_hat) + eps) + lambda x
    x -= lr * phi(||x||) / ||r|| * r          phi(z) = min(z, clamp)

The step length of every layer is ``lr * phi(||x||)`` whatever the bias corrections are.
pytorch-optimizer 4.1's ``Lamb`` normalises the *uncorrected* ``m / (sqrt(v) + eps)`` and then
multiplies the step by ``lr / (1 - b1^t)``, so its first step is ``1 / (1 - b1) = 10`` times the
paper's (1.5x at t = 10, 1.005x at t = 50); after 50 steps on a least-squares problem the
parameters differ by 20 % (``tests/test_optim_conformance.py`` pins both behaviours). Its
default ``weight_decouple=True`` also applies AdamW-style decay outside the trust ratio instead
of the paper's ``r + lambda x``. This module implements the paper's rule.

Conventions kept from pytorch-optimizer: ``phi(z) = min(z, 10)``, and a trust ratio of 1 when
``||x||`` or ``||r||`` is 0 (zero-initialised biases take a plain ``lr * r`` step).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch


class Lamb(torch.optim.Optimizer):
    """Layer-wise adaptive moments for batch training (You et al. 2020, Algorithm 2).

    Args:
        params: parameters or parameter groups; each tensor is one "layer" of the trust ratio.
        lr: learning rate eta (> 0); each tensor moves ``lr * min(||x||, clamp)`` per step.
        betas: decay rates (b1, b2) of the first and second moments, each in [0, 1).
        eps: added to sqrt(v_hat) (>= 0); the paper and BERT use 1e-6.
        weight_decay: lambda, added to the update inside the trust ratio (>= 0).
        clamp: upper bound of phi(||x||) = min(||x||, clamp) (> 0; ``math.inf`` disables it).
        foreach: multi-tensor kernels (``None``: on, except where a tensor list is unsupported).
        maximize: maximise the objective.

    Raises:
        ValueError: for an out-of-range argument (the factory turns it into a ConfigError).
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.0, clamp: float = 10.0, foreach: bool | None = None,
                 maximize: bool = False) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not (len(betas) == 2 and all(0 <= b < 1 for b in betas)):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas}")
        if not (eps >= 0 and weight_decay >= 0 and clamp > 0):
            raise ValueError("eps and weight_decay must be >= 0 and clamp > 0")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps,
                                  "weight_decay": weight_decay, "clamp": clamp,
                                  "foreach": foreach, "maximize": maximize})

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        """One LAMB step; calls ``closure`` (with gradients enabled) first when given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, ms, vs, steps = [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Lamb does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                params.append(p)
                grads.append(-p.grad if group["maximize"] else p.grad)
                ms.append(state["exp_avg"])
                vs.append(state["exp_avg_sq"])
                steps.append(state["step"])
            if not params:
                continue
            foreach = group["foreach"]
            if foreach is None:
                foreach = all(p.dtype in (torch.float32, torch.float64, torch.float16,
                                          torch.bfloat16) for p in params)
            update = _update_foreach if foreach else _update_single
            update(params, grads, ms, vs, steps, group)
        return loss


def _ratios(params: list[torch.Tensor], updates: list[torch.Tensor], clamp: float
            ) -> list[torch.Tensor]:
    """Per-tensor trust ratios phi(||x||) / ||r||, 1 where either norm is 0 (0-d tensors)."""
    w = torch.stack(torch._foreach_norm(params))
    r = torch.stack(torch._foreach_norm(updates))
    ratio = torch.where((w > 0) & (r > 0), w.clamp(max=clamp) / r, torch.ones_like(w))
    return list(ratio.unbind())


def _update_foreach(params: list[torch.Tensor], grads: list[torch.Tensor], ms: list[torch.Tensor],
                    vs: list[torch.Tensor], steps: list[int], group: dict[str, Any]) -> None:
    b1, b2 = group["betas"]
    torch._foreach_lerp_(ms, grads, 1 - b1)
    torch._foreach_mul_(vs, b2)
    torch._foreach_addcmul_(vs, grads, grads, value=1 - b2)
    denom = torch._foreach_sqrt(vs)
    torch._foreach_div_(denom, [math.sqrt(1 - b2**t) for t in steps])
    torch._foreach_add_(denom, group["eps"])
    updates = torch._foreach_div(ms, denom)
    torch._foreach_div_(updates, [1 - b1**t for t in steps])
    if group["weight_decay"]:
        torch._foreach_add_(updates, params, alpha=group["weight_decay"])
    torch._foreach_mul_(updates, _ratios(params, updates, group["clamp"]))
    torch._foreach_add_(params, updates, alpha=-group["lr"])


def _update_single(params: list[torch.Tensor], grads: list[torch.Tensor], ms: list[torch.Tensor],
                   vs: list[torch.Tensor], steps: list[int], group: dict[str, Any]) -> None:
    b1, b2 = group["betas"]
    for p, g, m, v, t in zip(params, grads, ms, vs, steps, strict=True):
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        update = (m / (1 - b1**t)).div_(v.sqrt().div_(math.sqrt(1 - b2**t)).add_(group["eps"]))
        if group["weight_decay"]:
            update.add_(p, alpha=group["weight_decay"])
        (ratio,) = _ratios([p], [update], group["clamp"])
        p.add_(update.mul_(ratio), alpha=-group["lr"])
