"""Code fingerprints: a digest of what a function does, including the user helpers it calls.

A function's own part is its source normalised through `ast` (comments, blank lines and
formatting do not count), or its bytecode when no source can be found (lambdas, `exec`). The
digest then folds in, by name, every global the code reads:

- user functions and classes (defined in the notebook or in a local module, i.e. not in the
  standard library nor in site-packages): their own fingerprints, recursively;
- library functions, classes and modules: their qualified name and the package version;
- modules that are local: the fingerprints of the attributes the code reads from them (all of
  the module's code as loaded when the code uses the module itself as a value);
- modules imported in the function's body (`import helpers`, `from helpers import f`): the
  same, as if they were globals; one not imported yet counts by its source file;
- any other value (a constant, a lookup table): its content digest (`tore_nb.keys.hash_value`).
  A global that cannot be content-hashed counts by its type only (and, for a user type, its
  class's fingerprint); a global or closure variable the function itself changes (assigns with
  `global`/`nonlocal`, writes an item or attribute of, `seen[x] = True`, `n[0] += 1`,
  `del memo[k]`, `log.last = x`, or calls `append`, `update`, `add`... on, unless it is a
  module or a class) is state, not an input, and counts by name only;
- plain containers (lists, tuples, dicts, sets) that hold functions, classes, modules or user
  objects: item by item (dicts in insertion order), so a helper reached through a dispatch
  table counts by its code;
- bound methods: their function and the object they are bound to; callable objects: their
  class's code (all of it: `__call__` calling `self.clean` runs `clean`) and their state.

This is the one code fingerprint: `@cached`, `%%tcache` cells and incremental stages all use
it. `tore_nb.keys.hash_value` uses it for every function, class, method or module it meets
inside a value (this module registers it at import, and `import tore_nb` imports this module),
with a guard against cycles (a value holding the function that reads it).

What a function's code reads comes from `tore_nb.code_reads` (memoised per code object, so a
repeated call costs a walk over the globals), what is user code from `tore_nb.code_origin`.
Fingerprints read the source from disk, so they describe the running code only while local
modules are not edited without a reload: `tore_nb.code_modules.module_is_stale` tells.
Digests are equal across processes and `PYTHONHASHSEED` values.

>>> def helper(x):
...     return x + 1
>>> def f(x):
...     return helper(x) * 2  # a comment does not count
>>> len(fingerprint(f)) == 32 and fingerprint(f) == fingerprint(f)
True
"""

from __future__ import annotations

import builtins
import functools
import importlib.util
import itertools
import sys
import threading
import types
from collections.abc import Callable, Sequence
from typing import Any

from .code_modules import file_digest, local_module_digest, track_imports
from .code_origin import (
    find_origin,
    is_code_like,
    is_local_module,
    is_local_path,
    is_user_object,
    module_version,
)
from .code_reads import BodyImport, code_info
from .keys import CodeHooks, ContentHasher, hash_value, qualname, set_code_hooks

# is_local_module and track_imports live in code_origin and code_modules; still importable here
__all__ = [
    "FINGERPRINT_VERSION",
    "dependency_token",
    "fingerprint",
    "is_local_module",
    "track_imports",
]

FINGERPRINT_VERSION = 2  # 2: names carry their module; callable objects of libraries their state
_BUILTINS = frozenset(dir(builtins))
_SKIP_CLASS_ATTRS = frozenset(
    {
        "__dict__",
        "__weakref__",
        "__module__",
        "__qualname__",
        "__doc__",
        "__annotations__",
        "__firstlineno__",
        "__static_attributes__",
        "__slots__",
    }
)
# plain containers are walked item by item when they hold code (a dispatch table); bounded so
# that a large data structure goes through hash_value in one piece
_CONTAINERS = (list, tuple, dict, set, frozenset)
_MAX_DEPTH = 3
_MAX_ITEMS = 1000
_PLAIN = frozenset({str, int, float, bool, type(None), bytes, complex})


class _Active(threading.local):
    """Per thread: the callables being walked, by any walker (see `_Walker.callable`)."""

    def __init__(self) -> None:
        self.ids: set[int] = set()


_active = _Active()


