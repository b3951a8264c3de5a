"""Cell analysis: what a cell's code may read, from `ast` alone (pure, no namespace).

The key of a cell must be known before it runs, so `analyze_cell` reads its code: which names
it reads from the namespace before binding them (its candidate inputs), the modules it imports,
which names it binds by `import`, `def` or `class` (its definitions, run again on a hit), and
why it cannot be cached at all. What a cell actually changes is not guessed here: the runner
observes it (the namespace's difference, inputs whose content changed, files, hidden state).

The analysis errs towards inputs: a name bound only on some paths (in an `if`, a `try`, a
`match` case) does not hide a later read of it (a loop body is taken to run), and a function
of the cell reads its free names from the namespace when it may be called before the cell
binds them. `df.query("a > @cut")`, `df.eval("@w * a")` and `eval("x + 1")` with literal text
read `cut`, `w` and `x`.

IPython's history variables read explicitly (`_`, `__`, `_i`, `_5`...) are inputs by value.
The code `%%capture` runs is analysed as the cell's own, and `{x}` or `$x` in a shell command
(`!ls {x}`) reads x. A cell is `uncacheable` (it runs as it is, with one note) when it depends
on what tore_nb cannot see or replay: it reads `In` or `Out`, reads names through `globals()`,
`locals()` or `vars()`, runs code it builds (`eval(text)`, `df.query(text)`), times itself
(`%time`, `%timeit`, `%prun`), or runs any other magic than a setting (`SETUP_MAGICS`) or a
display (`%%html`). Magics reached through a variable (`ip = get_ipython()`) are not seen.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..code_reads import tree_digest
from .flow import DEF_NODES, SCOPES, Flow, def_names
from .syntax import (
    CODE_RUNNERS,
    QUERY_METHODS,
    is_setup_magic,
    literal_code,
    query_text,
    shell_call,
    walk,
)
from .syntax import SETUP_MAGICS as SETUP_MAGICS

__all__ = [
    "IPYTHON_NAMES",
    "SETUP_MAGICS",
    "CellAnalysis",
    "analyze_cell",
    "is_ipython_name",
    "is_setup_magic",
]

# names IPython keeps in the user namespace that are not data: never inputs nor keyed. Its
# output and input history (`_`, `__`, `_i`, `_5`, `_i5`...) is data: read explicitly, an input
# by value like any other
IPYTHON_NAMES = frozenset(
    {
        "In",
        "Out",
        "get_ipython",
        "exit",
        "quit",
        "_ih",
        "_oh",
        "__builtins__",
        "__builtin__",
        "__name__",
        "__doc__",
        "__spec__",
        "__loader__",
        "__package__",
    }
)
_SKIP_OUTPUT = re.compile(r"^_(i{1,3}|i?\d+|ih|oh|dh)?$")
# the whole history, which grows on every execution: a cell that reads it cannot be keyed
_HISTORY = frozenset({"In", "Out", "_ih", "_oh"})


@dataclass(frozen=True)
class CellAnalysis:
    """What a cell's code reads and binds; pure, from `ast` alone."""

    source: str
    code_digest: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    definitions: tuple[str, ...]
    deleted: tuple[str, ...]
    # attribute chains read from each input (`utils.compute` gives ("utils", (("compute",),))):
    # a local module input counts by the code of what the cell reads from it
    attributes: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = ()
    # why the cell cannot be cached (it reads `Out`, it runs `%cd`), or None: such a cell is
    # run as it is, uncached
    uncacheable: str | None = None
    # the modules the cell imports, anywhere in its code (`import a.b`, `from c import d`): the
    # code they hold is an input
    imports: tuple[str, ...] = ()
    # inputs the code only reads in ways that cannot change them (`x + 1`, `df["a"] * 2`):
    # not hashed again after a run to find a change
    read_only: tuple[str, ...] = ()


@functools.lru_cache(maxsize=8192)  # asked of every name in the namespace, cell after cell
def is_ipython_name(name: str) -> bool:
    """Whether a name is IPython's or Python's own (`In`, `_5`, `_i3`, `__builtins__`), never
    a cell's output.

    >>> is_ipython_name("_i3"), is_ipython_name("__warningregistry__"), is_ipython_name("df")
    (True, True, False)
    """
    return name in IPYTHON_NAMES or bool(_SKIP_OUTPUT.match(name)) or name[:2] == name[-2:] == "__"


@functools.lru_cache(maxsize=1024)
def analyze_cell(source: str) -> CellAnalysis:
    """Inputs, outputs and definitions of a cell (plain Python; IPython syntax transformed first).
    Memoised by source: a notebook re-runs the same cells, and the analysis is frozen.

    >>> a = analyze_cell("import math\\ny = math.sqrt(x) + y0  # comment\\nz = y")
    >>> a.inputs, a.outputs, a.definitions
    (('x', 'y0'), ('math', 'y', 'z'), ('math',))
    >>> analyze_cell("get_ipython().run_line_magic('cd', '/tmp')").uncacheable
    'it runs %cd, which tore_nb cannot see into'
    """
    tree = ast.parse(source)
    flow = Flow()
    last_def: dict[str, bool] = {}
    for stmt in tree.body:
        before = len(flow.stores)
        flow.visit(stmt)
        for name in flow.stores[before:]:
            last_def[name] = isinstance(stmt, DEF_NODES)
        if isinstance(stmt, DEF_NODES):
            for name in def_names(stmt):
                last_def[name] = True
    bound = set(flow.stores)
    inputs = list(dict.fromkeys(flow.reads))
    # free names of the cell's functions that the cell never binds: read from the namespace
    # whenever the function runs (calls in the cell made them inputs already)
    inputs += sorted(n for n in flow.deferred if n not in bound and n not in inputs)
    written = [*flow.stores, *flow.mutated, *sorted(flow.global_writes)]
    # a `with open(...) as f` target is a spent resource, not a result (--vars can still name it)
    resources = {n for n in flow.resources if last_def.get(n) is not True}
    outputs = [
        n for n in dict.fromkeys(written) if not _SKIP_OUTPUT.match(n) and n not in resources
    ]
    uncacheable = _uncacheable(tree)
    history = [n for n in inputs if n in _HISTORY]
    if uncacheable is None and history:
        uncacheable = f"it reads {history[0]}, which changes on every execution"
    inputs = [n for n in inputs if n not in IPYTHON_NAMES]
    return CellAnalysis(
        source=source,
        code_digest=tree_digest(tree),
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        definitions=tuple(n for n in outputs if last_def.get(n)),
        # every name the cell deletes, even if it binds it again: the run keeps those that are
        # gone once the cell has run, and a hit deletes them
        deleted=tuple(sorted(flow.deleted)),
        attributes=_attribute_chains(tree, set(inputs)),
        uncacheable=uncacheable,
        imports=_imports(tree),
        read_only=_read_only(tree, inputs),
    )


