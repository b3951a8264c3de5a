"""Restore a stored run into a namespace as a plain run would leave it, all or nothing."""

from __future__ import annotations
import __future__

import ast
import contextlib
import importlib
import linecache
import logging
import sys
import types
from typing import Any

from ..keys import hash_value
from .analysis import CellAnalysis
from .capture import NO_RESULT
from .deps import Dependency, current_digest
from .entry import CellEntry
from .flow import DEF_NODES
from .probes import StateProbe, probes
from .snapshot import RestoreError, loads, restore_into
from .state import State
from .syntax import is_setup_magic

__all__ = ["definitions_code", "outputs_still_there", "register_source", "restore"]

log = logging.getLogger("tore_nb.cells")


def restore(
    entry: CellEntry, analysis: CellAnalysis, namespace: dict[str, Any], state: State
) -> tuple[tuple[str, ...], Any]:
    """Put back what the run changed, all or nothing: variables (objects that existed before
    as themselves), then the cell's definitions, then objects changed in place, then state.

    Variables first: default arguments, class attributes and decorator arguments are evaluated
    when a definition runs, and must see the cell's values, as they did when the cell ran."""
    touched = set(analysis.definitions) | set(entry.names) | set(entry.deleted)
    saved = {n: namespace[n] for n in touched if n in namespace}
    module = namespace.get("__name__")
    seen: set[tuple[str, str]] = set()
    pre = dict(namespace)  # references resolve to the objects as they were before the cell

    def rollback() -> None:
        for n in touched:
            if n in saved:
                namespace[n] = saved[n]
            else:
                namespace.pop(n, None)

    try:
        defs = definitions_code(analysis)
        try:
            payload = loads(entry.stream, entry.buffers, pre, seen)
        except RestoreError:
            raise
        except Exception:
            # the values need a class the cell defines, not defined here (a fresh kernel):
            # define what can be without the cell's values, to load them; defined again below
            for code in defs:
                with contextlib.suppress(Exception):
                    exec(code, namespace)
            payload = loads(entry.stream, entry.buffers, pre, seen)
        inplace: dict[str, tuple[str, Any]] = payload["inplace"]
        for name in inplace:
            if name not in namespace:
                raise RestoreError(f"{name!r} is not defined")
        namespace.update(payload["values"])
        for code in defs:
            exec(code, namespace)
        if any(m == module and n.split(".")[0] in analysis.definitions for m, n in seen):
            # instances of the cell's classes (or its functions): bind to the final definitions
            payload = loads(entry.stream, entry.buffers, pre)
            namespace.update(payload["values"])
            inplace = payload["inplace"]
    except RestoreError:
        rollback()
        raise
    except Exception as exc:
        rollback()
        raise RestoreError(f"{type(exc).__name__}: {exc}") from exc
    for name, (kind, content) in inplace.items():
        restore_into(pre[name], kind, content)
    for n in entry.deleted:
        namespace.pop(n, None)
    by_name = {p.name: p for p in state.probes}
    for name, change in entry.state:
        probe = by_name.get(name)
        if probe is None:  # its library is not imported here: import it as the cell did
            probe = _probe_named(name)
        if probe is not None:
            try:
                probe.apply(change)
            except Exception as exc:
                log.warning("tcache: could not restore %s (%s)", name, exc)
    for name in entry.imported:  # local modules its run imported (inside a function, say)
        if name not in sys.modules:
            try:
                importlib.import_module(name)
            except Exception as exc:  # the plain run imported it; say so, go on
                log.warning("tcache: could not import %s again (%s)", name, exc)
    for path, data in entry.appended:  # what it appended to a file, as a run appends it
        try:
            with open(path, "ab") as f:
                f.write(data)
        except OSError as exc:
            log.warning("tcache: could not append to %s again (%s)", path, exc)
    return (*entry.names, *entry.mutated), payload.get("result", NO_RESULT)


def _probe_named(name: str) -> StateProbe | None:
    for probe in probes():
        if probe.name == name:
            return probe if probe.available() else None
    return None


def definitions_code(analysis: CellAnalysis) -> list[types.CodeType]:
    """The cell's top-level imports, defs, classes and settings magics (`%load_ext`,
    `%matplotlib`), compiled one statement each (under the cell's own `__future__` imports, as
    when they ran together): what a hit runs again, since no variable carries their effect."""
    statements = [
        s for s in ast.parse(analysis.source).body if isinstance(s, DEF_NODES) or is_setup_magic(s)
    ]
    if not statements:
        return []
    flags = 0
    for s in statements:
        if isinstance(s, ast.ImportFrom) and s.module == "__future__":
            for alias in s.names:
                feature = getattr(__future__, alias.name, None)
                flags |= getattr(feature, "compiler_flag", 0)
    filename = register_source(analysis.source)
    return [
        # dont_inherit: this module's own `from __future__ import annotations` is not the cell's
        compile(
            ast.Module(body=[s], type_ignores=[]), filename, "exec", flags=flags, dont_inherit=True
        )
        for s in statements
    ]


def outputs_still_there(entry: CellEntry) -> bool:
    """The files the cell wrote still hold what it wrote (a hit does not write them again)."""
    for path, digest in entry.written:
        if current_digest(Dependency("file", path), {}) != digest:
            return False
    return True


def register_source(source: str) -> str:
    """A file name under which `inspect.getsource` finds code compiled from `source`."""
    name = f"<tcache-{hash_value(source)[:12]}>"
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    return name