# -- the walk -------------------------------------------------------------------------------------
def fingerprint(fn: Callable[..., Any]) -> str:
    """The code fingerprint of a callable and of the user helpers it reaches (xxh3-128 hex).

    >>> fingerprint(len) == fingerprint(len)
    True
    """
    h = ContentHasher()
    h.update(("tore_nb.fingerprint", FINGERPRINT_VERSION))
    _Walker(h).callable(fn)
    return h.hexdigest()


def dependency_token(
    value: Any, strict: bool = True, *, attributes: Sequence[tuple[str, ...]] = ()
) -> str:
    """A deterministic digest of one input of a cell or function, by what the value is.

    Modules count by name and version, functions and classes by their code fingerprint, other
    values by content; a value of a user-defined class adds the class's fingerprint. With
    `strict`, a value that cannot be content-hashed raises TypeError; otherwise it counts by its
    type only. `attributes` are the attribute chains read from a module (`("compute",)` for
    `utils.compute`): a local module counts by what those attributes are, as in `fingerprint`.

    >>> import json
    >>> dependency_token(json) == dependency_token(json)
    True
    """
    h = ContentHasher()
    walker = _Walker(h)
    if isinstance(value, types.ModuleType):
        walker.module(value, tuple(sorted(set(attributes))))
    else:
        walker.value(value, strict=strict)
    return h.hexdigest()


