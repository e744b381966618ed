"""The optimizer catalogue: the presets, every torch and pytorch-optimizer class, and the registry.

Names:

* **Presets** — the field's names with fixed, documented defaults (:data:`PRESETS`):
  ``gd``, ``sgd``, ``momentum``, ``nesterov``, ``adagrad``, ``rmsprop``, ``adadelta``, ``adam``,
  ``adamw``, ``nadam``, ``radam``, ``adabelief``, ``sam``, ``lbfgs``, ``sophia``, ``lion``,
  ``lars``, ``lamb`` (see :mod:`optbench.optim.presets`; each is checked against a NumPy
  reference of its published update rule in ``tests/test_optim_conformance.py``), and today's
  field: ``muon``, ``schedulefree_adamw``, ``schedulefree_sgd``, ``soap``, ``shampoo``,
  ``prodigy``, ``dadapt_adam``, ``dadapt_sgd``, ``ademamix``, ``adopt``, ``mars``
  (:mod:`optbench.optim.presets_modern`, ``tests/test_optim_conformance_modern.py``).
* ``sam:<name>`` — SAM over any other registered optimizer (``sam:adam``, ``sam:torch.adamw``);
  ``sam`` alone is ``sam:momentum`` (see :mod:`optbench.optim.sam`). These are resolved on
  lookup and are not listed by :meth:`OptimizerRegistry.names`.
* ``torch.<lower-cased class name>`` — every :class:`torch.optim.Optimizer` subclass exported
  by ``torch.optim``, found by introspection (``torch.adamw``, ``torch.lbfgs``, ...).
* ``pytorch_optimizer.<name>`` — every name of ``pytorch_optimizer.get_supported_optimizers()``
  (``pytorch_optimizer.adabelief``, ``pytorch_optimizer.lamb``, ...). pytorch-optimizer is
  imported (about 0.6 s) only when one of these names (or a preset wrapping one of its classes)
  is used, a name is not found among the presets and torch names, or all names are listed.

**Alias rule.** Every namespaced entry is also reachable by its unprefixed name when that
name is not already taken, with priority *presets, then torch, then pytorch_optimizer*:
``adam`` is the preset, ``asgd`` -> ``torch.asgd``, ``rprop`` -> ``torch.rprop``,
``adan`` -> ``pytorch_optimizer.adan``. Registering a user optimizer loads every entry first,
so a taken name (an alias too) is an error unless ``replace=True``, whatever was looked up
before.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

import torch

from optbench.core.errors import UnknownNameError
from optbench.core.registry import Registry
from optbench.optim.base import (
    IMPLEMENTATION_FLAGS,
    Capabilities,
    Family,
    OptimizerSpec,
)
from optbench.optim.presets import PRESETS as _BASE_PRESETS
from optbench.optim.presets_modern import MODERN_PRESETS
from optbench.optim.sam import DEFAULT_BASE, SEPARATOR, SamSpec, parse_optimizer_name, sam_spec

__all__ = [
    "IMPLEMENTATION_FLAGS", "LIBRARY_TRAITS", "PRESETS", "Capabilities", "Family",
    "OptimizerRegistry", "OptimizerSpec", "SamSpec", "build_registry", "optimizers",
    "parse_optimizer_name", "pytorch_optimizer_specs", "torch_specs",
]

#: The twenty-nine presets: the eighteen classic ones of :mod:`optbench.optim.presets` and ``sam``
#: (over ``momentum``), then today's field (:mod:`optbench.optim.presets_modern`).
PRESETS: tuple[OptimizerSpec, ...] = (
    *_BASE_PRESETS,
    sam_spec("sam", DEFAULT_BASE, next(s for s in _BASE_PRESETS if s.name == DEFAULT_BASE)),
    *MODERN_PRESETS,
)

#: Capability traits of pytorch-optimizer classes that introspection cannot see (their
#: ``step`` has ``closure=None`` but raises without one, or they take Hessian-vector products
#: of a ``create_graph`` gradient). ``tests/test_optim_capabilities.py`` scans the library's
#: sources so that a new such class cannot be missed.
LIBRARY_TRAITS: Mapping[str, frozenset[str]] = MappingProxyType({
    "adahessian": frozenset({"create_graph"}),
    "sophiah": frozenset({"create_graph"}),
    "alig": frozenset({"needs_closure"}),  # uses the closure's loss value for its step size
    "bsam": frozenset({"needs_closure", "two_pass"}),  # noise, closure, perturb, closure
})


def _first_paragraph(doc: str | None) -> str:
    text = inspect.cleandoc(doc or "").split("\n\n", 1)[0]
    return " ".join(text.split())


def torch_specs() -> list[OptimizerSpec]:
    """Specs for every :class:`torch.optim.Optimizer` subclass exported by ``torch.optim``,
    named ``torch.<lower-cased class name>``, found by introspection."""
    specs = []
    for attr in sorted(getattr(torch.optim, "__all__", dir(torch.optim))):
        obj = getattr(torch.optim, attr, None)
        if (inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer)
                and obj is not torch.optim.Optimizer):
            specs.append(OptimizerSpec(
                name=f"torch.{attr.lower()}", family="torch", cls=obj,
                source=f"torch.optim.{attr} (PyTorch {torch.__version__}; see its documentation "
                       "for the algorithm and paper)",
                description=_first_paragraph(obj.__doc__)))
    return specs


def pytorch_optimizer_specs() -> list[OptimizerSpec]:
    """Specs for every name of ``pytorch_optimizer.get_supported_optimizers()``, named
    ``pytorch_optimizer.<name>``. Imports pytorch-optimizer (about 0.6 s)."""
    import importlib.metadata

    import pytorch_optimizer

    version = importlib.metadata.version("pytorch-optimizer")
    specs = []
    for name in pytorch_optimizer.get_supported_optimizers():
        cls = pytorch_optimizer.load_optimizer(name)
        specs.append(OptimizerSpec(
            name=f"pytorch_optimizer.{name}", family="pytorch_optimizer", cls=cls,
            source=f"pytorch-optimizer {version}: {cls.__module__}.{cls.__qualname__} "
                   "(the class docstring cites the paper)",
            description=_first_paragraph(cls.__doc__),
            traits=LIBRARY_TRAITS.get(name, frozenset())))
    return specs


class OptimizerRegistry(Registry[OptimizerSpec]):
    """A :class:`~optbench.core.registry.Registry` of :class:`OptimizerSpec` filled in stages.

    The presets are registered at construction. Each later stage (a function returning specs
    with namespaced names) is loaded on demand, in order: when a name is not found among the
    stages loaded so far, or when all names are listed, counted or changed by the user. Each
    spec is registered under its name and aliased by the part after the first dot when that
    name is free, so earlier stages win (see the module docstring).

    Args:
        presets: specs registered at once under their names.
        stages: functions ``() -> Iterable[OptimizerSpec]`` run lazily in order.

    ``sam:<name>`` is resolved on lookup: :meth:`canonical` gives ``sam:<canonical base>``
    (``"sam:adamw"`` -> ``"sam:torch.adamw"``) and :meth:`get` a :class:`SamSpec` over the base.

    Raises:
        UnknownNameError: from lookups of a name no stage provides (also as a SAM base); lists
            every known name.
        ConfigError: from lookups of ``sam:<base>`` whose base cannot be wrapped (it needs a
            closure or ``create_graph`` itself), or of ``<other>:<base>``.
    """

    def __init__(self, presets: Iterable[OptimizerSpec],
                 stages: Iterable[Callable[[], Iterable[OptimizerSpec]]]) -> None:
        super().__init__("optimizer")
        for spec in presets:
            Registry.register(self, spec.name, spec)
        self._stages = list(stages)
        self._lock = threading.RLock()
        self._wrapped: dict[str, SamSpec] = {}

    def _load_next_stage(self) -> bool:
        """Register the next pending stage's specs; False when no stage is left."""
        with self._lock:
            if not self._stages:
                return False
            for spec in self._stages[0]():
                if spec.name in self._entries or spec.name in self._aliases:
                    continue
                Registry.register(self, spec.name, spec)
                short = spec.name.split(".", 1)[-1]
                if short not in self._entries and short not in self._aliases:
                    Registry.alias(self, short, spec.name)
            self._stages.pop(0)  # only once complete: other threads wait on the lock
            return True

    def load_all(self) -> None:
        """Run every pending stage (imports pytorch-optimizer)."""
        while self._load_next_stage():
            pass

    def canonical(self, name: str) -> str:
        """The registered name ``name`` refers to, loading stages until it is found;
        ``sam:<base>`` gives ``sam:<canonical base>`` after checking that the base can be wrapped."""
        if SEPARATOR in name:
            return self._wrap(name).name
        return self._canonical(name)

    def get(self, name: str) -> OptimizerSpec:
        """The spec of ``name`` (a :class:`SamSpec` for ``sam:<base>``)."""
        if SEPARATOR in name:
            return self._wrap(name)
        return super().get(name)

    def _wrap(self, name: str) -> SamSpec:
        _, base = parse_optimizer_name(name)
        assert base is not None
        key = f"sam{SEPARATOR}{self.canonical(base)}"
        with self._lock:
            if key not in self._wrapped:
                self._wrapped[key] = sam_spec(key, key.partition(SEPARATOR)[2], self.get(base))
            return self._wrapped[key]

    def _canonical(self, name: str) -> str:
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        with self._lock:  # re-check after any stage another thread is loading
            while True:
                if name in self._entries:
                    return name
                if name in self._aliases:
                    return self._aliases[name]
                if not self._load_next_stage():
                    raise self._unknown(name)

    def register(self, name: str, entry: OptimizerSpec | None = None, *, lazy: str | None = None,
                 replace: bool = False) -> Any:
        """Register a user optimizer (after loading every stage, so conflicts are deterministic).

        Raises:
            ValueError: for a name already taken, or one containing ``:`` (reserved for SAM).
        """
        if SEPARATOR in name:
            raise ValueError(f"optimizer names may not contain {SEPARATOR!r}: {name!r}")
        self.load_all()
        return super().register(name, entry, lazy=lazy, replace=replace)

    def alias(self, alias: str, name: str) -> None:
        """Make ``alias`` another name of ``name`` (after loading every stage)."""
        self.load_all()
        super().alias(alias, name)

    def names(self) -> list[str]:
        """Every registered name, sorted (loads every stage); ``sam:<base>`` names are not listed."""
        self.load_all()
        return super().names()

    def aliases(self) -> dict[str, str]:
        """Alias -> registered name (loads every stage)."""
        self.load_all()
        return super().aliases()

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self.canonical(name)
        except ValueError:  # UnknownNameError and ConfigError are ValueErrors
            return False
        return True

    def __len__(self) -> int:
        self.load_all()
        return super().__len__()

    def _unknown(self, name: str) -> UnknownNameError:
        self.load_all()
        return UnknownNameError(self.kind, name, [*self._entries, *self._aliases])


def build_registry() -> OptimizerRegistry:
    """A fresh optimizer registry: the presets now, torch and pytorch-optimizer on demand.

    Cheap: nothing is imported or introspected until a name outside the presets is used.
    """
    return OptimizerRegistry(PRESETS, (torch_specs, pytorch_optimizer_specs))


#: The optimizer registry used by :func:`optbench.optim.create_optimizer`.
optimizers: OptimizerRegistry = build_registry()

