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
:mod:`optbench.engine.model_cost`); structured pruning records the physically shrunk model's.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from optbench.core.component import Component, RunContext
from optbench.core.errors import ConfigError
from optbench.techniques import _validate

#: The module types whose ``weight`` pruning acts on.
PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
SCOPES = ("layer", "global")
NORMS = ("l1", "l2")


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


def _capture_hook(component: _MaskedComponent):
    """A forward pre-hook storing the first input example the model sees (one row, detached) for the
    end-of-run model cost. A plain function (not a bound method), so a deep copy of the model (EMA,
    SWA) does not copy the component."""
    def hook(module: nn.Module, args: tuple) -> None:
        if component.example_input is None and args and isinstance(args[0], Tensor):
            component.example_input = args[0][:1].detach().clone()
            if component._hook is not None:
                component._hook.remove()
                component._hook = None
    return hook


class _MaskedComponent(Component):
    """Shared machinery: explicit boolean masks on named parameters, applied to gradients after
    backward and to weights after every step; sparsity metric; masks in ``state_dict``; the example
    input for the model cost."""

    family = "compression"
    #: the run records ``environment["model_cost"]`` (:mod:`optbench.engine.model_cost`)
    measures_model: ClassVar[bool] = True

    def __init__(self) -> None:
        self.masks: dict[str, Tensor] = {}
        self.t = 0
        self.example_input: Tensor | None = None
        self._params: dict[str, nn.Parameter] = {}
        self._hook: Any = None
        self._optimizer: torch.optim.Optimizer | None = None
        self._model: nn.Module | None = None

    def _bind(self, run: RunContext, layers: Sequence[tuple[str, nn.Module]]) -> None:
        self._model = run.model
        self._optimizer = run.optimizer
        self._params = {f"{n}.weight": m.weight for n, m in layers}
        if self._hook is None and self.example_input is None:
            self._hook = run.model.register_forward_pre_hook(_capture_hook(self))

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

    def model_to_measure(self, model: nn.Module) -> nn.Module:
        """The module whose cost the run records (the trained one here)."""
        return model

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"t": self.t, "masks": {k: v.clone() for k, v in self.masks.items()}}
        if self.example_input is not None:
            state["example_input"] = self.example_input
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.t = int(state["t"])
        unknown = set(state["masks"]) - set(self._params)
        if unknown:
            raise KeyError(f"masks of unknown parameters {sorted(unknown)}")
        self.masks = {k: v.to(self._params[k].device, torch.bool) for k, v in state["masks"].items()}
        if "example_input" in state:
            self.example_input = state["example_input"]
        self.apply_masks()


def _scope(field: str, scope: Any) -> str:
    if scope not in SCOPES:
        raise ConfigError(field, scope, SCOPES)
    return scope


def _bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(field, value, "true or false")
    return value


class MagnitudePruning(_MaskedComponent):
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


class SnipPruning(_MaskedComponent):
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


def _unit_norms(weight: Tensor, norm: str) -> Tensor:
    flat = weight.detach().reshape(weight.shape[0], -1)
    return flat.abs().sum(1) if norm == "l1" else flat.pow(2).sum(1).sqrt()


def _following_norm(model: nn.Module, layers: Sequence[tuple[str, nn.Module]]) -> dict[str, tuple[str, nn.Module]]:
    """For each layer name, the BatchNorm module between it and the next Linear/Conv (module order)
    whose ``num_features`` equals the layer's output units."""
    order = list(model.named_modules())
    index = {name: i for i, (name, _) in enumerate(order)}
    out: dict[str, tuple[str, nn.Module]] = {}
    for name, layer in layers:
        for other, module in order[index[name] + 1:]:
            if isinstance(module, PRUNABLE):
                break
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.num_features == layer.weight.shape[0]:
                out[name] = (other, module)
                break
    return out


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