class _Walker:
    __slots__ = ("depth", "h", "seen")

    def __init__(self, h: ContentHasher, seen: set[int] | None = None, depth: int = 0) -> None:
        self.h = h
        self.seen: set[int] = set() if seen is None else seen
        self.depth = depth  # how many plain containers deep the walk is

    def value(self, obj: Any, strict: bool = False) -> None:
        h = self.h
        if isinstance(obj, types.ModuleType):
            self.module(obj, (), whole=True)  # which of its attributes are used is not known
            return
        if is_code_like(obj):
            self.callable(obj)
            return
        if (
            type(obj) in _CONTAINERS
            and self.depth < _MAX_DEPTH
            and _holds_code(obj, _MAX_DEPTH - self.depth)
        ):
            self.container(obj, strict)
            return
        cls = type(obj)
        try:
            digest = hash_value(obj)
        except TypeError:  # hash_value raises nothing else
            if strict:
                raise
            h.update(("unhashable", qualname(cls)))
        else:
            h.update(("value", digest))
        if is_user_object(cls):
            self.callable(cls)  # its methods are code the value brings along, hashable or not

    def container(self, obj: Any, strict: bool) -> None:
        h = self.h
        h.update(("container", type(obj).__name__, len(obj)))
        self.depth += 1
        try:
            if isinstance(obj, dict):
                # in insertion order, like hash_value: code iterating the dict sees that order
                for key, item in obj.items():
                    self.value(key, strict)
                    self.value(item, strict)
            elif isinstance(obj, set | frozenset):
                # a set's order follows hash(), an id for functions: sort the items' digests
                h.update(sorted(self.token(item, strict) for item in obj))
            else:
                for item in obj:
                    self.value(item, strict)
        finally:
            self.depth -= 1

    def token(self, obj: Any, strict: bool) -> str:
        """The digest of one value walked on its own (for items whose order must not count)."""
        sub = _Walker(ContentHasher(), set(self.seen), self.depth)
        sub.value(obj, strict)
        return sub.h.hexdigest()

    def state(self, obj: Any) -> None:
        """The state of a callable object, attribute by attribute (functions among them count
        by their code); `__wrapped__` is walked by the caller."""
        h = self.h
        attrs = getattr(obj, "__dict__", None)
        if not isinstance(attrs, dict) or hasattr(type(obj), "__tore_hash__"):
            try:
                h.update(("value", hash_value(obj)))
            except TypeError:  # hash_value raises nothing else
                h.update(("unhashable", qualname(type(obj))))
            return
        for name, attr in attrs.items():  # in insertion order, like hash_value
            if name != "__wrapped__":
                h.update(str(name))
                self.value(attr)

    def bound_to(self, owner: Any) -> None:
        """The object a method is bound to: `{1: "a"}.get` and `model.predict` depend on it."""
        if owner is not None and not isinstance(owner, types.ModuleType):
            self.h.update("self")
            self.value(owner)

    def module(
        self, mod: types.ModuleType, chains: tuple[tuple[str, ...], ...], whole: bool = False
    ) -> None:
        """A module by the attributes read from it (`chains`); `whole` when the module itself is
        used as a value (passed on, `getattr(mod, name)`): a local one then counts by all of
        its code as loaded."""
        name = mod.__name__
        if not is_local_module(name):
            self.h.update(("module", name, module_version(name)))
            return
        self.h.update(("local-module", name, len(chains)))
        if whole:
            self.h.update(("whole", local_module_digest(mod)))
        namespace = vars(mod)
        for chain in chains:
            attr, rest = chain[0], chain[1:]
            self.h.update(attr)
            if attr in namespace:
                obj = namespace[attr]
            elif f"{name}.{attr}" in sys.modules:  # a submodule not bound as an attribute
                obj = sys.modules[f"{name}.{attr}"]
            else:
                self.h.update("missing")
                if find_origin(f"{name}.{attr}") is not None:
                    self.unloaded(f"{name}.{attr}")
                continue
            if isinstance(obj, types.ModuleType):
                # a module reached as a value (`pkg.sub` passed on) counts whole
                self.module(obj, (rest,) if rest else (), whole=not rest)
            else:
                self.value(obj)

    def imported(self, fn: types.FunctionType, imp: BodyImport) -> None:
        """A module imported in the function's body: what runs is that module's code."""
        level, written, chains, whole = imp
        self.h.update(("import", level, written))
        name = written
        if level:
            g = fn.__globals__
            package = g.get("__package__")
            if package is None and isinstance(g.get("__name__"), str):
                package = g["__name__"] if "__path__" in g else g["__name__"].rpartition(".")[0]
            try:
                name = importlib.util.resolve_name("." * level + written, package)
            except (ImportError, ValueError, TypeError):  # outside a package: it cannot run
                self.h.update("unresolved")
                return
        mod = sys.modules.get(name)
        if mod is not None:
            self.module(mod, chains, whole)
        else:
            self.unloaded(name)

    def unloaded(self, name: str) -> None:
        """A module not imported yet (the function has not run): found without importing it,
        a local one counts by its whole source file, a library by name and version."""
        origin = find_origin(name)
        if origin is not None and is_local_path(origin) and origin.endswith(".py"):
            self.h.update(("unloaded-module", name, file_digest(origin)))
        else:
            self.h.update(("module", name, module_version(name)))

    def callable(self, obj: Any) -> None:
        h = self.h
        custom = None if isinstance(obj, type) else getattr(obj, "__tore_fingerprint__", None)
        if isinstance(custom, str):  # the owner's word on what its code is
            h.update(("custom", custom))
            return
        if custom is not None:
            self.callable(obj.__wrapped__)  # a @cached function: what counts is its code
            return
        if isinstance(obj, functools.partial):
            h.update("partial")
            self.callable(obj.func)
            self.value(obj.args)
            self.value(obj.keywords)
            return
        if isinstance(obj, types.MethodType):
            h.update("method")
            self.callable(obj.__func__)
            self.bound_to(obj.__self__)
            return
        library = not is_user_object(obj)
        if library:
            mod = getattr(obj, "__module__", None) or type(obj).__module__
            h.update(("library", str(mod), qualname(obj), module_version(str(mod))))
            if isinstance(obj, types.BuiltinMethodType | types.MethodWrapperType):
                self.bound_to(obj.__self__)
                return
            if not _is_callable_object(obj):
                return
        active = _active.ids
        if id(obj) in self.seen or id(obj) in active:
            # seen in this walk, or being walked further up: a value that holds the function
            # it is read by, hashed by hash_value, calls back into a walker of its own
            h.update(("cycle", qualname(obj)))
            return
        self.seen.add(id(obj))
        active.add(id(obj))
        try:
            if library:
                # a library's code counts by its version, but a callable object of its is
                # configured by its state (np.poly1d's coefficients, a model's settings)
                self.state(obj)
                wrapped = getattr(obj, "__wrapped__", None)
                if wrapped is not None:
                    self.callable(wrapped)
            else:
                self._user_callable(obj)
        finally:
            active.discard(id(obj))

    def _user_callable(self, obj: Any) -> None:
        h = self.h
        if isinstance(obj, type):
            self.cls(obj)
            return
        wrapped = getattr(obj, "__wrapped__", None)
        if isinstance(obj, types.FunctionType):
            self.function(obj)
        else:
            # a callable object (a wrapper, a model): its class's code (`__call__`) and state
            h.update(("instance", qualname(type(obj))))
            self.callable(type(obj))
            self.state(obj)
        if wrapped is not None:
            self.callable(wrapped)

    def function(self, fn: types.FunctionType) -> None:
        h = self.h
        info = code_info(fn)
        h.update(("function", fn.__qualname__, info.digest))
        for default in fn.__defaults__ or ():
            self.value(default)
        for key, default in sorted((fn.__kwdefaults__ or {}).items()):
            h.update(key)
            self.value(default)
        for var, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=False):
            h.update(var)
            if var in info.state:
                h.update("state")
                continue
            try:
                content = cell.cell_contents
            except ValueError:  # an empty cell: the closure variable is not bound yet
                h.update("empty-cell")
                continue
            if info.is_state(var, content):
                h.update("state")
            elif isinstance(content, types.ModuleType):  # imported in the enclosing function
                self.module(content, info.chains.get(var, ()), var in info.bare)
            else:
                self.value(content)
        g = fn.__globals__
        for name in info.globals:
            h.update(name)
            if name in g:
                obj = g[name]
                if info.is_state(name, obj):
                    h.update("state")
                elif isinstance(obj, types.ModuleType):
                    self.module(obj, info.chains.get(name, ()), name in info.bare)
                else:
                    self.value(obj)
            elif name in info.state or name in info.mutated:
                h.update("state")
            elif name in _BUILTINS:
                h.update("builtin")
            else:
                h.update("undefined")
        for imp in info.imports:
            self.imported(fn, imp)

    def cls(self, cls: type) -> None:
        h = self.h
        h.update(("class", cls.__qualname__, len(cls.__bases__)))
        for base in cls.__bases__:
            self.callable(base)
        for name, attr in sorted(vars(cls).items()):
            if name in _SKIP_CLASS_ATTRS:
                continue
            code_like = isinstance(
                attr,
                types.FunctionType
                | staticmethod
                | classmethod
                | property
                | functools.cached_property,
            )
            if not code_like and name.startswith("__") and name.endswith("__"):
                continue  # machinery such as __dataclass_fields__ or _abc_impl
            h.update(name)
            if isinstance(attr, staticmethod | classmethod):
                self.callable(attr.__func__)
            elif isinstance(attr, property):
                for part in (attr.fget, attr.fset, attr.fdel):
                    if part is None:
                        h.update(None)
                    else:
                        self.callable(part)
            elif isinstance(attr, functools.cached_property):
                self.callable(attr.func)
            elif isinstance(attr, types.FunctionType):
                self.function(attr)
            else:
                self.value(attr)


