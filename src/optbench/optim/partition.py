"""Parameter partitions: optimizers that take only part of a model (the *parameter partition*
contract of :class:`optbench.optim.Capabilities`).

Muon (Jordan et al. 2024) orthogonalizes the update of a weight matrix; it is meant for the hidden
weight matrices only: "Muon should only be used for hidden weight layers. The input embedding,
final output layer, and any internal gains or biases should be optimized using a standard method
such as AdamW. Hidden convolutional weights can be trained using Muon by viewing them as 2D" (the
authors' ``muon`` package; modded-nanogpt and airbench use it so). Handing it a conv filter, a
bias or the classifier is what made plain ``torch.muon`` fail on every CNN.

A partition rule maps a model to named parts; :func:`partition_groups` turns the parts into the
parameter groups the optimizer class takes and :class:`Partition` records what each part got.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from torch import Tensor, nn

from optbench.core.errors import ConfigError


@dataclass(frozen=True)
class Part:
    """One part of a partition: its name, its tensors (model order) and their parameter names."""

    name: str
    params: tuple[Tensor, ...]
    names: tuple[str, ...]

    @property
    def numel(self) -> int:
        """Scalar parameters in this part."""
        return sum(p.numel() for p in self.params)


@dataclass(frozen=True)
class Partition:
    """A model's trainable parameters split into parts (each listed once, model order).

    Attributes:
        rule: the rule's name (``"hidden_matrices"``).
        parts: the parts, in the order their groups are given to the optimizer.
    """

    rule: str
    parts: tuple[Part, ...]

    def record(self) -> dict[str, Any]:
        """JSON-ready summary stored with the run: ``{"rule", "parts": {name: {"tensors",
        "parameters", "names"}}}`` (parameters: scalar count)."""
        return {"rule": self.rule,
                "parts": {p.name: {"tensors": len(p.params), "parameters": p.numel, "names": list(p.names)}
                          for p in self.parts}}


def _weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules owning a ``weight`` parameter with 2+ dimensions (Linear, Conv*, Embedding, ...), in
    module order."""
    out = []
    for name, module in model.named_modules():
        weight = module._parameters.get("weight")
        if isinstance(weight, Tensor) and weight.ndim >= 2:
            out.append((name, module))
    return out


def hidden_matrices(model: nn.Module) -> Partition:
    """Muon's partition (Jordan et al. 2024): part ``"muon"`` gets every trainable parameter with
    2+ dimensions (conv filters are flattened to out x in*k*k by the optimizer) of every layer
    except the first and the last weight layer (the input layer and the output head) and except
    embeddings; part ``"adamw"`` gets the rest: those layers, biases, normalization gains and any
    1-d parameter.

    Raises:
        ConfigError: the model has no hidden weight matrix (fewer than three weight layers), so
            Muon would train nothing: the partition contract cannot be met.
    """
    layers = _weight_layers(model)
    outer = {id(layers[0][1]), id(layers[-1][1])} if layers else set()
    hidden_ids: set[int] = set()
    for _, module in layers:
        if id(module) in outer or isinstance(module, nn.Embedding | nn.EmbeddingBag):
            continue
        for p in module.parameters(recurse=False):
            if p.ndim >= 2:
                hidden_ids.add(id(p))
    muon: list[tuple[str, Tensor]] = []
    adamw: list[tuple[str, Tensor]] = []
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (muon if id(p) in hidden_ids else adamw).append((name, p))
    if not muon:
        raise ConfigError("parameter partition hidden_matrices of the model", f"{len(layers)} weight layers",
                          "a model with a hidden weight matrix (3+ weight layers: input, hidden, output)")
    return Partition("hidden_matrices", (
        Part("muon", tuple(p for _, p in muon), tuple(n for n, _ in muon)),
        Part("adamw", tuple(p for _, p in adamw), tuple(n for n, _ in adamw)),
    ))


#: Partition rules by name (the values of :attr:`optbench.optim.Capabilities.partition`).
PARTITIONS: Mapping[str, Callable[[nn.Module], Partition]] = MappingProxyType({
    "hidden_matrices": hidden_matrices,
})

#: Group flags the optimizer classes of a rule read per part (pytorch-optimizer's Muon: ``use_muon``).
GROUP_FLAGS: Mapping[str, Mapping[str, dict[str, Any]]] = MappingProxyType({
    "hidden_matrices": MappingProxyType({"muon": {"use_muon": True}, "adamw": {"use_muon": False}}),
})


def make_partition(rule: str, model: nn.Module) -> Partition:
    """The partition of ``model`` by ``rule``.

    Raises:
        ConfigError: an unknown rule, or a model the rule cannot split (see the rule).
    """
    if rule not in PARTITIONS:
        raise ConfigError("parameter partition", rule, sorted(PARTITIONS))
    return PARTITIONS[rule](model)


def partition_groups(partition: Partition) -> list[dict[str, Any]]:
    """The optimizer's parameter groups for ``partition``: one group per non-empty part with the
    rule's flags (hyperparameters per part come from the optimizer's own arguments, e.g. Muon's
    ``adamw_lr``)."""
    flags = GROUP_FLAGS.get(partition.rule, {})
    return [{"params": list(p.params), **flags.get(p.name, {})} for p in partition.parts if p.params]


__all__ = ["GROUP_FLAGS", "PARTITIONS", "Part", "Partition", "hidden_matrices", "make_partition",
           "partition_groups"]
