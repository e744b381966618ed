"""What an optimizer costs besides accuracy: its state memory and its step time, measured per run.

Recorded in ``RunResult.environment["optimizer_cost"]`` (docs/architecture.md, "The step"):

* ``state_bytes_per_param``: bytes of every tensor in ``optimizer.state`` after the first step,
  divided by the number of trained scalar parameters (Adam: 8 in float32 plus its step counter;
  SGD: 0; momentum: 4); ``state_bytes_per_param_final`` the same at the end of the run (methods
  that allocate preconditioners later, such as Shampoo, grow);
* ``step_us_median``: median wall time of ``optimizer.step()`` in microseconds over the timed steps
  (every :data:`EVERY`-th step, the device synchronized around it on CUDA), and
  ``step_ns_per_param`` the same per trained scalar parameter in nanoseconds; for optimizers that
  re-evaluate the loss (closure optimizers) the time includes those forward/backward passes
  (``includes_closure``);
* ``peak_memory_bytes``: the device's peak allocated memory during the run where the device reports
  it (CUDA), else None.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch

#: Every how many steps ``optimizer.step()`` is timed (each timing is two clock reads, and two
#: device synchronizations on CUDA).
EVERY = 8
#: At most this many timings are kept (the median of the first ones is representative).
KEEP = 512


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor held in ``optimizer.state`` (moments, preconditioners, step counters)."""
    total = 0
    seen: set[int] = set()
    for state in optimizer.state.values():
        for value in state.values():
            for t in value if isinstance(value, list | tuple) else (value,):
                if isinstance(t, torch.Tensor) and id(t) not in seen:
                    seen.add(id(t))
                    total += t.numel() * t.element_size()
    return total


def trained_numel(optimizer: torch.optim.Optimizer) -> int:
    """Scalar parameters the optimizer updates (each tensor counted once)."""
    seen: set[int] = set()
    total = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return total


class OptimizerCost:
    """Times ``optimizer.step()`` on every :data:`EVERY`-th step and measures the optimizer's state.

    Usage in the step::

        if cost.due():
            cost.start(); optimizer.step(); cost.stop()
        else:
            optimizer.step()

    Args:
        optimizer: the run's optimizer.
        device: where it steps (CUDA is synchronized around a timed step).
        includes_closure: the timed call re-evaluates the loss (closure optimizers).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, device: torch.device, *,
                 includes_closure: bool = False) -> None:
        self.optimizer = optimizer
        self.cuda = device.type == "cuda"
        self.device = device
        self.includes_closure = includes_closure
        self.steps = 0
        self.seconds: list[float] = []
        self.first_state_bytes: int | None = None
        self._t0 = 0.0
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)

    def due(self) -> bool:
        """Whether this step is timed (counts the step)."""
        self.steps += 1
        return self.steps == 1 or (self.steps % EVERY == 0 and len(self.seconds) < KEEP)

    def start(self) -> None:
        """Before the timed ``optimizer.step()``."""
        if self.cuda:
            torch.cuda.synchronize(self.device)
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        """After the timed ``optimizer.step()``; the first call also measures the state after step 1."""
        if self.cuda:
            torch.cuda.synchronize(self.device)
        elapsed = time.perf_counter() - self._t0
        if self.first_state_bytes is None:
            self.first_state_bytes = state_bytes(self.optimizer)  # step 1 allocates the state: not timed
        else:
            self.seconds.append(elapsed)

    def record(self) -> dict[str, Any]:
        """The JSON-ready record (keys in the module docstring); times None before two steps (PostgreSQL's
        JSON has no NaN)."""
        numel = max(trained_numel(self.optimizer), 1)
        median = statistics.median(self.seconds) if self.seconds else None  # None, not NaN: JSON stores
        first = self.first_state_bytes if self.first_state_bytes is not None else state_bytes(self.optimizer)
        return {
            "state_bytes_per_param": first / numel,
            "state_bytes_per_param_final": state_bytes(self.optimizer) / numel,
            "step_us_median": None if median is None else median * 1e6,
            "step_ns_per_param": None if median is None else median * 1e9 / numel,
            "timed_steps": len(self.seconds),
            "trained_parameters": numel,
            "includes_closure": self.includes_closure,
            "peak_memory_bytes": int(torch.cuda.max_memory_allocated(self.device)) if self.cuda else None,
        }


__all__ = ["EVERY", "KEEP", "OptimizerCost", "state_bytes", "trained_numel"]
