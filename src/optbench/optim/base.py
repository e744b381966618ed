"""The types of the optimizer catalogue: :class:`Capabilities`, :class:`OptimizerSpec` and the
hyperparameter range rules shared by every entry.

An :class:`OptimizerSpec` describes one registry entry (class, pinned defaults, source) and
answers what the training loop must know about it (:meth:`OptimizerSpec.capabilities`): the loop
dispatches on that metadata only, never on the optimizer's name.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import torch

Family = Literal["preset", "torch", "pytorch_optimizer"]

#: Keyword arguments that choose an implementation (same math, different kernels).
IMPLEMENTATION_FLAGS = ("fused", "foreach")

#: A range rule: (check, what is allowed), e.g. ``(_check_positive, "a number > 0")``.
Rule = tuple[Callable[[Any], bool], str]


# ---------------------------------------------------------------- range checks
def _number(value: Any) -> float | None:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.item())
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def check_positive(value: Any) -> bool:
    """True for a finite or infinite number > 0 (NaN, bools and strings fail)."""
    x = _number(value)
    return x is not None and x > 0


def check_non_negative(value: Any) -> bool:
    """True for a finite number >= 0."""
    x = _number(value)
    return x is not None and x >= 0 and not math.isinf(x)


def check_unit(value: Any) -> bool:
    """True for a number in [0, 1)."""
    x = _number(value)
    return x is not None and 0 <= x < 1


def check_closed_unit(value: Any) -> bool:
    """True for a number in [0, 1]."""
    x = _number(value)
    return x is not None and 0 <= x <= 1


def check_betas(value: Any) -> bool:
    """True for a non-empty list or tuple of numbers each in [0, 1)."""
    return isinstance(value, tuple | list) and len(value) > 0 and all(check_unit(b) for b in value)


#: Hyperparameter name -> (check, what is allowed), applied to preset and user values of every
#: entry; an entry's own :attr:`OptimizerSpec.rules` take precedence (SAM's ``rho`` is a radius
#: > 0, Adadelta's ``rho`` a decay in [0, 1]).
RANGE_RULES: Mapping[str, Rule] = MappingProxyType({
    "lr": (check_positive, "a number > 0"),
    "momentum": (check_unit, "a number in [0, 1)"),
    "betas": (check_betas, "a list of numbers each in [0, 1)"),
    "eps": (check_non_negative, "a finite number >= 0"),
    "weight_decay": (check_non_negative, "a finite number >= 0"),
})


# ---------------------------------------------------------------- capabilities
@dataclass(frozen=True, kw_only=True)
class Capabilities:
    """What the training loop must know about an optimizer (the loop dispatches on this only).

    Attributes:
        needs_closure: ``step`` must be given a closure that zeroes the gradients, re-evaluates
            the loss, calls ``backward`` and returns the loss (L-BFGS, SAM, AliG, BSAM);
            ``step(closure)`` returns that loss.
        create_graph: the gradient must be computed with ``backward(create_graph=True)``
            because the optimizer takes Hessian-vector products (AdaHessian, Sophia-H); see
            :func:`optbench.optim.create_graph_now` to pay for it only on the steps that use it.
        two_pass: each step evaluates the loss and gradient twice through the closure (SAM:
            at w and at the perturbed w + eps); a step costs about two forward/backward passes.
        full_batch_only: the method is defined on the full training set (``gd``; the ``lbfgs``
            preset, whose line search assumes a deterministic function): the loop should use one
            batch of every training example per step.
        supports_fused: the class accepts ``fused`` (a single fused kernel per step).
        supports_foreach: the class accepts ``foreach`` (multi-tensor kernels).
        train_eval_modes: the optimizer trains at one point and must be evaluated at another, and
            has ``optimizer.train()`` / ``optimizer.eval()`` to switch the parameters between them (schedule-free
            methods, Defazio et al. 2024: train at y, evaluate and save at the averaged iterate x).
        learning_rate_free: ``lr`` is a multiplier of a step size the method estimates itself, 1.0 by
            design (Prodigy, D-Adaptation): protocols that share one learning rate give it 1.0, and a
            search over its lr searches the multiplier around 1.
        partition: the name of the rule that splits a model's parameters into the optimizer's groups
            (:data:`optbench.optim.partition.PARTITIONS`; ``"hidden_matrices"`` for Muon), or None
            when the optimizer takes every parameter alike.
    """

    needs_closure: bool = False
    create_graph: bool = False
    two_pass: bool = False
    full_batch_only: bool = False
    supports_fused: bool = False
    supports_foreach: bool = False
    train_eval_modes: bool = False
    learning_rate_free: bool = False
    partition: str | None = None


#: The capability flags an entry may declare (those introspection cannot see).
TRAITS = frozenset({"needs_closure", "create_graph", "two_pass", "full_batch_only", "learning_rate_free"})


# ---------------------------------------------------------------- the spec
@dataclass(frozen=True)
class OptimizerSpec:
    """One registered optimizer.

    Args:
        name: registry name, e.g. ``"momentum"``, ``"torch.adamw"``.
        family: ``"preset"`` (fixed documented defaults), ``"torch"`` or ``"pytorch_optimizer"``.
        cls: the optimizer class, or a lazy import target ``"package.module:Class"`` loaded by
            :meth:`load` on first use.
        defaults: hyperparameters the entry fixes on top of the class defaults (read-only).
        source: the paper and equation, or the library reference, of the update rule.
        description: one paragraph shown by ``optbench list optimizers``.
        traits: capability flags that cannot be introspected from the class, any of
            ``needs_closure``, ``create_graph``, ``two_pass``, ``full_batch_only``,
            ``learning_rate_free`` set to True.
        rules: range rules of this entry, overriding :data:`RANGE_RULES` for the same names.
        partition: the parameter-partition rule the optimizer needs (see
            :attr:`Capabilities.partition`), or None.
    """

    name: str
    family: Family
    cls: type[torch.optim.Optimizer] | str
    defaults: Mapping[str, Any] = field(default_factory=dict, hash=False)
    source: str = ""
    description: str = ""
    traits: frozenset[str] = frozenset()
    rules: Mapping[str, Rule] = field(default_factory=dict, hash=False)
    partition: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))
        object.__setattr__(self, "rules", MappingProxyType(dict(self.rules)))
        object.__setattr__(self, "traits", frozenset(self.traits))
        unknown = self.traits - TRAITS
        if unknown:
            raise ValueError(f"unknown traits {sorted(unknown)} of optimizer {self.name!r}")

    def load(self) -> type[torch.optim.Optimizer]:
        """The optimizer class, importing a lazy target ``"module:attr"`` if needed."""
        if not isinstance(self.cls, str):
            return self.cls
        module_name, _, attr = self.cls.partition(":")
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj

    def hyperparameters(self) -> dict[str, inspect.Parameter]:
        """The class's hyperparameters: ``__init__`` keywords except ``self``, the first
        argument (``params``, or ``model`` for a few pytorch-optimizer classes) and
        ``*args``/``**kwargs`` (names swallowed by ``**kwargs`` are never accepted)."""
        params = list(inspect.signature(self.load().__init__).parameters.values())[2:]
        return {p.name: p for p in params
                if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)}

    def first_argument(self) -> str:
        """Name of the class's first ``__init__`` argument (``"params"``, or ``"model"``)."""
        return list(inspect.signature(self.load().__init__).parameters)[1]

    def rule(self, key: str) -> Rule | None:
        """The range rule of hyperparameter ``key``: the entry's own, else :data:`RANGE_RULES`."""
        return self.rules.get(key, RANGE_RULES.get(key))

    def capabilities(self) -> Capabilities:
        """:class:`Capabilities`: ``needs_closure`` (a required ``closure`` argument of ``step``,
        or the trait), ``supports_fused``/``supports_foreach`` and ``train_eval_modes`` introspected
        from the class, ``partition`` from :attr:`partition`, the other flags from :attr:`traits`."""
        cls = self.load()
        closure = inspect.signature(cls.step).parameters.get("closure")
        names = self.hyperparameters()
        required = closure is not None and closure.default is inspect.Parameter.empty
        return Capabilities(
            needs_closure=required or "needs_closure" in self.traits,
            create_graph="create_graph" in self.traits,
            two_pass="two_pass" in self.traits,
            full_batch_only="full_batch_only" in self.traits,
            supports_fused="fused" in names,
            supports_foreach="foreach" in names,
            train_eval_modes=callable(getattr(cls, "train", None)) and callable(getattr(cls, "eval", None)),
            learning_rate_free="learning_rate_free" in self.traits,
            partition=self.partition,
        )


def describe_defaults(defaults: Mapping[str, Any]) -> str:
    """``"lr=0.001, momentum=0.9"``: the defaults as the descriptions show them."""
    return ", ".join(f"{k}={v!r}" for k, v in defaults.items())
