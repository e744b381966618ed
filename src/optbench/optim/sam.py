"""Sharpness-aware minimisation over any base optimizer: ``sam`` and ``sam:<base>``.

Foret, Kleiner, Mobahi & Neyshabur 2021, "Sharpness-Aware Minimization for Efficiently Improving
Generalization" (ICLR), Algorithm 1 and eq. (2), one step::

    g = grad L(w)                                  (closure, first pass)
    eps = rho * g / ||g||_2                        (global norm over every parameter)
    g_sam = grad L(w + eps)                        (closure, second pass)
    w = base_step(w, g_sam)                        (from w, not from w + eps)

``adaptive=True`` gives ASAM (Kwon et al. 2021, eq. (8) with T_w = |w|):
``eps = rho * w^2 * g / || |w| * g ||``.

Why not pytorch-optimizer's ``SAM``: its ``step(closure)`` expects the first-pass gradient to be
computed *before* ``step`` and calls the closure only for the second pass, and returns None.
Under the training loop's single closure protocol (the closure zeroes the gradients, evaluates
the loss and back-propagates) it would perturb along the previous step's stale gradient (or
along nothing on the first step). :class:`SAM` calls the closure for both passes and returns
the first pass's loss (at w), so SAM runs through the same loop as L-BFGS.

Names: ``sam:<base>`` wraps the optimizer registered as ``<base>`` (``sam:adam``,
``sam:torch.adamw``); ``sam`` alone is ``sam:momentum``, the base of the paper's experiments.
A base that needs a closure, a second-order graph or two passes itself is refused.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from optbench.core.errors import ConfigError
from optbench.optim.base import (
    IMPLEMENTATION_FLAGS,
    Capabilities,
    OptimizerSpec,
    check_positive,
    describe_defaults,
)

#: The separator of ``sam:<base>``.
SEPARATOR = ":"
#: The wrapper's own hyperparameters and their defaults (Foret et al. 2021 use rho = 0.05).
SAM_DEFAULTS: Mapping[str, Any] = {"rho": 0.05, "adaptive": False}
#: ``sam`` without a base means this base (SGD with momentum 0.9, as in the paper's experiments).
DEFAULT_BASE = "momentum"
#: The wrapper's keys in the (shared) parameter groups.
GROUP_KEYS: Mapping[str, str] = {"rho": "sam_rho", "adaptive": "sam_adaptive"}
#: Prefix of a base hyperparameter whose name clashes with the wrapper's (Adadelta's ``rho``
#: is ``base_rho`` under ``sam:adadelta``).
BASE_PREFIX = "base_"


def parse_optimizer_name(name: str) -> tuple[str, str | None]:
    """Split ``"sam:adam"`` into ``("sam", "adam")``; any other name gives ``(name, None)``.

    ``"sam"`` alone gives ``("sam", "momentum")`` (:data:`DEFAULT_BASE`).

    Raises:
        ConfigError: for a wrapper other than ``sam`` (``"foo:adam"``) or an empty base.
    """
    if SEPARATOR not in name:
        return (name, DEFAULT_BASE) if name == "sam" else (name, None)
    wrapper, _, base = name.partition(SEPARATOR)
    if wrapper != "sam" or not base:
        raise ConfigError("optimizer", name, "a registered name, or sam:<a registered name>")
    return wrapper, base


class SAM(torch.optim.Optimizer):
    """SAM (Foret et al. 2021, Algorithm 1) around a base optimizer that shares its groups.

    Args:
        params: parameters or parameter groups (a group may set its own radius ``sam_rho``).
        base: builds the base optimizer from this wrapper's ``param_groups`` (a list of dicts);
            the base keeps using the same group dicts, so a schedule that writes
            ``param_groups[i]["lr"]`` on the wrapper drives the base.
        rho: neighbourhood radius (> 0).
        adaptive: ASAM's element-wise scaling of eps by |w| (Kwon et al. 2021).

    ``step(closure)`` needs the closure (it raises ``RuntimeError`` without one), calls it
    twice and returns the loss of the first call. ``state``, ``param_groups``, ``state_dict``
    and ``load_state_dict`` are the base's; ``defaults`` are the base's plus ``sam_rho`` and
    ``sam_adaptive``, the group keys of rho and adaptive (prefixed so that they never clash
    with a base's own group keys, such as Adadelta's ``rho``).

    Raises:
        ValueError: for rho <= 0.
    """

    def __init__(self, params: Iterable[Any],
                 base: Callable[[list[dict[str, Any]]], torch.optim.Optimizer],
                 rho: float = 0.05, adaptive: bool = False) -> None:
        if not check_positive(rho):
            raise ValueError(f"rho must be > 0, got {rho}")
        super().__init__(params, {"sam_rho": rho, "sam_adaptive": adaptive})
        self.base_optimizer = base(self.param_groups)
        self._link()

    def _link(self) -> None:
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state
        own = {k: self.defaults[k] for k in GROUP_KEYS.values()}
        self.defaults = {**self.base_optimizer.defaults, **own}

    @torch.no_grad()
    def _perturb(self) -> list[tuple[list[torch.Tensor], list[torch.Tensor]]]:
        """w += eps for every parameter with a gradient; returns (params, saved copies) lists."""
        groups = [[p for p in g["params"] if p.grad is not None] for g in self.param_groups]
        scaled = []
        for group, params in zip(self.param_groups, groups, strict=True):
            grads = [p.grad for p in params]
            if group["sam_adaptive"]:
                grads = torch._foreach_mul(grads, torch._foreach_abs(params))
            scaled.append(grads)
        norms = [n for grads in scaled if grads for n in torch._foreach_norm(grads)]
        if not norms:
            return []
        device = norms[0].device
        norm = torch.linalg.vector_norm(torch.stack([n.to(device) for n in norms]))
        saved = []
        for group, params, grads in zip(self.param_groups, groups, scaled, strict=True):
            if not params:
                continue
            copies = [p.clone() for p in params]
            scale = (group["sam_rho"] / (norm + 1e-12)).to(params[0].device)
            eps = torch._foreach_mul(grads, torch._foreach_abs(params)) if group["sam_adaptive"] \
                else list(grads)
            eps = torch._foreach_mul(eps, scale)
            torch._foreach_add_(params, eps)
            saved.append((params, copies))
        return saved

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:
        """One SAM step: closure at w, perturb, closure at w + eps, restore w, base step.

        Args:
            closure: zeroes the gradients, evaluates the loss, calls ``backward`` and returns
                the loss.

        Returns:
            the loss at w (the first call's).

        Raises:
            RuntimeError: without a closure.
        """
        if closure is None:
            raise RuntimeError("SAM needs a closure that re-evaluates the loss and its gradient")
        with torch.enable_grad():
            loss = closure()
        saved = self._perturb()
        with torch.enable_grad():
            closure()
        with torch.no_grad():
            for params, copies in saved:
                torch._foreach_copy_(params, copies)
        self.base_optimizer.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        """The base optimizer's state dict (``sam_rho`` and ``sam_adaptive`` are in its groups)."""
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load into the base optimizer and share its new groups and state."""
        self.base_optimizer.load_state_dict(state_dict)
        self._link()


def base_name(key: str, sam_names: Iterable[str]) -> str:
    """The base's name of the SAM-level hyperparameter ``key`` (``base_rho`` -> ``rho`` when
    ``rho`` is one of ``sam_names``)."""
    if key.startswith(BASE_PREFIX) and key[len(BASE_PREFIX):] in set(sam_names):
        return key[len(BASE_PREFIX):]
    return key


@dataclass(frozen=True)
class SamSpec(OptimizerSpec):
    """The registry entry of ``sam:<base>``: the wrapper's ``rho``/``adaptive`` plus every
    hyperparameter of the base (renamed ``base_<name>`` where it clashes with the wrapper's).

    Args (beyond :class:`OptimizerSpec`):
        base: the base entry's spec.
        base_key: the base's name as the user wrote it (``"adam"``), passed to the factory.
    """

    base: OptimizerSpec | None = None
    base_key: str = ""

    def load(self) -> type[torch.optim.Optimizer]:
        return SAM

    def first_argument(self) -> str:
        return "params"

    def _rename(self, key: str) -> str:
        return BASE_PREFIX + key if key in SAM_DEFAULTS else key

    def hyperparameters(self) -> dict[str, inspect.Parameter]:
        """``rho``, ``adaptive`` and the base's hyperparameters (clashes renamed)."""
        assert self.base is not None
        own = {k: inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v)
               for k, v in SAM_DEFAULTS.items()}
        base = {self._rename(k): p.replace(name=self._rename(k))
                for k, p in self.base.hyperparameters().items()}
        return own | base

    def split(self, kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Split merged hyperparameters into (the wrapper's, the base's with original names)."""
        own = {k: v for k, v in kwargs.items() if k in SAM_DEFAULTS}
        base = {base_name(k, SAM_DEFAULTS): v for k, v in kwargs.items() if k not in SAM_DEFAULTS}
        return own, base

    def capabilities(self) -> Capabilities:
        """Closure and two passes; fused/foreach as the base (the base does the update)."""
        assert self.base is not None
        caps = self.base.capabilities()
        return Capabilities(needs_closure=True, two_pass=True,
                            full_batch_only=caps.full_batch_only,
                            supports_fused=caps.supports_fused,
                            supports_foreach=caps.supports_foreach)


def sam_spec(name: str, base_key: str, base: OptimizerSpec) -> SamSpec:
    """The :class:`SamSpec` named ``name`` over ``base`` (registered as ``base_key``).

    Raises:
        ConfigError: when the base needs a closure, a second-order graph or two passes, or has a
            parameter partition or train/eval modes (contracts SAM's wrapper would break).
    """
    caps = base.capabilities()
    if caps.needs_closure or caps.create_graph or caps.two_pass:
        raise ConfigError("base optimizer of sam", base_key,
                          "an optimizer whose step needs no closure and no create_graph "
                          "(not lbfgs, sophia, adahessian, alig, bsam or sam itself)")
    if caps.partition is not None or caps.train_eval_modes:
        raise ConfigError("base optimizer of sam", base_key,
                          "an optimizer without a parameter partition or train/eval modes "
                          "(not muon or a schedule-free optimizer)")
    rules = {"rho": (check_positive, "a number > 0 (the SAM radius)")}
    rules |= {(BASE_PREFIX + k if k in SAM_DEFAULTS else k): r for k, r in base.rules.items()}
    defaults = dict(SAM_DEFAULTS) | {(BASE_PREFIX + k if k in SAM_DEFAULTS else k): v
                                     for k, v in base.defaults.items()
                                     if k not in IMPLEMENTATION_FLAGS}
    return SamSpec(
        name=name, family="preset", cls=SAM, defaults=defaults, rules=rules,
        traits=frozenset({"needs_closure", "two_pass"}), base=base, base_key=base_key,
        source="Foret, Kleiner, Mobahi & Neyshabur 2021 (ICLR), Algorithm 1 / eq. (2); "
               f"optbench.optim.sam.SAM over {base.name} ({base.source})",
        description=f"Sharpness-aware minimisation over {base.name}: eps = rho g/||g||, gradient "
                    "at w + eps, base step from w (two forward/backward passes per step). "
                    f"Defaults: {describe_defaults(defaults)}.")
