"""Search spaces: which recipe fields a tuning search varies, and over what ranges.

A :class:`Param` names what it varies by a *path*:

* a scalar :class:`~optbench.core.spec.Recipe` field: ``batch_size``, ``epochs``, ``train_size``,
  ``optimizer``, ``schedule``, ``precision``, ``max_train_seconds``;
* an entry of a parameter mapping: ``hyperparams.<name>`` (``hyperparams.lr``,
  ``hyperparams.momentum``, ``hyperparams.weight_decay``), ``schedule_params.<name>``
  (``schedule_params.warmup_steps``);
* a technique parameter: ``techniques.<technique>.<parameter>`` (``techniques.label_smoothing.epsilon``,
  ``techniques.clip_norm.max_norm``, ``techniques.l2.strength``; names and parameters:
  ``optbench list techniques``). It sets the parameter of the recipe's first technique of that
  name; a recipe without that technique gets it appended, with this parameter (the others at
  their defaults);
* the older flat paths, still read and written: ``warmup_steps`` (the schedule parameter; 0 for
  none) and, through the flat form of the recipe (:meth:`~optbench.core.spec.Recipe.from_dict`,
  :mod:`optbench.core.legacy`; only for recipes whose techniques that form can express),
  ``penalty``, ``label_smoothing``, ``averaging``, ``clip_norm``, ``clip_value``,
  ``accumulation_steps``, ``batch_rule``, ``base_batch_size``, ``decay_bias_and_norm`` and
  ``penalty_params.<name>``.

A bare ``weight_decay`` is *not* a path (it is not a Recipe field): write
``hyperparams.weight_decay``. The TOML form read by :func:`parse_space`::

    [search.space]
    "hyperparams.lr" = { low = 1e-5, high = 1e-1, log = true }
    "hyperparams.momentum" = { low = 0.8, high = 0.99 }
    "batch_size" = { choices = [64, 128] }
    "schedule_params.warmup_steps" = { low = 0, high = 100, type = "int" }
    "techniques.label_smoothing.epsilon" = { low = 0.0, high = 0.2 }
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from optbench.core.errors import ConfigError, Problem
from optbench.core.legacy import LEGACY_DEFAULTS
from optbench.core.spec import Recipe, TechniqueSpec

#: Recipe fields that hold a mapping a path may index into (``hyperparams.lr``); ``penalty_params`` is
#: the older flat form's.
MAPPING_PATHS = ("hyperparams", "schedule_params", "penalty_params")
#: The scalar Recipe fields.
FIELD_PATHS = tuple(f.name for f in fields(Recipe) if f.name not in ("hyperparams", "schedule_params", "techniques"))
#: The older flat paths (read and written through the flat form; ``warmup_steps`` is a schedule parameter).
LEGACY_PATHS = ("warmup_steps", "penalty", "label_smoothing", "averaging", "clip_norm", "clip_value",
                "accumulation_steps", "batch_rule", "base_batch_size", "decay_bias_and_norm")
SCALAR_PATHS = FIELD_PATHS + LEGACY_PATHS
#: The first part of a technique parameter path (``techniques.<technique>.<parameter>``).
TECHNIQUE_PATH = "techniques"
KINDS = ("float", "int", "categorical")
_TABLE_KEYS = ("low", "high", "log", "choices", "type")
_ALLOWED_PATHS = (f"a Recipe field ({', '.join(FIELD_PATHS)}), "
                  + ", ".join(f"'{m}.<name>'" for m in MAPPING_PATHS[:2])
                  + f", '{TECHNIQUE_PATH}.<technique>.<parameter>' (optbench list techniques), or an older flat path "
                    f"({', '.join(LEGACY_PATHS)}, 'penalty_params.<name>')")


@dataclass(frozen=True)
class Param:
    """One searched recipe field.

    Args:
        path: where the value goes in the recipe (see the module doc for the allowed paths).
        kind: ``"float"``, ``"int"`` or ``"categorical"``.
        low / high: the inclusive range of a float or int parameter.
        log: sample uniformly in ``log(value)`` (needs ``low > 0``).
        choices: the values of a categorical parameter (numbers, strings, booleans).

    Raises:
        ConfigError: for an unknown path or kind, ``low >= high``, ``log`` with ``low <= 0``,
            empty choices, or range fields given to a categorical parameter.
    """

    path: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        if not valid_path(self.path):
            raise ConfigError("search.space path", self.path, _ALLOWED_PATHS)
        if self.kind not in KINDS:
            raise ConfigError(f"search.space.{self.path}.type", self.kind, KINDS)
        if self.kind == "categorical":
            if not self.choices:
                raise ConfigError(f"search.space.{self.path}.choices", self.choices, "a non-empty list")
            object.__setattr__(self, "choices", tuple(self.choices))
            return
        for name in ("low", "high"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"search.space.{self.path}.{name}", value, "a finite number")
        if self.kind == "int" and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise ConfigError(f"search.space.{self.path}.low/high", (self.low, self.high), "integers")
        if not self.low < self.high:  # type: ignore[operator]
            raise ConfigError(f"search.space.{self.path}.high", self.high, f"a number > low ({self.low})")
        if self.log and not self.low > 0:  # type: ignore[operator]
            raise ConfigError(f"search.space.{self.path}.low", self.low, "a number > 0 for a log range")


SearchSpace = tuple[Param, ...]


def for_optimizer(space: SearchSpace, optimizer: str) -> SearchSpace:
    """``space`` as searched for ``optimizer``: for a learning-rate-free method (Prodigy,
    D-Adaptation) a float range over ``hyperparams.lr`` covers its step-size multiplier
    (:func:`optbench.optim.lr_semantics.lr_range`, 0.1 to 10, log-scaled) instead of the space's
    learning rates; any other space is returned unchanged.

    Raises:
        UnknownNameError: for an unknown optimizer name.
    """
    from optbench.optim.lr_semantics import is_learning_rate_free, lr_range

    if not any(p.path == "hyperparams.lr" and p.kind == "float" for p in space) or not is_learning_rate_free(optimizer):
        return space
    out = []
    for p in space:
        if p.path == "hyperparams.lr" and p.kind == "float":
            low, high = lr_range(optimizer, float(p.low), float(p.high))  # type: ignore[arg-type]
            p = replace(p, low=low, high=high, log=True)
        out.append(p)
    return tuple(out)


def valid_path(path: object) -> bool:
    """True when ``path`` names a searchable recipe field (see the module doc); a technique path must
    name a registered technique and one of its parameters."""
    if not isinstance(path, str):
        return False
    head, dot, name = path.partition(".")
    if head == TECHNIQUE_PATH and dot:
        return _technique_path(path) is not None
    if dot:
        return head in MAPPING_PATHS and bool(name) and "." not in name
    return path in SCALAR_PATHS


def _technique_path(path: str) -> tuple[str, str] | None:
    """``(technique, parameter)`` of a valid ``techniques.<technique>.<parameter>`` path, else None."""
    from optbench.techniques.registry import parameters, techniques

    parts = path.split(".")
    if len(parts) != 3 or parts[0] != TECHNIQUE_PATH or parts[1] not in techniques:
        return None
    names = [p.name for p in parameters(techniques.get(parts[1]))]
    return (parts[1], parts[2]) if parts[2] in names else None


def _is_flat(path: str) -> bool:
    """True for the older flat paths written through the flat form (all but ``warmup_steps``)."""
    return path.partition(".")[0] == "penalty_params" or (path in LEGACY_PATHS and path != "warmup_steps")


def parse_space(table: Mapping[str, Any], source: str,
                where: str = "search.space") -> tuple[SearchSpace, list[Problem]]:
    """Read a search space from its TOML table, collecting every problem.

    Args:
        table: ``{path: {low, high, log, type} | {choices}}`` (see the module doc); ``type``
            is ``"float"`` (default for a range), ``"int"`` or ``"categorical"`` (default
            when ``choices`` is given).
        source: the file name shown in problems.
        where: the key path of ``table`` in the file.

    Returns:
        ``(space, problems)``: the valid parameters in table order, and one
        :class:`~optbench.core.errors.Problem` per mistake (path ``f"{where}.{path}.{key}"``):
        unknown keys, unknown path, ``low >= high``, log with ``low <= 0``, empty choices.
    """
    params: list[Param] = []
    problems: list[Problem] = []

    def problem(path: str, key: str, message: str) -> None:
        problems.append(Problem(source, f"{where}.{path}.{key}" if key else f"{where}.{path}", message))

    if not isinstance(table, Mapping) or not table:
        return (), [Problem(source, where, "a non-empty table of {path = {low, high, log} | {choices}}")]
    for path, spec in table.items():
        before = len(problems)
        if not valid_path(path):
            problem(str(path), "", f"unknown recipe path {path!r}; allowed: {_ALLOWED_PATHS}")
        if not isinstance(spec, Mapping):
            problem(str(path), "", "a table such as { low = 1e-4, high = 1e-1, log = true } or { choices = [...] }")
            continue
        for key in spec:
            if key not in _TABLE_KEYS:
                problem(path, str(key), f"unknown key; allowed: {', '.join(_TABLE_KEYS)}")
        kind = spec.get("type", "categorical" if "choices" in spec else "float")
        if kind not in KINDS:
            problem(path, "type", f"unknown type {kind!r}; allowed: {', '.join(KINDS)}")
            continue
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list | tuple) or not choices:
                problem(path, "choices", "a non-empty list of values")
            for key in ("low", "high", "log"):
                if key in spec:
                    problem(path, key, "not allowed with choices (a categorical parameter)")
        else:
            _check_range(spec, kind, path, problem)
        if len(problems) == before:
            params.append(_param(path, kind, spec))
    return tuple(params), problems


def _check_range(spec: Mapping[str, Any], kind: str, path: str, problem: Any) -> None:
    if "choices" in spec:
        problem(path, "choices", f"not allowed with type {kind!r} (use type = 'categorical')")
    bounds = {}
    for key in ("low", "high"):
        value = spec.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            problem(path, key, f"a finite number (got {value!r})")
        elif kind == "int" and not float(value).is_integer():
            problem(path, key, f"an integer for type 'int' (got {value!r})")
        else:
            bounds[key] = value
    log = spec.get("log", False)
    if not isinstance(log, bool):
        problem(path, "log", f"true or false (got {log!r})")
    if len(bounds) == 2 and not bounds["low"] < bounds["high"]:
        problem(path, "high", f"an empty range: low {bounds['low']!r} >= high {bounds['high']!r}; need low < high")
    if log is True and "low" in bounds and not bounds["low"] > 0:
        problem(path, "low", f"a log range needs low > 0, got {bounds['low']!r}")


def _param(path: str, kind: str, spec: Mapping[str, Any]) -> Param:
    if kind == "categorical":
        return Param(path, kind, choices=tuple(spec["choices"]))
    low, high = spec["low"], spec["high"]
    if kind == "int":
        low, high = int(low), int(high)
    else:
        low, high = float(low), float(high)
    return Param(path, kind, low=low, high=high, log=bool(spec.get("log", False)))


def apply_params(recipe: Recipe, values: Mapping[str, Any]) -> Recipe:
    """A copy of ``recipe`` with each ``path -> value`` of ``values`` set.

    Raises:
        ConfigError: for an unknown path, or a value the recipe rejects (e.g. ``lr <= 0``).
    """
    for path in values:
        if not valid_path(path):
            raise ConfigError("search.space path", path, _ALLOWED_PATHS)
    flat = {path: _plain(value) for path, value in values.items() if _is_flat(path)}
    if flat:
        recipe = _apply_flat(recipe, flat)
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    techniques = list(recipe.techniques)
    for path, value in values.items():
        value = _plain(value)
        head, dot, name = path.partition(".")
        if _is_flat(path):
            continue
        if path == "warmup_steps":
            params = nested.setdefault("schedule_params", dict(recipe.schedule_params))
            params.pop("warmup_steps", None)
            if value:
                params["warmup_steps"] = value
        elif head == TECHNIQUE_PATH:
            technique, parameter = _technique_path(path)  # type: ignore[misc]
            _set_technique(techniques, technique, parameter, value)
        elif dot:
            nested.setdefault(head, dict(getattr(recipe, head)))[name] = value
        else:
            top[path] = value
    return replace(recipe, **top, **nested, techniques=tuple(techniques))


def _set_technique(techniques: list[TechniqueSpec], name: str, parameter: str, value: Any) -> None:
    """Set ``parameter`` of the first technique ``name`` in ``techniques`` (appending it when absent)."""
    for k, spec in enumerate(techniques):
        if spec.name == name:
            techniques[k] = TechniqueSpec(name, {**spec.params, parameter: value})
            return
    techniques.append(TechniqueSpec(name, {parameter: value}))


def _flat_form(recipe: Recipe, path: str) -> dict[str, Any]:
    """``recipe`` in the older flat form (:meth:`Recipe.identity`).

    Raises:
        ConfigError: when its techniques have no flat form (naming ``path`` and the allowed paths).
    """
    flat = recipe.identity()
    if "techniques" in flat:
        raise ConfigError("search.space path", path, f"a technique path '{TECHNIQUE_PATH}.<technique>.<parameter>' "
                          "(the recipe's techniques have no flat form)")
    return flat


def _apply_flat(recipe: Recipe, values: Mapping[str, Any]) -> Recipe:
    """``recipe`` with the older flat paths of ``values`` set, through its flat form."""
    flat = _flat_form(recipe, next(iter(values)))
    for path, value in values.items():
        head, dot, name = path.partition(".")
        if dot:
            flat[head] = {**flat.get(head, {}), name: value}
        else:
            flat[path] = value
    return Recipe.from_dict(flat)


def read_params(recipe: Recipe, space: SearchSpace) -> dict[str, Any]:
    """The values of ``space``'s paths in ``recipe`` (the inverse of :func:`apply_params`).

    Raises:
        KeyError: when a ``hyperparams.<name>``-style path is absent from the recipe (a technique path:
            the recipe has no such technique, or it leaves the parameter at its default), or an older
            flat path is read from a recipe whose techniques have no flat form.
    """
    out: dict[str, Any] = {}
    for p in space:
        head, dot, name = p.path.partition(".")
        if p.path == "warmup_steps":
            out[p.path] = recipe.schedule_params.get("warmup_steps", 0)
        elif _is_flat(p.path):
            flat = recipe.identity()
            if "techniques" in flat:
                raise KeyError(p.path)
            out[p.path] = flat.get(head, {})[name] if dot else flat.get(p.path, LEGACY_DEFAULTS[p.path])
        elif head == TECHNIQUE_PATH:
            technique, parameter = p.path.split(".")[1:]
            spec = recipe.technique(technique)
            if spec is None or parameter not in spec.params:
                raise KeyError(p.path)
            out[p.path] = spec.params[parameter]
        else:
            out[p.path] = getattr(recipe, head)[name] if dot else getattr(recipe, p.path)
    return out


def grid_values(param: Param, n: int) -> list[Any]:
    """``n`` grid values of ``param``: log-spaced for a log range (DeepOBS tunes the learning
    rate on 36 log-spaced points in 1e-5..1e2), linearly spaced otherwise, both ends
    included; an int range is rounded and deduplicated; a categorical one gives its choices.

    Raises:
        ConfigError: when ``n < 2`` for a range.
    """
    if param.kind == "categorical":
        return list(param.choices or ())
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ConfigError(f"search grid points of {param.path}", n, "an integer >= 2")
    low, high = float(param.low), float(param.high)  # type: ignore[arg-type]
    points = np.geomspace(low, high, n) if param.log else np.linspace(low, high, n)
    points = np.clip(points, low, high)
    if param.kind == "int":
        return sorted({int(v) for v in np.rint(points)})
    return [float(v) for v in points]


def _plain(value: Any) -> Any:
    """Numpy scalars as Python numbers (so that recipes stay JSON-ready)."""
    return value.item() if isinstance(value, np.generic) else value


__all__ = ["FIELD_PATHS", "LEGACY_PATHS", "MAPPING_PATHS", "SCALAR_PATHS", "TECHNIQUE_PATH", "Param", "SearchSpace",
           "apply_params", "grid_values", "parse_space", "read_params", "valid_path"]
