"""Build optimizers by registry name: hyperparameter validation and the fast-path rule.

``create_optimizer("momentum", model.parameters(), lr=0.1)`` looks the name up in
:data:`~optbench.optim.catalog.optimizers`, overlays the user's hyperparameters on the entry's
defaults, checks every name against the class's ``__init__`` signature (names a class would
swallow through ``**kwargs`` are rejected, never silently dropped), checks the usual ranges,
and picks the implementation.

**Implementation rule** (``implementation="auto"``; measured on torch 2.13 CPU, pytorch-optimizer
4.1.0, 2 cores, parameters shaped like the reference CNN's, median of interleaved repeats):

1. a class with a ``fused`` argument whose fused kernel accepts the parameters on their device
   (torch 2.13: Adam, AdamW, SGD, Adagrad on CPU and CUDA) gets ``fused=True`` (about 2-4x
   faster per step than the for-loop on CPU); if the class rejects it (``RuntimeError``, e.g. an
   unsupported dtype or ``differentiable=True``) the next rule applies;
2. else, on CPU, a torch class with a ``foreach`` argument gets ``foreach=False``: the
   single-tensor loop, torch's own CPU default, which is 1.5x (Adam) to 4x (Adagrad) faster
   there than its multi-tensor path; except the classes of :data:`FOREACH_ON_CPU` (RAdam),
   whose single-tensor loop allocates a temporary per operation: their multi-tensor path was
   1.4x (reference CNN) to 5x (one 1M tensor) faster in ``bench/optimizer_step.py`` (two runs,
   1 thread), so they get ``foreach=True``;
3. else the class's default: for pytorch-optimizer classes that is the multi-tensor path on CPU
   too, measured 1.0-1.35x faster per step than ``foreach=False`` (adabelief 1.25x, lamb 1.23x,
   adan 1.30x, radam 1.25x; end to end on the reference CNN the two are within noise), so it is
   kept (see :data:`SINGLE_TENSOR_ON_CPU_FOR_THIRD_PARTY`); on CUDA every class's default is
   the multi-tensor ``foreach`` path where supported.

SAM (``sam:<base>``) applies the rule to its base, which does the update.

``implementation="fused" | "foreach" | "single"`` forces a path (a :class:`ConfigError` when
the class has no such path). Fused kernels round differently from the loop: after 50 steps on a
small MLP they agree to 7e-8 (momentum) to 1.6e-6 (Adam) relative in float32 and to 2e-15 in
float64 (``tests/test_optim.py``).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any

import torch
from torch import nn

from optbench.core.errors import ConfigError
from optbench.optim.base import IMPLEMENTATION_FLAGS, RANGE_RULES, OptimizerSpec
from optbench.optim.catalog import optimizers
from optbench.optim.sam import SAM, SamSpec

__all__ = ["FOREACH_ON_CPU", "IMPLEMENTATIONS", "RANGE_RULES", "SINGLE_TENSOR_ON_CPU_FOR_THIRD_PARTY",
           "create_optimizer", "describe", "implementation_of", "resolved_hyperparams"]

IMPLEMENTATIONS = ("auto", "fused", "foreach", "single")

#: torch classes whose multi-tensor path is faster on CPU than their single-tensor loop, so
#: ``"auto"`` turns ``foreach`` on there (rule 2's exception; ``bench/optimizer_step.py``).
FOREACH_ON_CPU = frozenset({"RAdam"})

#: Whether ``"auto"`` turns off the multi-tensor path of non-torch classes (pytorch-optimizer,
#: optbench's own Lamb) on CPU. Off: their multi-tensor default measured faster there (module
#: docstring, rule 3).
SINGLE_TENSOR_ON_CPU_FOR_THIRD_PARTY = False


# ---------------------------------------------------------------- hyperparameters
def _wants_tuple(param: inspect.Parameter) -> bool:
    return isinstance(param.default, tuple) or "tuple" in str(param.annotation).lower()


def _to_tuple(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_to_tuple(v) for v in value)
    return value


def _check_names(name: str, spec: OptimizerSpec, hyperparams: Mapping[str, Any]) -> None:
    allowed = spec.hyperparameters()
    for key in hyperparams:
        if key not in allowed:
            raise ConfigError(f"hyperparameter for {name}", key, sorted(allowed))


def _merged(name: str, spec: OptimizerSpec, hyperparams: Mapping[str, Any]) -> dict[str, Any]:
    """Preset defaults overlaid with the user's values, converted and range-checked."""
    _check_names(name, spec, hyperparams)
    params = spec.hyperparameters()
    merged = {**spec.defaults, **hyperparams}
    for key, value in merged.items():
        if isinstance(value, list) and _wants_tuple(params[key]):
            value = merged[key] = _to_tuple(value)
        default = params[key].default
        rule = spec.rule(key)
        if rule is None or (value is None and default is None):
            continue
        check, allowed = rule
        ok = check(value)
        if key == "betas" and isinstance(default, tuple):  # as many betas as the class uses
            ok = ok and len(value) == len(default)
            allowed = f"a list of {len(default)} numbers each in [0, 1)"
        if not ok:
            raise ConfigError(f"hyperparameter {key} of {name}", value, allowed)
    missing = [k for k, p in params.items()
               if p.default is inspect.Parameter.empty and k not in merged]
    if missing:
        raise ConfigError(f"hyperparameters for {name}", sorted(hyperparams),
                          f"names that include {', '.join(missing)} (required by the class)")
    return merged