def _code_token(obj: Any) -> str:
    """The digest `hash_value` gives a function, class, method or module met inside a value:
    its full fingerprint (or, for a module, its name and version, or its code as loaded)."""
    h = ContentHasher()
    walker = _Walker(h)
    if isinstance(obj, types.ModuleType):
        walker.module(obj, (), whole=True)
    else:
        walker.callable(obj)
    return h.hexdigest()


def _is_callable_object(obj: Any) -> bool:
    """An instance of a class with a `__call__` written in Python (not a function, a class, a
    builtin or a ufunc): what it does depends on its attributes."""
    call = getattr(type(obj), "__call__", None)  # noqa: B004 - the method, to see what it is
    return not isinstance(obj, type) and isinstance(call, types.FunctionType)


def _holds_code(obj: Any, depth: int) -> bool:
    """Whether a plain container holds functions, classes, modules or user objects, within
    `depth` levels of containers; a large one counts as data."""
    if len(obj) > _MAX_ITEMS:
        return False
    for item in itertools.chain(obj, obj.values()) if isinstance(obj, dict) else obj:
        kind = type(item)
        if kind in _PLAIN:
            continue
        if kind in _CONTAINERS:
            if depth > 1 and _holds_code(item, depth - 1):
                return True
        elif isinstance(item, types.ModuleType) or is_code_like(item) or is_user_object(kind):
            return True
    return False


set_code_hooks(CodeHooks(digest=_code_token, is_user=is_user_object))
