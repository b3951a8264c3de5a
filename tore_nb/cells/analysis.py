"""Cell analysis: what a cell's code reads and binds, from `ast` alone (pure, no namespace).

`analyze_cell` reads a cell's code through `ast`: which names it reads from the namespace before
binding them (its inputs), which it binds (its outputs), which it binds by `import`, `def` or
`class` (its definitions). `_Flow` walks the module-level statements in execution order, reads
before binds; `_free_names` finds what a nested scope (a function, class, lambda or
comprehension) reads from outside itself and which globals it assigns.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from ..fingerprint import tree_digest

__all__ = ["IPYTHON_NAMES", "CellAnalysis", "analyze_cell"]

# names IPython keeps in the user namespace: reading them is not a data dependency
IPYTHON_NAMES = frozenset(
    {
        "In",
        "Out",
        "get_ipython",
        "exit",
        "quit",
        "_ih",
        "_oh",
        "_dh",
        "_i",
        "_ii",
        "_iii",
        "_",
        "__",
        "___",
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


@dataclass(frozen=True)
class CellAnalysis:
    """What a cell's code reads and binds; pure, from `ast` alone."""

    source: str
    code_digest: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    definitions: tuple[str, ...]
    deleted: tuple[str, ...]


_DEF_NODES = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def analyze_cell(source: str) -> CellAnalysis:
    """Inputs, outputs and definitions of a cell (plain Python; IPython syntax transformed first).

    >>> a = analyze_cell("import math\\ny = math.sqrt(x) + y0  # comment\\nz = y")
    >>> a.inputs, a.outputs, a.definitions
    (('x', 'y0'), ('math', 'y', 'z'), ('math',))
    """
    tree = ast.parse(source)
    flow = _Flow()
    last_def: dict[str, bool] = {}
    for stmt in tree.body:
        before = len(flow.stores)
        flow.visit(stmt)
        for name in flow.stores[before:]:
            last_def[name] = isinstance(stmt, _DEF_NODES)
        if isinstance(stmt, _DEF_NODES):
            for name in _def_names(stmt):
                last_def[name] = True
    bound = set(flow.stores)
    inputs = list(dict.fromkeys(flow.reads))
    inputs += sorted(n for n in flow.deferred if n not in bound and n not in inputs)
    written = [*flow.stores, *flow.mutated, *sorted(flow.global_writes)]
    # a `with open(...) as f` target is a spent resource, not a result (--vars can still name it)
    resources = {n for n in flow.resources if last_def.get(n) is not True}
    outputs = [
        n for n in dict.fromkeys(written) if not _SKIP_OUTPUT.match(n) and n not in resources
    ]
    return CellAnalysis(
        source=source,
        code_digest=tree_digest(tree),
        inputs=tuple(n for n in inputs if n not in IPYTHON_NAMES),
        outputs=tuple(outputs),
        definitions=tuple(n for n in outputs if last_def.get(n)),
        deleted=tuple(sorted(flow.deleted - bound)),
    )


def _def_names(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, ast.Import | ast.ImportFrom):
        return [a.asname or a.name.partition(".")[0] for a in stmt.names if a.name != "*"]
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [stmt.name]
    return []


