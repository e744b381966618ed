"""Study definitions: a TOML file (or the same structure as a dict in Python), validated in one pass.

File layout (every section but ``[study]`` and ``[[recipes]]`` is optional)::

    [study]
    name = "digits-deepobs"      # default: the file's stem
    protocol = "deepobs"         # seed004 | deepobs | crowded-valley | algoperf-lite | search
    tasks = ["digits_mlp"]       # registry names, "name[k=v]" or "module:factory"
    seeds = 3                    # 3 means [0, 1, 2]; or an explicit list [0, 1, 2]
    target = 0.95                # optional: overrides each task's target value
    description = "..."          # optional
    [budget]                     # per run; the protocol's rules decide how many runs
    epochs = 5
    train_size = 1000            # optional (default: all training examples); or "all"
    seconds = 60.0               # optional wall-clock budget (Recipe.max_train_seconds)
    trials = 16                  # tuning trials of the search protocols
    [defaults]                   # Recipe fields shared by every recipe
    batch_size = 128
    [[recipes]]                  # one per optimizer setting; mapping fields merge with [defaults]
    optimizer = "adam"
    hyperparams = { lr = 1e-3 }
    schedule = "cosine"          # optional; schedule_params = { warmup_steps = 100 }
    techniques = ["label_smoothing:epsilon=0.1", { name = "clip_norm", params = { max_norm = 1.0 } }]
    [search]                     # crowded-valley, algoperf-lite and search
    sampler = "tpe"              # search only; the other protocols fix their sampler
    pruner = "asha"
    seed = 0
    optuna_storage = "sqlite:///optuna.db"   # optional: also write the trials there, live, for
                                             # optuna-dashboard ("store": the results database)
    objectives = ["valid_accuracy:max", "params:min"]  # search only, optional: several objectives
                                             # (metric first, then params, flops, latency; no pruner)
    [search.space]
    "hyperparams.lr" = { low = 1e-5, high = 1e-1, log = true }
    [protocol]                   # protocol options, validated per protocol
    grid = { low = 1e-5, high = 1e2, points = 36 }
    [execution]                  # how runs execute (never changes the numbers)
    checkpoints = true           # per-epoch checkpoints: an interrupted run resumes from its last epoch
    checkpoint_dir = "ckpt"      # default: "<store>.checkpoints" next to a SQLite store; alone, it turns
                                 # checkpoints on
    save_weights = true          # store every finished run's final weights (for init_from, lwf, ewc)
    weights_dir = "weights"      # default: "<store>.weights" next to a SQLite store; runs load stored
                                 # weights from it whenever it is known; saving needs save_weights

A recipe's ``techniques`` is an ordered list (``optbench list techniques``), each item a string
``NAME`` or ``NAME:key=value,key=value`` or a table ``{ name = "...", params = { ... } }``; a
recipe's list replaces the one of ``[defaults]``. The older flat keys (``label_smoothing = 0.1``,
``penalty = "l2"`` with ``penalty_params``, ``clip_norm``, ``warmup_steps`` ...) are still read
(:meth:`~optbench.core.spec.Recipe.from_dict`, :mod:`optbench.core.legacy`): their techniques come
first, then the list's.

Validation reports every problem at once (:class:`~optbench.core.errors.ConfigProblems`): unknown keys,
unknown names (tasks, optimizers, schedules, penalties ..., samplers, pruners, protocols), bad
values, empty ranges and log ranges with a non-positive bound, each with the file and key path.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from optbench.core.errors import ConfigError, ConfigProblems, Problem
from optbench.core.legacy import LEGACY_KEYS, split_legacy
from optbench.core.spec import TECHNIQUE_SYNTAX, Recipe, TechniqueSpec
from optbench.study.definition import BudgetConfig, ExecutionConfig, SearchSettings, StudyConfig
from optbench.study.protocols import Reporter, protocols

TOP_KEYS = ("study", "budget", "defaults", "recipes", "search", "protocol", "execution")
STUDY_KEYS = ("name", "protocol", "tasks", "seeds", "target", "description")
BUDGET_KEYS = ("epochs", "train_size", "seconds", "trials")
SEARCH_KEYS = ("sampler", "pruner", "seed", "grid_points", "space", "optuna_storage", "objectives")
EXECUTION_KEYS = ("checkpoints", "checkpoint_dir", "save_weights", "weights_dir")
#: Recipe fields owned by [budget] (the same for every recipe of a study: the fairness rule).
BUDGET_FIELDS = ("epochs", "train_size", "max_train_seconds")
#: Recipe fields a recipe table (or [defaults]) may set.
FIELD_KEYS = tuple(f.name for f in fields(Recipe) if f.name not in BUDGET_FIELDS)
#: ... and the older flat technique keys (read through Recipe.from_dict).
RECIPE_KEYS = FIELD_KEYS + LEGACY_KEYS
_MAPPING_FIELDS = ("hyperparams", "schedule_params", "penalty_params", "averaging_params", "augmentation",
                   "early_stopping")
_ALLOWED_RECIPE_KEYS = f"{', '.join(FIELD_KEYS)} (or an older flat key: {', '.join(LEGACY_KEYS)})"
#: The flat key a technique of the older form came from (penalty, averaging and augmentation by value).
_FLAT_KEY = {"label_smoothing": "label_smoothing", "clip_norm": "clip_norm", "clip_value": "clip_value",
             "accumulation": "accumulation_steps", "lr_scaling": "batch_rule",
             "no_decay_bias_norm": "decay_bias_and_norm", "early_stopping": "early_stopping"}
DEFAULT_SEEDS = 3
#: Seeds when a file gives none, where the protocol's source fixes a number (DeepOBS re-runs the
#: best setting on 10 seeds, Schneider et al. 2019).
PROTOCOL_DEFAULT_SEEDS = {"deepobs": 10}


class _Collector:
    """Problems of one source, reported with key paths."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(self.source, path, message))

    def at(self, prefix: str) -> Reporter:
        return lambda key, message: self.add(f"{prefix}.{key}" if key else prefix, message)


