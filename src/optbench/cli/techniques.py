"""The technique options shared by ``optbench compare``, ``optbench run`` and ``optbench scale``.

One syntax: ``--technique NAME[:key=value,...]`` (repeatable, applied in the order given; names and
parameters: ``optbench list techniques``), parsed with
:meth:`~optbench.core.spec.TechniqueSpec.parse`. With it come ``--schedule``, ``--schedule-param``
and ``--precision`` (Recipe fields, not techniques).

The older flags stay as documented shorthands, each one line mapping to one technique
(:data:`SHORTHANDS`; ``--warmup N`` is the schedule parameter ``warmup_steps=N``). Shorthand
techniques come first, in the fixed order the flat recipe form applied them, then the
``--technique`` items in the order given; so a command with the shorthand flags gives the recipes,
and the run ids, it always gave. A technique may be named once.

:func:`technique_options` adds all of these options to a command and hands it one
:class:`TechniqueOptions`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from optbench.core.errors import ConfigError
from optbench.core.options import parse_options

if TYPE_CHECKING:  # optbench.core.spec imports torch; the options are read for --help
    from optbench.core.spec import TechniqueSpec

F = TypeVar("F", bound=Callable[..., object])

#: Each shorthand flag and the technique it stands for.
SHORTHANDS: tuple[tuple[str, str], ...] = (
    ("--batch-rule RULE [--base-batch-size B]", "lr_scaling:rule=RULE,base_batch_size=B (B default 128)"),
    ("--no-decay-bias-norm", "no_decay_bias_norm (and exclude_bias_and_norm=true on a --penalty)"),
    ("--penalty NAME [--penalty-param k=v ...]", "NAME:k=v,... (l1, l2, elastic_net)"),
    ("--label-smoothing EPS", "label_smoothing:epsilon=EPS"),
    ("--augment NAME[:k=v:k=v]", "NAME:k=v,k=v (random_crop, horizontal_flip, gaussian_noise; sorted by name)"),
    ("--accumulation N", "accumulation:steps=N"),
    ("--clip-value V", "clip_value:clip_value=V"),
    ("--clip-norm V", "clip_norm:max_norm=V"),
    ("--averaging NAME [--averaging-param k=v ...]", "NAME:k=v,... (swa, ema)"),
    ("--early-stopping P [--min-delta D]", "early_stopping:patience=P,min_delta=D"),
    ("--warmup N", "--schedule-param warmup_steps=N (a schedule parameter, not a technique)"),
)

_PARAM_EXAMPLE = "NAME=VALUE, e.g. gamma=0.5 or milestones=30,60"


@dataclass(frozen=True)
class TechniqueOptions:
    """What the technique options of a command give: Recipe fields, ready to build recipes with.

    Attributes:
        schedule / schedule_params: the learning-rate schedule (``warmup_steps`` included).
        precision: ``fp32``, ``bf16`` or ``fp16``.
        techniques: the techniques in order (shorthands first, then ``--technique`` items).
    """

    schedule: str = "constant"
    schedule_params: Mapping[str, Any] = field(default_factory=dict)
    precision: str = "fp32"
    techniques: tuple[TechniqueSpec, ...] = ()

    def describe(self) -> str:
        """The non-default settings as ``key=value`` words for a command's first line ("" if none)."""
        words = [] if self.schedule == "constant" else [f"schedule={self.schedule}"]
        words += [f"{k}={v}" for k, v in self.schedule_params.items()]
        words += [] if self.precision == "fp32" else [f"precision={self.precision}"]
        words += [f"technique={t}" for t in self.techniques]
        return " ".join(words)


