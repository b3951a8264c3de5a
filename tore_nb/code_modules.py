"""Local modules as loaded: their code, and whether the file on disk still says the same.

Fingerprints read function source from disk, so they describe the running code only while
local modules are not edited without a reload: `module_is_stale` / `stale_modules` tell (more
exactly after `track_imports`, which records each local module's code as it is imported), and
`local_module_digest` is a module's code as loaded, for a module used as a value.

>>> import json
>>> module_is_stale(json) is None, stale_modules([json])
(True, [])
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib.machinery
import inspect
import os
import re
import sys
import threading
import types
from collections.abc import Iterable, Iterator
from typing import Any

from .code_origin import is_local_module, is_local_path, library_dirs
from .code_reads import iter_codes
from .keys import ContentHasher, code_digest, hash_value

__all__ = [
    "file_digest",
    "local_module_digest",
    "module_is_stale",
    "stale_modules",
    "track_imports",
]

# the code object of each local module file executed since `track_imports` (imports, reloads)
_exec_codes: dict[str, types.CodeType] = {}
_MAX_EXEC_CODES = 4096
_tracking = False
_track_lock = threading.Lock()
_CONSTANT = re.compile(r"[A-Z][A-Z0-9_]*")


def track_imports() -> None:
    """Record, from now on, the code of every local module as it is imported or reloaded (an
    audit hook on `exec`), so that `module_is_stale` compares what runs with the file on disk.
    Idempotent; modules imported before the call are checked by their functions instead.

    >>> track_imports(); track_imports()
    """
    global _tracking
    with _track_lock:
        if _tracking:
            return
        _tracking = True
        sys.addaudithook(_audit)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    # called for every audit event of the process: one comparison for all but "exec"
    if event != "exec":
        return
    try:
        code = args[0]
        if type(code) is not types.CodeType or code.co_name != "<module>":
            return
        path = code.co_filename
        if not path.endswith(".py") or not os.path.isabs(path):
            return  # a notebook cell, `exec` of a string
        if path.startswith(library_dirs()) or "site-packages" in path:
            return  # the usual case, decided without a system call
        if not is_local_path(path) or not os.path.isfile(path):
            return  # ipykernel names cells after files that do not exist
        if len(_exec_codes) >= _MAX_EXEC_CODES:  # bounded: files exec'd by hand add up
            del _exec_codes[next(iter(_exec_codes))]
        _exec_codes.pop(path, None)
        _exec_codes[path] = code
    except Exception:  # an audit hook that raises aborts the exec: never
        return


class _DiskCode:
    """A source file compiled as the import system does, memoised by (path, mtime, size)."""

    __slots__ = ("code", "constants", "digest", "error", "functions", "shape", "stat", "top_names")

    def __init__(self, path: str, stat: tuple[int, int]) -> None:
        self.stat = stat
        self.code: types.CodeType | None = None
        self.error = ""
        self.shape = ""
        self.digest = ""  # code_digest(code), when asked for
        self.functions: dict[str, set[str]] = {}  # qualname -> shapes of code by that name
        self.top_names: tuple[str, ...] = ()  # functions and classes defined at the top level
        self.constants: dict[str, Any] = {}  # UPPER_CASE names bound to a literal
        try:
            with open(path, "rb") as f:
                data = f.read()
            tree = ast.parse(data, path)
            self.code = compile(tree, path, "exec", dont_inherit=True)
        except (OSError, SyntaxError, ValueError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            return
        self.shape = _shape(self.code)
        for sub in iter_codes(self.code):
            if sub is not self.code:
                self.functions.setdefault(sub.co_qualname, set()).add(_shape(sub))
        top: list[str] = []
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                top.append(node.name)
            elif (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and _CONSTANT.fullmatch(node.targets[0].id)
            ):
                with contextlib.suppress(ValueError, TypeError, SyntaxError, MemoryError):
                    self.constants[node.targets[0].id] = ast.literal_eval(node.value)
        self.top_names = tuple(top)


_disk: dict[str, _DiskCode] = {}


def _disk_code(path: str, stat: tuple[int, int]) -> _DiskCode:
    found = _disk.get(path)
    if found is None or found.stat != stat:
        found = _disk[path] = _DiskCode(path, stat)
    return found


def _shape(code: types.CodeType) -> str:
    """`code_digest` plus the first line of each function: `inspect.getsource`, which gives
    a function's fingerprint, reads the file at the line the loaded code starts on, so code
    that moved in the file is stale too."""
    h = ContentHasher()
    h.update(code_digest(code))
    h.update([sub.co_firstlineno for sub in iter_codes(code)])
    return h.hexdigest()


def file_digest(path: str) -> str:
    """The code of a source file (`code_digest` of its compile), memoised by file stat;
    "missing" or "error:..." when it cannot be read or compiled.

    >>> file_digest("/no/such/file.py")
    'missing'
    """
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    disk = _disk_code(path, (st.st_mtime_ns, st.st_size))
    if disk.code is None:
        return "error:" + disk.error
    if not disk.digest:
        disk.digest = code_digest(disk.code)
    return disk.digest


# module name -> (spec, file stat, recorded code, module, verdict): a reload replaces the spec
_stale_memo: dict[str, tuple[Any, tuple[int, int], Any, types.ModuleType, str | None]] = {}


def module_is_stale(module: types.ModuleType | str) -> str | None:
    """Why a local module's loaded code differs from its source file (edited on disk but not
    reloaded), in one line; None when it does not, or when it is no local module with a file.

    Function fingerprints read the source from disk (`inspect.getsource`), so with a stale
    module they describe code that is not running: a cache must not use them. Compares the
    module's code as imported (recorded after `track_imports`) with a compile of the file, or
    else its functions and methods (by qualified name, with the line each starts on) and its
    simple constants (`UPPER = literal`). Memoised per module and file stat.

    >>> import json
    >>> module_is_stale(json) is None  # a library module is never "stale"
    True
    """
    mod = sys.modules.get(module) if isinstance(module, str) else module
    if mod is None:
        return None
    name = mod.__name__
    path = getattr(mod, "__file__", None)
    if name == "__main__" or not isinstance(path, str) or not path.endswith(".py"):
        return None
    if not is_local_module(name):
        return None
    loader = getattr(getattr(mod, "__spec__", None), "loader", None)
    if loader is not None and type(loader) is not importlib.machinery.SourceFileLoader:
        return None  # an import hook that rewrites the source (pytest's): no file holds it
    try:
        st = os.stat(path)
    except OSError:
        return f"{name}: its source file {path} is gone"
    stat = (st.st_mtime_ns, st.st_size)
    spec = getattr(mod, "__spec__", None)
    recorded = _exec_codes.get(path)
    memo = _stale_memo.get(name)
    if (
        memo is not None
        and memo[0] is spec
        and memo[1] == stat
        and memo[2] is recorded
        and memo[3] is mod
    ):
        return memo[4]
    verdict = _stale_reason(mod, path, _disk_code(path, stat), recorded)
    _stale_memo[name] = (spec, stat, recorded, mod, verdict)
    return verdict


def stale_modules(modules: Iterable[types.ModuleType | str] | None = None) -> list[str]:
    """One line per stale local module among `modules` (default: every module loaded), naming
    the module and why (see `module_is_stale`).

    >>> import json
    >>> stale_modules([json, "no.such.module"])
    []
    """
    if modules is None:
        modules = list(sys.modules.values())
    found: list[str] = []
    for mod in modules:
        if isinstance(mod, types.ModuleType | str):
            reason = module_is_stale(mod)
            if reason is not None:
                found.append(reason)
    return found


def _stale_reason(
    mod: types.ModuleType, path: str, disk: _DiskCode, recorded: types.CodeType | None
) -> str | None:
    name = mod.__name__
    if disk.code is None:
        return f"{name}: {path} no longer compiles ({disk.error}), edited since it was imported"
    if recorded is not None:
        changed = f"{name}: {path} was edited since it was imported"
        return None if _shape(recorded) == disk.shape else changed
    since = "edited since it was imported"
    namespace = vars(mod)
    for fn in _own_functions(mod, path):
        code = fn.__code__
        if _shape(code) not in disk.functions.get(code.co_qualname, ()):
            return f"{name}: {code.co_qualname} differs from {path} ({since})"
    for top in disk.top_names:
        if top not in namespace:
            return f"{name}: {top} is in {path} but not loaded ({since})"
    for const, value in disk.constants.items():
        try:
            same = const in namespace and hash_value(namespace[const]) == hash_value(value)
        except TypeError:
            same = False
        if not same:
            return f"{name}: {const} differs from {path} ({since})"
    return None


def _own_functions(mod: types.ModuleType, path: str) -> Iterator[types.FunctionType]:
    """The functions and methods a module defines (compiled from its file), unwrapped."""
    seen: set[int] = set()

    def functions(obj: Any, depth: int) -> Iterator[types.FunctionType]:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, staticmethod | classmethod):
            obj = obj.__func__
        elif isinstance(obj, property):
            for part in (obj.fget, obj.fset, obj.fdel):
                if part is not None:
                    yield from functions(part, depth)
            return
        elif isinstance(obj, functools.cached_property):
            obj = obj.func
        if isinstance(obj, type):
            if depth < 3 and obj.__module__ == mod.__name__:
                for attr in list(vars(obj).values()):
                    yield from functions(attr, depth + 1)
            return
        with contextlib.suppress(ValueError):  # a __wrapped__ cycle
            obj = inspect.unwrap(obj) if callable(obj) else obj
        if isinstance(obj, types.FunctionType) and obj.__code__.co_filename == path:
            yield obj

    for value in list(vars(mod).values()):
        yield from functions(value, 0)


_recorded_digests: dict[str, tuple[types.CodeType, str]] = {}


def local_module_digest(module: types.ModuleType) -> str:
    """A digest of a module's code as loaded: the module code recorded at import (after
    `track_imports`), else its file compiled when that matches the loaded functions, else the
    loaded functions' code. Equal across processes for equal code.

    >>> import json
    >>> local_module_digest(json) == local_module_digest(json)
    True
    """
    path = getattr(module, "__file__", None)
    if not isinstance(path, str) or not path.endswith(".py"):
        return "name:" + module.__name__
    recorded = _exec_codes.get(path)
    if recorded is not None:
        found = _recorded_digests.get(path)
        if found is None or found[0] is not recorded:
            found = _recorded_digests[path] = (recorded, code_digest(recorded))
        return "code:" + found[1]
    if module_is_stale(module) is None:
        return "code:" + file_digest(path)
    h = ContentHasher()
    h.update(
        sorted((fn.__qualname__, code_digest(fn.__code__)) for fn in _own_functions(module, path))
    )
    return "loaded:" + h.hexdigest()