def _table(data: Mapping[str, Any], key: str, p: _Collector) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        p.add(key, f"a table [{key}], got {type(value).__name__}")
        return {}
    return value


def _unknown(table: Mapping[str, Any], allowed: tuple[str, ...], prefix: str, p: _Collector) -> None:
    for key in table:
        if key not in allowed:
            p.add(f"{prefix}.{key}" if prefix else key, f"unknown key; allowed: {', '.join(allowed)}")


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _parse_budget(table: Mapping[str, Any], p: _Collector) -> BudgetConfig:
    _unknown(table, BUDGET_KEYS, "budget", p)
    out = BudgetConfig()
    for key in ("epochs", "trials"):
        if key in table:
            if _count(table[key]):
                out = replace(out, **{key: table[key]})
            else:
                p.add(f"budget.{key}", f"an integer >= 1, got {table[key]!r}")
    size = table.get("train_size")
    if size is not None and size != "all":
        if _count(size):
            out = replace(out, train_size=size)
        else:
            p.add("budget.train_size", f"an integer >= 1 or 'all', got {size!r}")
    seconds = table.get("seconds")
    if seconds is not None:
        if isinstance(seconds, int | float) and not isinstance(seconds, bool) and 0 < seconds < math.inf:
            out = replace(out, seconds=float(seconds))
        else:
            p.add("budget.seconds", f"a number of seconds > 0, got {seconds!r}")
    return out


def _parse_execution(table: Mapping[str, Any], p: _Collector) -> ExecutionConfig:
    _unknown(table, EXECUTION_KEYS, "execution", p)
    out = ExecutionConfig()
    directory = table.get("checkpoint_dir")
    if directory is not None:
        if isinstance(directory, str) and directory.strip():
            out = replace(out, checkpoints=True, checkpoint_dir=directory)
        else:
            p.add("execution.checkpoint_dir", f"a directory path, got {directory!r}")
    if "checkpoints" in table:
        if isinstance(table["checkpoints"], bool):
            out = replace(out, checkpoints=table["checkpoints"])
        else:
            p.add("execution.checkpoints", f"true or false, got {table['checkpoints']!r}")
    weights_dir = table.get("weights_dir")
    if weights_dir is not None:
        if isinstance(weights_dir, str) and weights_dir.strip() and not Path(weights_dir).is_file():
            out = replace(out, weights_dir=weights_dir)
        else:
            p.add("execution.weights_dir", f"a directory path (not a file), got {weights_dir!r}")
    if "save_weights" in table:
        if isinstance(table["save_weights"], bool):
            out = replace(out, save_weights=table["save_weights"])
        else:
            p.add("execution.save_weights", f"true or false, got {table['save_weights']!r}")
    return out


