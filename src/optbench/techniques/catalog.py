"""The entry type of the family registries of regularizers and training techniques.

Each named choice (a penalty, an augmentation, a normalization layer, a precision, a batch-size
rule, a clipping mode, a weight-averaging mode) is a :class:`Technique` in a strict
:class:`~optbench.core.registry.Registry` of its family; the components a recipe names
(:mod:`optbench.techniques.registry`) take their sources and checks from these entries.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from optbench.core.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Technique(Generic[T]):
    """One registered technique.

    Args:
        name: registry name within its family, e.g. ``"l2"``, ``"random_crop"``.
        family: ``"penalty"``, ``"augmentation"``, ``"normalization"``, ``"precision"``,
            ``"lr_scaling"``, ``"clipping"``, ``"averaging"``.
        impl: the implementation (a function, a factory, or a spec object; see the family's module).
        source: paper and equation, or the library function used.
        description: one line describing it.
        data_args: names of ``impl``'s arguments that the harness supplies (``params``, ``x``,
            ``generator`` ...); every other keyword argument is a user option.
        check: validates the user options as keywords; raises ConfigError.
    """

    name: str
    family: str
    impl: T
    source: str
    description: str
    data_args: tuple[str, ...] = ()
    check: Callable[..., None] | None = None

    def options(self) -> list[str]:
        """The user options: keyword arguments of ``impl`` that are not ``data_args``."""
        if not callable(self.impl):
            return []
        params = inspect.signature(self.impl).parameters.values()
        return [p.name for p in params if p.name not in self.data_args
                and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]

    def required(self) -> list[str]:
        """The options without a default value (they must be given)."""
        if not callable(self.impl):
            return []
        params = inspect.signature(self.impl).parameters
        return [name for name in self.options() if params[name].default is inspect.Parameter.empty]

    def validate(self, options: Mapping[str, Any]) -> None:
        """Check option names (against :meth:`options`, :meth:`required`) and values (``check``).

        Raises:
            ConfigError: for an unknown or missing option name (lists the allowed ones) or a
                bad value.
        """
        allowed = self.options()
        for key in options:
            if key not in allowed:
                raise ConfigError(f"{self.family} {self.name} option", key, allowed or "no options")
        for key in self.required():
            if key not in options:
                raise ConfigError(f"{self.family} {self.name} option {key}", "missing",
                                  f"a value for each of {', '.join(self.required())}")
        if self.check is not None:
            self.check(**options)
__all__ = ["Technique"]
