"""Communication-efficient data parallelism: what a ``ddp+<method>`` mode sends instead of the full-precision
gradient all-reduce (docs/distributed.md, "Communication-efficient training").

Methods (``--modes ddp+fp16,ddp+powersgd:4,...``), each run through a DDP communication hook and, for the
methods that average models instead of gradients, an ``after_update`` step:

* ``fp16`` / ``bf16`` — gradients cast to half precision for the all-reduce and back (PyTorch's
  ``default_hooks.fp16_compress_hook`` / ``bf16_compress_hook``); 2 bytes per gradient element.
* ``powersgd:R`` — PowerSGD (Vogels, Karimireddy & Jaggi, NeurIPS 2019): each gradient matrix ``n x m`` is
  replaced by a rank-``R`` approximation ``P Q^T`` found by one step of power iteration, with error
  feedback and warm start; ``P`` (``n x R``) and ``Q`` (``m x R``) are all-reduced, vectors and matrices
  that would not shrink go uncompressed. PyTorch's ``powerSGD_hook`` (vanilla all-reduce for the first
  :data:`POWERSGD_START` steps, as the hook requires with error feedback).
* ``topk:F`` — top-k sparsification with error feedback, the core of Deep Gradient Compression (Lin et al.,
  ICLR 2018): each worker adds its residual to the bucket, sends the ``k = ceil(F n)`` largest-magnitude
  entries (values and int32 indices, all-gathered), keeps the rest as its next residual; the update is the
  average of the workers' sparse vectors. DGC's momentum correction, gradient clipping and warm-up are
  left out (the recipe's optimizer and clipping apply as in every mode).
* ``local:H`` — local SGD (Stich, ICLR 2019; Lin et al., "Don't use large mini-batches, use local SGD",
  ICLR 2020): no gradient communication; every ``H`` updates the workers' parameters are averaged
  (``torch.distributed.algorithms.model_averaging.utils.average_parameters``).
* ``diloco:H`` — DiLoCo (Douillard et al. 2023): the recipe's optimizer is the inner optimizer (the paper
  uses AdamW) run ``H`` steps locally; then the outer gradient, the average over workers of
  ``anchor - parameters``, is applied to the anchor by Nesterov SGD (outer learning rate 0.7, momentum
  0.9, the paper's values) and every worker restarts from the new anchor.

Bytes are the payload each worker hands to its collectives (the sizes of the tensors communicated),
counted per step; a ring all-reduce moves about ``2 (N - 1) / N`` times that over each worker's link.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from optbench.core.errors import ConfigError

#: Steps of vanilla all-reduce before PowerSGD compresses (PyTorch requires > 1 with error feedback).
POWERSGD_START = 2
#: DiLoCo's outer Nesterov SGD (Douillard et al. 2023, Section 3).
DILOCO_OUTER_LR, DILOCO_OUTER_MOMENTUM = 0.7, 0.9
#: Method -> (parameter meaning, check) for the ``ddp+<method>[:<value>]`` modes.
METHODS = {
    "fp16": None,
    "bf16": None,
    "powersgd": ("R, the rank (an integer >= 1)", lambda v: float(v).is_integer() and v >= 1),
    "topk": ("F, the fraction of entries sent (0 < F <= 1)", lambda v: 0 < v <= 1),
    "local": ("H, the updates between averages (an integer >= 1)", lambda v: float(v).is_integer() and v >= 1),
    "diloco": ("H, the inner steps (an integer >= 1)", lambda v: float(v).is_integer() and v >= 1),
}
ALLOWED = "fp16, bf16, powersgd:R, topk:F, local:H, diloco:H"


@dataclass(frozen=True)
class Compression:
    """A parsed method: ``method`` (a :data:`METHODS` key) and its ``value`` (None for fp16/bf16)."""

    method: str
    value: float | None = None

    @property
    def name(self) -> str:
        """The canonical text, e.g. ``"powersgd:4"``, ``"topk:0.01"``."""
        if self.value is None:
            return self.method
        value = int(self.value) if float(self.value).is_integer() and self.method != "topk" else self.value
        return f"{self.method}:{value:g}" if isinstance(value, float) else f"{self.method}:{value}"


def parse_compression(text: str, field: str = "--mode") -> Compression:
    """``"fp16"`` / ``"powersgd:4"`` / ``"topk:0.01"`` / ``"local:8"`` / ``"diloco:16"`` -> :class:`Compression`.

    Raises:
        ConfigError: for an unknown method, a missing, extra or out-of-range value.
    """
    method, sep, raw = text.strip().lower().partition(":")
    if method not in METHODS:
        raise ConfigError(field, text, f"ddp+ followed by one of {ALLOWED}")
    rule = METHODS[method]
    if rule is None:
        if sep:
            raise ConfigError(field, text, f"{method} without a value")
        return Compression(method)
    meaning, check = rule
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(field, text, f"{method}:{meaning}") from None
    if not math.isfinite(value) or not check(value):
        raise ConfigError(field, text, f"{method}:{meaning}")
    return Compression(method, value)


def _should_compress(n: int, m: int, rank: int, min_rate: float) -> bool:
    """PowerSGD's rule (PyTorch ``powerSGD_hook``): compress an ``n x m`` matrix when
    ``(n + m) * rank * min_rate < n * m``."""
    return (n + m) * rank * min_rate < n * m


class Communicator:
    """One ``ddp`` worker's gradient communication: the DDP hook to register, what to do after each
    optimizer update, and the bytes handed to collectives since :meth:`take_bytes`.

    Args:
        compression: None for PyTorch's default averaging all-reduce.
        world_size: workers N.
    """

    def __init__(self, compression: Compression | None, world_size: int) -> None:
        self.compression = compression
        self.world_size = world_size
        self.bytes = 0
        self.residuals: dict[int, Tensor] = {}
        self.powersgd = None
        self.anchor: list[Tensor] = []
        self.outer: torch.optim.Optimizer | None = None
        if compression is not None and compression.method == "powersgd":
            from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook

            self.powersgd = powerSGD_hook.PowerSGDState(
                process_group=None, matrix_approximation_rank=int(compression.value or 1),
                start_powerSGD_iter=POWERSGD_START, use_error_feedback=True, warm_start=True)

    @property
    def method(self) -> str:
        """``"allreduce"`` (no compression) or the method's name."""
        return "allreduce" if self.compression is None else self.compression.method

    def take_bytes(self) -> int:
        """Bytes handed to collectives since the last call (this worker), and reset."""
        sent, self.bytes = self.bytes, 0
        return sent

    def launch(self, bucket) -> torch.futures.Future:
        """Start ``bucket``'s communication (a :class:`torch.distributed.GradBucket`); the future's value is
        the tensor DDP writes back as the bucket's gradients."""
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook

        buffer: Tensor = bucket.buffer()
        method = self.method
        if method == "allreduce":
            self.bytes += buffer.numel() * buffer.element_size()
            return default_hooks.allreduce_hook(None, bucket)
        if method in ("fp16", "bf16"):
            self.bytes += buffer.numel() * 2
            hook = default_hooks.fp16_compress_hook if method == "fp16" else default_hooks.bf16_compress_hook
            return hook(None, bucket)
        if method == "powersgd":
            self.bytes += self._powersgd_bytes(bucket)
            return powerSGD_hook.powerSGD_hook(self.powersgd, bucket)
        if method == "topk":
            return self._topk(bucket)
        future: torch.futures.Future = torch.futures.Future()  # local / diloco: no gradient communication
        future.set_result(buffer)
        return future

    def _powersgd_bytes(self, bucket) -> int:
        state = self.powersgd
        buffer = bucket.buffer()
        if state.iter < state.start_powerSGD_iter:
            return buffer.numel() * buffer.element_size()
        total = 0
        for grad in bucket.gradients():
            n = grad.shape[0] if grad.dim() > 1 else 0
            m = grad.numel() // n if n else 0
            rank = min(n, m, state.matrix_approximation_rank) if n else 0
            if grad.dim() > 1 and _should_compress(n, m, rank, state.min_compression_rate):
                total += (n + m) * rank * buffer.element_size()
            else:
                total += grad.numel() * buffer.element_size()
        return total

    def _topk(self, bucket) -> torch.futures.Future:
        buffer: Tensor = bucket.buffer()
        index = bucket.index()
        accumulated = buffer.float() + self.residuals[index] if index in self.residuals else buffer.float()
        k = max(1, math.ceil(float(self.compression.value) * accumulated.numel()))
        top = accumulated.abs().topk(k, sorted=False).indices
        residual = accumulated.clone()
        residual[top] = 0.0
        self.residuals[index] = residual
        packed = torch.cat([accumulated[top], top.to(torch.int32).view(torch.float32)])
        self.bytes += packed.numel() * packed.element_size()
        gathered = [torch.empty_like(packed) for _ in range(self.world_size)]
        future = dist.all_gather(gathered, packed, async_op=True).get_future()

        def decode(_: torch.futures.Future) -> Tensor:
            dense = torch.zeros_like(accumulated)
            for part in gathered:
                dense.index_add_(0, part[k:].view(torch.int32).long(), part[:k])
            return (dense / self.world_size).to(buffer.dtype)

        return future.then(decode)

    def start(self, model: nn.Module) -> None:
        """Before the first step: DiLoCo's anchor (the parameters every worker starts from) and outer
        optimizer."""
        if self.method == "diloco":
            self.anchor = [p.detach().clone() for p in model.parameters()]
            self.outer = torch.optim.SGD(self.anchor, lr=DILOCO_OUTER_LR, momentum=DILOCO_OUTER_MOMENTUM,
                                         nesterov=True)

    def after_update(self, model: nn.Module, updates: int) -> None:
        """After the ``updates``-th optimizer update (1-based): average the models every ``H`` updates
        (``local``) or take DiLoCo's outer step; nothing for the gradient-compression methods."""
        if self.method not in ("local", "diloco") or updates % int(self.compression.value) != 0:
            return
        params = [p for p in model.parameters()]
        self.bytes += sum(p.numel() * p.element_size() for p in params)
        if self.method == "local":
            from torch.distributed.algorithms.model_averaging.utils import average_parameters

            average_parameters(iter(params), None)
            return
        with torch.no_grad():
            delta = torch.nn.utils.parameters_to_vector([a - p for a, p in zip(self.anchor, params, strict=True)])
            dist.all_reduce(delta)
            delta /= self.world_size
            offset = 0
            for a in self.anchor:  # the outer gradient: the workers' average of anchor - parameters
                a.grad = delta[offset:offset + a.numel()].view_as(a).clone()
                offset += a.numel()
            self.outer.step()
            for a, p in zip(self.anchor, params, strict=True):
                p.copy_(a)


__all__ = ["ALLOWED", "DILOCO_OUTER_LR", "DILOCO_OUTER_MOMENTUM", "METHODS", "POWERSGD_START", "Compression",
           "Communicator", "parse_compression"]
