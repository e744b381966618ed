"""Structured pruning (Li, Kadav, Durdanovic, Samet & Graf 2017, "Pruning Filters for Efficient
ConvNets", sec. 3.1): whole output units (convolution filters, Linear neurons) of smallest L1 or L2
norm are removed, masked during training like the unstructured methods of
:mod:`optbench.techniques.pruning` (masks held in the component's state, applied to gradients and
weights), and :func:`shrink` builds the physically smaller model whose size, FLOPs and latency the
run records, so the speed-up is measured rather than assumed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from optbench.core.component import RunContext
from optbench.core.errors import ConfigError
from optbench.techniques import _validate
from optbench.techniques.pruning import PRUNABLE, MaskedComponent, keep_largest, prunable_layers

NORMS = ("l1", "l2")


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


class StructuredPruning(MaskedComponent):
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

    def check_recipe(self, recipe: Any) -> None:
        if self.epoch > recipe.epochs:
            raise ConfigError("structured_pruning epoch", self.epoch, f"an epoch of the run's {recipe.epochs}")

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
COMPONENTS = (StructuredPruning,)

__all__ = ["COMPONENTS", "NORMS", "StructuredPruning", "shrink"]
