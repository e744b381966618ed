"""The task catalogue and the loader of user tasks.

``tasks`` is a strict registry of task factories (``() -> Task``), imported lazily.
:func:`get_task` also accepts a user task ``"package.module:factory"`` or
``"path/to/file.py:factory"`` whose factory returns a :class:`~optbench.spec.Task`.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path

from optbench.errors import ConfigError
from optbench.registry import Registry
from optbench.spec import Task

tasks: Registry[Callable[[], Task]] = Registry("task")
for _name in ("fmnist_cnn3", "fmnist_mlp", "mnist_mlp", "mnist1d_mlp", "mnist1d_cnn", "digits_mlp"):
    tasks.register(_name, lazy=f"optbench.tasks.catalog:{_name}")
del _name


def _load_factory(ref: str) -> Callable[[], Task]:
    module_ref, _, attr = ref.rpartition(":")
    allowed = "a registered task name or 'package.module:factory' or 'file.py:factory'"
    if not module_ref or not attr.isidentifier():
        raise ConfigError("task", ref, allowed)
    if module_ref.endswith(".py"):
        path = Path(module_ref)
        if not path.is_file():
            raise ConfigError("task", ref, f"{allowed} (file {path} not found)")
        spec = importlib.util.spec_from_file_location(f"optbench_user_task_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_ref)
        except ImportError as exc:
            raise ConfigError("task", ref, f"{allowed} (cannot import {module_ref}: {exc})") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError("task", ref, f"{allowed} ({module_ref} has no callable {attr!r})")
    return factory


def get_task(ref: str) -> Task:
    """The Task named ``ref`` (registry name or user factory reference).

    Raises:
        UnknownNameError: for an unknown registry name (lists the known names).
        ConfigError: when a user factory cannot be imported or does not return a Task.
    """
    factory = _load_factory(ref) if ":" in ref else tasks.get(ref)
    task = factory()
    if not isinstance(task, Task):
        raise ConfigError("task", ref, f"a factory returning optbench.spec.Task, got {type(task).__name__}")
    return task


__all__ = ["get_task", "tasks"]
