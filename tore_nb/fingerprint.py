"""Code fingerprints: a digest of what a function does, including the user helpers it calls.

A function's own part is its source normalised through `ast` (comments, blank lines and
formatting do not count), or its bytecode when no source can be found (lambdas, `exec`). The
digest then folds in, by name, every global the code reads:

- user functions and classes (defined in the notebook or in a local module, i.e. not in the
  standard library nor in site-packages): their own fingerprints, recursively;
- library functions, classes and modules: their qualified name and the package version;
- modules that are local: the fingerprints of the attributes the code reads from them;
- any other value (a constant, a lookup table): its content digest (`tore_nb.keys.hash_value`).
  A global that cannot be content-hashed counts by its type only (and, for a user type, its
  class's fingerprint); a global or closure variable the function itself changes (assigns with
  `global`/`nonlocal`, writes an item or attribute of, `seen[x] = True`, `n[0] += 1`,
  `del memo[k]`, `log.last = x`, or calls `append`, `update`, `add`... on, unless it is a
  module or a class) is state, not an input, and counts by name only;
- plain containers (lists, tuples, dicts, sets) that hold functions, classes, modules or user
  objects: item by item, so a helper reached through a dispatch table counts by its code;
- bound methods: their function and the object they are bound to.

The own part is memoised per code object, so a repeated call costs a walk over the globals.
Digests are equal across processes and `PYTHONHASHSEED` values.

>>> def helper(x):
...     return x + 1
>>> def f(x):
...     return helper(x) * 2  # a comment does not count
>>> len(fingerprint(f)) == 32 and fingerprint(f) == fingerprint(f)
True
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import dis
import functools
import inspect
import itertools
import os
import site
import sys
import sysconfig
import textwrap
import threading
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .keys import ContentHasher, hash_value

__all__ = [
    "FINGERPRINT_VERSION",
    "code_digest",
    "dependency_token",
    "fingerprint",
    "is_local_module",
    "is_user_object",
    "module_version",
    "normalized_source_digest",
    "tree_digest",
]

FINGERPRINT_VERSION = 1
_BUILTINS = frozenset(dir(builtins))
_GLOBAL_OPS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "STORE_GLOBAL", "DELETE_GLOBAL"})
_STORE_OPS = frozenset({"STORE_GLOBAL", "DELETE_GLOBAL", "STORE_DEREF", "DELETE_DEREF"})
_DEREF_OPS = frozenset({"LOAD_DEREF", "LOAD_CLASSDEREF", "STORE_DEREF", "DELETE_DEREF"})
_ATTR_OPS = frozenset({"LOAD_ATTR", "LOAD_METHOD"})
# a subscript key loaded in one instruction (`seen[x]`, `n[0]`, `memo[KEY]`)
_KEY_LOADS = frozenset(
    {"LOAD_CONST", "LOAD_SMALL_INT", "LOAD_FAST", "LOAD_FAST_BORROW", "LOAD_GLOBAL", "LOAD_DEREF"}
)
# calling one of these on a global or closure variable marks it as state the function keeps
# (a call log, a counter), not an input: it is left out of the fingerprint
_MUTATORS = frozenset(
    {
        "append",
        "extend",
        "insert",
        "add",
        "update",
        "setdefault",
        "pop",
        "popitem",
        "remove",
        "discard",
        "clear",
        "appendleft",
        "extendleft",
        "put",
        "put_nowait",
        "write",
        "writelines",
    }
)
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
# modules whose code is ours or a library's: counted by name and version, never walked
_LIBRARY_ROOTS = frozenset({"tore_nb", "IPython", "ipykernel", "traitlets", "ipywidgets"})


# -- what is "user code" ---------------------------------------------------------------------------
@functools.cache
def _library_dirs() -> tuple[str, ...]:
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
        path = getattr(mod, "__file__", None) if mod is not None else None
        if not path:
            result = False  # builtin, frozen or namespace package: not something we can read
        else:
            real = os.path.realpath(path)
            result = not real.startswith(_library_dirs()) and "site-packages" not in real
    _local_cache[name] = result
    return result


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


# -- the own part of a function: normalised source, else bytecode ---------------------------------
def normalized_source_digest(source: str) -> str:
    """Digest of Python source through `ast`: comments, blank lines and layout do not count.

    >>> normalized_source_digest("x = 1  # one") == normalized_source_digest("x=1\\n\\n")
    True
    """
    return tree_digest(ast.parse(textwrap.dedent(source)))


def tree_digest(tree: ast.AST) -> str:
    """Digest of a parsed tree, without its positions: `normalized_source_digest` once parsed.

    >>> tree_digest(ast.parse("x = 1")) == normalized_source_digest("x = 1")
    True
    """
    return hash_value(ast.dump(tree, annotate_fields=False, include_attributes=False))


def code_digest(code: types.CodeType) -> str:
    """Digest of a code object's bytecode, constants and names (line numbers excluded)."""
    h = ContentHasher()
    _feed_code(h, code)
    return h.hexdigest()