# where a value's use cannot change it: an operand of an operator or a comparison, a test
_SAFE_PARENTS = (ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.If, ast.While, ast.IfExp)


def _read_only(tree: ast.AST, inputs: Sequence[str]) -> tuple[str, ...]:
    """The inputs whose every use is `x`, `x[key]` or `x.attr` (not called) as an operand of
    an operator, a comparison or a test: no method, no call, no binding can reach them, so the
    run cannot have changed them. Anything else (an argument, a method call, a view bound to a
    name) may change them. Conservative: a cell with magics or nested scopes keeps all."""
    candidates = set(inputs)
    parents: dict[int, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node
        if isinstance(node, SCOPES) or (isinstance(node, ast.Call) and shell_call(node)):
            return ()
    safe: set[str] = set()
    unsafe: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Name) or node.id not in candidates:
            continue
        use: ast.AST = node
        parent = parents.get(id(use))
        # through one subscript or attribute read (`df["a"]`, `df.a`), not a method's target
        if (
            isinstance(parent, ast.Subscript | ast.Attribute)
            and parent.value is use
            and isinstance(parent.ctx, ast.Load)
        ):
            use, parent = parent, parents.get(id(parent))
        containment = isinstance(parent, ast.Compare) and any(
            isinstance(op, ast.In | ast.NotIn) for op in parent.ops
        )  # `v in it` consumes an iterator
        if isinstance(node.ctx, ast.Load) and isinstance(parent, _SAFE_PARENTS) and not containment:
            safe.add(node.id)
        else:
            unsafe.add(node.id)
    return tuple(n for n in inputs if n in safe and n not in unsafe)


def _imports(tree: ast.AST) -> tuple[str, ...]:
    """Absolute module names imported anywhere in the tree (relative imports have no package in
    a notebook); `from a import b` imports `a`, and maybe the submodule `a.b` (keyed if loaded)."""
    found: dict[str, None] = {}
    for node in walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found[alias.name] = None
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "__future__":
                continue
            found[node.module] = None
            for alias in node.names:
                if alias.name != "*":
                    found[f"{node.module}.{alias.name}"] = None
    return tuple(found)


def _attribute_chains(
    tree: ast.AST, names: set[str]
) -> tuple[tuple[str, tuple[tuple[str, ...], ...]], ...]:
    """The longest attribute chains read from each of `names`, anywhere in the tree (and in the
    code its magics run)."""
    found: dict[str, set[tuple[str, ...]]] = {}
    inner: set[int] = set()  # ast.walk goes outside in: `a.b` inside `a.b.c` is not a chain
    for node in walk(tree):
        if not isinstance(node, ast.Attribute) or id(node) in inner:
            continue
        attrs: list[str] = []
        base: ast.expr = node
        while isinstance(base, ast.Attribute):
            attrs.append(base.attr)
            base = base.value
            inner.add(id(base))
        if isinstance(base, ast.Name) and base.id in names:
            found.setdefault(base.id, set()).add(tuple(reversed(attrs)))
    return tuple((name, tuple(sorted(chains))) for name, chains in sorted(found.items()))


# builtins that read or run names the code does not spell out
_NAMESPACE_READERS = frozenset({"globals", "locals", "vars"})


def _uncacheable(tree: ast.AST) -> str | None:
    """Why the cell's magics or indirect reads keep it from being cached, or None."""
    for node in walk(tree):
        if _reads_main(node):
            return "it reads the notebook's variables through the __main__ module"
        if not isinstance(node, ast.Call):
            continue
        magic = shell_call(node)
        if isinstance(magic, str):
            return magic
        func = node.func
        if isinstance(func, ast.Name):
            if func.id in _NAMESPACE_READERS and not node.args and not node.keywords:
                return f"it reads names through {func.id}(), which tore_nb cannot follow"
            if func.id in CODE_RUNNERS and literal_code(node) is None:
                return f"it runs code built at run time with {func.id}()"
        elif (
            isinstance(func, ast.Attribute)
            and func.attr in QUERY_METHODS
            and node.args
            and query_text(node.args[0]) is None
        ):
            return f"its .{func.attr}() expression is built at run time, so its @names are unknown"
    return None


def _reads_main(node: ast.AST) -> bool:
    """`import __main__`, or `sys.modules` (where `sys.modules['__main__']` is)."""
    if isinstance(node, ast.Import):
        return any(alias.name == "__main__" for alias in node.names)
    if isinstance(node, ast.ImportFrom):
        return node.module == "__main__"
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "modules"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    )
