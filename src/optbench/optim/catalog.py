"""The optimizer catalogue: :class:`OptimizerSpec`, the seven reference presets, and the registry.

Names (DESIGN.md section 6):

* **Presets** — the field's names with fixed, documented defaults, each a torch class:
  ``sgd``, ``momentum``, ``nesterov``, ``rmsprop``, ``adam``, ``adagrad``, ``nadam``
  (see :data:`PRESETS`; every one is checked against a NumPy reference of its published
  update rule in ``tests/test_optim.py``).
* ``torch.<lower-cased class name>`` — every :class:`torch.optim.Optimizer` subclass exported
  by ``torch.optim``, found by introspection (``torch.adamw``, ``torch.lbfgs``, ...).
* ``pytorch_optimizer.<name>`` — every name of ``pytorch_optimizer.get_supported_optimizers()``
  (``pytorch_optimizer.adabelief``, ``pytorch_optimizer.lamb``, ...). pytorch-optimizer is
  imported (about 0.6 s) only when one of these names is looked up, a name is not found
  among the presets and torch names, or all names are listed.

**Alias rule.** Every namespaced entry is also reachable by its unprefixed name when that
name is not already taken, with priority *presets, then torch, then pytorch_optimizer*:
``adam`` is the preset, ``adamw`` -> ``torch.adamw``, ``radam`` -> ``torch.radam``,
``adabelief`` -> ``pytorch_optimizer.adabelief``, ``lamb`` -> ``pytorch_optimizer.lamb``.
Registering a user optimizer loads every entry first, so a taken name (an alias too) is an
error unless ``replace=True``, whatever was looked up before.
"""

from __future__ import annotations

import importlib
import inspect
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import torch

from optbench.errors import UnknownNameError
from optbench.registry import Registry

Family = Literal["preset", "torch", "pytorch_optimizer"]

#: Keyword arguments that choose an implementation (same math, different kernels).
IMPLEMENTATION_FLAGS = ("fused", "foreach")


@dataclass(frozen=True)
class Capabilities:
    """What the training loop must know about an optimizer, found by introspecting its class.

    Attributes:
        needs_closure: ``step`` has a required ``closure`` argument (L-BFGS): the loop must
            pass a function that re-evaluates the loss.
        supports_fused: the class accepts ``fused`` (a single fused kernel per step).
        supports_foreach: the class accepts ``foreach`` (multi-tensor kernels).
    """

    needs_closure: bool
    supports_fused: bool
    supports_foreach: bool


@dataclass(frozen=True)
class OptimizerSpec:
    """One registered optimizer.

    Args:
        name: registry name, e.g. ``"momentum"``, ``"torch.adamw"``.
        family: ``"preset"`` (fixed documented defaults), ``"torch"`` or ``"pytorch_optimizer"``.
        cls: the optimizer class, or a lazy import target ``"package.module:Class"`` loaded by
            :meth:`load` on first use.
        defaults: hyperparameters the entry fixes on top of the class defaults (read-only).
        source: the paper and equation, or the library reference, of the update rule.
        description: one paragraph shown by ``optbench list optimizers``.
    """

    name: str
    family: Family
    cls: type[torch.optim.Optimizer] | str
    defaults: Mapping[str, Any] = field(default_factory=dict, hash=False)
    source: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))

    def load(self) -> type[torch.optim.Optimizer]:
        """The optimizer class, importing a lazy target ``"module:attr"`` if needed."""
        if not isinstance(self.cls, str):
            return self.cls
        module_name, _, attr = self.cls.partition(":")
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj

    def hyperparameters(self) -> dict[str, inspect.Parameter]:
        """The class's hyperparameters: ``__init__`` keywords except ``self``, the first
        argument (``params``, or ``model`` for a few pytorch-optimizer classes) and
        ``*args``/``**kwargs`` (names swallowed by ``**kwargs`` are never accepted)."""
        params = list(inspect.signature(self.load().__init__).parameters.values())[2:]
        return {p.name: p for p in params
                if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)}

    def first_argument(self) -> str:
        """Name of the class's first ``__init__`` argument (``"params"``, or ``"model"``)."""
        return list(inspect.signature(self.load().__init__).parameters)[1]

    def capabilities(self) -> Capabilities:
        """Introspected :class:`Capabilities` of the class."""
        cls = self.load()
        closure = inspect.signature(cls.step).parameters.get("closure")
        names = self.hyperparameters()
        return Capabilities(
            needs_closure=closure is not None and closure.default is inspect.Parameter.empty,
            supports_fused="fused" in names,
            supports_foreach="foreach" in names,
        )


def _describe_defaults(defaults: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in defaults.items())


def _preset(name: str, cls: type[torch.optim.Optimizer], defaults: dict[str, Any],
            summary: str, source: str) -> OptimizerSpec:
    return OptimizerSpec(name=name, family="preset", cls=cls, defaults=defaults, source=source,
                         description=f"{summary} Defaults: {_describe_defaults(defaults)}.")


