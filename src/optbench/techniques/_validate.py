"""Small validators shared by the regularization modules; each raises a one-line ConfigError."""

from __future__ import annotations

import math
from typing import Any

from optbench.core.errors import ConfigError


def number(field: str, value: Any, *, low: float = -math.inf, high: float = math.inf,
           low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a float when it is a real number in the stated interval, else ConfigError.

    The interval is ``[low, high]``; ``low_open``/``high_open`` exclude an end. NaN and booleans
    are rejected.
    """
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    allowed = f"a number in {left}{low:g}, {high:g}{right}"
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ConfigError(field, value, allowed)
    if value < low or (low_open and value == low) or value > high or (high_open and value == high):
        raise ConfigError(field, value, allowed)
    return float(value)


def integer(field: str, value: Any, *, low: int = 0) -> int:
    """``value`` when it is an ``int`` (not a bool) >= ``low``, else ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(field, value, f"an integer >= {low}")
    return value
