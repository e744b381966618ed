"""The flat technique fields of recipes stored before techniques became a list, both ways.

Stores written before (and study files and search spaces that still use the flat keys) hold
recipes such as ``{"optimizer": "adam", "label_smoothing": 0.1, "clip_norm": 1.0}``. Each flat key
is one line of :data:`LEGACY_KEYS` mapping to a technique of the list
(``("label_smoothing", {"epsilon": 0.1})``). :func:`split_legacy` reads them (used by
:meth:`optbench.core.spec.Recipe.from_dict`); :func:`legacy_form` writes a recipe back in the flat
form when it can be expressed so, and :func:`optbench.core.spec.run_id` hashes that form: a run
stored before the change keeps its id, so studies resume and nothing stored is repeated
(docs/architecture.md, "Recipes and run ids").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Flat key -> its default in the old form (a key at its default was left out of the stored dict).
LEGACY_DEFAULTS: dict[str, Any] = {
    "warmup_steps": 0, "penalty": "none", "penalty_params": {}, "label_smoothing": 0.0, "early_stopping": {},
    "augmentation": {}, "averaging": "none", "averaging_params": {}, "clip_norm": None, "clip_value": None,
    "accumulation_steps": 1, "batch_rule": "none", "base_batch_size": 128, "decay_bias_and_norm": True,
}
LEGACY_KEYS = tuple(LEGACY_DEFAULTS)

#: Technique names whose settings the flat form can carry, in the order the flat form applied them.
#: Augmentations sit at "augmentation" (the flat form applied them sorted by name).
_ORDER = ("lr_scaling", "no_decay_bias_norm", "l1", "l2", "elastic_net", "label_smoothing", "augmentation",
          "accumulation", "clip_value", "clip_norm", "swa", "ema", "early_stopping")
_AUGMENTATIONS = ("random_crop", "horizontal_flip", "gaussian_noise")
_PENALTIES = ("l1", "l2", "elastic_net")
_AVERAGERS = ("swa", "ema")


def split_legacy(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    """Separate the flat technique keys of a stored recipe dict from the rest.

    Returns:
        ``(rest, techniques)``: ``data`` without the flat keys (``warmup_steps`` moved into
        ``schedule_params``), and the techniques they stand for as ``(name, params)`` in the order
        the flat form applied them.

    Raises:
        ValueError: a flat key with a value of the wrong shape (e.g. ``augmentation`` not a mapping).
    """
    rest = {k: v for k, v in data.items() if k not in LEGACY_DEFAULTS}
    flat = {k: data.get(k, default) for k, default in LEGACY_DEFAULTS.items()}
    out: list[tuple[str, dict[str, Any]]] = []
    if flat["warmup_steps"]:
        rest["schedule_params"] = {**dict(rest.get("schedule_params") or {}), "warmup_steps": flat["warmup_steps"]}
    if flat["batch_rule"] != "none":
        out.append(("lr_scaling", {"rule": flat["batch_rule"], "base_batch_size": flat["base_batch_size"]}))
    exclude = not flat["decay_bias_and_norm"]
    if exclude:
        out.append(("no_decay_bias_norm", {}))
    if flat["penalty"] != "none":
        params = dict(flat["penalty_params"])
        if exclude:
            params["exclude_bias_and_norm"] = True
        out.append((flat["penalty"], params))
    if flat["label_smoothing"]:
        out.append(("label_smoothing", {"epsilon": flat["label_smoothing"]}))
    augmentation = flat["augmentation"]
    if not isinstance(augmentation, Mapping):
        raise ValueError(f"augmentation {augmentation!r} is not a mapping of names to parameters")
    out += [(name, dict(params or {})) for name, params in sorted(augmentation.items())]
    if flat["accumulation_steps"] != 1:
        out.append(("accumulation", {"steps": flat["accumulation_steps"]}))
    if flat["clip_value"] is not None:
        out.append(("clip_value", {"clip_value": flat["clip_value"]}))
    if flat["clip_norm"] is not None:
        out.append(("clip_norm", {"max_norm": flat["clip_norm"]}))
    if flat["averaging"] != "none":
        out.append((flat["averaging"], dict(flat["averaging_params"])))
    if flat["early_stopping"]:
        out.append(("early_stopping", dict(flat["early_stopping"])))
    return rest, out


def _slot(name: str) -> str:
    return "augmentation" if name in _AUGMENTATIONS else name


def legacy_form(techniques: list[tuple[str, Mapping[str, Any]]], schedule_params: Mapping[str, Any]
                ) -> dict[str, Any] | None:
    """The flat keys (only those off their default) that express ``techniques``, or None when the
    flat form cannot: a technique it has no key for, one given twice (augmentations once each), an
    order it did not apply, or a parameter it could not store.

    ``schedule_params``' ``warmup_steps`` is returned as the flat ``warmup_steps`` (with the
    remaining ``schedule_params``).
    """
    slots = [_slot(name) for name, _ in techniques]
    if any(s not in _ORDER for s in slots):
        return None
    order = [_ORDER.index(s) for s in slots]
    if order != sorted(order):
        return None
    names = [name for name, _ in techniques]
    if len(set(names)) != len(names) or sum(s in ("swa", "ema") for s in slots) > 1 \
            or sum(n in _PENALTIES for n in names) > 1:
        return None
    augmentations = [n for n in names if n in _AUGMENTATIONS]
    if augmentations != sorted(augmentations):
        return None
    out: dict[str, Any] = {}
    params = dict(schedule_params)
    if "warmup_steps" in params:
        warmup = params.pop("warmup_steps")
        if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup <= 0:
            return None
        out["warmup_steps"] = warmup
    out["schedule_params"] = params
    exclude = "no_decay_bias_norm" in names
    for name, p in techniques:
        p = dict(p)
        if name == "lr_scaling":
            if set(p) - {"rule", "base_batch_size"} or "rule" not in p:
                return None
            out["batch_rule"] = p["rule"]
            if p.get("base_batch_size", 128) != 128:
                out["base_batch_size"] = p["base_batch_size"]
        elif name == "no_decay_bias_norm":
            if p:
                return None
            out["decay_bias_and_norm"] = False
        elif name in _PENALTIES:
            if bool(p.pop("exclude_bias_and_norm", False)) != exclude:
                return None
            out["penalty"] = name
            if p:
                out["penalty_params"] = p
        elif name == "label_smoothing":
            if set(p) != {"epsilon"} or not p["epsilon"]:
                return None
            out["label_smoothing"] = p["epsilon"]
        elif name in _AUGMENTATIONS:
            out.setdefault("augmentation", {})[name] = p
        elif name == "accumulation":
            if set(p) != {"steps"} or p["steps"] == 1:
                return None
            out["accumulation_steps"] = p["steps"]
        elif name == "clip_value":
            if set(p) != {"clip_value"}:
                return None
            out["clip_value"] = p["clip_value"]
        elif name == "clip_norm":
            if set(p) != {"max_norm"}:
                return None
            out["clip_norm"] = p["max_norm"]
        elif name in _AVERAGERS:
            out["averaging"] = name
            if p:
                out["averaging_params"] = p
        elif name == "early_stopping":
            if not p:
                return None
            out["early_stopping"] = p
    return out


__all__ = ["LEGACY_DEFAULTS", "LEGACY_KEYS", "legacy_form", "split_legacy"]