def parse_augmentation(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``--augment``: ``["random_crop:padding=4", "horizontal_flip"]`` -> ``{"random_crop": {"padding": 4},
    "horizontal_flip": {}}`` (``:`` separates the pairs; values by the literal rule of
    :mod:`optbench.core.options`).

    Raises:
        ConfigError: for a malformed item.
    """
    allowed = "NAME or NAME:key=value[:key=value], e.g. random_crop:padding=4"
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name, _, rest = item.partition(":")
        if not name.strip():
            raise ConfigError("--augment", item, allowed)
        out[name.strip()] = parse_options([p for p in rest.split(":") if p], field="--augment", example=allowed)
    return out


def _family(option: str, name: str, family: str, none: bool = True) -> str:
    """``name`` when it is a registered technique of ``family``, else ConfigError naming ``option``."""
    from optbench.techniques.registry import techniques

    names = [n for n in techniques.names() if techniques.get(n).family == family]
    if name not in names:
        raise ConfigError(option, name, (["none"] if none else []) + names)
    return name


def _params(option: str, items: Sequence[str]) -> dict[str, Any]:
    return parse_options(items, field=option, example=_PARAM_EXAMPLE)


def _only_with(option: str, value: Any, given: bool, needs: str) -> None:
    if given:
        raise ConfigError(option, value, f"only together with {needs}")


def shorthand_techniques(*, batch_rule: str = "none", base_batch_size: int = 128, no_decay_bias_norm: bool = False,
                         penalty: str = "none", penalty_param: Sequence[str] = (), label_smoothing: float = 0.0,
                         augment: Sequence[str] = (), accumulation: int = 1, clip_value: float | None = None,
                         clip_norm: float | None = None, averaging: str = "none", averaging_param: Sequence[str] = (),
                         early_stopping: int | None = None, min_delta: float = 0.0) -> list[TechniqueSpec]:
    """The techniques the shorthand flags stand for (:data:`SHORTHANDS`), in the order the flat
    recipe form applied them; flags at their default give none.

    Raises:
        ConfigError: naming the flag: an unknown penalty, averaging or augmentation name, a malformed
            ``k=v`` item, or a parameter flag without its technique flag.
    """
    from optbench.core.spec import TechniqueSpec

    _only_with("--base-batch-size", base_batch_size, batch_rule == "none" and base_batch_size != 128, "--batch-rule")
    _only_with("--penalty-param", " ".join(penalty_param), penalty == "none" and bool(penalty_param), "--penalty")
    _only_with("--averaging-param", " ".join(averaging_param), averaging == "none" and bool(averaging_param),
               "--averaging")
    _only_with("--min-delta", min_delta, early_stopping is None and min_delta != 0.0, "--early-stopping")
    exclude = {"exclude_bias_and_norm": True} if no_decay_bias_norm else {}
    augmentations = parse_augmentation(augment)
    specs: list[TechniqueSpec | None] = [
        TechniqueSpec("lr_scaling", {"rule": batch_rule, "base_batch_size": base_batch_size})
        if batch_rule != "none" else None,
        TechniqueSpec("no_decay_bias_norm") if no_decay_bias_norm else None,
        TechniqueSpec(_family("--penalty", penalty, "penalty"), _params("--penalty-param", penalty_param) | exclude)
        if penalty != "none" else None,
        TechniqueSpec("label_smoothing", {"epsilon": label_smoothing}) if label_smoothing else None,
        *(TechniqueSpec(_family("--augment", name, "augmentation", none=False), params)
          for name, params in sorted(augmentations.items())),
        TechniqueSpec("accumulation", {"steps": accumulation}) if accumulation != 1 else None,
        TechniqueSpec("clip_value", {"clip_value": clip_value}) if clip_value is not None else None,
        TechniqueSpec("clip_norm", {"max_norm": clip_norm}) if clip_norm is not None else None,
        TechniqueSpec(_family("--averaging", averaging, "averaging"), _params("--averaging-param", averaging_param))
        if averaging != "none" else None,
        TechniqueSpec("early_stopping", {"patience": early_stopping, "min_delta": min_delta})
        if early_stopping is not None else None,
    ]
    return [s for s in specs if s is not None]


def parse_technique(text: str) -> TechniqueSpec:
    """One ``--technique`` item: ``NAME`` or ``NAME:key=value,key=value``.

    Raises:
        ConfigError: naming ``--technique``, the whole item and the allowed form.
    """
    from optbench.core.spec import TechniqueSpec

    try:
        return TechniqueSpec.parse(text)
    except ConfigError as exc:
        raise ConfigError("--technique", text, exc.allowed) from None


def technique_list(technique: Sequence[str] = (), **shorthands: Any) -> tuple[TechniqueSpec, ...]:
    """The techniques of a command: the shorthands' (:func:`shorthand_techniques`), then each
    ``--technique`` item in order.

    Raises:
        ConfigError: a malformed item, or a technique named twice.
    """
    specs = [*shorthand_techniques(**shorthands), *(parse_technique(t) for t in technique)]
    names = [s.name for s in specs]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError("--technique", name, "each technique once (a shorthand flag may have added it)")
    return tuple(specs)


def schedule_params(schedule_param: Sequence[str] = (), warmup: int = 0) -> dict[str, Any]:
    """``--schedule-param`` items with ``--warmup`` as ``warmup_steps`` (left out at 0).

    Raises:
        ConfigError: a malformed item, or ``--warmup`` together with ``warmup_steps=``.
    """
    params = _params("--schedule-param", schedule_param)
    if warmup:
        if "warmup_steps" in params:
            raise ConfigError("--warmup", warmup, "either --warmup or --schedule-param warmup_steps=N, not both")
        params["warmup_steps"] = warmup
    return params


def parse_technique_options(*, technique: Sequence[str] | None = None, schedule: str = "constant",
                            schedule_param: Sequence[str] | None = None, warmup: int = 0, precision: str = "fp32",
                            **shorthands: Any) -> TechniqueOptions:
    """The :class:`TechniqueOptions` of a command's technique options (names as the options)."""
    shorthands = {k: (v or ()) if k in ("penalty_param", "augment", "averaging_param") else v
                  for k, v in shorthands.items()}
    return TechniqueOptions(schedule=schedule, schedule_params=schedule_params(schedule_param or (), warmup),
                            precision=precision, techniques=technique_list(technique or (), **shorthands))


def _option(name: str, kind: Any, default: Any, info: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, info])


