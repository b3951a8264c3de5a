"""What user functions do beyond their fingerprint: the globals they keep as state.

A function that assigns a global (`global n`) or changes one in place (`items.append(v)`) keeps
state: `tore_nb.fingerprint` counts such a global by name only, since it is not an input. A
cached cell calling the function reads and changes it, so for the cell it is an input and an
output like any variable the cell names; a function changing a local module's state, or reading
names no code spells out (`globals()[k]`), makes the cell uncacheable.

>>> global_effects([len], {})
GlobalEffects(state=(), uncacheable=None)
"""

from __future__ import annotations

import functools
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .code_origin import is_code_like, is_user_object
from .code_reads import code_info

__all__ = ["GlobalEffects", "global_effects"]

# builtins through which code reads names it does not spell out
_INDIRECT = frozenset({"globals", "locals", "vars", "eval", "exec"})


@dataclass(frozen=True)
class GlobalEffects:
    """What the user functions reachable from some values do beyond what their fingerprint
    holds: the globals of the namespace they keep as state, and why a cell calling them cannot
    be cached (None when it can): they read names no code spells out (`globals()[k]`), or
    change the state of a local module (`REGISTRY.append(x)` in helpers.py)."""

    state: tuple[str, ...] = ()
    uncacheable: str | None = None


def global_effects(values: Iterable[Any], namespace: Mapping[str, Any]) -> GlobalEffects:
    """The globals of `namespace` that the user functions reachable from `values` keep as
    state (assign with `global`, or change in place: `items.append(v)`), which `fingerprint`
    counts by name only, and whether one reads names indirectly (`globals()[k]`, `eval`). A
    cached cell that calls such a function reads and changes those globals: for a cell they
    are inputs and outputs like any variable it names.

    >>> ns = {}
    >>> exec("items = []\\ndef add(v):\\n    items.append(v)", ns)
    >>> global_effects([ns["add"]], ns)
    GlobalEffects(state=('items',), uncacheable=None)
    """
    found: dict[str, None] = {}
    indirect: str | None = None
    seen: set[int] = set()
    todo = list(values)
    while todo and len(seen) < 10_000:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, functools.partial):
            todo.append(obj.func)
        elif isinstance(obj, types.MethodType):
            todo.append(obj.__func__)
        elif isinstance(obj, type):
            if is_user_object(obj):
                for v in vars(obj).values():
                    if isinstance(v, staticmethod | classmethod):
                        todo.append(v.__func__)
                    elif is_code_like(v):
                        todo.append(v)
        elif isinstance(obj, types.FunctionType):
            if obj.__globals__ is not namespace and not is_user_object(obj):
                continue
            wrapped = getattr(obj, "__wrapped__", None)
            if wrapped is not None:
                todo.append(wrapped)
            info = code_info(obj)
            g = obj.__globals__
            for name in info.globals:
                if name not in g:
                    if indirect is None and name in _INDIRECT:
                        indirect = (
                            f"{obj.__qualname__}() calls {name}(), which tore_nb cannot follow"
                        )
                    continue
                value = g[name]
                if g is namespace and info.is_state(name, value):
                    found[name] = None
                elif info.is_state(name, value) and indirect is None:
                    module = g.get("__name__", "?")
                    indirect = (
                        f"{obj.__qualname__}() changes {module}.{name}, state of a module a "
                        f"hit cannot restore"
                    )
                elif is_code_like(value):
                    todo.append(value)
        elif is_user_object(type(obj)) and not isinstance(obj, types.ModuleType):
            todo.append(type(obj))  # a callable object or a model: its methods run
    return GlobalEffects(tuple(found), uncacheable=indirect)
