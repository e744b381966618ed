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
   there than its multi-tensor path;
3. else the class's default: for pytorch-optimizer classes that is the multi-tensor path on CPU
   too, measured 1.0-1.35x faster per step than ``foreach=False`` (adabelief 1.25x, lamb 1.23x,
   adan 1.30x, radam 1.25x; end to end on the reference CNN the two are within noise), so it is
   kept (see :data:`SINGLE_TENSOR_ON_CPU_FOR_THIRD_PARTY`); on CUDA every class's default is
   the multi-tensor ``foreach`` path where supported.

``implementation="fused" | "foreach" | "single"`` forces a path (a :class:`ConfigError` when
the class has no such path). Fused kernels round differently from the loop: after 50 steps on a
small MLP they agree to 7e-8 (momentum) to 1.6e-6 (Adam) relative in float32 and to 2e-15 in
float64 (``tests/test_optim.py``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from typing import Any

import torch
from torch import nn

from optbench.errors import ConfigError
from optbench.optim.catalog import IMPLEMENTATION_FLAGS, OptimizerSpec, optimizers

IMPLEMENTATIONS = ("auto", "fused", "foreach", "single")

#: Whether ``"auto"`` turns off the multi-tensor path of non-torch classes (pytorch-optimizer)
#: on CPU. Off: their multi-tensor default measured faster there (module docstring, rule 3).
SINGLE_TENSOR_ON_CPU_FOR_THIRD_PARTY = False


# ---------------------------------------------------------------- range checks
def _number(value: Any) -> float | None:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.item())
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _check_positive(value: Any) -> bool:
    x = _number(value)
    return x is not None and x > 0


def _check_non_negative(value: Any) -> bool:
    x = _number(value)
    return x is not None and x >= 0 and not math.isinf(x)


def _check_unit(value: Any) -> bool:
    x = _number(value)
    return x is not None and 0 <= x < 1


def _check_betas(value: Any) -> bool:
    return isinstance(value, tuple | list) and len(value) > 0 and all(_check_unit(b) for b in value)


#: Hyperparameter name -> (check, what is allowed). Applied to preset and user values.
RANGE_RULES: Mapping[str, tuple[Callable[[Any], bool], str]] = {
    "lr": (_check_positive, "a number > 0"),
    "momentum": (_check_unit, "a number in [0, 1)"),
    "betas": (_check_betas, "a list of numbers each in [0, 1)"),
    "eps": (_check_non_negative, "a finite number >= 0"),
    "weight_decay": (_check_non_negative, "a finite number >= 0"),
}


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
        rule = RANGE_RULES.get(key)
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
    is_torch = spec.load().__module__.startswith("torch.")
    single_on_cpu = is_torch or SINGLE_TENSOR_ON_CPU_FOR_THIRD_PARTY
    fallback = foreach_off if device.type == "cpu" and single_on_cpu else {}
    if caps.supports_fused:
        return [{"fused": True}, {**fused_off, **fallback}]
    return [fallback]


def _available(fused: bool, foreach: bool) -> list[str]:
    return ["auto", "single"] + (["fused"] if fused else []) + (["foreach"] if foreach else [])


def implementation_of(optimizer: torch.optim.Optimizer) -> str:
    """Which implementation ``optimizer`` runs: ``"fused"``, ``"foreach"``, ``"single"``, or
    ``"default"`` (``foreach=None``: the class decides per step, multi-tensor on CUDA)."""
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
        name: a registry name or alias (``"adam"``, ``"torch.adamw"``, ``"lamb"``); see
            :mod:`optbench.optim.catalog` for the names and the alias rule.
        params: parameters or parameter groups as torch accepts them, or an ``nn.Module``
            (its parameters, or the module itself for classes that take ``model``).
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
    if isinstance(params, nn.Module):
        target: Any = params if spec.first_argument() == "model" else list(params.parameters())
    else:
        target = list(params)
    if device is None:
        device = _infer_device(target if isinstance(target, list) else list(target.parameters()))
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


def describe(name: str) -> OptimizerSpec:
    """The :class:`OptimizerSpec` registered as ``name`` (or aliased by it).

    Raises:
        UnknownNameError: for an unknown name; lists the known names.
    """
    return optimizers.get(name)
