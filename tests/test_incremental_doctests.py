"""The docstring examples of the incremental modules, the CLI and maintenance run as doctests."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "tore_nb.incremental",
    "tore_nb.incremental.builtin",
    "tore_nb.incremental.caches",
    "tore_nb.incremental.changes",
    "tore_nb.incremental.documents",
    "tore_nb.incremental.executors",
    "tore_nb.incremental.identity",
    "tore_nb.incremental.processor",
    "tore_nb.incremental.progress",
    "tore_nb.incremental.report",
    "tore_nb.incremental.stages",
    "tore_nb.maintenance",
    "tore_nb.cli",
]


@pytest.mark.parametrize("module", MODULES)
def test_doctests(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
