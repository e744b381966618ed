"""Pruning as training techniques: unstructured magnitude pruning with the gradual cubic schedule
(Zhu & Gupta 2017), iterative prune-fine-tune cycles with lottery-ticket rewinding (Frankle & Carbin
2019), SNIP's connection sensitivity at initialization (Lee et al. 2019), and structured pruning of
whole filters/neurons by their norm (Li et al. 2017) with a physical :func:`shrink` of the model.

Masks are explicit: each component keeps one boolean mask per pruned weight (in its
``state_dict``, so masks survive checkpoints and resume) and applies it on the update side, in
``after_backward`` (the gradient of a pruned weight is zeroed, so optimizer state does not
accumulate for it) and in ``after_step`` (the weight itself is zeroed again, because momentum,
Adam's moments or a coupled weight decay would otherwise regrow it). The optimizer therefore sees the
real parameter, and the weights the model holds are exactly the pruned weights. This was chosen
over ``torch.nn.utils.prune``'s forward pre-hooks (``weight_orig`` x ``weight_mask``) because those
turn the mask into a module buffer and the weight into a computed attribute: the parameter server
sends the workers' buffers (batch-norm statistics) to the server with every gradient, so the
workers' stale masks would overwrite the server's; the checkpointed model and the measured model
size would hold every weight twice; and a physically shrunk model needs plain weights. The mask
rule itself is torch's: the ``k = round(s * n)`` entries of smallest magnitude go, over one tensor
(``torch.nn.utils.prune.l1_unstructured``) or over all pruned tensors together
(``torch.nn.utils.prune.global_unstructured`` with ``L1Unstructured``); already pruned entries are
ranked first, so a mask only ever grows and the count is exact.

Which layers: the weights of ``nn.Linear`` and ``nn.Conv1d/2d/3d`` modules, in module order. The
model's last such layer (the output layer: its rows are the classes) is left dense unless
``include_last=true``, following Gale et al. 2019 ("The state of sparsity in deep neural networks",
sec. 4), who found that pruning it costs most accuracy per weight; Zhu & Gupta prune every layer,
so ``include_last=true`` reproduces them. Biases and normalization parameters are never pruned.

Every component here runs in every engine: masks are computed on the update side from the weights
(or, for SNIP, from the reduced gradient of the first step), which are identical on every DDP replica
and live on the parameter server in ``ps``; the workers receive the pruned weights with every pull.
They record the model's cost at the end of the run (``measures_model``, see
:mod:`optbench.techniques.model_measure`). Structured pruning and its :func:`shrink` live in
:mod:`optbench.techniques.structured_pruning`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from optbench.core.component import RunContext
from optbench.core.errors import ConfigError
from optbench.techniques import _validate
from optbench.techniques.model_measure import MeasuredModel

#: The module types whose ``weight`` pruning acts on.
PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
SCOPES = ("layer", "global")


# ---------------------------------------------------------------- helpers (pure functions)
def prunable_layers(model: nn.Module, *, include_last: bool) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every ``nn.Linear``/``nn.Conv1d/2d/3d`` of ``model`` in module order,
    the last one (the output layer) left out unless ``include_last``."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE)]
    return layers if include_last else layers[:-1]


def cubic_sparsity(t: int, *, initial: float, final: float, start: int, end: int) -> float:
    """The gradual pruning schedule of Zhu & Gupta 2017, eq. 1:
    ``s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n dt))^3`` for ``t0 <= t <= t0 + n dt``.

    Args:
        t: optimizer steps taken.
        initial, final: ``s_i`` and ``s_f`` (fractions of pruned weights in [0, 1)).
        start, end: ``t0`` and ``t0 + n dt`` in steps (``end >= start``).

    Returns:
        0 before ``start``, ``final`` from ``end`` on (also when ``end == start``: one-shot pruning).
    """
    if t < start:
        return 0.0
    if t >= end:
        return final
    return final + (initial - final) * (1.0 - (t - start) / (end - start)) ** 3


def cycle_sparsity(k: int, cycles: int, final: float) -> float:
    """Sparsity after cycle ``k`` of ``cycles`` of iterative pruning (Frankle & Carbin 2019, sec. 1:
    each round prunes the same fraction of the surviving weights): the density ``1 - s`` falls
    geometrically, ``1 - s_k = (1 - s_f)^(k / cycles)``, so cycle ``cycles`` reaches ``final``."""
    return 1.0 - (1.0 - final) ** (k / cycles)


def keep_largest(scores: Tensor, k: int) -> Tensor:
    """Boolean mask of ``scores``' shape that drops the ``k`` smallest entries (``topk``; ties by
    index order of ``torch.topk``), the rule of ``torch.nn.utils.prune.L1Unstructured`` applied to
    any score. Exactly ``k`` entries are False.

    Raises:
        ValueError: ``k`` outside ``[0, scores.numel()]``.
    """
    if not 0 <= k <= scores.numel():
        raise ValueError(f"cannot prune {k} of {scores.numel()} entries")
    keep = torch.ones(scores.shape, dtype=torch.bool, device=scores.device)
    if k:
        keep.view(-1)[torch.topk(scores.reshape(-1), k, largest=False).indices] = False
    return keep


def magnitude_masks(scores: Sequence[Tensor], sparsity: float, scope: str,
                    previous: Sequence[Tensor] | None = None) -> list[Tensor]:
    """Masks dropping the ``round(sparsity * n)`` smallest scores per tensor (``scope="layer"``,
    ``n`` its size) or over all tensors together (``"global"``, ``n`` the total; the rule of
    ``torch.nn.utils.prune.global_unstructured``). Entries already False in ``previous`` rank below
    every score, so they stay pruned as long as the sparsity does not fall.

    Args:
        scores: one float tensor per pruned weight (``|w|`` for magnitude pruning, ``|w * g|`` for SNIP).
        sparsity: the fraction to drop, in [0, 1).
        scope: ``layer`` or ``global``.
        previous: the current masks, or None.

    Raises:
        ValueError: an unknown scope.
    """
    ranked = [s.detach().float().clone() for s in scores]
    if previous is not None:
        for s, m in zip(ranked, previous, strict=True):
            s[~m] = -math.inf
    if scope == "layer":
        return [keep_largest(s, round(sparsity * s.numel())) for s in ranked]
    if scope != "global":
        raise ValueError(f"unknown scope {scope!r}")
    flat = torch.cat([s.reshape(-1) for s in ranked])
    keep = keep_largest(flat, round(sparsity * flat.numel()))
    return [part.view(s.shape) for part, s in zip(keep.split([s.numel() for s in ranked]), ranked, strict=True)]


class MaskedComponent(MeasuredModel):
    """Shared machinery: explicit boolean masks on named parameters, applied to gradients after
    backward and to weights after every step; sparsity metric; masks in ``state_dict``; the example
    input for the model cost."""

    family = "compression"

    def __init__(self) -> None:
        super().__init__()
        self.masks: dict[str, Tensor] = {}
        self.t = 0
        self._params: dict[str, nn.Parameter] = {}
        self._optimizer: torch.optim.Optimizer | None = None
        self._model: nn.Module | None = None

    def _bind(self, run: RunContext, layers: Sequence[tuple[str, nn.Module]]) -> None:
        self._model = run.model
        self._optimizer = run.optimizer
        self._params = {f"{n}.weight": m.weight for n, m in layers}
        self.capture_example(run.model)

    @torch.no_grad()
    def apply_masks(self) -> None:
        """Zero the pruned weights (``w *= mask``)."""
        for name, mask in self.masks.items():
            self._params[name].masked_fill_(~mask, 0.0)

    @torch.no_grad()
    def after_backward(self) -> None:
        for name, mask in self.masks.items():
            grad = self._params[name].grad
            if grad is not None:
                grad.masked_fill_(~mask, 0.0)

    def after_step(self) -> None:
        self.t += 1
        self.apply_masks()

    def metrics(self) -> dict[str, float]:
        """``sparsity``: the fraction of exactly-zero weights over the pruned layers' weights."""
        if not self._params:
            return {}
        total = sum(p.numel() for p in self._params.values())
        zeros = sum(int((p == 0).sum()) for p in self._params.values())
        return {"sparsity": zeros / total}

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t, "masks": {k: v.clone() for k, v in self.masks.items()}, **self.example_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.t = int(state["t"])
        unknown = set(state["masks"]) - set(self._params)
        if unknown:
            raise KeyError(f"masks of unknown parameters {sorted(unknown)}")
        self.masks = {k: v.to(self._params[k].device, torch.bool) for k, v in state["masks"].items()}
        self.load_example_state(state)
        self.apply_masks()


