"""The package surface: light import, __all__, doctests of the core modules."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys

import pytest

import tore_nb

HEAVY = ("IPython", "ipywidgets", "ray", "pandas", "boto3", "redis", "botocore")


def test_import_is_light() -> None:
    code = (
        "import sys, tore_nb, tore_nb.tiered, tore_nb.config; "
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_names() -> None:
    for name in ("MultiLevelCache", "CacheManager", "CacheConfig", "generate_key", "ConfigError"):
        assert name in tore_nb.__all__
        assert getattr(tore_nb, name) is not None
    assert tore_nb.CacheManager is tore_nb.MultiLevelCache
    with pytest.raises(AttributeError):
        tore_nb.nothing_here  # noqa: B018


@pytest.mark.parametrize(
    "module",
    [
        "tore_nb",
        "tore_nb.errors",
        "tore_nb.config",
        "tore_nb.keys",
        "tore_nb.codec",
        "tore_nb.stats",
        "tore_nb.tiered",
        "tore_nb.tiers",
        "tore_nb.tiers.base",
        "tore_nb.tiers.memory",
        "tore_nb.tiers.disk",
        "tore_nb.breaker",
        "tore_nb.clock",
        "tore_nb.fingerprint",
        "tore_nb.cells",
        "tore_nb.cells.analysis",
        "tore_nb.cells.keys",
        "tore_nb.cells.capture",
        "tore_nb.cells.explanation",
        "tore_nb.cells.run",
        "tore_nb.cells.snapshot",
        "tore_nb.cells.deps",
        "tore_nb.cells.outcome",
        "tore_nb.cells.probes",
        "tore_nb.cells.observe",
        "tore_nb.memo",
        "tore_nb.magics",
        "tore_nb.widgets",
        "tore_nb.widgets.dashboard",
        "tore_nb.widgets.report",
        "tore_nb.widgets.progress",
    ],
)
def test_doctests(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