#: The seven reference presets. Each pins the hyperparameters that define the method (the
#: torch 2.13 defaults, stated so they cannot drift with a torch release); any other
#: argument of the class may be given by the user, and any of these overridden.
PRESETS: tuple[OptimizerSpec, ...] = (
    _preset(
        "sgd", torch.optim.SGD, {"lr": 1e-3, "momentum": 0.0},
        "Plain stochastic gradient descent: p -= lr * g.",
        "Robbins & Monro 1951; torch.optim.SGD with momentum=0."),
    _preset(
        "momentum", torch.optim.SGD,
        {"lr": 1e-3, "momentum": 0.9, "dampening": 0.0, "nesterov": False},
        "SGD with heavy-ball momentum in PyTorch's form v = mu*v + g, p -= lr*v; for a constant "
        "lr this equals Polyak's u = mu*u + lr*g, p -= u (u = lr*v).",
        "Polyak 1964, heavy-ball method; Sutskever et al. 2013, eqs. (1)-(2); torch.optim.SGD."),
    _preset(
        "nesterov", torch.optim.SGD,
        {"lr": 1e-3, "momentum": 0.9, "dampening": 0.0, "nesterov": True},
        "SGD with Nesterov momentum in PyTorch's reformulation v = mu*v + g, p -= lr*(g + mu*v); "
        "its parameters are the look-ahead points theta + mu*u of Sutskever's form "
        "u = mu*u - lr*grad(theta + mu*u), theta += u.",
        "Nesterov 1983; Sutskever et al. 2013, eqs. (3)-(4); torch.optim.SGD(nesterov=True)."),
    _preset(
        "rmsprop", torch.optim.RMSprop,
        {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "centered": False},
        "RMSProp: v = alpha*v + (1-alpha)*g^2, p -= lr*g/(sqrt(v) + eps). torch adds eps outside "
        "the square root; Hinton's lecture used a decay of 0.9, torch's default alpha is 0.99.",
        "Tieleman & Hinton 2012, Coursera 'Neural Networks for Machine Learning' lecture 6e; "
        "torch.optim.RMSprop."),
    _preset(
        "adam", torch.optim.Adam,
        {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "amsgrad": False},
        "Adam with bias correction: m = b1*m + (1-b1)*g, v = b2*v + (1-b2)*g^2, "
        "p -= lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps).",
        "Kingma & Ba 2015 (ICLR), Algorithm 1, with the paper's defaults; torch.optim.Adam."),
    _preset(
        "adagrad", torch.optim.Adagrad,
        {"lr": 1e-2, "eps": 1e-10, "initial_accumulator_value": 0.0, "lr_decay": 0.0},
        "Diagonal AdaGrad: G += g^2, p -= lr*g/(sqrt(G) + eps). torch adds eps outside the square "
        "root (the paper's form is sqrt(G + eps) or delta*I + diag(G)^(1/2)).",
        "Duchi, Hazan & Singer 2011 (JMLR), diagonal update; torch.optim.Adagrad."),
    _preset(
        "nadam", torch.optim.NAdam,
        {"lr": 2e-3, "betas": (0.9, 0.999), "eps": 1e-8, "momentum_decay": 4e-3},
        "Nesterov-accelerated Adam in torch's form: momentum schedule "
        "mu_t = b1*(1 - 0.5*0.96^(t*psi)) with psi = momentum_decay, m = b1*m + (1-b1)*g, "
        "v = b2*v + (1-b2)*g^2, v_hat = v/(1-b2^t), "
        "p -= lr*(1-mu_t)/(1-prod_{i<=t} mu_i) * g/(sqrt(v_hat)+eps) "
        "+ lr*mu_{t+1}/(1-prod_{i<=t+1} mu_i) * m/(sqrt(v_hat)+eps).",
        "Dozat 2016, 'Incorporating Nesterov Momentum into Adam' (ICLR workshop); "
        "torch.optim.NAdam."),
)


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
            description=_first_paragraph(cls.__doc__)))
    return specs


class OptimizerRegistry(Registry[OptimizerSpec]):
    """A :class:`~optbench.registry.Registry` of :class:`OptimizerSpec` filled in stages.

    The presets are registered at construction. Each later stage (a function returning specs
    with namespaced names) is loaded on demand, in order: when a name is not found among the
    stages loaded so far, or when all names are listed, counted or changed by the user. Each
    spec is registered under its name and aliased by the part after the first dot when that
    name is free, so earlier stages win (see the module docstring).

    Args:
        presets: specs registered at once under their names.
        stages: functions ``() -> Iterable[OptimizerSpec]`` run lazily in order.

    Raises:
        UnknownNameError: from lookups of a name no stage provides; lists every known name.
    """

    def __init__(self, presets: Iterable[OptimizerSpec],
                 stages: Iterable[Callable[[], Iterable[OptimizerSpec]]]) -> None:
        super().__init__("optimizer")
        for spec in presets:
            Registry.register(self, spec.name, spec)
        self._stages = list(stages)
        self._lock = threading.RLock()

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
        """The registered name ``name`` refers to, loading stages until it is found."""
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
        """Register a user optimizer (after loading every stage, so conflicts are deterministic)."""
        self.load_all()
        return super().register(name, entry, lazy=lazy, replace=replace)

    def alias(self, alias: str, name: str) -> None:
        """Make ``alias`` another name of ``name`` (after loading every stage)."""
        self.load_all()
        super().alias(alias, name)

    def names(self) -> list[str]:
        """Every registered name, sorted (loads every stage)."""
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
        except KeyError:
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
