"""Search spaces: which recipe fields a tuning search varies, and over what ranges.

A :class:`Param` names a recipe field by a *path*:

* a scalar :class:`~optbench.core.spec.Recipe` field: ``batch_size``, ``epochs``, ``train_size``,
  ``optimizer``, ``schedule``, ``warmup_steps``, ``penalty``, ``label_smoothing``, ``averaging``,
  ``precision``, ``clip_norm``, ``clip_value``, ``accumulation_steps``, ``batch_rule``,
  ``base_batch_size``, ``decay_bias_and_norm``, ``max_train_seconds``;
* an entry of a parameter mapping: ``hyperparams.<name>`` (``hyperparams.lr``,
  ``hyperparams.momentum``, ``hyperparams.weight_decay``), ``schedule_params.<name>``,
  ``penalty_params.<name>``.

A bare ``weight_decay`` is *not* a path (it is not a Recipe field): write
``hyperparams.weight_decay``. The TOML form read by :func:`parse_space`::

    [search.space]
    "hyperparams.lr" = { low = 1e-5, high = 1e-1, log = true }
    "hyperparams.momentum" = { low = 0.8, high = 0.99 }
    "batch_size" = { choices = [64, 128] }
    "warmup_steps" = { low = 0, high = 100, type = "int" }
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from optbench.core.errors import ConfigError, Problem
from optbench.core.spec import Recipe

#: Recipe fields that hold a mapping a path may index into (``hyperparams.lr``).
MAPPING_PATHS = ("hyperparams", "schedule_params", "penalty_params")
#: Recipe fields that are mappings as a whole and cannot be searched directly.
_NOT_SCALAR = ("hyperparams", "schedule_params", "penalty_params", "early_stopping", "augmentation",
               "averaging_params")
SCALAR_PATHS = tuple(f.name for f in fields(Recipe) if f.name not in _NOT_SCALAR)
KINDS = ("float", "int", "categorical")
_TABLE_KEYS = ("low", "high", "log", "choices", "type")
_ALLOWED_PATHS = (f"a Recipe field ({', '.join(SCALAR_PATHS)}) or "
                  + ", ".join(f"'{m}.<name>'" for m in MAPPING_PATHS))


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


def valid_path(path: object) -> bool:
    """True when ``path`` names a searchable recipe field (see the module doc)."""
    if not isinstance(path, str):
        return False
    head, dot, name = path.partition(".")
    if dot:
        return head in MAPPING_PATHS and bool(name) and "." not in name
    return path in SCALAR_PATHS


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
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for path, value in values.items():
        if not valid_path(path):
            raise ConfigError("search.space path", path, _ALLOWED_PATHS)
        value = _plain(value)
        head, dot, name = path.partition(".")
        if dot:
            nested.setdefault(head, dict(getattr(recipe, head)))[name] = value
        else:
            top[path] = value
    return replace(recipe, **top, **nested)


def read_params(recipe: Recipe, space: SearchSpace) -> dict[str, Any]:
    """The values of ``space``'s paths in ``recipe`` (the inverse of :func:`apply_params`).

    Raises:
        KeyError: when a ``hyperparams.<name>``-style path is absent from the recipe.
    """
    out: dict[str, Any] = {}
    for p in space:
        head, dot, name = p.path.partition(".")
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


__all__ = ["MAPPING_PATHS", "SCALAR_PATHS", "Param", "SearchSpace", "apply_params", "grid_values",
           "parse_space", "read_params", "valid_path"]
