"""The house rules of the package, checked from its source.

Every module lives on a floor; an import (at the top, inside a function, or
under ``TYPE_CHECKING``) may reach its own floor or one below, never one above,
and no chain of imports comes back to where it started. No module grows past
about 700 lines. These are the rules the redesign (issue 12) set, kept by a test
so that drift shows up in review rather than as a wrong result months later.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "tore_nb"
MAX_LINES = 700

#: Floors, lowest first. A module's floor is that of its longest matching prefix.
FLOORS: dict[str, int] = {
    "tore_nb.errors": 0,
    "tore_nb.clock": 0,
    "tore_nb.redaction": 0,
    "tore_nb.config": 1,
    "tore_nb.keys": 1,
    "tore_nb.codec": 1,
    "tore_nb.stats": 1,
    "tore_nb.breaker": 1,
    "tore_nb.fingerprint": 2,
    "tore_nb.code": 2,
    "tore_nb.code_origin": 2,
    "tore_nb.code_reads": 2,
    "tore_nb.code_modules": 2,
    "tore_nb.code_effects": 2,
    "tore_nb.tiers": 3,
    "tore_nb.tiered": 4,
    "tore_nb.memo": 5,
    "tore_nb.cells": 5,
    "tore_nb.incremental": 5,
    "tore_nb.maintenance": 5,
    "tore_nb.testing": 5,
    "tore_nb.widgets": 6,
    "tore_nb.magics": 6,
    "tore_nb.notebooks": 6,
    "tore_nb.cli": 6,
    "tore_nb": 7,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def floor_of(name: str) -> int:
    best = max((p for p in FLOORS if name == p or name.startswith(p + ".")), key=len)
    return FLOORS[best]


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports, wherever the import statement sits."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import mod` imports the submodule when one exists by that name.
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def test_no_import_runs_up_a_floor() -> None:
    upward = sorted(
        f"{src} (floor {floor_of(src)}) imports {dst} (floor {floor_of(dst)})"
        for src, targets in graph().items()
        for dst in targets
        # A package's __init__ is its face: it may gather its own submodules.
        if floor_of(dst) > floor_of(src) and not dst.startswith(src + ".")
    )
    assert upward == []


def test_no_import_circle() -> None:
    g = graph()
    # A package face importing its own submodules is not a circle back into it.
    edges = {s: {d for d in t if not d.startswith(s + ".")} for s, t in g.items()}
    circles: list[str] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                circles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert circles == []


@pytest.mark.parametrize("name", sorted(modules()))
def test_module_stays_small(name: str) -> None:
    lines = modules()[name].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{name} has {lines} lines"


def test_no_private_name_crosses_a_module() -> None:
    """``from .x import _name`` couples two modules through a name that promises nothing."""
    crossing: list[str] = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (
                node.level or (node.module or "").startswith("tore_nb")
            ):
                crossing += [
                    f"{name}: {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert crossing == []


def test_no_test_file_is_named_after_bugs() -> None:
    tests = Path(__file__).resolve().parents[1]
    assert sorted(p.name for p in tests.rglob("test_*_bugs.py")) == []
