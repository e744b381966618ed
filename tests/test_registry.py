from __future__ import annotations

import pytest

from optbench.core.errors import ConfigError, UnknownNameError
from optbench.core.registry import Registry


def test_unknown_name_lists_known_names():
    reg: Registry[int] = Registry("thing")
    reg.register("b", 2)
    reg.register("a", 1)
    with pytest.raises(UnknownNameError) as info:
        reg.get("c")
    message = str(info.value)
    assert "thing" in message and "'c'" in message and "a, b" in message
    assert isinstance(info.value, ConfigError) and info.value.field == "thing"
    assert "\n" not in message


def test_aliases_and_duplicates():
    reg: Registry[int] = Registry("thing")
    reg.register("one", 1)
    reg.alias("uno", "one")
    assert reg.get("uno") == 1 and reg.canonical("uno") == "one"
    assert "uno" in reg and reg.names() == ["one"]
    with pytest.raises(ValueError):
        reg.register("one", 3)
    with pytest.raises(ValueError):
        reg.alias("one", "one")
    with pytest.raises(UnknownNameError):
        reg.alias("x", "missing")
    reg.register("one", 5, replace=True)
    assert reg.get("one") == 5


def test_decorator_and_lazy_targets():
    reg: Registry[object] = Registry("thing")

    @reg.register("f")
    def f():
        return 42

    reg.register("sqrt", lazy="math:sqrt")
    assert reg.get("f")() == 42
    assert reg.get("sqrt")(9.0) == 3.0
    assert reg.names() == ["f", "sqrt"] and len(reg) == 2
