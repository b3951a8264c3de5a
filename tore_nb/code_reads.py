"""What a function's code reads: its own digest, and the globals, modules and state it uses.

The own part of a function is its source normalised through `ast` (comments, blank lines and
layout do not count), or its bytecode when no source can be found (lambdas, `exec`). Its
bytecode says which globals it reads, with the attribute chains read from each (`np.linalg.norm`,
`utils.compute`), which modules its body imports, and which globals or closure variables it
keeps as state: assigns (`global n`), changes in place (`seen[x] = True`, `log.append(x)`).
`tore_nb.fingerprint` walks what they hold.

>>> def f(x):
...     return helper(x) * 2  # a comment does not count
>>> code_info(f).globals
('helper',)
"""

from __future__ import annotations

import ast
import contextlib
import dis
import inspect
import textwrap
import threading
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .keys import code_digest, hash_value

__all__ = [
    "MUTATORS",
    "BodyImport",
    "CodeInfo",
    "code_info",
    "iter_codes",
    "normalized_source_digest",
    "tree_digest",
]

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
MUTATORS = frozenset(
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


# an `import` in a function body: (level, module name as written, attribute chains read from
# the module it binds, whether the module itself is used as a value)
BodyImport = tuple[int, str, tuple[tuple[str, ...], ...], bool]


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """What a function's code is and what it reads, memoised per code object (`code_info`).

    `digest` is its own part: "src:" and its source through `ast`, or "code:" and its bytecode.
    `globals` are the globals it reads, `chains` the attribute chains it reads from each (for
    modules), `bare` those used as a value, not only through attributes, `imports` the modules
    its body imports. `state` are the globals and closure variables it assigns, `mutated`
    those it calls a mutator on (`MUTATORS`) or writes an item or attribute of.
    """

    digest: str
    globals: tuple[str, ...]
    chains: Mapping[str, tuple[tuple[str, ...], ...]]
    bare: frozenset[str]
    imports: tuple[BodyImport, ...]
    state: frozenset[str]
    mutated: frozenset[str]

    def is_state(self, name: str, value: Any) -> bool:
        """Whether a global or closure variable holding `value` is state the function keeps,
        not an input: assigned, or changed in place unless it holds a module or a class
        (`utils.update(x)` and `Vec.add(a, b)` call code).

        >>> info = code_info(lambda: seen.add(1))
        >>> info.is_state("seen", set()), info.is_state("seen", set), info.is_state("x", 1)
        (True, False, False)
        """
        if name in self.state:
            return True
        return name in self.mutated and not isinstance(value, types.ModuleType | type)


_code_info: dict[types.CodeType, CodeInfo] = {}
_code_lock = threading.Lock()


def iter_codes(code: types.CodeType) -> Iterator[types.CodeType]:
    """A code object and the code objects nested in it (functions, classes, comprehensions).

    >>> [c.co_name for c in iter_codes(compile("def f():\\n    pass", "m", "exec"))]
    ['<module>', 'f']
    """
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from iter_codes(const)


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
        imports: tuple[BodyImport, ...],
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
            if chain[0] == "g" and chain[2] in MUTATORS:
                mutated.add(chain[1])
        elif chain:
            bare.add((chain[0], chain[1]))

    for sub in iter_codes(code):
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


def code_info(fn: types.FunctionType) -> CodeInfo:
    """What a function's code is and reads (see `CodeInfo`), memoised per code object.

    >>> def f(x):
    ...     return helper(x) + LIMIT
    >>> info = code_info(f)
    >>> info.globals, info.digest.startswith("src:")
    (('LIMIT', 'helper'), True)
    """
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


def _make_info(fn: types.FunctionType) -> CodeInfo:
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
    reads = _global_reads(code)
    return CodeInfo(
        digest,
        globals=reads.names,
        chains=reads.chains,
        bare=reads.bare,
        imports=reads.imports,
        state=reads.state,
        mutated=reads.mutated | stored,
    )


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
    for sub in iter_codes(code):
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