def _scope(field: str, scope: Any) -> str:
    if scope not in SCOPES:
        raise ConfigError(field, scope, SCOPES)
    return scope


def _bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(field, value, "true or false")
    return value


class MagnitudePruning(MaskedComponent):
    """Unstructured magnitude pruning of Linear/Conv weights, gradual (Zhu & Gupta 2017, "To prune,
    or not to prune", sec. 3, eq. 1) or in prune-fine-tune cycles with optional lottery-ticket
    rewinding (Frankle & Carbin 2019, "The lottery ticket hypothesis", sec. 1 and 5).

    Schedule (steps: ``t`` = optimizer steps taken, ``spe`` = steps per epoch;
    ``t0 = start_epoch * spe``, ``t1 = end_epoch * spe``):

    * ``cycles = 0`` (gradual): at ``t = t0, t0 + frequency, ...`` and at ``t1`` the weights of
      smallest magnitude are pruned to ``s_t`` of :func:`cubic_sparsity` (``initial_sparsity`` at
      ``t0``, ``sparsity`` from ``t1`` on); ``start_epoch = end_epoch`` prunes once (at
      initialization for 0).
    * ``cycles = c > 0`` (iterative): at ``t0 + round(k (t1 - t0) / c)``, ``k = 1..c``, prune to
      :func:`cycle_sparsity` (``1 - (1 - s)^(k/c)``) and fine-tune until the next boundary.
    * ``rewind_epoch = e``: the parameters at the end of epoch ``e`` (0: at initialization) are kept,
      and after every pruning event every parameter of the model is reset to them (pruned weights
      to 0) and its optimizer state is cleared (training restarts from the rewound point, as
      Frankle & Carbin retrain; the learning-rate schedule is not rewound).

    Args:
        sparsity: final fraction ``s_f`` of pruned weights in [0, 1) (per layer, or over all pruned
            layers for ``scope=global``); exact up to rounding (``round(s * n)`` weights).
        scope: ``layer`` (every layer to ``s``) or ``global`` (one threshold over all layers).
        initial_sparsity: ``s_i`` in [0, sparsity].
        start_epoch: epoch after which pruning starts (``t0``; 0 = at initialization), >= 0.
        end_epoch: epoch at whose end ``sparsity`` is reached (>= start_epoch); default: half the
            run's epochs (rounded up), at least ``start_epoch``.
        frequency: steps between gradual pruning events (``dt``), >= 1; default: once per epoch.
        cycles: prune-fine-tune cycles (0: the gradual schedule), >= 0.
        rewind_epoch: lottery-ticket rewinding to this epoch's parameters (<= start_epoch), or None.
        include_last: also prune the output layer (see the module docstring).

    Raises:
        ConfigError: any value outside the stated ranges (one line naming the field); at setup, an
            ``end_epoch`` beyond the run's epochs, or cycles on an empty pruning window.
    """

    name = "magnitude_pruning"
    source = "Zhu & Gupta 2017, sec. 3 (eq. 1); Frankle & Carbin 2019 (iterative pruning, rewinding)"
    description = "Zero the smallest-magnitude Linear/Conv weights on a cubic schedule or in cycles; masks held."

    def __init__(self, *, sparsity: float, scope: str = "layer", initial_sparsity: float = 0.0,
                 start_epoch: int = 0, end_epoch: int | None = None, frequency: int | None = None,
                 cycles: int = 0, rewind_epoch: int | None = None, include_last: bool = False) -> None:
        super().__init__()
        self.sparsity = _validate.number("magnitude_pruning sparsity", sparsity, low=0.0, high=1.0, high_open=True)
        self.scope = _scope("magnitude_pruning scope", scope)
        self.initial_sparsity = _validate.number("magnitude_pruning initial_sparsity", initial_sparsity,
                                                 low=0.0, high=self.sparsity)
        self.start_epoch = _validate.integer("magnitude_pruning start_epoch", start_epoch, low=0)
        self.end_epoch = None if end_epoch is None else _validate.integer(
            "magnitude_pruning end_epoch", end_epoch, low=self.start_epoch)
        self.frequency = None if frequency is None else _validate.integer(
            "magnitude_pruning frequency", frequency, low=1)
        self.cycles = _validate.integer("magnitude_pruning cycles", cycles, low=0)
        if rewind_epoch is not None and (isinstance(rewind_epoch, bool) or not isinstance(rewind_epoch, int)
                                         or not 0 <= rewind_epoch <= self.start_epoch):
            raise ConfigError("magnitude_pruning rewind_epoch", rewind_epoch,
                              f"an integer in [0, start_epoch={self.start_epoch}] or none")
        self.rewind_epoch = rewind_epoch
        self.include_last = _bool("magnitude_pruning include_last", include_last)
        self.target = 0.0
        self.rewind: dict[str, Tensor] | None = None
        self._events: dict[int, float] = {}
        self._rewind_step: int | None = None

    def check_recipe(self, recipe: Any) -> None:
        """The pruning window must lie within the recipe's epochs (the errors of :meth:`schedule`)."""
        self.schedule(steps_per_epoch=1, total_steps=max(1, int(recipe.epochs)))

    def schedule(self, steps_per_epoch: int, total_steps: int) -> dict[int, float]:
        """``{step t: sparsity s_t}`` of every pruning event (``t`` = optimizer steps taken; 0 = at
        initialization).

        Raises:
            ConfigError: ``end_epoch`` beyond the run's epochs; cycles with ``end_epoch == start_epoch``.
        """
        epochs = max(1, total_steps // max(1, steps_per_epoch))
        end_epoch = self.end_epoch if self.end_epoch is not None else max(self.start_epoch, math.ceil(epochs / 2))
        if end_epoch > epochs:
            raise ConfigError("magnitude_pruning end_epoch", end_epoch, f"an epoch of the run's {epochs}")
        t0, t1 = self.start_epoch * steps_per_epoch, end_epoch * steps_per_epoch
        if self.cycles:
            if t1 <= t0:
                raise ConfigError("magnitude_pruning cycles", self.cycles,
                                  "0 unless end_epoch > start_epoch (the cycles share that window)")
            return {t0 + round(k * (t1 - t0) / self.cycles): cycle_sparsity(k, self.cycles, self.sparsity)
                    for k in range(1, self.cycles + 1)}
        dt = self.frequency or steps_per_epoch
        events = {t: cubic_sparsity(t, initial=self.initial_sparsity, final=self.sparsity, start=t0, end=t1)
                  for t in range(t0, t1 + 1, dt)}
        events[t1] = self.sparsity
        return {t: s for t, s in events.items() if s > 0}

    def setup(self, run: RunContext) -> None:
        self._bind(run, prunable_layers(run.model, include_last=self.include_last))
        if not self._params:
            raise ConfigError("magnitude_pruning include_last", self.include_last,
                              "true (the model has a single Linear/Conv layer)")
        self._events = self.schedule(run.steps_per_epoch, run.total_steps)
        self._rewind_step = None if self.rewind_epoch is None else self.rewind_epoch * run.steps_per_epoch
        self._at_step(0)

    @torch.no_grad()
    def _at_step(self, t: int) -> None:
        if t == self._rewind_step and self.rewind is None:
            self.rewind = {n: p.detach().clone() for n, p in self._model.named_parameters()}
        target = self._events.get(t)
        if target is None:
            return
        self.target = target
        names = list(self._params)
        masks = magnitude_masks([self._params[n].abs() for n in names], target, self.scope,
                                [self.masks[n] for n in names] if self.masks else None)
        self.masks = dict(zip(names, masks, strict=True))
        if self.rewind is not None:
            self._rewind_weights()
        self.apply_masks()

    @torch.no_grad()
    def _rewind_weights(self) -> None:
        for name, p in self._model.named_parameters():
            if name in self.rewind:
                p.copy_(self.rewind[name])
                if self._optimizer is not None:
                    self._optimizer.state.pop(p, None)

    def after_step(self) -> None:
        self.t += 1
        self._at_step(self.t)  # prunes (and rewinds) at an event
        self.apply_masks()

    def metrics(self) -> dict[str, float]:
        return super().metrics() | {"target_sparsity": self.target}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict() | {"target": self.target}
        if self.rewind is not None:
            state["rewind"] = {k: v.clone() for k, v in self.rewind.items()}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.target = float(state["target"])
        self.rewind = dict(state["rewind"]) if "rewind" in state else None


class SnipPruning(MaskedComponent):
    """SNIP (Lee et al. 2019, "SNIP: single-shot network pruning based on connection sensitivity",
    sec. 4, eq. 6): prune once, at initialization, the connections of smallest sensitivity
    ``|w * dL/dw|`` on one batch (the normalization of eq. 6 does not change the ranking).

    The batch is the run's first training batch: the scores come from the first step's gradient as
    it reaches the update side (reduced over DDP replicas, on the server in ``ps``; the gradient of
    the training objective, so of any penalty or loss wrapper of the recipe too), at the initial
    weights; the masks are set before that step's update, which is the only difference from the
    paper: that first update is the masked gradient at the dense initialization rather than the
    gradient at the pruned one.

    Args:
        sparsity: fraction of pruned weights in [0, 1).
        scope: ``global`` (the paper: one threshold over all layers) or ``layer``.
        include_last: also prune the output layer (the paper prunes every layer).

    Raises:
        ConfigError: a value outside the stated ranges.
    """

    name = "snip_pruning"
    source = "Lee et al. 2019, sec. 4 (eq. 6)"
    description = "Prune once before training the weights of smallest |w * dL/dw| on the first batch."

    def __init__(self, *, sparsity: float, scope: str = "global", include_last: bool = False) -> None:
        super().__init__()
        self.sparsity = _validate.number("snip_pruning sparsity", sparsity, low=0.0, high=1.0, high_open=True)
        self.scope = _scope("snip_pruning scope", scope)
        self.include_last = _bool("snip_pruning include_last", include_last)
        self.scores: dict[str, Tensor] = {}

    def setup(self, run: RunContext) -> None:
        self._bind(run, prunable_layers(run.model, include_last=self.include_last))

    @torch.no_grad()
    def after_backward(self) -> None:
        if not self.masks:
            names = [n for n, p in self._params.items() if p.grad is not None]
            self.scores = {n: (self._params[n] * self._params[n].grad).abs() for n in names}
            masks = magnitude_masks([self.scores[n] for n in names], self.sparsity, self.scope)
            self.masks = dict(zip(names, masks, strict=True))
        super().after_backward()


#: The techniques of this module (discovered by :mod:`optbench.techniques.registry`).
COMPONENTS = (MagnitudePruning, SnipPruning)

__all__ = ["COMPONENTS", "PRUNABLE", "MaskedComponent", "SCOPES", "MagnitudePruning", "SnipPruning",
           "cubic_sparsity", "cycle_sparsity", "keep_largest", "magnitude_masks", "prunable_layers"]
