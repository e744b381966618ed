"""Cyclical learning rates (Smith 2017) and the 1cycle policy (Smith & Topin 2019).

Both optionally cycle the momentum (or Adam's beta1) against the lr, as
``torch.optim.lr_scheduler.CyclicLR`` / ``OneCycleLR`` do by default; here it is off unless
``cycle_momentum=True`` (then :class:`~optbench.schedules.controller.LRController` writes it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from optbench.schedules.base import Schedule, check, is_int, is_number, step_index

CYCLIC_MODES = ("triangular", "triangular2", "exp_range")
ANNEAL = ("cos", "linear")


def _check_momenta(name: str, base_momentum: float, max_momentum: float) -> None:
    for field, value in (("base_momentum", base_momentum), ("max_momentum", max_momentum)):
        check(f"{name} {field}", is_number(value) and 0 <= value < 1, value, "a number in [0, 1)")


@dataclass(frozen=True)
class Cyclic(Schedule):
    """Cyclical learning rate between ``lr0`` (``base_lr``, the recipe's lr) and ``max_lr``.

    With ``C = step_size_up + step_size_down``, ``cycle = floor(1 + t / C)`` and
    ``x = 1 + t / C - cycle`` (the position in the cycle, in [0, 1)), the rise/fall fraction is
    ``h = x / r`` for ``x <= r`` else ``(x - 1) / (r - 1)`` with ``r = step_size_up / C``, and::

        lr(t) = lr0 + (max_lr - lr0) * h * scale
        scale = 1 (triangular) | 1 / 2 ** (cycle - 1) (triangular2) | gamma ** t (exp_range)

    Source: Smith 2017, "Cyclical learning rates for training neural networks", section 3.1
    (the three policies), and ``torch.optim.lr_scheduler.CyclicLR`` (same formula, ``base_lr``
    = our ``lr0``). Smith recommends ``step_size_up`` of 2-10 epochs (section 3.3); the
    default, 2000 steps, is torch's. With ``cycle_momentum`` the momentum runs the other way,
    ``max_momentum - (max_momentum - base_momentum) * h * scale``.
    """

    base_lr: float
    max_lr: float
    step_size_up: int = 2000
    step_size_down: int | None = None
    mode: str = "triangular"
    gamma: float = 1.0
    cycle_momentum: bool = False
    base_momentum: float = 0.8
    max_momentum: float = 0.9

    def __post_init__(self) -> None:
        check("cyclic lr", is_number(self.base_lr) and self.base_lr > 0, self.base_lr, "a number > 0")
        check("cyclic max_lr", is_number(self.max_lr) and self.max_lr >= self.base_lr, self.max_lr,
              f"a number >= lr={self.base_lr:g}")
        check("cyclic step_size_up", is_int(self.step_size_up) and self.step_size_up >= 1, self.step_size_up,
              "an integer >= 1")
        down = self.step_size_down
        check("cyclic step_size_down", down is None or (is_int(down) and down >= 1), down, "an integer >= 1")
        check("cyclic mode", self.mode in CYCLIC_MODES, self.mode, CYCLIC_MODES)
        check("cyclic gamma", is_number(self.gamma) and 0 < self.gamma <= 1, self.gamma, "a number in (0, 1]")
        check("cyclic cycle_momentum", isinstance(self.cycle_momentum, bool), self.cycle_momentum, "true, false")
        _check_momenta("cyclic", self.base_momentum, self.max_momentum)

    def _phase(self, step: int) -> tuple[float, float]:
        """``(h, scale)``: ``h`` is 0 at a cycle's start and 1 at its peak; ``scale`` the policy's."""
        t = step_index(step)
        up = float(self.step_size_up)
        down = float(self.step_size_down) if self.step_size_down is not None else up
        total = up + down
        ratio = up / total
        cycle = math.floor(1 + t / total)
        x = 1.0 + t / total - cycle
        h = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
        if self.mode == "triangular":
            return h, 1.0
        if self.mode == "triangular2":
            return h, 1 / (2.0 ** (cycle - 1))
        return h, self.gamma ** t

    def __call__(self, step: int) -> float:
        h, scale = self._phase(step)
        return self.base_lr + (self.max_lr - self.base_lr) * h * scale

    def momentum(self, step: int) -> float | None:
        if not self.cycle_momentum:
            return None
        h, scale = self._phase(step)
        return self.max_momentum - (self.max_momentum - self.base_momentum) * h * scale


@dataclass(frozen=True)
class OneCycle(Schedule):
    """The 1cycle policy, matching ``torch.optim.lr_scheduler.OneCycleLR`` step for step.

    With ``T = total_steps``, ``initial = max_lr / div_factor`` and
    ``final = initial / final_div_factor``, the lr anneals (cosine or linear) from ``initial``
    to ``max_lr`` over steps ``0 .. pct_start*T - 1``, then from ``max_lr`` to ``final`` until
    step ``T - 1`` (``three_phase``: up, back down to ``initial`` by ``2*pct_start*T - 2``, then
    to ``final``). Cosine annealing from ``a`` to ``b`` at fraction ``p`` is
    ``b + (a - b) * (1 + cos(pi * p)) / 2``; linear is ``a + (b - a) * p``. After step
    ``T - 1`` the final lr is held (torch raises instead). ``max_lr`` defaults to the recipe's
    lr. Source: Smith & Topin 2019, "Super-convergence: very fast training of neural networks
    using large learning rates", section 3 and Fig. 1; Smith 2018 (arXiv:1803.09820) for
    cycling the momentum between ``max_momentum`` and ``base_momentum``.
    """

    base_lr: float
    total_steps: int
    max_lr: float | None = None
    pct_start: float = 0.3
    anneal: str = "cos"
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    three_phase: bool = False
    cycle_momentum: bool = False
    base_momentum: float = 0.85
    max_momentum: float = 0.95

    def __post_init__(self) -> None:
        check("one_cycle lr", is_number(self.base_lr) and self.base_lr > 0, self.base_lr, "a number > 0")
        check("one_cycle total_steps", is_int(self.total_steps) and self.total_steps >= 2, self.total_steps,
              "an integer >= 2")
        peak = self.max_lr
        check("one_cycle max_lr", peak is None or (is_number(peak) and peak > 0), peak, "a number > 0")
        check("one_cycle pct_start", is_number(self.pct_start) and 0 < self.pct_start < 1, self.pct_start,
              "a number in (0, 1)")
        check("one_cycle anneal", self.anneal in ANNEAL, self.anneal, ANNEAL)
        for field in ("div_factor", "final_div_factor"):
            value = getattr(self, field)
            check(f"one_cycle {field}", is_number(value) and value > 0, value, "a number > 0")
        check("one_cycle three_phase", isinstance(self.three_phase, bool), self.three_phase, "true, false")
        check("one_cycle cycle_momentum", isinstance(self.cycle_momentum, bool), self.cycle_momentum, "true, false")
        _check_momenta("one_cycle", self.base_momentum, self.max_momentum)
        ends = [end for end, *_ in self._phases()]
        starts = [0.0, *ends[:-1]]
        check("one_cycle pct_start", all(e > s for s, e in zip(starts, ends, strict=True)), self.pct_start,
              f"a fraction leaving every phase at least one step of total_steps={self.total_steps}")

    @property
    def peak_lr(self) -> float:
        """``max_lr``, or the recipe's lr when not given."""
        return self.base_lr if self.max_lr is None else float(self.max_lr)

    def _phases(self) -> list[tuple[float, float, float, float, float]]:
        """``(end_step, start_lr, end_lr, start_momentum, end_momentum)`` per phase, as torch."""
        peak = self.peak_lr
        initial = peak / self.div_factor
        final = initial / self.final_div_factor
        lo, hi = self.base_momentum, self.max_momentum
        first = float(self.pct_start * self.total_steps) - 1
        last = float(self.total_steps - 1)
        if self.three_phase:
            return [(first, initial, peak, hi, lo),
                    (float(2 * self.pct_start * self.total_steps) - 2, peak, initial, lo, hi),
                    (last, initial, final, hi, hi)]
        return [(first, initial, peak, hi, lo), (last, peak, final, lo, hi)]

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _at(self, step: int, momentum: bool) -> float:
        t = min(step_index(step), self.total_steps - 1)
        phases = self._phases()
        start = 0.0
        for i, (end, lr_a, lr_b, m_a, m_b) in enumerate(phases):
            if t <= end or i == len(phases) - 1:
                pct = (t - start) / (end - start)
                return self._anneal(m_a, m_b, pct) if momentum else self._anneal(lr_a, lr_b, pct)
            start = end
        raise AssertionError("unreachable")  # the last phase always matches

    def __call__(self, step: int) -> float:
        return self._at(step, momentum=False)

    def momentum(self, step: int) -> float | None:
        return self._at(step, momentum=True) if self.cycle_momentum else None


__all__ = ["ANNEAL", "CYCLIC_MODES", "Cyclic", "OneCycle"]