@torch.no_grad()
def shrink(model: nn.Module, keep: Mapping[str, Tensor]) -> nn.Module:
    """A physically smaller copy of ``model`` without the removed output units (structured pruning,
    Li et al. 2017, sec. 3.1: "pruning filters and feature maps").

    For each layer ``name`` in ``keep`` (a Linear or Conv with ``groups=1``, ``keep[name]`` the sorted
    indices of the output units kept), the copy has only those rows of the weight and bias, the
    matching channels of the BatchNorm that follows it, and the matching input channels of the next
    Linear/Conv in module order: for a Linear after a flattened conv output of ``C`` channels and
    ``S`` positions per channel (``in_features = C * S``), the features ``c * S + j`` of the kept
    channels. This assumes the layers form a chain in module order (each Linear/Conv feeds the next,
    through elementwise activations, pooling, dropout, batch norm and flatten), as the task
    catalogue's CNNs and MLPs do; check the result (structured pruning does before measuring).

    The kept units' outputs are unchanged; removed units must have contributed nothing (zero weights,
    bias and batch-norm affine parameters, an activation with ``f(0) = 0``), which is what the
    component's masks ensure, so the shrunk model's outputs equal the masked model's.

    Args:
        model: the (masked) model; not modified.
        keep: ``{layer name: 1-d LongTensor of kept output indices}``.

    Returns:
        the new module (a deep copy with smaller layers).

    Raises:
        ValueError: a named layer that is not a Linear/Conv with groups 1, the last layer, or a next
            layer whose inputs do not match the removed units.
    """
    model = copy.deepcopy(model)
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE)]
    names = [n for n, _ in layers]
    norms = _following_norm(model, layers)
    for name, kept in keep.items():
        if name not in names or names.index(name) == len(names) - 1:
            raise ValueError(f"{name!r} is not a Linear/Conv layer followed by another")
        i = names.index(name)
        layer, nxt = layers[i][1], layers[i + 1][1]
        if getattr(layer, "groups", 1) != 1 or getattr(nxt, "groups", 1) != 1:
            raise ValueError(f"grouped convolution at {name!r}")
        kept = kept.to(layer.weight.device)
        out_units = layer.weight.shape[0]
        layer.weight = nn.Parameter(layer.weight[kept].clone())
        if layer.bias is not None:
            layer.bias = nn.Parameter(layer.bias[kept].clone())
        if isinstance(layer, nn.Linear):
            layer.out_features = len(kept)
        else:
            layer.out_channels = len(kept)
        if name in norms:
            norm_name, bn = norms[name]
            new = copy.deepcopy(bn)
            new.num_features = len(kept)
            if bn.affine:
                new.weight = nn.Parameter(bn.weight[kept].clone())
                new.bias = nn.Parameter(bn.bias[kept].clone())
            if bn.track_running_stats and bn.running_mean is not None:
                new.running_mean = bn.running_mean[kept].clone()
                new.running_var = bn.running_var[kept].clone()
            _set(model, norm_name, new)
        in_units = nxt.weight.shape[1]
        if in_units == out_units:
            columns = kept
        elif isinstance(nxt, nn.Linear) and in_units % out_units == 0:
            per = in_units // out_units
            columns = (kept[:, None] * per + torch.arange(per, device=kept.device)).reshape(-1)
        else:
            raise ValueError(f"the layer after {name!r} takes {in_units} inputs, not a multiple of {out_units}")
        nxt.weight = nn.Parameter(nxt.weight[:, columns].clone())
        if isinstance(nxt, nn.Linear):
            nxt.in_features = len(columns)
        else:
            nxt.in_channels = len(columns)
    return model


