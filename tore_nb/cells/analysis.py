"""Cell analysis: what a cell's code reads and binds, from `ast` alone (pure, no namespace).

`analyze_cell` reads a cell's code through `ast`: which names it reads from the namespace before
binding them (its inputs), which it binds (its outputs), which it binds by `import`, `def` or
`class` (its definitions). `_Flow` walks the module-level statements in execution order, reads
before binds; `_free_names` finds what a nested scope (a function, class, lambda or
comprehension) reads from outside itself and which globals it assigns.

The analysis errs towards inputs: a name bound only on some paths (in an `if`, a `try`, a
`match` case) does not hide a later read of it (a loop body is taken to run), and a function
of the cell reads its free names from the namespace when it may be called before the cell
binds them.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
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
    # attribute chains read from each input (`utils.compute` gives ("utils", (("compute",),))):
    # a local module input counts by the code of what the cell reads from it
    attributes: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = ()


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
    # free names of the cell's functions that the cell never binds: read from the namespace
    # whenever the function runs (calls in the cell made them inputs already)
    inputs += sorted(n for n in flow.deferred if n not in bound and n not in inputs)
    written = [*flow.stores, *flow.mutated, *sorted(flow.global_writes)]
    # a `with open(...) as f` target is a spent resource, not a result (--vars can still name it)
    resources = {n for n in flow.resources if last_def.get(n) is not True}
    outputs = [
        n for n in dict.fromkeys(written) if not _SKIP_OUTPUT.match(n) and n not in resources
    ]
    inputs = [n for n in inputs if n not in IPYTHON_NAMES]
    return CellAnalysis(
        source=source,
        code_digest=tree_digest(tree),
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        definitions=tuple(n for n in outputs if last_def.get(n)),
        deleted=tuple(sorted(flow.deleted - bound)),
        attributes=_attribute_chains(tree, set(inputs)),
    )


def _attribute_chains(
    tree: ast.AST, names: set[str]
) -> tuple[tuple[str, tuple[tuple[str, ...], ...]], ...]:
    """The longest attribute chains read from each of `names`, anywhere in the tree."""
    found: dict[str, set[tuple[str, ...]]] = {}
    inner: set[int] = set()  # ast.walk goes outside in: `a.b` inside `a.b.c` is not a chain
    for node in ast.walk(tree):
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


def _def_names(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, ast.Import | ast.ImportFrom):
        return [a.asname or a.name.partition(".")[0] for a in stmt.names if a.name != "*"]
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [stmt.name]
    return []


class _Flow(ast.NodeVisitor):
    """Walks module-level statements in execution order: reads before binds.

    `bound` holds the names bound on every path so far: a bind in a branch that may not run
    (an `if`, a `try`, a `match` case) is an output but does not hide later reads.
    """

    def __init__(self) -> None:
        self.bound: set[str] = set()
        self.reads: list[str] = []
        self.stores: list[str] = []
        self.deferred: set[str] = set()
        self.deleted: set[str] = set()
        self.global_writes: set[str] = set()
        self.mutated: list[str] = []
        self.resources: set[str] = set()  # `with ... as name`: files, locks, sessions
        # a function of the cell -> the free names it reads when called
        self.functions: dict[str, set[str]] = {}

    def read(self, name: str) -> None:
        self.call(name)
        if name not in self.bound:
            self.reads.append(name)

    def call(self, name: str) -> None:
        """`name` is read: if it names a function of the cell, it may be called from here on,
        and so may the functions it calls; their free names not bound by now are inputs."""
        todo, done = [name], set()
        while todo:
            fn = todo.pop()
            if fn in done or fn not in self.functions:
                continue
            done.add(fn)
            for free in sorted(self.functions[fn]):
                todo.append(free)
                if free not in self.bound:
                    self.reads.append(free)

    def bind(self, name: str) -> None:
        self.bound.add(name)
        self.stores.append(name)
        self.deleted.discard(name)

    def bind_maybe(self, name: str) -> None:
        """A bind that may not happen (a walrus in a comprehension that may not iterate)."""
        self.stores.append(name)
        self.deleted.discard(name)

    def define(self, name: str, free: set[str]) -> None:
        self.bind(name)
        self.functions.setdefault(name, set()).update(free)
        self.deferred |= free

    def _branch(self, nodes: Sequence[ast.AST]) -> set[str] | None:
        """Visits code that may not run; the names it binds on every path through it (None when
        it cannot end normally: it raises, breaks or continues)."""
        saved = set(self.bound)
        for node in nodes:
            self.visit(node)
        added = self.bound - saved
        self.bound = saved
        return None if nodes and isinstance(nodes[-1], _EXITS) else added

    def _join(self, branches: Sequence[set[str] | None]) -> None:
        """After one of `branches` ran: what all those that end normally bind is bound."""
        ends = [b for b in branches if b is not None]
        if ends:
            self.bound |= set.intersection(*ends)

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
        if isinstance(node.value, ast.Lambda) and all(
            isinstance(t, ast.Name) for t in node.targets
        ):
            # `f = lambda: ...` is a function of the cell, called where `f` is read
            self._signature(node.value.args)
            free, writes, _ = _free_names(node.value)
            self.global_writes |= writes
            for target in node.targets:
                assert isinstance(target, ast.Name)
                self.define(target.id, free)
            return
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

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        self._join([self._branch(node.body), self._branch(node.orelse)])

    def visit_IfExp(self, node: ast.IfExp) -> None:
        self.visit(node.test)
        self._join([self._branch([node.body]), self._branch([node.orelse])])

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        self.visit(node.values[0])
        self._branch(node.values[1:])  # may be short-circuited

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        # The body is taken to run. Were its binds inputs, every cell that loops and then
        # uses what the loop made would miss on its first re-run in a kernel (the name now
        # exists); a loop over nothing that leaves an earlier value in use is the rarer case.
        # The else clause does not run after a break.
        self.visit(node.target)
        for stmt in node.body:
            self.visit(stmt)
        self._branch(node.orelse)

    visit_AsyncFor = visit_For

    def visit_While(self, node: ast.While) -> None:
        self.visit(node.test)
        for stmt in node.body:  # taken to run, as a `for` body is
            self.visit(stmt)
        self._branch(node.orelse)

    def visit_Try(self, node: ast.Try | ast.TryStar) -> None:
        # the body may stop at any statement; the else clause runs after all of it
        branches = [self._branch([*node.body, *node.orelse])]
        for handler in node.handlers:
            bound = self._branch([handler])
            branches.append(None if isinstance(handler.body[-1], _EXITS) else bound)
        for stmt in node.finalbody:
            self.visit(stmt)
        self._join(branches)

    visit_TryStar = visit_Try

    def visit_Match(self, node: ast.Match) -> None:
        self.visit(node.subject)
        branches: list[set[str] | None] = []
        for case in node.cases:
            guard = [case.guard] if case.guard is not None else []
            branches.append(self._branch([case.pattern, *guard, *case.body]))
        last = node.cases[-1] if node.cases else None
        irrefutable = (
            last is not None
            and isinstance(last.pattern, ast.MatchAs)
            and last.pattern.pattern is None
            and last.guard is None
        )
        if not irrefutable:
            branches.append(set())  # no case matched
        self._join(branches)

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
        free, writes, _ = _free_names(node)
        self.global_writes |= writes
        self.define(node.name, free)
        if node.decorator_list:
            self.call(node.name)  # a decorator may call it right away

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._signature(node.args)
        free, writes, _ = _free_names(node)
        for name in sorted(free):  # passed on (a sort key, a callback): it may be called now
            self.read(name)
        self.global_writes |= writes

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            self.visit(expr)
        free, writes, _ = _free_names(node)
        for name in sorted(free):  # a class body runs now
            self.read(name)
        self.global_writes |= writes
        self.bind(node.name)

    def _comprehension(
        self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp
    ) -> None:
        free, writes, leaked = _free_names(node)
        for name in sorted(free):
            self.read(name)
        self.global_writes |= writes
        for name in sorted(leaked):  # `[y := v for v in xs]` binds y here, if xs is not empty
            self.bind_maybe(name)

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


_EXITS = (ast.Raise, ast.Return, ast.Break, ast.Continue)
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


def _free_names(scope: ast.AST) -> tuple[set[str], set[str], set[str]]:
    """Names a nested scope reads from outside itself, globals it declares and assigns, and
    names a comprehension binds in the enclosing scope (`:=`)."""
    bound: set[str] = set()
    loads: set[str] = set()
    declared: set[str] = set()
    writes: set[str] = set()
    nested_free: set[str] = set()
    leaked: set[str] = set()
    comprehension = isinstance(scope, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp)
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
            free, inner_writes, inner_leaked = _free_names(node)
            nested_free |= free
            writes |= inner_writes
            # a comprehension's `:=` binds in the scope around it (or further out)
            (leaked if comprehension else bound).update(inner_leaked)
            continue
        if comprehension and isinstance(node, ast.NamedExpr):
            assert isinstance(node.target, ast.Name)
            leaked.add(node.target.id)
            stack.append(node.value)
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
        # a method reading the class's own name runs once the class is bound
        return (loads - local) | (nested_free - {scope.name}), writes, leaked
    return (loads | nested_free) - local, writes, leaked
