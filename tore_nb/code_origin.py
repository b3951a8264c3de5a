"""Where code comes from: user code (the notebook, local modules) or a library's.

User code counts by what it does (its fingerprint, `tore_nb.fingerprint`); a library's code by
its name and version: the standard library, site-packages and tore_nb itself are libraries.
Nothing here imports a module or reads more than a file's location.

>>> is_local_module("json"), is_user_object(len), module_version("json").startswith("py3")
(False, False, True)
"""

from __future__ import annotations

import contextlib
import functools
import importlib.machinery
import os
import site
import sys
import sysconfig
import types
from collections.abc import Sequence
from typing import Any

__all__ = [
    "find_origin",
    "is_code_like",
    "is_local_module",
    "is_local_path",
    "is_user_object",
    "library_dirs",
    "module_version",
]

# modules whose code is ours or a library's: counted by name and version, never walked
_LIBRARY_ROOTS = frozenset({"tore_nb", "IPython", "ipykernel", "traitlets", "ipywidgets"})


@functools.cache
def library_dirs() -> tuple[str, ...]:
    """The folders of the standard library and site-packages (real paths, ending in a
    separator): code under them is a library's, counted by name and version."""
    dirs: set[str] = set()
    for name in ("stdlib", "platstdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(name)
        if path:
            dirs.add(os.path.realpath(path))
    with contextlib.suppress(AttributeError):  # virtualenv's old site module has none
        dirs.update(os.path.realpath(p) for p in site.getsitepackages())
    user_site = site.getusersitepackages() if hasattr(site, "getusersitepackages") else None
    if isinstance(user_site, str):
        dirs.add(os.path.realpath(user_site))
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix}:
        dirs.add(os.path.realpath(os.path.join(prefix, "lib")))
    return tuple(sorted(d.rstrip(os.sep) + os.sep for d in dirs))


_local_cache: dict[str, bool] = {}


def is_local_module(name: str | None) -> bool:
    """Whether a module is user code: the notebook (`__main__`) or a file outside the standard
    library and site-packages.

    >>> is_local_module("json"), is_local_module("__main__")
    (False, True)
    """
    if not name:
        return False
    cached = _local_cache.get(name)
    if cached is not None:
        return cached
    root = name.partition(".")[0]
    if name == "__main__":
        result = True
    elif root in _LIBRARY_ROOTS or root in sys.stdlib_module_names:
        result = False
    else:
        mod = sys.modules.get(name)
        if mod is None:
            return False  # not imported (yet): not remembered, it may be local once it is
        path = getattr(mod, "__file__", None)
        # no file: builtin, frozen or namespace package, not something we can read
        result = bool(path) and is_local_path(str(path))
    _local_cache[name] = result
    return result


def is_local_path(path: str) -> bool:
    """Whether a file is outside the standard library and site-packages (links resolved).

    >>> is_local_path(os.__file__)
    False
    """
    real = os.path.realpath(path)
    return not real.startswith(library_dirs()) and "site-packages" not in real


def find_origin(name: str) -> str | None:
    """The file a module would be imported from, found without importing anything.

    >>> find_origin("no.such.module") is None
    True
    """
    search: Sequence[str] | None = None
    spec = None
    parts = name.split(".")
    for i in range(len(parts)):
        sub = ".".join(parts[: i + 1])
        mod = sys.modules.get(sub)
        try:
            spec = mod.__spec__ if mod is not None else None
            if spec is None:
                spec = importlib.machinery.PathFinder.find_spec(sub, search)
        except (ImportError, ValueError, AttributeError):
            return None
        if spec is None:
            return None
        search = spec.submodule_search_locations
        if i < len(parts) - 1 and search is None:
            return None  # a plain module has no submodules
    origin = spec.origin if spec is not None else None
    return origin if isinstance(origin, str) and os.path.isfile(origin) else None


def is_user_object(obj: Any) -> bool:
    """Whether a function or class was defined in user code (see `is_local_module`); code made
    by `exec` in a namespace that is no module counts as user code too."""
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str) or module not in sys.modules:
        return isinstance(obj, types.FunctionType | type)
    return is_local_module(module)


_versions: dict[str, str] = {}


def module_version(name: str) -> str:
    """The version of the distribution a module belongs to ('py3.11' for the standard library,
    '' when unknown).

    >>> import numpy
    >>> module_version("numpy.linalg") == numpy.__version__
    True
    """
    root = name.partition(".")[0]
    found = _versions.get(root)
    if found is not None:
        return found
    version = ""
    mod = sys.modules.get(root)
    attr = getattr(mod, "__version__", None)
    if root in sys.stdlib_module_names or root == "builtins":
        version = "py{}.{}".format(*sys.version_info[:2])
    elif isinstance(attr, str):
        version = attr
    else:
        try:
            from importlib import metadata

            version = metadata.version(root)
        except Exception:  # any failure means "unknown"
            version = ""
    _versions[root] = version
    return version


def is_code_like(obj: Any) -> bool:
    """Whether a value is code that a fingerprint walks: a function, class, method, partial,
    builtin, or a wrapper of one (`__wrapped__`, a `@cached` function).

    >>> is_code_like(len), is_code_like(print), is_code_like([len])
    (True, True, False)
    """
    return (
        isinstance(
            obj,
            types.FunctionType
            | types.BuiltinFunctionType
            | types.MethodType
            | type
            | functools.partial,
        )
        or hasattr(obj, "__tore_fingerprint__")
        or (callable(obj) and hasattr(obj, "__wrapped__"))
    )