def _feed_code(h: ContentHasher, code: types.CodeType) -> None:
    h.update(
        (
            code.co_name,
            code.co_argcount,
            code.co_posonlyargcount,
            code.co_kwonlyargcount,
            code.co_flags,
            code.co_code,
            code.co_names,
            code.co_varnames,
            code.co_freevars,
            code.co_cellvars,
        )
    )
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _feed_code(h, const)
        else:
            try:
                h.update(const)
            except TypeError:
                h.update(repr(type(const)))


class _CodeInfo:
    """What is memoised per code object: its own digest and the globals it reads."""

    __slots__ = ("chains", "digest", "globals", "mutated", "state")

    def __init__(
        self,
        digest: str,
        names: tuple[str, ...],
        chains: dict[str, tuple[tuple[str, ...], ...]],
        state: frozenset[str],
        mutated: frozenset[str],
    ) -> None:
        self.digest = digest
        self.globals = names
        self.chains = chains  # global name -> attribute chains read from it (for modules)
        self.state = state  # globals and closure variables the function assigns
        # ... and those it calls a mutator on or writes an item or attribute of: state too,
        # unless they hold a module or a class (`utils.update(x)` and `Vec.add(a, b)` call code)
        self.mutated = mutated

    def is_state(self, name: str, value: Any) -> bool:
        if name in self.state:
            return True
        return name in self.mutated and not isinstance(value, types.ModuleType | type)


_code_info: dict[types.CodeType, _CodeInfo] = {}
_code_lock = threading.Lock()


def _iter_codes(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _iter_codes(const)


_Chains = dict[str, tuple[tuple[str, ...], ...]]


def _global_reads(
    code: types.CodeType,
) -> tuple[tuple[str, ...], _Chains, frozenset[str], frozenset[str]]:
    names: set[str] = set()
    chains: dict[str, set[tuple[str, ...]]] = {}
    state: set[str] = set()
    mutated: set[str] = set()

    def flush(chain: list[str]) -> None:
        if len(chain) > 1:
            chains.setdefault(chain[0], set()).add(tuple(chain[1:]))
            if chain[1] in _MUTATORS:
                mutated.add(chain[0])

    for sub in _iter_codes(code):
        chain: list[str] = []
        for ins in dis.get_instructions(sub):
            name = ins.argval if isinstance(ins.argval, str) else None
            if name is not None and ins.opname in _STORE_OPS:
                state.add(name)
            if name is not None and (ins.opname in _GLOBAL_OPS or ins.opname in _DEREF_OPS):
                flush(chain)
                if ins.opname in _GLOBAL_OPS:
                    names.add(name)
                chain = [name]
            elif chain and name is not None and ins.opname in _ATTR_OPS:
                chain.append(name)
            elif ins.opname not in ("CACHE", "EXTENDED_ARG"):
                flush(chain)
                chain = []
        flush(chain)
    return (
        tuple(sorted(names)),
        {k: tuple(sorted(v)) for k, v in sorted(chains.items())},
        frozenset(state),
        frozenset(mutated),
    )


def _own_source(fn: types.FunctionType) -> str | None:
    if fn.__name__ == "<lambda>":
        return None  # getsource gives the whole line, which may hold other lambdas
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError, IndentationError):
        return None


def _info(fn: types.FunctionType) -> _CodeInfo:
    code = fn.__code__
    info = _code_info.get(code)
    if info is not None:
        return info
    # one thread at a time: concurrent ast.parse can fail on CPython 3.11 < 3.11.8 (gh-106905)
    with _code_lock:
        info = _code_info.get(code)
        if info is None:
            info = _make_info(fn)
            if len(_code_info) > 20_000:
                _code_info.clear()
            _code_info[code] = info
    return info


def _make_info(fn: types.FunctionType) -> _CodeInfo:
    code = fn.__code__
    source = _own_source(fn)
    digest = None
    stored: frozenset[str] | None = None
    if source is not None:
        with contextlib.suppress(SyntaxError):
            tree = ast.parse(textwrap.dedent(source))
            digest = "src:" + tree_digest(tree)
            stored = _stored_into(tree)
    if digest is None or stored is None:
        digest = "code:" + code_digest(code)
        stored = _stored_into_code(code)
    names, chains, state, mutated = _global_reads(code)
    return _CodeInfo(digest, names, chains, state, mutated | stored)


