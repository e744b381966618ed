"""optbench: compare neural-network training methods fairly and fast.

The curated public API, imported lazily on first attribute access (``import optbench`` itself
imports nothing heavy and has no side effects)::

    from optbench import Task, Recipe, RunResult, get_task, train, open_store
    from optbench import CompareConfig, run_compare, load_study, run_study, execute_plan
    from optbench import SearchConfig, run_search, create_optimizer, make_schedule
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> module that defines it
_EXPORTS = {
    "Direction": "optbench.core.spec", "Metric": "optbench.core.spec", "DerivedMetric": "optbench.core.spec",
    "Task": "optbench.core.spec", "Recipe": "optbench.core.spec", "RunResult": "optbench.core.spec",
    "RunStatus": "optbench.core.spec", "Target": "optbench.core.spec", "Dataset": "optbench.core.spec", "Split": "optbench.core.spec",
    "ConfigError": "optbench.core.errors", "ConfigProblems": "optbench.core.errors",
    "get_task": "optbench.tasks", "check_task": "optbench.tasks",
    "train": "optbench.engine", "Pruned": "optbench.engine",
    "create_optimizer": "optbench.optim", "make_schedule": "optbench.schedules",
    "load_arrays": "optbench.data", "load_text": "optbench.data",
    "open_store": "optbench.runs.store", "WorkerId": "optbench.runs.store",
    "CompareConfig": "optbench.study.compare", "run_compare": "optbench.study.compare",
    "load_study": "optbench.study.config", "study_from_dict": "optbench.study.config",
    "run_study": "optbench.study.runner",
    "execute_plan": "optbench.runs.executor", "Worker": "optbench.runs.executor",
    "RunSpec": "optbench.runs.plan",
    "SearchConfig": "optbench.search", "run_search": "optbench.search",
    "summarize_runs": "optbench.analysis.summary",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import ``name`` from its module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'optbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
