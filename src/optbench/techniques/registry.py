"""The technique registry: every component a recipe can name (``optbench list techniques``), and
the one way to build one from a :class:`~optbench.core.spec.TechniqueSpec`.

The registry discovers the component classes of the package's modules on first use (each module
lists them in ``COMPONENTS``), so no family module imports this one back and adding a technique
is one module (docs/architecture.md, "Adding a technique").
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass
from typing import Any

from optbench.core.component import ENGINES, Component
from optbench.core.errors import ConfigError
from optbench.core.registry import Registry
from optbench.core.spec import TechniqueSpec


class TechniqueRegistry(Registry[type[Component]]):
    """The strict registry of component classes, filled on first use from every module of the
    ``optbench.techniques`` package that lists its classes in a module-level ``COMPONENTS`` tuple: a
    new technique is one new module, nothing else to edit (docs/architecture.md, "Adding a
    technique"). Importing this module imports no technique module.
    """

    def __init__(self) -> None:
        super().__init__("technique")
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        package = importlib.import_module("optbench.techniques")
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            for cls in getattr(module, "COMPONENTS", ()):
                self.register(cls.name, cls)

    def canonical(self, name: str) -> str:
        self._load()
        return super().canonical(name)

    def names(self) -> list[str]:
        self._load()
        return super().names()

    def __contains__(self, name: object) -> bool:
        self._load()
        return super().__contains__(name)

    def __len__(self) -> int:
        self._load()
        return super().__len__()


techniques = TechniqueRegistry()


@dataclass(frozen=True)
class Parameter:
    """One parameter of a technique: its name, default (``required`` when it has none) and type."""

    name: str
    default: Any
    required: bool
    annotation: str


def parameters(cls: type[Component]) -> list[Parameter]:
    """The user parameters of a component class: the keyword arguments of its ``__init__``."""
    out = []
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name == "self" or p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        required = p.default is inspect.Parameter.empty
        out.append(Parameter(p.name, None if required else p.default, required, str(p.annotation)))
    return out


def make_component(spec: TechniqueSpec) -> Component:
    """Build the component ``spec`` names with its parameters.

    Raises:
        UnknownNameError: an unknown technique (lists the registered ones).
        ConfigError: an unknown or missing parameter (lists the allowed ones) or a bad value.
    """
    cls = techniques.get(spec.name)
    allowed = parameters(cls)
    names = [p.name for p in allowed]
    for key in spec.params:
        if key not in names:
            raise ConfigError(f"technique {spec.name} parameter", key, names or "no parameters")
    for p in allowed:
        if p.required and p.name not in spec.params:
            raise ConfigError(f"technique {spec.name} parameter {p.name}", "missing",
                              f"a value for each of {', '.join(q.name for q in allowed if q.required)}")
    return cls(**dict(spec.params))


def engines_of(name: str) -> tuple[str, ...]:
    """The engines (of :data:`~optbench.core.component.ENGINES`) that can run technique ``name``."""
    engines = techniques.get(name).engines
    return tuple(e for e in ENGINES if e in engines)


__all__ = ["Parameter", "TechniqueRegistry", "engines_of", "make_component", "parameters", "techniques"]
