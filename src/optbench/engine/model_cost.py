"""What a trained model costs to keep and to run: parameters, nonzero parameters, serialized bytes,
forward FLOPs and inference latency (recorded as ``RunResult.environment["model_cost"]`` by
:meth:`optbench.engine.build.RunSetup.records` for runs whose techniques change the model's size:
pruning, 2:4 sparsity, low-rank factorization, int8 quantization; and for the uncompressed baseline
through the ``model_cost`` technique, :mod:`optbench.techniques.model_measure`).

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (a matrix product of ``(m, k)`` by
``(k, n)`` counts ``2 m k n``; elementwise operations, pooling and normalization count 0), so they
are the multiply-add work of the dense kernels actually called: a masked (unstructured or 2:4) model
counts as dense, a physically shrunk or factorized one counts less; an int8 model counts its float
architecture's operations (the same multiply-adds, done in int8). Latency is the median wall time
of a forward pass in eval mode under ``torch.inference_mode`` after warm-up, for a batch of 1 and a
batch of 256 built from one input example, on the model's device with its thread settings (1 warm-up
and 5 timed passes, 3 when those take over 0.25 s: measuring costs 0.01 s for ``mnist1d_cnn`` and
0.1-0.3 s for ``fmnist_cnn3`` on 2 CPU threads, plus about 2 s once per process for the first use of
``FlopCounterMode``, which imports torch's operator decompositions).
"""

from __future__ import annotations

import io
import statistics
import time
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

#: Batch sizes whose latency is measured.
LATENCY_BATCHES = (1, 256)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _placed(model: nn.Module, example: Tensor) -> Tensor:
    """``example`` on the model's device, and in its floating dtype when both are floating (a
    half-precision copy measured for sparse kernels)."""
    for p in model.parameters():
        if example.is_floating_point() and p.is_floating_point():
            return example.to(p.device, p.dtype)
        return example.to(p.device)
    return example


def _packed_tensors(model: nn.Module) -> list[Tensor]:
    """The weights and biases a quantized module keeps packed (``torch.ao.nn.quantized`` Linear and
    Conv layers expose them as methods ``weight()``/``bias()``, not as parameters), dequantized."""
    out = []
    for module in model.modules():
        for name in ("weight", "bias"):
            attr = getattr(type(module), name, None)
            if callable(attr) and not isinstance(attr, property):
                value = getattr(module, name)()
                if isinstance(value, Tensor):
                    out.append(value.dequantize() if value.is_quantized else value)
    return out


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """``(parameters, nonzero parameters)`` of ``model``: every parameter tensor, counted once, and
    the packed weights and biases of quantized layers (an int8 weight counts as nonzero when its
    dequantized value is)."""
    total = nonzero = 0
    for p in [*model.parameters(), *_packed_tensors(model)]:
        total += p.numel()
        nonzero += int(torch.count_nonzero(p.detach()))
    return total, nonzero


def serialized_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())`` (in memory): what storing the model costs; a
    quantized or sparse-format model's state dict holds its own (packed) tensors."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def forward_flops(model: nn.Module, x: Tensor) -> int:
    """Floating-point operations of one forward pass on ``x`` as ``FlopCounterMode`` counts them
    (``2 * in * out * batch`` for a Linear layer's matrix product)."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def latency_ms(model: nn.Module, x: Tensor, *, warmup: int = 1, repeats: int = 5, budget_s: float = 0.25) -> float:
    """Median milliseconds of a forward pass on ``x`` over up to ``repeats`` timed passes after
    ``warmup`` untimed ones; once the timed passes took more than ``budget_s`` seconds it stops
    after 3 of them (a big model's batch of 256 on CPU). Eval mode is the caller's business."""
    device = x.device
    times: list[float] = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            _sync(device)
            t0 = time.perf_counter()
            model(x)
            _sync(device)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1000.0)
                if len(times) >= 3 and sum(times) > budget_s * 1000.0:
                    break
    return statistics.median(times)


def batch_of(example: Tensor, size: int) -> Tensor:
    """``example`` (shape ``(1, *input_shape)``, or ``input_shape``) repeated into a batch of ``size``."""
    if example.dim() == 0:
        raise ValueError("an input example needs at least one dimension")
    row = example[:1]
    return row.expand(size, *row.shape[1:]).contiguous()


def measure_model(model: nn.Module, example: Tensor, *, batches: tuple[int, ...] = LATENCY_BATCHES,
                  warmup: int = 1, repeats: int = 5) -> dict[str, Any]:
    """Measure ``model`` on inputs shaped like ``example`` (one row of the task's inputs, on the
    model's device); the model's training mode is restored afterwards and its weights are untouched.

    Returns:
        a JSON-ready dict: ``parameters``, ``nonzero_parameters`` (counts), ``model_bytes``
        (serialized state dict), ``flops`` (one forward pass of a batch of 1), ``latency_ms_batch_{B}`` (median ms
        per forward pass of a batch of ``B``, for each of ``batches``), ``input_shape`` (one
        example's shape), ``device`` and ``measure_seconds`` (what measuring took).

    Raises:
        ValueError: a 0-d ``example``; whatever the model raises on the example.
    """
    start = time.perf_counter()
    x1 = _placed(model, batch_of(example, 1))
    device = x1.device
    total, nonzero = parameter_counts(model)
    out: dict[str, Any] = {"parameters": total, "nonzero_parameters": nonzero, "model_bytes": serialized_bytes(model),
                           "input_shape": list(x1.shape[1:]), "device": str(device)}
    was = model.training
    model.eval()
    try:
        # FlopCounterMode has no formulas for quantized kernels: an int8 model names its float
        # architecture (``flops_reference``), whose multiply-adds the int8 kernels perform alike
        counted = model.flops_reference() if hasattr(model, "flops_reference") else model
        out["flops"] = forward_flops(counted, _placed(counted, x1))
        for size in batches:
            out[f"latency_ms_batch_{size}"] = latency_ms(model, batch_of(x1, size), warmup=warmup, repeats=repeats)
    finally:
        model.train(was)
    out["measure_seconds"] = time.perf_counter() - start
    return out


__all__ = ["LATENCY_BATCHES", "batch_of", "forward_flops", "latency_ms", "measure_model", "parameter_counts",
           "serialized_bytes"]