def _stored_into(tree: ast.AST) -> frozenset[str]:
    """Names whose items or attributes the code assigns or deletes (`seen[x] = True`,
    `n[0] += 1`, `del memo[k]`, `box.value = v`): read from the source, since the bytecode does
    not say which value a STORE_SUBSCR writes into."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript | ast.Attribute) and not isinstance(node.ctx, ast.Load):
            base: ast.expr = node
            while isinstance(base, ast.Subscript | ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name):
                names.add(base.id)
    return frozenset(names)


def _stored_into_code(code: types.CodeType) -> frozenset[str]:
    """`_stored_into` for code without source, by the bytecode patterns of the usual cases: a
    global (or closure variable, and its attributes) then one load of the key then
    STORE_SUBSCR, DELETE_SUBSCR or the start of `+=` (COPY, COPY, BINARY_SUBSCR), or directly
    STORE_ATTR / DELETE_ATTR."""
    names: set[str] = set()
    for sub in _iter_codes(code):
        ops = [i for i in dis.get_instructions(sub) if i.opname not in ("CACHE", "EXTENDED_ARG")]
        for at, ins in enumerate(ops):
            named = ins.opname in _GLOBAL_OPS or ins.opname in _DEREF_OPS
            if not named or not ins.opname.startswith("LOAD") or not isinstance(ins.argval, str):
                continue
            end = at + 1
            while end < len(ops) and ops[end].opname in _ATTR_OPS:
                end += 1
            after = [i.opname for i in ops[end : end + 4]]
            if after[:1] in (["STORE_ATTR"], ["DELETE_ATTR"]) or (
                after[:1]
                and after[0] in _KEY_LOADS
                and (
                    after[1:2] in (["STORE_SUBSCR"], ["DELETE_SUBSCR"])
                    or after[1:4] == ["COPY", "COPY", "BINARY_SUBSCR"]
                )
            ):
                names.add(ins.argval)
    return frozenset(names)


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
            self.module(obj, ())
            return
        if _is_code_like(obj):
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
            h.update(("unhashable", _qualname(cls)))
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
                # by key digest, like hash_value; equal digests keep the dict's insertion order
                for key, item in sorted(obj.items(), key=lambda kv: _sort_digest(kv[0])):
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
                h.update(("unhashable", _qualname(type(obj))))
            return
        for name, attr in sorted(attrs.items(), key=lambda kv: str(kv[0])):
            if name != "__wrapped__":
                h.update(str(name))
                self.value(attr)

    def bound_to(self, owner: Any) -> None:
        """The object a method is bound to: `{1: "a"}.get` and `model.predict` depend on it."""
        if owner is not None and not isinstance(owner, types.ModuleType):
            self.h.update("self")
            self.value(owner)

    def module(self, mod: types.ModuleType, chains: tuple[tuple[str, ...], ...]) -> None:
        name = mod.__name__
        if not is_local_module(name):
            self.h.update(("module", name, module_version(name)))
            return
        self.h.update(("local-module", name, len(chains)))
        namespace = vars(mod)
        for chain in chains:
            attr, rest = chain[0], chain[1:]
            self.h.update(attr)
            if attr not in namespace:
                self.h.update("missing")
                continue
            obj = namespace[attr]
            if isinstance(obj, types.ModuleType):
                self.module(obj, (rest,) if rest else ())
            else:
                self.value(obj)

    def callable(self, obj: Any) -> None:
        h = self.h
        if hasattr(obj, "__tore_fingerprint__") and not isinstance(obj, type):
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
        if not is_user_object(obj):
            mod = getattr(obj, "__module__", None) or type(obj).__module__
            h.update(("library", str(mod), _qualname(obj), module_version(str(mod))))
            if isinstance(obj, types.BuiltinMethodType | types.MethodWrapperType):
                self.bound_to(obj.__self__)
            return
        if id(obj) in self.seen:
            h.update(("cycle", _qualname(obj)))
            return
        self.seen.add(id(obj))
        if isinstance(obj, type):
            self.cls(obj)
            return
        wrapped = getattr(obj, "__wrapped__", None)
        if isinstance(obj, types.FunctionType):
            self.function(obj)
        else:
            # a callable object (a wrapper, a model): its class's code (`__call__`) and state
            h.update(("instance", _qualname(type(obj))))
            self.callable(type(obj))
            self.state(obj)
        if wrapped is not None:
            self.callable(wrapped)

    def function(self, fn: types.FunctionType) -> None:
        h = self.h
        info = _info(fn)
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
                    self.module(obj, info.chains.get(name, ()))
                else:
                    self.value(obj)
            elif name in info.state or name in info.mutated:
                h.update("state")
            elif name in _BUILTINS:
                h.update("builtin")
            else:
                h.update("undefined")

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


def _is_code_like(obj: Any) -> bool:
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
        elif isinstance(item, types.ModuleType) or _is_code_like(item) or is_user_object(kind):
            return True
    return False


def _sort_digest(key: Any) -> str:
    try:
        return hash_value(key)
    except TypeError:  # hash_value raises nothing else
        return ""


def _qualname(obj: Any) -> str:
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    return str(name) if name is not None else type(obj).__qualname__
