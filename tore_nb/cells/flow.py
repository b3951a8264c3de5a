"""The flow of a cell's code: which names it reads before it binds them, in execution order.

`Flow` walks module-level statements (and the code magics run) keeping the names bound on every
path so far, so that a bind in a branch that may not run does not hide a later read; the free
names of the cell's functions and the names they change in place are found per scope.

>>> import ast
>>> f = Flow()
>>> f.visit(ast.parse("if c: z = 1"))
>>> f.visit(ast.parse("w = z + x"))
>>> f.reads, f.stores
(['c', 'z', 'x'], ['z', 'w'])
"""

from __future__ import annotations

import ast
from collections.abc import Sequence

from ..code_reads import MUTATORS
from .syntax import (
    AT_NAME,
    CODE_RUNNERS,
    QUERY_METHODS,
    Magic,
    literal_code,
    query_text,
    shell_call,
)

__all__ = ["DEF_NODES", "SCOPES", "Flow", "def_names"]

# statements that define a name a hit must run again (imports, functions, classes)
DEF_NODES = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _mutated_by(call: ast.Call) -> str | None:
    """The name a call changes in place: `x.append(v)`, `x[k].update(d)` (a mutating method on
    a name, through subscripts only: `sys.path.append(p)` does not change a value of the cell's),
    `x.col.fillna(0, inplace=True)`; None for any other call."""
    func = call.func
    if not isinstance(func, ast.Attribute):
        return None
    inplace = any(
        k.arg == "inplace" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
        for k in call.keywords
    )
    if func.attr not in MUTATORS and not inplace:
        return None
    base = func.value
    while isinstance(base, ast.Subscript) or (inplace and isinstance(base, ast.Attribute)):
        base = base.value
    return base.id if isinstance(base, ast.Name) else None


def def_names(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, ast.Import | ast.ImportFrom):
        return [a.asname or a.name.partition(".")[0] for a in stmt.names if a.name != "*"]
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [stmt.name]
    return []


class Flow(ast.NodeVisitor):
    """Walks module-level statements in execution order: reads before binds.

    `bound` holds the names bound on every path so far: a bind in a branch that may not run
    (an `if`, a `try`, a `match` case) is an output but does not hide later reads.
    """

    def __init__(self) -> None:
        self.bound: set[str] = set()
        self.reads: list[str] = []
        self.stores: list[str] = []
        self.deferred: set[str] = set()
        self.deleted: set[str] = set()  # every name a `del` removes
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

    def bind_maybe(self, name: str) -> None:
        """A bind that may not happen (a walrus in a comprehension that may not iterate)."""
        self.stores.append(name)

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

    def visit_Call(self, node: ast.Call) -> None:
        magic = shell_call(node)
        if isinstance(magic, Magic):  # the code a magic runs, here (an `uncacheable` one: no)
            for stmt in magic.code:
                self.visit(stmt)
            for name in magic.binds:
                self.bind(name)
            return
        self.generic_visit(node)
        func = node.func
        if isinstance(func, ast.Name) and func.id in CODE_RUNNERS:
            for stmt in literal_code(node) or ():  # eval("x + 1") reads x here
                self.visit(stmt)
        elif isinstance(func, ast.Attribute) and func.attr in QUERY_METHODS and node.args:
            for name in AT_NAME.findall(query_text(node.args[0]) or ""):
                self.read(name)  # df.query("a > @cut") reads cut
        changed = _mutated_by(node)
        if changed is not None:
            self.mutated.append(changed)

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
        for name in def_names(node):
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
        # `[seen.add(x) for x in xs]` runs now: it changes seen as a call in the cell would
        self.mutated += sorted(_mutated_in(node) & free)
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
SCOPES = (
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
        if isinstance(node, SCOPES):
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
        if isinstance(node, ast.Call):
            magic = shell_call(node)
            if isinstance(magic, Magic):  # the code a magic runs is part of this scope
                stack.extend(reversed(magic.code))
                bound.update(magic.binds)
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
            bound.update(def_names(node))
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


def _mutated_in(scope: ast.AST) -> set[str]:
    """The names mutating calls change in a comprehension, not counting nested functions."""
    found: set[str] = set()
    stack: list[ast.AST] = [scope]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Call):
            changed = _mutated_by(node)
            if changed is not None:
                found.add(changed)
        stack.extend(
            child
            for child in ast.iter_child_nodes(node)
            if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        )
    return found