def _parse_seeds(value: Any, p: _Collector) -> tuple[int, ...]:
    if _count(value):
        return tuple(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                 for s in value):
        if len(set(value)) == len(value):
            return tuple(value)
        p.add("study.seeds", f"a list without repeated seeds, got {value!r}")
        return tuple(dict.fromkeys(value))
    p.add("study.seeds", f"an integer >= 1 (seeds 0..n-1) or a non-empty list of integers >= 0, got {value!r}")
    return (0,)


def _parse_tasks(value: Any, p: _Collector) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(t, str) and t.strip() for t in items):
        p.add("study.tasks", f"a task name or a non-empty list of task names, got {value!r}")
        return ()
    if len(set(items)) != len(items):
        p.add("study.tasks", f"a list without repeated tasks, got {items!r}")
    return tuple(dict.fromkeys(t.strip() for t in items))


def _lr_free_shares_no_lr(merged: dict[str, Any], table: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    """A learning-rate-free optimizer (Prodigy, D-Adaptation) does not take the learning rate shared
    in ``[defaults]``: it gets lr 1.0, its step-size multiplier
    (:func:`optbench.optim.lr_semantics.shared_lr`); an lr in its own recipe table is kept."""
    from optbench.optim.lr_semantics import shared_lr

    shared = defaults.get("hyperparams")
    own = table.get("hyperparams")
    if not isinstance(shared, Mapping) or "lr" not in shared or (isinstance(own, Mapping) and "lr" in own):
        return
    try:
        lr = shared_lr(str(merged["optimizer"]), shared["lr"])
    except ValueError:  # an unknown optimizer is reported where recipes are checked
        return
    merged["hyperparams"] = {**merged["hyperparams"], "lr": lr}


def _origin(i: int, recipe: Mapping[str, Any], defaults: Mapping[str, Any]) -> Callable[[str], str]:
    def where(name: str) -> str:
        if name in recipe:
            return f"recipes[{i}].{name}"
        return f"defaults.{name}" if name in defaults else f"recipes[{i}]"
    return where


def _recipe_field_of(error_field: str) -> str:
    """The Recipe field a ConfigError from ``Recipe(...)`` is about (``"lr"`` -> hyperparams)."""
    head = error_field.split(" ")[0]
    if head in ("lr", "hyperparameter"):
        return "hyperparams"
    if head == "technique":
        return "techniques"
    return head if head in RECIPE_KEYS else ""


@dataclass(frozen=True)
class _Parsed:
    """A parsed recipe, ``where(field)``: the key path a problem of a field is reported at, and the
    key path of each of its techniques (the flat key or list item it came from)."""

    recipe: Recipe
    where: Callable[[str], str]
    technique_paths: tuple[str, ...]


def _flat_key(name: str, merged: Mapping[str, Any]) -> str:
    if name == merged.get("penalty"):
        return "penalty"
    if name == merged.get("averaging"):
        return "averaging"
    augmentation = merged.get("augmentation")
    if isinstance(augmentation, Mapping) and name in augmentation:
        return "augmentation"
    return _FLAT_KEY.get(name, "")


def _parse_techniques(value: Any, path: str, p: _Collector) -> list[TechniqueSpec] | None:
    """The ``techniques`` list of a recipe, each item checked for form (names later); None on a problem."""
    allowed = f"{TECHNIQUE_SYNTAX}, or a table {{ name = \"...\", params = {{ ... }} }}"
    if not isinstance(value, list):
        p.add(path, f"a list of techniques, each {allowed}; got {value!r}")
        return None
    out: list[TechniqueSpec] = []
    for j, item in enumerate(value):
        try:
            out.append(TechniqueSpec.coerce(item))
        except ConfigError:
            p.add(f"{path}[{j}]", f"a technique: {allowed}; got {item!r}")
    return out if len(out) == len(value) else None


def _parse_recipes(data: Mapping[str, Any], budget: BudgetConfig, p: _Collector) -> list[_Parsed]:
    defaults = _table(data, "defaults", p)
    for key in defaults:
        if key in BUDGET_FIELDS:
            p.add(f"defaults.{key}", "set per-run budgets in [budget] (epochs, train_size, seconds)")
        elif key not in RECIPE_KEYS or key == "optimizer":
            p.add(f"defaults.{key}", f"unknown key; allowed: {_ALLOWED_RECIPE_KEYS.replace('optimizer, ', '')}")
    items = data.get("recipes")
    if not isinstance(items, list) or not items or not all(isinstance(r, Mapping) for r in items):
        p.add("recipes", "one or more [[recipes]] tables, each with an optimizer")
        return []
    out = []
    for i, table in enumerate(items):
        where = _origin(i, table, defaults)
        bad = False
        for key in table:
            if key in BUDGET_FIELDS:
                p.add(f"recipes[{i}].{key}", "set per-run budgets in [budget] (epochs, train_size, seconds)")
                bad = True
            elif key not in RECIPE_KEYS:
                p.add(f"recipes[{i}].{key}", f"unknown key; allowed: {_ALLOWED_RECIPE_KEYS}")
                bad = True
        if not isinstance(table.get("optimizer"), str):
            p.add(f"recipes[{i}].optimizer", f"an optimizer name, got {table.get('optimizer')!r}")
            continue
        merged: dict[str, Any] = {k: v for k, v in defaults.items() if k in RECIPE_KEYS}
        for key, value in table.items():
            if key in _MAPPING_FIELDS and isinstance(merged.get(key), Mapping) and isinstance(value, Mapping):
                merged[key] = {**merged[key], **value}
            elif key in RECIPE_KEYS:
                merged[key] = value
        _lr_free_shares_no_lr(merged, table, defaults)
        explicit: list[TechniqueSpec] = []
        if "techniques" in merged:
            parsed = _parse_techniques(merged["techniques"], where("techniques"), p)
            bad = bad or parsed is None
            explicit = parsed or []
            merged["techniques"] = explicit
        if bad:
            continue
        try:
            recipe = budget.apply(Recipe.from_dict(merged))
            _, flat = split_legacy(merged)
        except ConfigError as exc:
            p.add(where(_recipe_field_of(exc.field)), str(exc))
            continue
        except (TypeError, ValueError) as exc:
            p.add(f"recipes[{i}]", f"not a valid recipe: {exc}")
            continue
        paths = [where(_flat_key(name, merged)) for name, _ in flat]
        paths += [f"{where('techniques')}[{j}]" for j in range(len(explicit))]
        out.append(_Parsed(recipe, where, tuple(paths)))
    return out


def _parse_search(data: Mapping[str, Any], p: _Collector) -> tuple[SearchSettings | None, Mapping[str, Any]]:
    if "search" not in data:
        return None, {}
    table = _table(data, "search", p)
    _unknown(table, SEARCH_KEYS, "search", p)
    settings = SearchSettings()
    for key in ("sampler", "pruner"):
        if key in table:
            if isinstance(table[key], str):
                settings = replace(settings, **{key: table[key]})
            else:
                p.add(f"search.{key}", f"a name, got {table[key]!r}")
    if "seed" in table:
        seed = table["seed"]
        if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0:
            settings = replace(settings, seed=seed)
        else:
            p.add("search.seed", f"an integer >= 0, got {seed!r}")
    if "grid_points" in table:
        if _count(table["grid_points"]):
            settings = replace(settings, grid_points=table["grid_points"])
        else:
            p.add("search.grid_points", f"an integer >= 1, got {table['grid_points']!r}")
    if "optuna_storage" in table:
        from optbench.search.storage import ALLOWED, check_storage

        try:
            settings = replace(settings, optuna_storage=check_storage(table["optuna_storage"]))
        except ConfigError:
            p.add("search.optuna_storage", f"{ALLOWED}, got {table['optuna_storage']!r}")
    if "objectives" in table:
        from optbench.search.objectives import ALLOWED, parse_objectives

        try:
            parse_objectives(table["objectives"])
            settings = replace(settings, objectives=tuple(table["objectives"]))
        except ConfigError:
            p.add("search.objectives", f"{ALLOWED}, got {table['objectives']!r}")
    space = table.get("space", {})
    if not isinstance(space, Mapping):
        p.add("search.space", f"a table of parameter ranges, got {space!r}")
        space = {}
    return replace(settings, space_table=dict(space)), space


def _task_problems(recipe: Recipe, task: Any, components: list[tuple[Any, str]], where: Callable[[str], str],
                   *, whole: bool) -> list[tuple[str, str]]:
    """The problems of ``recipe`` on ``task`` as (key path, message): each technique that does not fit
    the task (at the technique's path); when there is none and ``whole`` (every name of the recipe
    is known), the first problem of :func:`~optbench.engine.validate.check_recipe`."""
    from optbench.engine.validate import check_recipe

    out = []
    for component, path in components:
        try:
            component.check_task(task)
        except ConfigError as exc:
            out.append((path, str(exc)))
    if out or not whole:
        return out
    try:
        check_recipe(recipe, task)
    except ConfigError as exc:
        return [(where(_recipe_field_of(exc.field)), str(exc))]
    return []


def _check_names(tasks: tuple[str, ...], recipes: list[_Parsed], search: SearchSettings | None,
                 space: Mapping[str, Any], p: _Collector) -> SearchSettings | None:
    """Every unknown name and bad parameter of tasks, recipes (techniques reported at the key they
    came from) and search; returns ``search`` with its space parsed."""
    from optbench.optim import optimizers, resolved_hyperparams
    from optbench.schedules import check_params, schedules
    from optbench.tasks import get_task
    from optbench.techniques.registry import make_component

    built = []
    for j, ref in enumerate(tasks):
        try:
            built.append(get_task(ref))
        except ConfigError as exc:
            p.add(f"study.tasks[{j}]", str(exc))
    for recipe, where, paths in ((r.recipe, r.where, r.technique_paths) for r in recipes):
        checks = ((where("optimizer"), lambda r=recipe: optimizers.canonical(r.optimizer)),
                  (where("hyperparams"), lambda r=recipe: resolved_hyperparams(r.optimizer, **r.hyperparams)),
                  (where("schedule"), lambda r=recipe: schedules.canonical(r.schedule)),
                  (where("schedule_params"), lambda r=recipe: check_params(r.schedule, dict(r.schedule_params))))
        ok = True
        for path, check in checks:
            try:
                check()
            except ConfigError as exc:
                p.add(path, str(exc))
                ok = False
                break  # later checks depend on the earlier names
        components = []
        for spec, path in zip(recipe.techniques, paths, strict=True):
            try:
                components.append((make_component(spec), path))
            except ConfigError as exc:
                p.add(path, str(exc))
                ok = False
        for task in built:
            problems = _task_problems(recipe, task, components, where, whole=ok)
            for path, message in problems:
                p.add(path, message)
            if problems:
                break
    if search is None:
        return None
    from optbench.search import parse_space, pruners, samplers

    for key, registry in (("sampler", samplers), ("pruner", pruners)):
        try:
            registry.canonical(getattr(search, key))
        except ConfigError as exc:
            p.add(f"search.{key}", str(exc))
    parsed, problems = parse_space(space, p.source, where="search.space")
    p.problems.extend(problems)
    before = len(p.problems)
    _check_task_paths(tasks, parsed, p)
    if not problems and len(p.problems) == before:  # what no trial could run (every point built)
        from optbench.search.realizable import study_realizability_problems

        for path, message in study_realizability_problems(tasks, parsed):
            p.add(path, message)
    return replace(search, space=parsed)


def _check_task_paths(tasks: tuple[str, ...], space: Any, p: _Collector) -> None:
    """Each ``task.<parameter>`` path of the search space names a parameter of every study task's
    factory (a user factory is checked when it is built)."""
    from optbench.search.space import is_task_path, task_parameters

    for ref in tasks:
        allowed = task_parameters(ref)
        for param in space:
            if allowed is not None and is_task_path(param.path) and param.path.partition(".")[2] not in allowed:
                p.add(f"search.space.{param.path}", f"unknown parameter of task {ref!r}; allowed: "
                      + (", ".join(f"task.{a}" for a in allowed) or "none (this task has no parameters)"))


def _default_name(data: Mapping[str, Any], source: str, protocol: str) -> str:
    if source != "<api>":
        return Path(source).stem
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{protocol or 'study'}-{digest}"


def study_from_dict(data: Mapping[str, Any], source: str = "<api>") -> StudyConfig:
    """Build and validate a study from the TOML structure (see the module docstring).

    Args:
        data: the parsed file (``tomllib.load``) or the same structure built in Python.
        source: where it came from, shown with every problem.

    Raises:
        ConfigProblems: every problem found (structure, values and names), each with its key path.
    """
    p = _Collector(source)
    if not isinstance(data, Mapping):
        raise ConfigProblems([Problem(source, "", "a table with [study] and [[recipes]]")])
    _unknown(data, TOP_KEYS, "", p)
    study = _table(data, "study", p)
    _unknown(study, STUDY_KEYS, "study", p)
    protocol = study.get("protocol")
    spec = None
    if not isinstance(protocol, str):
        p.add("study.protocol", f"a protocol name; allowed: {', '.join(protocols.names())}")
    elif protocol not in protocols:
        p.add("study.protocol", f"unknown protocol {protocol!r}; allowed: {', '.join(protocols.names())}")
    else:
        protocol = protocols.canonical(protocol)
        spec = protocols.get(protocol)
    name = study.get("name", _default_name(data, source, protocol if isinstance(protocol, str) else ""))
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        p.add("study.name", f"a non-empty name of at most 200 characters, got {name!r}")
    tasks = _parse_tasks(study.get("tasks"), p)
    default_seeds = PROTOCOL_DEFAULT_SEEDS.get(protocol, DEFAULT_SEEDS) if isinstance(protocol, str) else DEFAULT_SEEDS
    seeds = _parse_seeds(study.get("seeds", default_seeds), p)
    target = study.get("target")
    if target is not None and (isinstance(target, bool) or not isinstance(target, int | float)
                               or not math.isfinite(target)):
        p.add("study.target", f"a finite number, got {target!r}")
        target = None
    description = study.get("description", "")
    if not isinstance(description, str):
        p.add("study.description", f"text, got {description!r}")
        description = ""
    budget = _parse_budget(_table(data, "budget", p), p)
    execution = _parse_execution(_table(data, "execution", p), p)
    recipes = _parse_recipes(data, budget, p)
    search, space = _parse_search(data, p)
    options: dict[str, Any] = {}
    if spec is not None:
        options = spec.parse_options(_table(data, "protocol", p), p.at("protocol"))
        if spec.needs_space and search is None:
            p.add("search.space", f"protocol {spec.name} tunes over [search.space]; add it")
        elif not spec.needs_space and search is not None:
            p.add("search", f"protocol {spec.name} does not use [search]; remove it")
        elif search is not None and search.objectives and spec.name != "search":
            p.add("search.objectives", f"protocol {spec.name} tunes one objective; remove it (protocol search)")
    search = _check_names(tasks, recipes, search, space, p)
    if p.problems:
        raise ConfigProblems(p.problems)
    config = StudyConfig(name=name, protocol=protocol, tasks=tasks, seeds=seeds,
                         recipes=tuple(r.recipe for r in recipes),
                         budget=budget, target=None if target is None else float(target), search=search,
                         options=options, description=description, source=source, execution=execution)
    for path, message in spec.check(config):
        p.add(path, message)
    if p.problems:
        raise ConfigProblems(p.problems)
    return config


def validate_study(config: StudyConfig) -> list[Problem]:
    """Every problem of a :class:`StudyConfig` built in Python: names of tasks, optimizers, schedules,
    penalties ... (via ``check_recipe``), the protocol and its structural rules. Empty when valid."""
    p = _Collector(config.source)
    if config.protocol not in protocols:
        p.add("study.protocol", f"unknown protocol {config.protocol!r}; allowed: {', '.join(protocols.names())}")
    if not config.tasks:
        p.add("study.tasks", "a non-empty list of task names")
    if not config.recipes:
        p.add("recipes", "one or more recipes")
    recipes = [_Parsed(r, lambda name, i=i: f"recipes[{i}].{name}",
                       tuple(f"recipes[{i}].techniques[{j}]" for j in range(len(r.techniques))))
               for i, r in enumerate(config.recipes)]
    search = config.search
    if search is not None and search.space is None:
        search = _check_names(config.tasks, recipes, search, search.space_table, p)
    else:
        _check_names(config.tasks, recipes, None, {}, p)
        if search is not None:
            from optbench.search import pruners, samplers

            for key, registry in (("sampler", samplers), ("pruner", pruners)):
                if getattr(search, key) not in registry:
                    p.add(f"search.{key}", f"unknown {key} {getattr(search, key)!r}; allowed: "
                                           f"{', '.join(registry.names())}")
    if config.protocol in protocols and not p.problems:
        for path, message in protocols.get(config.protocol).check(replace(config, search=search)):
            p.add(path, message)
    return p.problems


def load_study(path: str | Path) -> StudyConfig:
    """Read and validate a study file (TOML).

    Raises:
        ConfigError: the file cannot be read.
        ConfigProblems: a TOML syntax error, or every problem of the definition.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("study file", str(path), f"a readable TOML file ({exc.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigProblems([Problem(str(path), "", f"not valid TOML: {exc}")]) from None
    return study_from_dict(data, source=str(path))


__all__ = ["BudgetConfig", "ExecutionConfig", "SearchSettings", "StudyConfig", "load_study", "study_from_dict",
           "validate_study"]