class StructuredPruning(_MaskedComponent):
    """Structured pruning of whole output units (conv filters, linear neurons) by the norm of their
    weights (Li et al. 2017, "Pruning filters for efficient ConvNets", sec. 3.1, ``sum |w|``; the L2
    norm is the criterion's common variant), trained with masks and measured physically shrunk.

    At the end of epoch ``epoch`` (0: at initialization) each Linear/Conv layer but the output layer
    loses ``round(sparsity * units)`` of its units (at least one kept), those of smallest ``norm``; the
    masks then hold the unit's weight row, bias entry and the following BatchNorm's weight and bias
    entries at zero, so the unit's output is exactly 0 and contributes nothing downstream. The model
    trained is the masked one (same shapes in every engine); at the end of the run the recorded model
    cost (``environment["model_cost"]``) is that of :func:`shrink`'s smaller module, after checking
    that it gives the masked model's outputs on an input example (if not, e.g. for a model that is no
    chain or normalizes across channels, the masked model is measured and ``model_cost["shrunk"]`` is
    False).

    Args:
        sparsity: fraction of units removed per layer, in [0, 1).
        norm: ``l1`` or ``l2``.
        epoch: the epoch after which the units are removed (0: at initialization), >= 0.

    Raises:
        ConfigError: a value outside the stated ranges; at setup, an ``epoch`` beyond the run's.
    """

    name = "structured_pruning"
    source = "Li et al. 2017, sec. 3.1 (filter pruning by L1 norm)"
    description = "Remove the filters/neurons of smallest L1/L2 norm (masked in training, shrunk for measuring)."

    def __init__(self, *, sparsity: float, norm: str = "l1", epoch: int = 0) -> None:
        super().__init__()
        self.sparsity = _validate.number("structured_pruning sparsity", sparsity, low=0.0, high=1.0,
                                         high_open=True)
        if norm not in NORMS:
            raise ConfigError("structured_pruning norm", norm, NORMS)
        self.norm = norm
        self.epoch = _validate.integer("structured_pruning epoch", epoch, low=0)
        self.kept: dict[str, Tensor] = {}
        self._layers: list[tuple[str, nn.Module]] = []
        self._norms: dict[str, tuple[str, nn.Module]] = {}
        self._prune_step = 0
        self.shrunk = False

    def setup(self, run: RunContext) -> None:
        self._layers = [(n, m) for n, m in prunable_layers(run.model, include_last=False)
                        if getattr(m, "groups", 1) == 1]
        self._bind(run, self._layers)
        self._norms = _following_norm(run.model, self._layers)
        for name, layer in self._layers:  # the masked parameters: weight, bias, following BN's affine
            if layer.bias is not None:
                self._params[f"{name}.bias"] = layer.bias
            if name in self._norms and self._norms[name][1].affine:
                bn_name, bn = self._norms[name]
                self._params[f"{bn_name}.weight"], self._params[f"{bn_name}.bias"] = bn.weight, bn.bias
        epochs = max(1, run.total_steps // max(1, run.steps_per_epoch))
        if self.epoch > epochs:
            raise ConfigError("structured_pruning epoch", self.epoch, f"an epoch of the run's {epochs}")
        self._prune_step = self.epoch * run.steps_per_epoch
        if self._prune_step == 0:
            self._prune()

    @torch.no_grad()
    def _prune(self) -> None:
        self.kept, self.masks = {}, {}
        for name, layer in self._layers:
            units = layer.weight.shape[0]
            drop = min(round(self.sparsity * units), units - 1)
            keep = keep_largest(_unit_norms(layer.weight, self.norm), drop)
            self.kept[name] = keep.nonzero().reshape(-1)
            self.masks[f"{name}.weight"] = keep.view(-1, *([1] * (layer.weight.dim() - 1))).expand_as(layer.weight) \
                .clone()
            if layer.bias is not None:
                self.masks[f"{name}.bias"] = keep.clone()
            if name in self._norms and self._norms[name][1].affine:
                bn_name = self._norms[name][0]
                self.masks[f"{bn_name}.weight"] = keep.clone()
                self.masks[f"{bn_name}.bias"] = keep.clone()
        self.apply_masks()

    def after_step(self) -> None:
        self.t += 1
        if self.t == self._prune_step and not self.kept:
            self._prune()
        self.apply_masks()

    def metrics(self) -> dict[str, float]:
        if not self.kept:
            return {"units_removed": 0.0}
        total = sum(m.weight.shape[0] for _, m in self._layers)
        kept = sum(len(k) for k in self.kept.values())
        weights = [self._params[f"{n}.weight"] for n, _ in self._layers]
        zeros = sum(int((w == 0).sum()) for w in weights)
        return {"units_removed": 1.0 - kept / total, "sparsity": zeros / sum(w.numel() for w in weights)}

    def model_to_measure(self, model: nn.Module) -> nn.Module:
        """:func:`shrink` of ``model`` when it reproduces the masked model's outputs on the example
        input (1e-5 relative), else ``model`` (``self.shrunk`` says which)."""
        self.shrunk = False
        if not self.kept or self.example_input is None:
            return model
        was = model.training
        try:
            small = shrink(model, self.kept)
            model.eval()
            small.eval()
            with torch.no_grad():
                same = torch.allclose(small(self.example_input), model(self.example_input), rtol=1e-5, atol=1e-6)
        except (ValueError, RuntimeError):
            return model
        finally:
            model.train(was)
        self.shrunk = bool(same)
        return small if same else model

    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() | {"kept": {k: v.clone() for k, v in self.kept.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.kept = dict(state["kept"])


#: The techniques of this module (discovered by :mod:`optbench.techniques.registry`).
COMPONENTS = (MagnitudePruning, SnipPruning, StructuredPruning)

__all__ = ["COMPONENTS", "NORMS", "PRUNABLE", "SCOPES", "MagnitudePruning", "SnipPruning", "StructuredPruning",
           "cubic_sparsity", "cycle_sparsity", "keep_largest", "magnitude_masks", "prunable_layers", "shrink"]