class _Flow(ast.NodeVisitor):
    """Walks module-level statements in execution order: reads before binds."""

    def __init__(self) -> None:
        self.bound: set[str] = set()
        self.reads: list[str] = []
        self.stores: list[str] = []
        self.deferred: set[str] = set()
        self.deleted: set[str] = set()
        self.global_writes: set[str] = set()
        self.mutated: list[str] = []
        self.resources: set[str] = set()  # `with ... as name`: files, locks, sessions

    def read(self, name: str) -> None:
        if name not in self.bound:
            self.reads.append(name)

    def bind(self, name: str) -> None:
        self.bound.add(name)
        self.stores.append(name)
        self.deleted.discard(name)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.read(node.id)
        elif isinstance(node.ctx, ast.Store):
            self.bind(node.id)
        else:
            self.deleted.add(node.id)

    def _target(self, node: ast.Subscript | ast.Attribute) -> None:
        self.generic_visit(node)
        if not isinstance(node.ctx, ast.Load):  # x[i] = v, x.a = v, del x[i]: x changes
            base: ast.expr = node
            while isinstance(base, ast.Subscript | ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name):
                self.mutated.append(base.id)

    visit_Subscript = visit_Attribute = _target

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self.visit(target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name):
            self.read(node.target.id)
            self.visit(node.value)
            self.bind(node.target.id)
        else:
            self.visit(node.value)
            self.visit(node.target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self.visit(node.annotation)
        if node.value is not None:
            self.visit(node.value)
            self.visit(node.target)
        elif not isinstance(node.target, ast.Name):
            self.visit(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self.visit(node.target)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self.visit(node.target)
        for stmt in [*node.body, *node.orelse]:
            self.visit(stmt)

    visit_AsyncFor = visit_For

    def visit_With(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            self.visit(item.context_expr)
            if item.optional_vars is not None:
                self.visit(item.optional_vars)
                if isinstance(item.optional_vars, ast.Name):
                    self.resources.add(item.optional_vars.id)
        for stmt in node.body:
            self.visit(stmt)

    visit_AsyncWith = visit_With

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for name in _def_names(node):
            self.bind(name)

    visit_ImportFrom = visit_Import

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self.bind(node.name)
        for stmt in node.body:
            self.visit(stmt)

    def _signature(self, args: ast.arguments) -> None:
        for default in [*args.defaults, *(d for d in args.kw_defaults if d is not None)]:
            self.visit(default)
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if arg is not None and arg.annotation is not None:
                self.visit(arg.annotation)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for dec in node.decorator_list:
            self.visit(dec)
        self._signature(node.args)
        if node.returns is not None:
            self.visit(node.returns)
        free, writes = _free_names(node)
        self.deferred |= free
        self.global_writes |= writes
        self.bind(node.name)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._signature(node.args)
        free, writes = _free_names(node)
        self.deferred |= free
        self.global_writes |= writes

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            self.visit(expr)
        free, writes = _free_names(node)
        for name in sorted(free):  # a class body runs now
            self.read(name)
        self.global_writes |= writes
        self.bind(node.name)

    def _comprehension(
        self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp
    ) -> None:
        free, writes = _free_names(node)
        for name in sorted(free):
            self.read(name)
        self.global_writes |= writes

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _comprehension

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.pattern is not None:
            self.visit(node.pattern)
        if node.name:
            self.bind(node.name)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self.bind(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        for key in node.keys:
            self.visit(key)
        for pattern in node.patterns:
            self.visit(pattern)
        if node.rest:
            self.bind(node.rest)


_SCOPES = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.Lambda,
    ast.ClassDef,
    ast.ListComp,
    ast.SetComp,
    ast.GeneratorExp,
    ast.DictComp,
)


def _free_names(scope: ast.AST) -> tuple[set[str], set[str]]:
    """Names a nested scope reads from outside itself, and globals it declares and assigns."""
    bound: set[str] = set()
    loads: set[str] = set()
    declared: set[str] = set()
    writes: set[str] = set()
    nested_free: set[str] = set()
    if isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
        a = scope.args
        for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
            if arg is not None:
                bound.add(arg.arg)
        body: list[ast.AST] = list(scope.body) if isinstance(scope.body, list) else [scope.body]
    elif isinstance(scope, ast.ClassDef):
        body = list(scope.body)
    else:
        assert isinstance(scope, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp)
        body = []
        for gen in scope.generators:
            body += [gen.target, gen.iter, *gen.ifs]
        body += [scope.key, scope.value] if isinstance(scope, ast.DictComp) else [scope.elt]
    stack = list(reversed(body))
    while stack:
        node = stack.pop()
        if isinstance(node, _SCOPES):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                bound.add(node.name)
                stack.extend(node.decorator_list)
                if isinstance(node, ast.ClassDef):
                    stack.extend([*node.bases, *(k.value for k in node.keywords)])
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                stack.extend(node.args.defaults)
                stack.extend(d for d in node.args.kw_defaults if d is not None)
            free, inner_writes = _free_names(node)
            nested_free |= free
            writes |= inner_writes
            continue
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Load):
                loads.add(node.id)
            else:
                bound.add(node.id)
        elif isinstance(node, ast.Global):
            declared.update(node.names)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound.update(_def_names(node))
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            bound.add(node.rest)
        stack.extend(reversed(list(ast.iter_child_nodes(node))))
    writes |= declared & bound
    local = bound - declared
    if isinstance(scope, ast.ClassDef):  # a class body does not enclose its methods
        return (loads - local) | nested_free, writes
    return (loads | nested_free) - local, writes
