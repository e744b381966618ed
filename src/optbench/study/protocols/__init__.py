"""Protocols: the rules of fairness of a study (what is tuned, with what budget, how seeds are
aggregated), one registry entry each (see docs/architecture.md).

``protocols`` is a strict :class:`~optbench.core.registry.Registry` of :class:`ProtocolSpec`, imported
lazily: ``seed004``, ``deepobs``, ``crowded-valley``, ``algoperf-lite`` and ``search``. A protocol
plans its phases as deterministic runs (content-hashed run ids), executes them through a
:class:`StudyContext` (``execute_plan`` for fixed runs, ``run_search`` for tuning), and returns its
answer as data (:mod:`optbench.analysis.protocols`). Re-running a study after a kill recomputes
every phase from the stored runs, so only what is missing is executed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from optbench.core.registry import Registry

if TYPE_CHECKING:
    from pathlib import Path

    import torch

    from optbench.core.spec import Recipe, RunResult, Task
    from optbench.runs.plan import RunSpec
    from optbench.study.config import StudyConfig

#: ``report(key path relative to the table, message)``: how option parsers report problems.
Reporter = Callable[[str, str], None]


@dataclass(frozen=True)
class ProtocolSpec:
    """One protocol.

    Attributes:
        name: registry name (``"deepobs"``).
        summary: one line: what is tuned and how results are aggregated.
        source: the paper the protocol follows.
        parse_options: ``(table of [protocol], report) -> options with defaults filled in``; reports
            every unknown key and bad value through ``report(path, message)``.
        check: ``config -> [(key path, message)]`` of protocol-specific structural problems
            (e.g. ``search`` needs exactly one recipe).
        planned_runs: ``config -> int``, an upper bound of the runs the study executes (for status).
        run: ``(config, context) -> result data`` (a dataclass of :mod:`optbench.analysis.protocols`).
        needs_space: whether the protocol tunes over ``[search.space]``.
    """

    name: str
    summary: str
    source: str
    parse_options: Callable[[Mapping[str, Any], Reporter], dict[str, Any]]
    check: Callable[[StudyConfig], list[tuple[str, str]]]
    planned_runs: Callable[[StudyConfig], int]
    run: Callable[[StudyConfig, StudyContext], Any]
    needs_space: bool = False


protocols: Registry[ProtocolSpec] = Registry("protocol")
for _name, _module in (("seed004", "seed004"), ("deepobs", "deepobs"), ("crowded-valley", "crowded_valley"),
                       ("algoperf-lite", "algoperf"), ("search", "optuna_search"), ("continual", "continual")):
    protocols.register(_name, lazy=f"optbench.study.protocols.{_module}:PROTOCOL")
del _name, _module
for _alias, _target in (("crowded_valley", "crowded-valley"), ("algoperf_lite", "algoperf-lite"),
                        ("algoperf", "algoperf-lite")):
    protocols.alias(_alias, _target)
del _alias, _target


@dataclass
class StudyContext:
    """Where and how a protocol executes its runs: the store, the study, workers and device.

    The two methods are the only way protocols run anything, so a test (or another backend) can
    substitute them.

    Args:
        store_url: SQLite file path or SQLAlchemy URL.
        study: the study name (created with ``Store.ensure_study`` before a protocol runs).
        workers: parallel runs in separate processes.
        device: training device (CUDA when available by default).
        on_event: progress events of the executor.
        checkpoint_dir: where fixed runs save per-epoch checkpoints (None: no checkpoints);
            tuning searches run without (their trials are short; Optuna's bookkeeping is the store).
        weights: stored final weights of runs (:class:`optbench.runs.weights.WeightsDir`) that
            fixed runs load from and, when it is saving, save to; None: no access.
    """

    store_url: str = field(repr=False)  # may hold a password: never in a repr
    study: str
    workers: int = 1
    device: torch.device | None = None
    on_event: Callable[[Any], None] | None = None
    checkpoint_dir: Path | None = None
    weights: Any = None
    tasks: dict[str, Task] = field(default_factory=dict)

    def task(self, ref: str) -> Task:
        """The task ``ref`` (built once per context)."""
        from optbench.tasks import get_task

        if ref not in self.tasks:
            self.tasks[ref] = get_task(ref)
        return self.tasks[ref]

    def execute(self, specs: Sequence[RunSpec]) -> list[RunResult]:
        """Run ``specs`` (finished ones are read from the store, not redone); results in plan order."""
        from optbench.runs import executor

        return executor.execute_plan(self.store_url, self.study, list(specs), workers=self.workers,
                                     device=self.device, on_event=self.on_event,
                                     checkpoint_dir=self.checkpoint_dir, weights=self.weights)

    def search(self, task_ref: str, base: Recipe, config: Any, *, run_seed: int) -> Any:
        """Run (or resume) an Optuna search of ``base`` with ``config`` (an
        ``optbench.search.SearchConfig``); returns its ``SearchOutcome``."""
        from optbench.search import run_search

        task = self.task(task_ref)
        return run_search(self.store_url, self.study, task_ref, task.name, base, config, run_seed=run_seed,
                          workers=self.workers, device=self.device, on_event=self.on_event)


def prepared_tasks(config: StudyConfig, context: StudyContext) -> list[tuple[str, Task, Any]]:
    """``(task ref, task, TaskKeys)`` of every task of ``config`` (target overridden by ``config.target``)."""
    from optbench.analysis.protocols import TaskKeys

    out = []
    for ref in config.tasks:
        task = context.task(ref)
        out.append((ref, task, TaskKeys.from_task(task, config.target)))
    return out


def canonical_recipes(recipes: Sequence[Recipe]) -> list[Recipe]:
    """``recipes`` with registry aliases resolved (one experiment, one run id)."""
    from optbench.engine.validate import canonical_recipe

    return [canonical_recipe(r) for r in recipes]


def recipe_labels(recipes: Sequence[Recipe]) -> list[str]:
    """Display labels: the optimizer name, numbered (``adam#2``) when several recipes share it."""
    names = [r.optimizer for r in recipes]
    return [n if names.count(n) == 1 else f"{n}#{names[:i + 1].count(n)}" for i, n in enumerate(names)]


def no_options(table: Mapping[str, Any], report: Reporter) -> dict[str, Any]:
    """Options parser of a protocol without options: every key is unknown."""
    unknown_keys(table, (), report)
    return {}


def no_check(config: StudyConfig) -> list[tuple[str, str]]:
    """Structural check of a protocol without extra rules."""
    return []


# ----------------------------------------------------------------------------- option parsing
def unknown_keys(table: Mapping[str, Any], allowed: Sequence[str], report: Reporter) -> None:
    """Report every key of ``table`` not in ``allowed``."""
    for key in table:
        if key not in allowed:
            report(key, f"unknown key; allowed: {', '.join(sorted(allowed)) or 'none'}")


def take_int(table: Mapping[str, Any], key: str, default: int, report: Reporter, *, minimum: int = 1) -> int:
    """``table[key]`` as an integer >= ``minimum`` (``default`` when absent); reports a bad value."""
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        report(key, f"an integer >= {minimum}, got {value!r}")
        return default
    return value


def take_bool(table: Mapping[str, Any], key: str, default: bool, report: Reporter) -> bool:
    """``table[key]`` as a boolean (``default`` when absent); reports a bad value."""
    value = table.get(key, default)
    if not isinstance(value, bool):
        report(key, f"true or false, got {value!r}")
        return default
    return value


def take_log_grid(table: Mapping[str, Any], key: str, default: tuple[float, float, int],
                  report: Reporter) -> tuple[float, float, int]:
    """A log-spaced grid ``{low, high, points}`` (``default`` when absent).

    Reports unknown keys, a non-positive bound (a log range needs low > 0), an empty range
    (high <= low with more than one point) and points < 1, each with its key path."""
    value = table.get(key)
    if value is None:
        return default
    if not isinstance(value, Mapping):
        report(key, f"a table {{low, high, points}}, got {value!r}")
        return default
    unknown_keys(value, ("low", "high", "points"), lambda k, m: report(f"{key}.{k}", m))
    low, high, points = (value.get("low", default[0]), value.get("high", default[1]),
                         value.get("points", default[2]))
    ok = numbers = True
    for name, bound in (("low", low), ("high", high)):
        if isinstance(bound, bool) or not isinstance(bound, int | float) or not math.isfinite(bound):
            report(f"{key}.{name}", f"a finite number, got {bound!r}")
            ok = numbers = False
        elif bound <= 0:
            report(f"{key}.{name}", f"a log range needs bounds > 0, got {bound!r}")
            ok = False
    if isinstance(points, bool) or not isinstance(points, int) or points < 1:
        report(f"{key}.points", f"an integer >= 1, got {points!r}")
        ok = numbers = False
    if numbers and (high < low or (high == low and points > 1)):
        report(key, f"an empty range: high {high!r} must be > low {low!r}")
        ok = False
    return (float(low), float(high), int(points)) if ok else default


def log_grid(low: float, high: float, points: int) -> list[float]:
    """``points`` log-spaced values from ``low`` to ``high`` (both included), rounded to 6
    significant digits so that the same grid always gives the same run ids."""
    import numpy as np

    values = np.geomspace(low, high, points) if points > 1 else np.asarray([low])
    return [float(f"{v:.6g}") for v in values]


__all__ = ["ProtocolSpec", "Reporter", "StudyContext", "canonical_recipes", "log_grid", "no_check", "no_options",
           "prepared_tasks", "protocols", "recipe_labels", "take_bool", "take_int", "take_log_grid", "unknown_keys"]
