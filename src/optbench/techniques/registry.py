"""The technique registry: every component a recipe can name (``optbench list techniques``), and
the one way to build one from a :class:`~optbench.core.spec.TechniqueSpec`.

Entries are registered lazily by import target, so listing names imports nothing heavy and no
family module imports this one back. Adding a technique is one module with its component class
and one line here (docs/architecture.md, "Adding a technique").
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from optbench.core.component import ENGINES, Component
from optbench.core.errors import ConfigError
from optbench.core.registry import Registry
from optbench.core.spec import TechniqueSpec

techniques: Registry[type[Component]] = Registry("technique")
for _name, _target in {
    "l1": "optbench.techniques.penalties:L1Penalty",
    "l2": "optbench.techniques.penalties:L2Penalty",
    "elastic_net": "optbench.techniques.penalties:ElasticNetPenalty",
    "label_smoothing": "optbench.techniques.smoothing:LabelSmoothing",
    "random_crop": "optbench.techniques.augmentation:RandomCrop",
    "horizontal_flip": "optbench.techniques.augmentation:HorizontalFlip",
    "gaussian_noise": "optbench.techniques.augmentation:GaussianNoise",
    "swa": "optbench.techniques.averaging:SWA",
    "ema": "optbench.techniques.averaging:EMA",
    "clip_norm": "optbench.techniques.gradient_clipping:ClipNorm",
    "clip_value": "optbench.techniques.gradient_clipping:ClipValue",
    "accumulation": "optbench.techniques.batch_rules:Accumulation",
    "lr_scaling": "optbench.techniques.batch_rules:LrScaling",
    "no_decay_bias_norm": "optbench.techniques.param_groups:NoDecayBiasNorm",
    "early_stopping": "optbench.techniques.early_stopping:EarlyStoppingComponent",
}.items():
    techniques.register(_name, lazy=_target)


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


__all__ = ["Parameter", "engines_of", "make_component", "parameters", "techniques"]
