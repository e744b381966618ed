"""Transfer learning and fine-tuning: start from a stored run's weights, freeze layers, discriminative
learning rates and gradual unfreezing (Howard & Ruder 2018, "Universal Language Model Fine-tuning for
Text Classification" (ULMFiT), sec. 3.2 and 3.3; Yosinski et al. 2014, "How transferable are features
in deep neural networks?", for initializing from and freezing pre-trained layers).

* ``init_from:run=ID`` loads the final weights of the stored run ``ID`` (saved with ``--save-weights``,
  :mod:`optbench.runs.weights`) into the model before the optimizer exists. The output layer (the
  *head*: the last module with parameters of its own) may differ in shape (another number of
  classes): it then keeps the fresh initialization the run made under its own seed, and a warning
  names what was loaded and what was not. ``strict=true`` refuses that too.
* ``freeze:layers=REGEX`` sets ``requires_grad = False`` on every parameter whose name matches
  (``re.search``); the engine builds the optimizer over trainable parameters only, so they never
  change. Normalization statistics (batch-norm running means) of frozen layers still update in
  training mode, as in torch.
* ``discriminative_lr:factor=2.6`` gives each *layer group* its own learning rate,
  ``lr / factor^d`` with ``d`` the group's depth from the top (the head has ``d = 0``; ULMFiT eq. 2
  and sec. 3.2 use ``factor = 2.6``). Schedules keep the ratios (:class:`optbench.schedules.LRController`).
* ``gradual_unfreezing`` trains only the top layer group in epoch 1, the top two in epoch 2, ...,
  every group from epoch ``G`` on (ULMFiT sec. 3.3). The optimizer holds every parameter from the
  start; the frozen ones have ``requires_grad = False``, so their ``.grad`` stays None and torch's
  optimizers skip them (``torch.optim.SGD`` and ``Adam``/``AdamW`` iterate over parameters whose
  ``grad is not None``: no update, no weight decay, no moment state; tested in
  ``tests/test_transfer.py``). Runs in the single-process engine only (a DDP wrapper and the
  parameter server fix the trainable parameters when they are built).

Layer groups (:func:`layer_groups`): every module with parameters of its own, in the model's module
order, is a group; a normalization layer joins the group before it (it normalizes that layer's
output). Frozen parameters are left out.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from optbench.core.component import Component, ModelContext, RunContext
from optbench.core.errors import ConfigError
from optbench.techniques import _validate

#: What a missing or unreadable stored run must be (the ``allowed`` part of the one-line error).
STORED_RUN = "a run stored with its weights (run it with --save-weights)"
_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.RMSNorm,
)


class TransferWarning(UserWarning):
    """A run started from stored weights with a new (freshly initialized) head."""


def run_id_param(field: str, value: Any) -> str:
    """A run id given as a technique parameter: a string, or an all-digit id that the option parser
    read as an integer (given back its 16 digits).

    Raises:
        ConfigError: anything else (quote the id in a study file when it reads as a number).
    """
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**16:
        return f"{value:016d}"
    if isinstance(value, str) and re.fullmatch(r"[0-9A-Za-z_.-]{1,128}", value) and value not in (".", ".."):
        return value
    raise ConfigError(field, value, "a run id (16 hex digits, as optbench prints them; quote it in a study file)")


def load_stored(context: ModelContext, run: str, field: str) -> Mapping[str, Tensor]:
    """The stored final weights of ``run`` through ``context.load_weights``.

    Raises:
        ConfigError: (one line, field ``field``) the run has no access to stored weights, or ``run``
            has none stored.
    """
    if context.load_weights is None:
        raise ConfigError(field, run, f"{STORED_RUN}; this run has no access to stored weights (no weights "
                                      f"directory)")
    return context.load_weights(run)


def head_prefix(model: nn.Module) -> str:
    """The name prefix of the output layer's parameters: the last module (in module order) with
    parameters of its own (``"3."`` for a ``Sequential`` MLP, ``"head."``); ``""`` for none."""
    prefix = ""
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            prefix = f"{name}." if name else ""
    return prefix


def layer_groups(model: nn.Module) -> list[list[tuple[str, nn.Parameter]]]:
    """The trainable parameters of ``model`` in layer groups, bottom (input side) first: each module
    with parameters of its own starts a group, except normalization layers, which join the group
    before them. Frozen parameters (``requires_grad`` False) and empty groups are left out; a shared
    parameter is listed once."""
    groups: list[list[tuple[str, nn.Parameter]]] = []
    seen: set[int] = set()
    for name, module in model.named_modules():
        own = [(f"{name}.{n}" if name else n, p) for n, p in module.named_parameters(recurse=False)]
        if not own:
            continue
        if not (isinstance(module, _NORM_TYPES) and groups):
            groups.append([])
        for full, p in own:
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                groups[-1].append((full, p))
    return [g for g in groups if g]


class InitFrom(Component):
    """Start from the final weights of a stored run (pre-training, then fine-tuning).

    Args:
        run: the run id of a run stored with its weights (``--save-weights``).
        strict: every tensor must match in name and shape (no new head).

    Raises:
        ConfigError: a bad run id (here); at build time, a run without stored weights, or tensors
            that do not fit the model (other than the head's when not ``strict``), in one line.
    """

    name = "init_from"
    family = "transfer"
    engines = ("single",)
    source = "Yosinski et al. 2014; Howard & Ruder 2018 (ULMFiT)"
    description = "Initialize from a stored run's final weights (a new head when the output shape differs)."

    def __init__(self, *, run: str, strict: bool = False) -> None:
        self.run = run_id_param("init_from run", run)
        if not isinstance(strict, bool):
            raise ConfigError("init_from strict", strict, "true or false")
        self.strict = strict
        self.weights_runs = (("init run id", self.run),)
        self.loaded: list[str] = []
        self.new: list[str] = []

    def prepare_model(self, model: nn.Module, context: ModelContext) -> nn.Module:
        stored = load_stored(context, self.run, "init run id")
        own = model.state_dict()
        head = head_prefix(model)
        fits = {k: v for k, v in stored.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
        misfit = sorted(set(own) - set(fits))
        extra = sorted(set(stored) - set(own))
        if self.strict:
            bad = misfit or extra
        else:
            bad = [k for k in misfit if not k.startswith(head)] or extra
            if not bad and head and any(k.startswith(head) and k in stored for k in misfit):
                # a new head: every tensor of the head is initialized fresh, none half-loaded
                fits = {k: v for k, v in fits.items() if not k.startswith(head)}
                misfit = sorted(set(own) - set(fits))
        if bad:
            k = bad[0]
            what = (f"{k} has shape {tuple(stored[k].shape)} there, {tuple(own[k].shape)} here"
                    if k in own and k in stored else f"{k} is missing {'there' if k in own else 'here'}")
            allowed = "weights of the same architecture" + ("" if self.strict else
                                                            " (only the output layer may differ)")
            raise ConfigError("init run id", self.run, f"{allowed}; {what}")
        model.load_state_dict({**own, **{k: v.to(own[k].device, own[k].dtype) for k, v in fits.items()}})
        self.loaded, self.new = sorted(fits), misfit
        if misfit:
            warnings.warn(f"init_from {self.run}: loaded {len(fits)} tensors ({', '.join(sorted(fits)) or 'none'}); "
                          f"new head {', '.join(misfit)} (shape differs; initialized under the run's seed)",
                          TransferWarning, stacklevel=2)
        return model


class Freeze(Component):
    """Freeze the parameters whose names match a regular expression (``re.search``).

    Args:
        layers: the pattern, e.g. ``"^(0|2)\\."`` or ``"features"`` (``optbench`` prints no names:
            ``model.named_parameters()`` lists them).

    Raises:
        ConfigError: an invalid pattern (here); at build time, a pattern matching no parameter
            (listing the names).
    """

    name = "freeze"
    family = "transfer"
    source = "Yosinski et al. 2014 (frozen transferred layers)"
    description = "Freeze the parameters whose names match a regular expression."

    def __init__(self, *, layers: str) -> None:
        if not isinstance(layers, str) or not layers:
            raise ConfigError("freeze layers", layers, "a regular expression on parameter names")
        try:
            self.pattern = re.compile(layers)
        except re.error as exc:
            raise ConfigError("freeze layers", layers, f"a valid regular expression ({exc})") from None
        self.layers = layers
        self.frozen: list[str] = []

    def prepare_model(self, model: nn.Module, context: ModelContext) -> nn.Module:
        names = [n for n, _ in model.named_parameters()]
        self.frozen = [n for n in names if self.pattern.search(n)]
        if not self.frozen:
            raise ConfigError("freeze layers", self.layers, f"a pattern matching parameter names of the model: "
                                                            f"{', '.join(names)}")
        if len(self.frozen) == len(names):
            raise ConfigError("freeze layers", self.layers, "a pattern leaving some parameter trainable")
        for n, p in model.named_parameters():
            if n in self.frozen:
                p.requires_grad_(False)
        return model


class DiscriminativeLR(Component):
    """Per layer group learning rates ``lr / factor^d``, ``d`` the group's depth from the top (ULMFiT,
    Howard & Ruder 2018, sec. 3.2, eq. 2; ``factor = 2.6`` there).

    The groups are the optimizer's parameter groups, top (head) first, so that the learning rate a
    run records (group 0's) is the recipe's. Every other hyperparameter comes from the optimizer.

    Raises:
        ConfigError: ``factor`` < 1 (here); at build time, a recipe without an explicit ``lr``.
    """

    name = "discriminative_lr"
    family = "param_groups"
    source = "Howard & Ruder 2018 (ULMFiT), sec. 3.2, eq. 2"
    description = "Layer group d from the top trains at lr / factor^d."

    def __init__(self, *, factor: float = 2.6) -> None:
        self.factor = _validate.number("discriminative_lr factor", factor, low=1.0, high_open=True)

    def param_groups(self, model: nn.Module, hyperparams: Mapping[str, Any]) -> list[dict[str, Any]] | None:
        lr = hyperparams.get("lr")
        if isinstance(lr, bool) or not isinstance(lr, int | float):
            raise ConfigError("discriminative_lr lr", lr, "a recipe with an explicit learning rate (hyperparams.lr)")
        groups = layer_groups(model)
        return [{"params": [p for _, p in group], "lr": float(lr) / self.factor ** depth}
                for depth, group in enumerate(reversed(groups))]


class GradualUnfreezing(Component):
    """Train only the top layer group in epoch 1, one more group from the top each epoch after
    (ULMFiT, Howard & Ruder 2018, sec. 3.3). The optimizer holds every parameter from the start;
    frozen ones have ``requires_grad = False`` (no gradient, no update).

    Args:
        every: epochs between unfreezing two groups (ULMFiT: 1).
    """

    name = "gradual_unfreezing"
    family = "transfer"
    engines = ("single",)
    source = "Howard & Ruder 2018 (ULMFiT), sec. 3.3"
    description = "Unfreeze one more layer group from the top every epoch (the top group first)."

    def __init__(self, *, every: int = 1) -> None:
        self.every = _validate.integer("gradual_unfreezing every", every, low=1)
        self.groups: list[list[nn.Parameter]] = []

    def setup(self, run: RunContext) -> None:
        # after the optimizer was built over every trainable parameter
        self.groups = [[p for _, p in group] for group in reversed(layer_groups(run.model))]  # top first
        self.before_train_epoch(1)

    def trainable_groups(self, epoch: int) -> int:
        """How many groups (from the top) train in epoch ``epoch`` (1-based)."""
        return min(len(self.groups), 1 + (max(epoch, 1) - 1) // self.every)

    def before_train_epoch(self, epoch: int) -> None:
        n = self.trainable_groups(epoch)
        for i, group in enumerate(self.groups):
            for p in group:
                p.requires_grad_(i < n)


#: The techniques of this module (discovered by :mod:`optbench.techniques.registry`).
COMPONENTS = (InitFrom, Freeze, DiscriminativeLR, GradualUnfreezing)

__all__ = ["COMPONENTS", "DiscriminativeLR", "Freeze", "GradualUnfreezing", "InitFrom", "TransferWarning",
           "head_prefix", "layer_groups", "load_stored", "run_id_param"]
