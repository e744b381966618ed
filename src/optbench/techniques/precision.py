"""Numeric precision of training: ``fp32``, ``bf16`` (autocast), ``fp16`` (autocast + gradient scaler).

* ``fp32`` — no autocast.
* ``bf16`` — ``torch.autocast(device_type, dtype=torch.bfloat16)`` on CPU and CUDA: matrix
  multiplies and convolutions run in bfloat16, reductions and losses in float32 (PyTorch's autocast
  op lists); weights, gradients and optimizer state stay float32. bfloat16 has float32's exponent
  range, so no loss scaling is needed (Kalamkar et al. 2019).
* ``fp16`` — autocast to float16 plus ``torch.amp.GradScaler`` (dynamic loss scaling, Micikevicius
  et al. 2018, "Mixed precision training"), CUDA only.

Only the forward pass and the loss run inside the autocast context; ``backward`` runs outside.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch

from optbench.core.errors import ConfigError
from optbench.core.registry import Registry
from optbench.techniques.catalog import Technique


@dataclass(frozen=True)
class Precision:
    """A precision mode.

    Attributes:
        name: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        autocast_dtype: the autocast dtype, or None for no autocast.
        needs_scaler: whether a ``GradScaler`` must scale the loss.
        device_types: device types where the mode is available.
    """

    name: str
    autocast_dtype: torch.dtype | None
    needs_scaler: bool
    device_types: tuple[str, ...]


FP32 = Precision("fp32", None, False, ("cpu", "cuda", "mps"))
BF16 = Precision("bf16", torch.bfloat16, False, ("cpu", "cuda"))
FP16 = Precision("fp16", torch.float16, True, ("cuda",))

precisions: Registry[Technique[Precision]] = Registry("precision")
precisions.register("fp32", Technique(
    "fp32", "precision", FP32, "IEEE 754 binary32", "Full float32 training (no autocast)."))
precisions.register("bf16", Technique(
    "bf16", "precision", BF16, "Kalamkar et al. 2019; torch.autocast",
    "bfloat16 autocast for forward and loss (CPU and CUDA), float32 weights."))
precisions.register("fp16", Technique(
    "fp16", "precision", FP16, "Micikevicius et al. 2018; torch.amp.GradScaler",
    "float16 autocast with dynamic loss scaling (CUDA only)."))


def precision_context(precision: str | Precision, device: torch.device | str
                      ) -> tuple[Callable[[], AbstractContextManager[object]], torch.amp.GradScaler | None]:
    """The autocast factory and the gradient scaler for training in ``precision`` on ``device``.

    Returns:
        ``(autocast, scaler)``: ``autocast()`` returns a fresh context manager to wrap each
        forward pass + loss (``contextlib.nullcontext`` for fp32); ``scaler`` is a
        ``torch.amp.GradScaler`` for fp16, else None.

    Raises:
        UnknownNameError: for an unknown precision name.
        ConfigError: for a mode the device does not support (fp16 on CPU; bf16 on a CUDA device
            without bfloat16 support).
    """
    spec = precision if isinstance(precision, Precision) else precisions.get(precision).impl
    device = torch.device(device)
    if device.type not in spec.device_types:
        raise ConfigError("precision", spec.name,
                          f"fp32 or bf16 on {device.type} (fp16 with a gradient scaler needs CUDA)"
                          if spec.name == "fp16" else f"a precision supported on {device.type}")
    if spec.name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("precision", spec.name, "fp32 or fp16 on this GPU (no bfloat16 support)")
    dtype = spec.autocast_dtype
    if dtype is None:
        return contextlib.nullcontext, None

    def autocast() -> AbstractContextManager[object]:
        return torch.autocast(device_type=device.type, dtype=dtype)

    scaler = torch.amp.GradScaler(device.type) if spec.needs_scaler else None
    return autocast, scaler


__all__ = ["BF16", "FP16", "FP32", "Precision", "precision_context", "precisions"]
