"""optbench: compare neural-network training methods fairly and fast.

The curated public API, imported lazily on first attribute access (``import optbench`` itself
imports nothing heavy and has no side effects)::

    import optbench
    outcome = optbench.compare(optbench.CompareConfig(task="digits_mlp", optimizers=("adam", "sgd")), "results.db")
    result = optbench.train(task, data, optbench.Recipe("adam", {"lr": 1e-3}, techniques=["clip_norm:max_norm=1"]), 0)
    outcome = optbench.run_study(optbench.load_study("examples/studies/deepobs.toml"), "results.db")
    with optbench.open_store("results.db") as store: ...

The layers behind these names are described in docs/architecture.md.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> module that defines it, or (module, attribute) when the public name differs
_EXPORTS: dict[str, str | tuple[str, str]] = {
    "compare": ("optbench.study.compare", "run_compare"),
    "TechniqueSpec": "optbench.core.spec", "Component": "optbench.core.component",
    "Store": "optbench.runs.store", "check_recipe": "optbench.engine.validate",
    "DistributedConfig": "optbench.engine.distributed", "run_distributed": "optbench.engine.distributed",
    "Direction": "optbench.core.spec", "Metric": "optbench.core.spec", "DerivedMetric": "optbench.core.spec",
    "Task": "optbench.core.spec", "Recipe": "optbench.core.spec", "RunResult": "optbench.core.spec",
    "RunStatus": "optbench.core.spec", "Target": "optbench.core.spec", "Dataset": "optbench.core.spec",
    "Split": "optbench.core.spec",
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
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'optbench' has no attribute {name!r}")
    module, attribute = target if isinstance(target, tuple) else (target, name)
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
