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

Architecture choices (the study's task is a factory with parameters, e.g. ``nas_cnn``): a path
``task.<parameter>`` names a parameter of the task factory; a trial's values go into the task
reference (``nas_cnn[block=inverted,channels=16-32,expansion=4]``, merged with the study task's own
bracket parameters) instead of the recipe. A parameter may carry a condition ``when = {path = value,
...}`` over paths *earlier* in the space: it is sampled only when every listed path has that value
and is absent from the other trials -- the define-by-run search spaces of Optuna (Akiba et al. 2019,
"Optuna: A Next-generation Hyperparameter Optimization Framework", KDD)::

    "task.block" = { choices = ["plain", "inverted"] }
    "task.expansion" = { choices = [2, 4], when = { "task.block" = "inverted" } }
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
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
#: The first part of a task parameter path (``task.<parameter>``).
TASK_PATH = "task"
KINDS = ("float", "int", "categorical")
_TABLE_KEYS = ("low", "high", "log", "choices", "type", "when")
_ALLOWED_PATHS = (f"a Recipe field ({', '.join(FIELD_PATHS)}), "
                  + ", ".join(f"'{m}.<name>'" for m in MAPPING_PATHS[:2])
                  + f", '{TECHNIQUE_PATH}.<technique>.<parameter>' (optbench list techniques), "
                    f"'{TASK_PATH}.<parameter>' (a parameter of the task factory), or an older flat path "
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
        when: ``((path, value), ...)``: sample the parameter only in trials where each ``path``
            (earlier in the space) took ``value`` (empty: always).

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
    when: tuple[tuple[str, Any], ...] = field(default=(), repr=False)

    def __repr__(self) -> str:
        """The dataclass repr; ``when`` only when set (so that an unconditional parameter's repr, which
        names an Optuna mirror study, is what it was before conditions existed)."""
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
        return f"Param({shown}{f', when={self.when!r}' if self.when else ''})"

    def __post_init__(self) -> None:
        if not valid_path(self.path):
            raise ConfigError("search.space path", self.path, _ALLOWED_PATHS)
        object.__setattr__(self, "when", tuple((str(k), v) for k, v in dict(self.when).items()))
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
    if head == TASK_PATH and dot:
        return name.isidentifier()
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


def parse_space(table: Mapping[str, Any], source: str, where: str = "search.space",
                task: str | None = None) -> tuple[SearchSpace, list[Problem]]:
    """Read a search space from its TOML table, collecting every problem.

    Args:
        table: ``{path: {low, high, log, type} | {choices}}`` (see the module doc); ``type``
            is ``"float"`` (default for a range), ``"int"`` or ``"categorical"`` (default
            when ``choices`` is given).
        source: the file name shown in problems.
        where: the key path of ``table`` in the file.
        task: the study's task reference; when given, each ``task.<parameter>`` path must name a
            parameter of its factory (a user factory ``module:factory`` is checked when built).

    Returns:
        ``(space, problems)``: the valid parameters in table order, and one
        :class:`~optbench.core.errors.Problem` per mistake (path ``f"{where}.{path}.{key}"``):
        unknown keys, unknown path or task parameter, ``low >= high``, log with ``low <= 0``,
        empty choices, a ``when`` that is not a table of earlier paths (or names a value outside an
        earlier categorical parameter's choices).
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
        elif task is not None and is_task_path(path):
            allowed = task_parameters(task)
            if allowed is not None and path.partition(".")[2] not in allowed:
                problem(path, "", f"unknown parameter of task {task!r}; allowed: "
                        + (", ".join(f"{TASK_PATH}.{a}" for a in allowed) or "none"))
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
        _check_when(spec.get("when", {}), path, params, problem)
        if len(problems) == before:
            params.append(_param(path, kind, spec))
    return tuple(params), problems


def _check_when(when: Any, path: str, earlier: list[Param], problem: Any) -> None:
    """Problems of a ``when`` table: each key a path of ``earlier`` (valid parameters before
    ``path``), each value a plain value (one of the choices of a categorical one)."""
    if not isinstance(when, Mapping):
        problem(path, "when", "a table {earlier path = value, ...}")
        return
    known = {p.path: p for p in earlier}
    for key, value in when.items():
        if key not in known:
            problem(path, f"when.{key}", f"not a parameter earlier in the space; allowed: "
                    f"{', '.join(known) or 'none (this is the first parameter)'}")
        elif not isinstance(value, bool | int | float | str):
            problem(path, f"when.{key}", f"a number, string or boolean (got {value!r})")
        elif known[key].kind == "categorical" and value not in (known[key].choices or ()):
            problem(path, f"when.{key}", f"one of the choices of {key}: {list(known[key].choices or ())}")


def is_task_path(path: str) -> bool:
    """True for a task parameter path ``task.<parameter>``."""
    return path.partition(".")[0] == TASK_PATH and valid_path(path)


def task_parameters(task: str) -> list[str] | None:
    """The parameter names of the factory of the registered task ``task`` (``base[...]`` allowed);
    None for a user factory (``module:factory``) or an unknown name (reported where the task is
    built).
    """
    import inspect

    from optbench.tasks import parse_task_ref, tasks

    try:
        base, _ = parse_task_ref(task)
    except ConfigError:
        return None
    if ":" in base or base not in tasks:
        return None
    factory = tasks.get(base)
    return [p.name for p in inspect.signature(factory).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def applies(param: Param, values: Mapping[str, Any]) -> bool:
    """True when ``param``'s condition holds for the values sampled so far (``values``: path ->
    value); a parameter without condition always applies."""
    return all(path in values and same_value(values[path], value) for path, value in param.when)


def same_value(a: Any, b: Any) -> bool:
    """Equal values, a number and its string form read back from a task name included."""
    from optbench.core.options import format_literal

    return a == b or (not isinstance(a, bool) and not isinstance(b, bool) and format_literal(a) == format_literal(b))


def has_task_paths(space: SearchSpace) -> bool:
    """True when ``space`` varies task parameters (its trials run on parameterised tasks)."""
    return any(is_task_path(p.path) for p in space)


def split_values(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(task parameters, recipe values)`` of a trial's ``values``: ``{"task.block": "plain",
    "hyperparams.lr": 0.1}`` -> ``({"block": "plain"}, {"hyperparams.lr": 0.1})``."""
    task: dict[str, Any] = {}
    recipe: dict[str, Any] = {}
    for path, value in values.items():
        if is_task_path(path):
            task[path.partition(".")[2]] = _plain(value)
        else:
            recipe[path] = value
    return task, recipe


def trial_task(task_ref: str, name: str, task_values: Mapping[str, Any]) -> tuple[str, str]:
    """``(task reference, task name)`` of a trial: the study's task with ``task_values``
    (parameter -> value) merged into its bracket parameters; unchanged when there are none.

    Raises:
        ConfigError: for a malformed task reference.
    """
    from optbench.tasks import parse_task_ref, task_name

    if not task_values:
        return task_ref, name
    ref_base, ref_params = parse_task_ref(task_ref)
    name_base, name_params = parse_task_ref(name)
    return (task_name(ref_base, {**ref_params, **task_values}),
            task_name(name_base, {**name_params, **task_values}))


def trial_values(task: str, recipe: Recipe, space: SearchSpace, study_task: str) -> dict[str, Any]:
    """The values of ``space`` in a run of task ``task`` with ``recipe`` (the inverse of
    :func:`split_values` + :func:`trial_task` + :func:`apply_params`), in space order, skipping the
    parameters whose condition fails. Task parameters are read back from the task name (a
    categorical value as its matching choice: ``channels=16`` is the choice ``"16"``).

    Raises:
        KeyError: when the run is not a trial of the space on ``study_task``: another base task,
            a task parameter absent or outside the study's, a recipe path absent (see
            :func:`read_params`).
    """
    from optbench.tasks import parse_task_ref

    try:
        base, params = parse_task_ref(task)
        study_base, study_params = parse_task_ref(study_task)
    except ConfigError:
        raise KeyError(task) from None
    if base != study_base:
        raise KeyError(task)
    out: dict[str, Any] = {}
    seen: set[str] = set()
    for p in space:
        if not applies(p, out):
            continue
        if is_task_path(p.path):
            key = p.path.partition(".")[2]
            if key not in params:
                raise KeyError(p.path)
            value = params[key]
            if p.kind == "categorical":
                value = next((c for c in p.choices or () if same_value(c, value)), value)
            out[p.path] = value
            seen.add(key)
        else:
            out.update(read_params(recipe, (p,)))
    rest = {k: v for k, v in params.items() if k not in seen}
    if rest != {k: v for k, v in study_params.items() if k not in seen}:
        raise KeyError(task)
    return out


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
    when = tuple(dict(spec.get("when", {})).items())
    if kind == "categorical":
        return Param(path, kind, choices=tuple(spec["choices"]), when=when)
    low, high = spec["low"], spec["high"]
    if kind == "int":
        low, high = int(low), int(high)
    else:
        low, high = float(low), float(high)
    return Param(path, kind, low=low, high=high, log=bool(spec.get("log", False)), when=when)


def apply_params(recipe: Recipe, values: Mapping[str, Any]) -> Recipe:
    """A copy of ``recipe`` with each ``path -> value`` of ``values`` set.

    Raises:
        ConfigError: for an unknown path, or a value the recipe rejects (e.g. ``lr <= 0``).
    """
    for path in values:
        if not valid_path(path) or is_task_path(path):
            raise ConfigError("search.space path", path, _ALLOWED_PATHS if valid_path(path)
                              else "a recipe path (task parameters go into the task: trial_task)")
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
        KeyError: for a task path (read by :func:`trial_values`), when a ``hyperparams.<name>``-style
            path is absent from the recipe (a technique path:
            the recipe has no such technique, or it leaves the parameter at its default), or an older
            flat path is read from a recipe whose techniques have no flat form.
    """
    out: dict[str, Any] = {}
    for p in space:
        head, dot, name = p.path.partition(".")
        if head == TASK_PATH:  # in the task name, not the recipe: trial_values
            raise KeyError(p.path)
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


__all__ = ["FIELD_PATHS", "LEGACY_PATHS", "MAPPING_PATHS", "SCALAR_PATHS", "TASK_PATH", "TECHNIQUE_PATH", "Param",
           "SearchSpace", "applies", "apply_params", "grid_values", "has_task_paths", "is_task_path", "parse_space",
           "read_params", "same_value", "split_values", "task_parameters", "trial_task", "trial_values", "valid_path"]