_PANEL = "Techniques"
_SHORT = "Shorthand for --technique "
#: The options :func:`technique_options` adds, in help order.
OPTIONS: tuple[inspect.Parameter, ...] = (
    _option("technique", list[str] | None, None, typer.Option(
        "--technique", metavar="NAME[:k=v,...]", rich_help_panel=_PANEL,
        help="A training technique: NAME or NAME:key=value,key=value (e.g. label_smoothing:epsilon=0.1); "
             "repeatable, applied in the order given (optbench list techniques).")),
    _option("schedule", str, "constant", typer.Option(help="Learning-rate schedule (optbench list schedules).",
                                                      rich_help_panel=_PANEL)),
    _option("schedule_param", list[str] | None, None, typer.Option(
        help="Schedule parameter NAME=VALUE (repeatable), e.g. warmup_steps=100.", rich_help_panel=_PANEL)),
    _option("warmup", int, 0, typer.Option(help="Shorthand for --schedule-param warmup_steps=N: linear warmup "
                                                "steps before the schedule.", rich_help_panel=_PANEL)),
    _option("precision", str, "fp32", typer.Option(help="fp32, bf16 (autocast) or fp16 (CUDA, loss scaling).",
                                                   rich_help_panel=_PANEL)),
    _option("label_smoothing", float, 0.0, typer.Option(help=_SHORT + "label_smoothing:epsilon=EPS.",
                                                        rich_help_panel=_PANEL)),
    _option("penalty", str, "none", typer.Option(help=_SHORT + "NAME:k=v,... with the --penalty-param items "
                                                 "(l1, l2, elastic_net).", rich_help_panel=_PANEL)),
    _option("penalty_param", list[str] | None, None, typer.Option(help="Penalty parameter, e.g. strength=1e-4.",
                                                                  rich_help_panel=_PANEL)),
    _option("early_stopping", int | None, None, typer.Option(help=_SHORT + "early_stopping:patience=P,min_delta=D.",
                                                             rich_help_panel=_PANEL)),
    _option("min_delta", float, 0.0, typer.Option(help="min_delta of --early-stopping.", rich_help_panel=_PANEL)),
    _option("augment", list[str] | None, None, typer.Option(help=_SHORT + "NAME:k=v,... (repeatable; here ':' "
                                                            "separates the pairs), e.g. random_crop:padding=2.",
                                                            rich_help_panel=_PANEL)),
    _option("averaging", str, "none", typer.Option(help=_SHORT + "NAME:k=v,... with the --averaging-param items "
                                                   "(swa, ema).", rich_help_panel=_PANEL)),
    _option("averaging_param", list[str] | None, None, typer.Option(help="Averaging parameter, e.g. decay=0.999.",
                                                                    rich_help_panel=_PANEL)),
    _option("clip_norm", float | None, None, typer.Option(help=_SHORT + "clip_norm:max_norm=V.",
                                                          rich_help_panel=_PANEL)),
    _option("clip_value", float | None, None, typer.Option(help=_SHORT + "clip_value:clip_value=V.",
                                                           rich_help_panel=_PANEL)),
    _option("accumulation", int, 1, typer.Option(help=_SHORT + "accumulation:steps=N.", rich_help_panel=_PANEL)),
    _option("batch_rule", str, "none", typer.Option(help=_SHORT + "lr_scaling:rule=RULE,base_batch_size=B "
                                                    "(linear, Goyal et al. 2017; sqrt).", rich_help_panel=_PANEL)),
    _option("base_batch_size", int, 128, typer.Option(help="base_batch_size of --batch-rule: the batch size the lr "
                                                      "was chosen for.", rich_help_panel=_PANEL)),
    _option("no_decay_bias_norm", bool, False, typer.Option("--no-decay-bias-norm", help=_SHORT + "no_decay_bias_norm:"
                                                            " no weight decay on biases and normalization weights.",
                                                            rich_help_panel=_PANEL)),
)


def technique_options(command: F) -> F:
    """Give ``command`` the technique options (:data:`OPTIONS`): typer sees them as options of the
    command, and the command receives them parsed as the keyword argument ``options``
    (a :class:`TechniqueOptions`). Parsing errors are ConfigErrors naming the option."""
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "options"]
    names = [p.name for p in OPTIONS]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for name in names if name in kwargs}
        return command(*args, **kwargs, options=parse_technique_options(**given))

    wrapper.__signature__ = signature.replace(parameters=[*own, *OPTIONS])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in [*own, *OPTIONS]} | {
        "return": signature.return_annotation}
    return wrapper  # type: ignore[return-value]


__all__ = ["OPTIONS", "SHORTHANDS", "TechniqueOptions", "parse_augmentation", "parse_technique",
           "parse_technique_options", "schedule_params", "shorthand_techniques", "technique_list",
           "technique_options"]
