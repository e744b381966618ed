"""The task catalogue and the loader of user tasks.

``tasks`` is a strict registry of task factories (``() -> Task``), imported lazily.
:func:`get_task` also accepts a user task ``"package.module:factory"`` or
``"path/to/file.py:factory"`` whose factory returns a :class:`~optbench.core.spec.Task`;
:func:`check_task` checks a task against its loaded data (one forward pass) before any run.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
from collections.abc import Callable
from pathlib import Path

from optbench.core.errors import ConfigError, OptbenchError
from optbench.core.options import format_literal, parse_bracketed
from optbench.core.registry import Registry
from optbench.core.spec import Task
from optbench.tasks.validate import check_task

tasks: Registry[Callable[[], Task]] = Registry("task")
#: module (under optbench.tasks) -> the task factories it defines, registered lazily by name.
_CATALOGUE = {
    "catalog": ("fmnist_cnn3", "fmnist_mlp", "mnist_mlp", "mnist1d_mlp", "mnist1d_cnn", "digits_mlp"),
    "deepobs": ("mnist_logreg", "fmnist_logreg", "mnist_2c2d", "fmnist_2c2d", "cifar10_3c3d", "cifar100_3c3d"),
    "sequence": ("mnist1d_logreg", "mnist1d_gru"),
    "language": ("shakespeare_char_lstm", "shakespeare_char_transformer", "brown_word_lstm"),
    "synthetic": ("quadratic_deep", "logreg_convex"),
    "split": ("split_mnist", "split_fmnist", "split_mnist1d", "split_digits"),
    "imagenet": ("synthetic_imagenet_resnet50", "synthetic_imagenet_resnet152", "synthetic_imagenet_vgg16",
                 "synthetic_imagenet_vgg19", "synthetic_imagenet_inception_v4"),
    "user_data": ("imagefolder_cnn", "npy_mlp", "table_mlp"),
    "nas": ("nas_cnn", "nas_seq"),
}
for _module, _names in _CATALOGUE.items():
    for _name in _names:
        tasks.register(_name, lazy=f"optbench.tasks.{_module}:{_name}")
del _module, _names, _name


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


def parse_task_ref(ref: str) -> tuple[str, dict[str, object]]:
    """``"fmnist_cnn3[norm=batch,dropout=0.3]"`` -> ``("fmnist_cnn3", {"norm": "batch", "dropout": 0.3})``.

    Values follow the literal rule of :mod:`optbench.core.options` (bool, int, finite float, else string);
    pairs are separated by commas, so a task option is one literal, never a list.

    Raises:
        ConfigError: for a malformed parameter list or a parameter given twice.
    """
    return parse_bracketed(ref, field="task parameter",
                           example="key=value pairs, e.g. fmnist_cnn3[norm=batch,dropout=0.3]")


def _check_numeric(base: str, factory: Callable[[], Task], params: dict[str, object]) -> None:
    """A parameter whose default is a number must be given a number (``width=abc`` or ``dropout=nan``
    would otherwise reach the factory as a string)."""
    defaults = {p.name: p.default for p in inspect.signature(factory).parameters.values()}
    for key, value in params.items():
        default = defaults.get(key)
        if isinstance(default, int | float) and not isinstance(default, bool) \
                and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ConfigError(f"task {base} parameter {key}", value, "a finite number")


def task_name(base: str, params: dict[str, object]) -> str:
    """The canonical name of a parameterised task: ``base[k1=v1,k2=v2]`` with sorted keys."""
    if not params:
        return base
    return base + "[" + ",".join(f"{k}={format_literal(params[k])}" for k in sorted(params)) + "]"


def get_task(ref: str) -> Task:
    """The Task named ``ref``: a registry name, optionally with parameters of its factory
    (``"fmnist_cnn3[norm=batch,dropout=0.3]"``: normalization, dropout, width where the task has
    them), or a user factory reference ``module:factory`` / ``file.py:factory``.

    A parameterised task's name lists its parameters, so runs with different architectures
    are different experiments in the store.

    Raises:
        UnknownNameError: for an unknown registry name (lists the known names).
        ConfigError: for a malformed or unknown task parameter (lists the allowed ones), a
            non-number for a numeric one, or when a user factory cannot be imported, raises or does
            not return a Task.
    """
    base, params = parse_task_ref(ref)
    factory = _load_factory(base) if ":" in base else tasks.get(base)
    if params:
        allowed = [p.name for p in inspect.signature(factory).parameters.values()
                   if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        for key in params:
            if key not in allowed:
                raise ConfigError(f"parameter of task {base}", key, allowed or "none (this task has no parameters)")
        _check_numeric(base, factory, params)
    try:
        task = factory(**params)
    except OptbenchError:
        raise
    except Exception as exc:  # a user's factory that raises: one line, not a traceback
        raise ConfigError(f"task {base}", f"{type(exc).__name__}: {exc}", "a factory that builds the task") from exc
    if not isinstance(task, Task):
        raise ConfigError("task", ref, f"a factory returning optbench.core.spec.Task, got {type(task).__name__}")
    if params:
        task = dataclasses.replace(task, name=task_name(task.name, params))
    return task


__all__ = ["check_task", "get_task", "parse_task_ref", "task_name", "tasks"]