def _check_implementation(implementation: str) -> None:
    if implementation not in IMPLEMENTATIONS:
        raise ConfigError("implementation", implementation, IMPLEMENTATIONS)


def _jsonable(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, Enum):
        return _jsonable(value.value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def resolved_hyperparams(name: str, **hyperparams: Any) -> dict[str, Any]:
    """The full hyperparameters :func:`create_optimizer` would use, for recording a run.

    Class defaults, overlaid by the entry's preset defaults, overlaid by ``hyperparams``;
    tuples become lists and other non-JSON values their ``str``; the implementation choice
    (``fused``, ``foreach``, ``implementation``) is left out since it does not change the math.

    Returns:
        A dict sorted by name, e.g. ``{"betas": [0.9, 0.999], "eps": 1e-08, "lr": 0.001, ...}``.

    Raises:
        UnknownNameError: for an unknown optimizer name.
        ConfigError: for an unknown or out-of-range hyperparameter, as :func:`create_optimizer`.
    """
    _check_implementation(hyperparams.pop("implementation", "auto"))
    spec = optimizers.get(name)
    merged = _merged(name, spec, hyperparams)
    full = {k: p.default for k, p in spec.hyperparameters().items()
            if p.default is not inspect.Parameter.empty}
    full.update(merged)
    return {k: _jsonable(full[k]) for k in sorted(full) if k not in IMPLEMENTATION_FLAGS}


# ---------------------------------------------------------------- implementation choice
def _infer_device(params: list[Any]) -> torch.device:
    for item in params:
        tensors = item["params"] if isinstance(item, dict) else [item]
        if isinstance(tensors, torch.Tensor):
            tensors = [tensors]
        for t in tensors:
            if isinstance(t, tuple):  # (name, tensor) pairs
                t = t[1]
            if isinstance(t, torch.Tensor):
                return t.device
    return torch.device("cpu")


def _implementation_plan(name: str, spec: OptimizerSpec, implementation: str,
                         device: torch.device) -> list[dict[str, bool]]:
    """Keyword sets to try in order for ``implementation`` on ``device``."""
    caps = spec.capabilities()
    if isinstance(spec, SamSpec):  # the base does the update: its own plan applies
        return [{}]
    fused_off = {"fused": False} if caps.supports_fused else {}
    foreach_off = {"foreach": False} if caps.supports_foreach else {}
    if implementation == "fused":
        if not caps.supports_fused:
            raise ConfigError(f"implementation of {name}", implementation,
                              _available(caps.supports_fused, caps.supports_foreach))
        return [{"fused": True}]
    if implementation == "foreach":
        if not caps.supports_foreach:
            raise ConfigError(f"implementation of {name}", implementation,
                              _available(caps.supports_fused, caps.supports_foreach))
        return [{**fused_off, "foreach": True}]
    if implementation == "single":
        return [{**fused_off, **foreach_off}]
    cls = spec.load()
    is_torch = cls.__module__.startswith("torch.")
    single_on_cpu = (is_torch and cls.__name__ not in FOREACH_ON_CPU) or (
        not is_torch and SINGLE_TENSOR_ON_CPU_FOR_THIRD_PARTY)
    fallback = foreach_off if device.type == "cpu" and single_on_cpu else {}
    if device.type == "cpu" and is_torch and cls.__name__ in FOREACH_ON_CPU and caps.supports_foreach:
        fallback = {**fused_off, "foreach": True}
    if caps.supports_fused:
        return [{"fused": True}, {**fused_off, **fallback}]
    return [fallback]


def _available(fused: bool, foreach: bool) -> list[str]:
    return ["auto", "single"] + (["fused"] if fused else []) + (["foreach"] if foreach else [])


def implementation_of(optimizer: torch.optim.Optimizer) -> str:
    """Which implementation ``optimizer`` runs: ``"fused"``, ``"foreach"``, ``"single"``, or
    ``"default"`` (``foreach=None``: the class decides per step, multi-tensor on CUDA)."""
    if isinstance(optimizer, SAM):
        optimizer = optimizer.base_optimizer
    flags = optimizer.defaults
    if flags.get("fused"):
        return "fused"
    if "foreach" not in flags or flags["foreach"] is False:
        return "single"
    return "foreach" if flags["foreach"] else "default"


# ---------------------------------------------------------------- public factory
def create_optimizer(name: str, params: Iterable[Any] | nn.Module, *,
                     device: torch.device | None = None, implementation: str = "auto",
                     **hyperparams: Any) -> torch.optim.Optimizer:
    """Build the optimizer registered as ``name`` over ``params``.

    Args:
        name: a registry name or alias (``"adam"``, ``"torch.adamw"``, ``"lamb"``), or
            ``"sam:<name>"`` for SAM over that optimizer (its hyperparameters are ``rho``,
            ``adaptive`` and the base's, a clashing base name prefixed ``base_``); see
            :mod:`optbench.optim.catalog` for the names and the alias rule.
        params: parameters or parameter groups as torch accepts them, or an ``nn.Module``
            (its parameters, or the module itself for classes that take ``model``). An optimizer
            with a parameter-partition contract (Muon) takes the module (partitioned here) or the
            groups of :func:`optbench.optim.partition.partition_groups`.
        device: the device the parameters live on, for the implementation rule; inferred
            from the first parameter when None.
        implementation: ``"auto"`` (the rule in the module docstring), ``"fused"``,
            ``"foreach"`` or ``"single"``; not passed to the class.
        **hyperparams: keyword arguments of the class (``lr``, ``momentum``, ``betas``, ...)
            overriding the entry's defaults; JSON lists become tuples where the class takes
            tuples. ``fused``/``foreach`` may be given directly only with ``implementation="auto"``.

    Returns:
        A ``torch.optim.Optimizer`` instance.

    Raises:
        UnknownNameError: for an unknown optimizer name (lists the known names).
        ConfigError: for an unknown hyperparameter name (lists the class's names), a missing
            required one, lr <= 0, momentum or a beta outside [0, 1), eps or weight_decay < 0,
            SAM's rho <= 0, a base SAM cannot wrap (L-BFGS, Sophia, SAM itself, ...), plain
            parameters for an optimizer with a parameter-partition contract,
            an unavailable implementation, or a value the class itself rejects (``ValueError``).
    """
    _check_implementation(implementation)
    spec = optimizers.get(name)
    kwargs = _merged(name, spec, hyperparams)
    explicit = [k for k in IMPLEMENTATION_FLAGS if k in hyperparams]
    if explicit and implementation != "auto":
        raise ConfigError("implementation", implementation,
                          f"'auto' when {', '.join(explicit)} is given as a hyperparameter")
    cls = spec.load()
    rule = spec.capabilities().partition
    if rule is not None:
        target: Any = _partitioned(name, rule, params)
    elif isinstance(params, nn.Module):
        target = params if spec.first_argument() == "model" else list(params.parameters())
    else:
        target = list(params)
    if device is None:
        device = _infer_device(target if isinstance(target, list) else list(target.parameters()))
    if isinstance(spec, SamSpec):
        return _create_sam(name, spec, target, kwargs, device, implementation)
    plans = [{}] if explicit else _implementation_plan(name, spec, implementation, device)
    for i, flags in enumerate(plans):
        try:
            return cls(target, **{**kwargs, **flags})
        except RuntimeError:
            if i == len(plans) - 1 or not flags.get("fused"):
                raise
        except ValueError as exc:
            raise ConfigError(f"hyperparameters for {name}", dict(hyperparams),
                              f"values {cls.__name__} accepts ({exc})") from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _partitioned(name: str, rule: str, params: Iterable[Any] | nn.Module) -> list[dict[str, Any]]:
    """The parameter groups of an optimizer with a parameter-partition contract: built from a module,
    or checked when given (every group must carry the rule's flags)."""
    from optbench.optim.partition import GROUP_FLAGS, make_partition, partition_groups

    if isinstance(params, nn.Module):
        return partition_groups(make_partition(rule, params))
    groups = list(params)
    flags = {k for part in GROUP_FLAGS.get(rule, {}).values() for k in part}
    if not groups or not all(isinstance(g, dict) and flags <= set(g) for g in groups):
        raise ConfigError(f"parameters of {name}", "a plain parameter list",
                          f"the model (nn.Module) or the groups of its parameter-partition contract '{rule}' "
                          "(optbench.optim.partition.partition_groups)")
    return groups


def _create_sam(name: str, spec: SamSpec, target: Any, kwargs: Mapping[str, Any],
                device: torch.device, implementation: str) -> SAM:
    """SAM over ``spec.base_key`` built by :func:`create_optimizer` (same device and
    implementation rule) on the wrapper's parameter groups."""
    own, base_kwargs = spec.split(kwargs)
    if isinstance(target, nn.Module):
        target = list(target.parameters())

    def base(groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        return create_optimizer(spec.base_key, groups, device=device,
                                implementation=implementation, **base_kwargs)

    try:
        return SAM(target, base, **own)
    except ValueError as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"hyperparameters for {name}", dict(own),
                          f"values SAM accepts ({exc})") from exc


def describe(name: str) -> OptimizerSpec:
    """The :class:`OptimizerSpec` registered as ``name`` (or aliased by it).

    Raises:
        UnknownNameError: for an unknown name; lists the known names.
    """
    return optimizers.get(name)
