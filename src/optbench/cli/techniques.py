"""Parsing of the CLI's technique options into :class:`~optbench.core.spec.Recipe` fields."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import MISSING, fields
from typing import Any

from optbench.core.errors import ConfigError
from optbench.core.options import parse_options
from optbench.core.spec import Recipe


def parse_augmentation(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["random_crop:padding=4", "horizontal_flip"]`` -> ``{"random_crop": {"padding": 4},
    "horizontal_flip": {}}`` (applied in the order given; values by the literal rule of
    :mod:`optbench.core.options`, ``:`` separates the pairs).

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


def techniques(*, schedule: str, schedule_param: Sequence[str], warmup: int, label_smoothing: float,
               penalty: str, penalty_param: Sequence[str], early_stopping: int | None, min_delta: float,
               augment: Sequence[str], averaging: str, averaging_param: Sequence[str], precision: str,
               clip_norm: float | None, clip_value: float | None, accumulation: int, batch_rule: str,
               base_batch_size: int, no_decay_bias_norm: bool) -> dict[str, Any]:
    """The non-default Recipe fields given on the command line (defaults are left out, so the
    recipes and their run ids equal those of a command without the options). ``*_param`` items are
    ``NAME=VALUE`` (:func:`optbench.core.options.parse_options`).

    Raises:
        ConfigError: for a malformed ``NAME=VALUE`` item (naming its option).
    """
    def params(option: str, items: Sequence[str]) -> dict[str, Any]:
        return parse_options(items, field=option, example="NAME=VALUE, e.g. gamma=0.5 or milestones=30,60")

    given: dict[str, Any] = {
        "schedule": schedule, "schedule_params": params("--schedule-param", schedule_param),
        "warmup_steps": warmup, "label_smoothing": label_smoothing, "penalty": penalty,
        "penalty_params": params("--penalty-param", penalty_param),
        "early_stopping": {"patience": early_stopping, "min_delta": min_delta} if early_stopping else {},
        "augmentation": parse_augmentation(augment), "averaging": averaging,
        "averaging_params": params("--averaging-param", averaging_param), "precision": precision,
        "clip_norm": clip_norm, "clip_value": clip_value, "accumulation_steps": accumulation, "batch_rule": batch_rule,
        "base_batch_size": base_batch_size, "decay_bias_and_norm": not no_decay_bias_norm,
    }
    defaults = {f.name: f.default_factory() if f.default_factory is not MISSING else f.default  # type: ignore[misc]
                for f in fields(Recipe)}
    return {k: v for k, v in given.items() if v != defaults[k]}
