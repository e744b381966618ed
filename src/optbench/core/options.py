"""The one parser of ``key=value`` options on the command line and in names.

Used by task references (``fmnist_cnn3[norm=batch,width=0.5]``, :func:`optbench.tasks.get_task`)
and by technique parameters (``--schedule-param gamma=0.5``, ``--augment random_crop:padding=4``,
:func:`optbench.schedules.parse_params`).

Literal rule of a value (:func:`parse_literal`), the first that applies:

* ``true`` / ``false`` (any case) -> ``bool``;
* an integer (``30``, ``-2``) -> ``int``;
* a finite number (``0.1``, ``1e-3``) -> ``float``;
* anything else, stripped -> ``str`` (``batch``, ``exp_range``, and ``nan``/``inf``, which every
  numeric check then rejects with a :class:`~optbench.core.errors.ConfigError`).

Lists: in a standalone ``NAME=VALUE`` item a value with commas is a list of literals
(``milestones=30,60`` -> ``[30, 60]``; empty parts are dropped). Inside brackets the comma separates
the pairs, so bracketed options (task references) hold single literals only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from optbench.core.errors import ConfigError

OptionValue = bool | int | float | str


def parse_literal(text: str) -> OptionValue:
    """One value by the module's literal rule: bool, int, finite float, else the stripped string."""
    stripped = text.strip()
    lowered = stripped.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(stripped)
    except ValueError:
        pass
    try:
        number = float(stripped)
    except ValueError:
        return stripped
    return number if math.isfinite(number) else stripped


def format_literal(value: object) -> str:
    """The text :func:`parse_literal` reads back as ``value``: ``true``/``false`` for bools,
    ``str(value)`` otherwise (``0.5``, ``batch``); lists are comma-joined."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(format_literal(v) for v in value)
    return str(value)


def parse_options(items: Iterable[str], *, field: str = "option", example: str = "NAME=VALUE, e.g. gamma=0.5",
                  lists: bool = True) -> dict[str, Any]:
    """``["gamma=0.5", "milestones=30,60", "nesterov=true"]`` -> ``{"gamma": 0.5, "milestones": [30, 60],
    "nesterov": True}`` (the module's literal rule).

    Args:
        items: ``NAME=VALUE`` strings; NAME must be a Python identifier (surrounding spaces ignored).
        field: what the items are, for errors (``"schedule parameter"``, ``"--augment"``).
        example: the allowed form, for errors.
        lists: a value with commas is a list of literals; when False the commas stay in the value's
            text (the caller split on them already).

    Raises:
        ConfigError: naming ``field``: an item without ``=``, a name that is not an identifier, or a
            name given twice.
    """
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise ConfigError(field, item, example)
        if name in out:
            raise ConfigError(field, item, f"{example}; each name once")
        if lists and "," in text:
            out[name] = [parse_literal(part) for part in text.split(",") if part.strip() != ""]
        else:
            out[name] = parse_literal(text)
    return out


def parse_bracketed(ref: str, *, field: str = "option", example: str = "name[key=value,key=value]"
                    ) -> tuple[str, dict[str, Any]]:
    """``"fmnist_cnn3[norm=batch,dropout=0.3]"`` -> ``("fmnist_cnn3", {"norm": "batch", "dropout": 0.3})``;
    a reference without a trailing ``[...]`` is returned stripped with no options. Pairs are separated
    by commas (empty pairs are skipped), so values are single literals (no lists).

    Raises:
        ConfigError: naming ``field`` for a malformed pair or a name given twice (see :func:`parse_options`).
    """
    ref = ref.strip()
    if not ref.endswith("]") or "[" not in ref:
        return ref, {}
    base, _, inner = ref[:-1].partition("[")
    pairs = [p for p in (part.strip() for part in inner.split(",")) if p]
    return base, parse_options(pairs, field=field, example=example, lists=False)


__all__ = ["OptionValue", "format_literal", "parse_bracketed", "parse_literal", "parse_options"]
