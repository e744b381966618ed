"""The curated public API: lazy, complete, no import-time side effects."""

from __future__ import annotations

import subprocess
import sys


def test_import_is_light_and_every_export_resolves():
    code = ("import sys, optbench; assert 'torch' not in sys.modules, 'import optbench loaded torch'; "
            "[getattr(optbench, n) for n in optbench.__all__]; print(len(optbench.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) >= 30


def test_unknown_attribute_is_an_attribute_error():
    import pytest

    import optbench

    with pytest.raises(AttributeError, match="no_such_name"):
        optbench.no_such_name  # noqa: B018
