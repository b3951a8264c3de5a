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
- bound methods: their function and the object they are bound to.

`tore_nb.keys.hash_value` uses these fingerprints for every function, class, method or module
it meets inside a value (this module registers them at import), with a guard against cycles
(a value holding the function that reads it).

Fingerprints read the source from disk, so they describe the running code only while local
modules are not edited without a reload: `module_is_stale` / `stale_modules` tell (more exactly
after `track_imports`, which records each local module's code as it is imported).

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
import importlib.machinery
import importlib.util
import inspect
import itertools
import os
import re
import site
import sys
import sysconfig
import textwrap
import threading
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .keys import CodeHooks, ContentHasher, hash_value, set_code_hooks

__all__ = [
    "FINGERPRINT_VERSION",
    "code_digest",
    "dependency_token",
    "find_origin",
    "fingerprint",
    "is_local_module",
    "library_dirs",
    "is_user_object",
    "local_module_digest",
    "module_is_stale",
    "module_version",
    "normalized_source_digest",
    "GlobalEffects",
    "global_effects",
    "stale_modules",
    "track_imports",
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
        result = bool(path) and _is_local_path(str(path))
    _local_cache[name] = result
    return result


def _is_local_path(path: str) -> bool:
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


# an `import` in a function body: (level, module name as written, attribute chains read from
# the module it binds, whether the module itself is used as a value)
_Import = tuple[int, str, tuple[tuple[str, ...], ...], bool]


class _CodeInfo:
    """What is memoised per code object: its own digest and the globals it reads."""

    __slots__ = ("bare", "chains", "digest", "globals", "imports", "mutated", "state")

    def __init__(self, digest: str, reads: _Reads, mutated: frozenset[str]) -> None:
        self.digest = digest
        self.globals = reads.names
        self.chains = reads.chains  # global name -> attribute chains read from it (for modules)
        self.bare = reads.bare  # globals used as a value, not only through attributes
        self.imports = reads.imports
        self.state = reads.state  # globals and closure variables the function assigns
        # ... and those it calls a mutator on or writes an item or attribute of: state too,
        # unless they hold a module or a class (`utils.update(x)` and `Vec.add(a, b)` call code)
        self.mutated = reads.mutated | mutated

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
_FAST_LOADS = frozenset({"LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_FAST_BORROW"})
_NAME_STORES = frozenset({"STORE_FAST", "STORE_NAME", "STORE_GLOBAL", "STORE_DEREF"})


class _Reads:
    """What a code object reads, from its bytecode (see `_global_reads`)."""

    __slots__ = ("bare", "chains", "imports", "mutated", "names", "state")

    def __init__(
        self,
        names: tuple[str, ...],
        chains: _Chains,
        bare: frozenset[str],
        imports: tuple[_Import, ...],
        state: frozenset[str],
        mutated: frozenset[str],
    ) -> None:
        self.names, self.chains, self.bare, self.imports = names, chains, bare, imports
        self.state, self.mutated = state, mutated


def _global_reads(code: types.CodeType) -> _Reads:
    names: set[str] = set()
    # attribute chains and bare uses, of globals and closure variables ("g") and of locals
    # ("l"): a local may hold a module imported in the function
    chains: dict[tuple[str, str], set[tuple[str, ...]]] = {}
    bare: set[tuple[str, str]] = set()
    state: set[str] = set()
    mutated: set[str] = set()
    # name a module is bound to by an `import` in the body -> (level, module, attribute prefix)
    bindings: list[tuple[tuple[str, str], int, str, tuple[str, ...]]] = []

    def flush(chain: list[str]) -> None:
        if len(chain) > 2:
            chains.setdefault((chain[0], chain[1]), set()).add(tuple(chain[2:]))
            if chain[0] == "g" and chain[2] in _MUTATORS:
                mutated.add(chain[1])
        elif chain:
            bare.add((chain[0], chain[1]))

    for sub in _iter_codes(code):
        chain: list[str] = []
        consts: list[Any] = [None, None]  # the last two constants: an import's level, fromlist
        stack: list[tuple[int, str, tuple[str, ...]]] = []  # modules an import put on the stack
        for ins in dis.get_instructions(sub):
            op = ins.opname
            if op in ("CACHE", "EXTENDED_ARG"):
                continue
            name = ins.argval if isinstance(ins.argval, str) else None
            if name is not None and op in _STORE_OPS:
                state.add(name)
            _follow_import(ins, consts, stack, bindings)
            if name is not None and (op in _GLOBAL_OPS or op in _DEREF_OPS or op in _FAST_LOADS):
                flush(chain)
                if op in _GLOBAL_OPS:
                    names.add(name)
                chain = ["l" if op in _FAST_LOADS else "g", name]
            elif chain and name is not None and op in _ATTR_OPS:
                chain.append(name)
            else:
                flush(chain)
                chain = []
        flush(chain)
    imports: dict[tuple[int, str], tuple[set[tuple[str, ...]], bool]] = {}
    for var, level, module, prefix in bindings:
        read = chains.get(var, set())
        found, whole = imports.get((level, module), (set(), False))
        found.update(prefix + c for c in read)
        if prefix:
            found.add(prefix)  # `from m import f`: m.f counts, used bare or not
        imports[(level, module)] = (found, whole or (not prefix and var in bare))
    return _Reads(
        tuple(sorted(names)),
        {k[1]: tuple(sorted(v)) for k, v in sorted(chains.items()) if k[0] == "g"},
        frozenset(n for kind, n in bare if kind == "g"),
        tuple((lv, m, tuple(sorted(c)), w) for (lv, m), (c, w) in sorted(imports.items())),
        frozenset(state),
        frozenset(mutated),
    )


def _follow_import(
    ins: dis.Instruction,
    consts: list[Any],
    stack: list[tuple[int, str, tuple[str, ...]]],
    bindings: list[tuple[tuple[str, str], int, str, tuple[str, ...]]],
) -> None:
    """Track which names `import` statements bind to which modules, by a small model of the
    stack: IMPORT_NAME pushes a module (the top package for `import a.b`), IMPORT_FROM pushes
    an attribute of it, a store binds the top; `import a.b.c as d` shuffles with SWAP/POP_TOP."""
    op = ins.opname
    if op in ("LOAD_CONST", "LOAD_SMALL_INT"):
        consts[:] = [consts[1], ins.argval]
        return
    if op == "IMPORT_NAME" and isinstance(ins.argval, str):
        level = consts[0] if isinstance(consts[0], int) else 0
        # without a fromlist, `import a.b` binds the top package `a`
        module = ins.argval if consts[1] is not None or level else ins.argval.partition(".")[0]
        stack.append((level, module, ()))
    elif op == "IMPORT_FROM" and stack and isinstance(ins.argval, str):
        level, module, prefix = stack[-1]
        stack.append((level, module, (*prefix, ins.argval)))
    elif op in _NAME_STORES and stack and isinstance(ins.argval, str):
        level, module, prefix = stack.pop()
        kind = "l" if op == "STORE_FAST" else "g"
        bindings.append(((kind, ins.argval), level, module, prefix))
    elif op == "SWAP" and len(stack) >= 2 and ins.arg == 2:
        stack[-1], stack[-2] = stack[-2], stack[-1]
    elif op == "POP_TOP" and stack:
        stack.pop()
    elif stack:
        stack.clear()  # anything else: the import's result went elsewhere
    consts[:] = [None, None]


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
    return _CodeInfo(digest, _global_reads(code), stored)


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
            if _is_user_class(obj):
                for v in vars(obj).values():
                    if isinstance(v, staticmethod | classmethod):
                        todo.append(v.__func__)
                    elif _is_code_like(v):
                        todo.append(v)
        elif isinstance(obj, types.FunctionType):
            if obj.__globals__ is not namespace and not is_user_object(obj):
                continue
            wrapped = getattr(obj, "__wrapped__", None)
            if wrapped is not None:
                todo.append(wrapped)
            info = _info(obj)
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
                elif _is_code_like(value):
                    todo.append(value)
        elif is_user_object(type(obj)) and not isinstance(obj, types.ModuleType):
            todo.append(type(obj))  # a callable object or a model: its methods run
    return GlobalEffects(tuple(found), uncacheable=indirect)


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
                h.update(("unhashable", _qualname(type(obj))))
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

    def imported(self, fn: types.FunctionType, imp: _Import) -> None:
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
        if origin is not None and _is_local_path(origin) and origin.endswith(".py"):
            self.h.update(("unloaded-module", name, _file_digest(origin)))
        else:
            self.h.update(("module", name, module_version(name)))

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
        active = _active.ids
        if id(obj) in self.seen or id(obj) in active:
            # seen in this walk, or being walked further up: a value that holds the function
            # it is read by, hashed by hash_value, calls back into a walker of its own
            h.update(("cycle", _qualname(obj)))
            return
        self.seen.add(id(obj))
        active.add(id(obj))
        try:
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


def _is_user_class(cls: type) -> bool:
    return is_user_object(cls)


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


def _qualname(obj: Any) -> str:
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    return str(name) if name is not None else type(obj).__qualname__


# -- local modules: the code as loaded, and whether the file on disk still says the same ---------
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
        if not _is_local_path(path) or not os.path.isfile(path):
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
        for sub in _iter_codes(self.code):
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
    _feed_code(h, code)
    h.update([sub.co_firstlineno for sub in _iter_codes(code)])
    return h.hexdigest()


def _file_digest(path: str) -> str:
    """The code of a source file (`code_digest` of its compile), memoised by file stat."""
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
        return "code:" + _file_digest(path)
    h = ContentHasher()
    h.update(
        sorted((fn.__qualname__, code_digest(fn.__code__)) for fn in _own_functions(module, path))
    )
    return "loaded:" + h.hexdigest()


set_code_hooks(CodeHooks(digest=_code_token, is_user=_is_user_class))
