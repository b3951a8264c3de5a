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
import string
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..fingerprint import _MUTATORS, tree_digest

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
# line magics that only change settings: harmless in a cached cell (see `is_setup_magic`)
SETUP_MAGICS = frozenset(
    {
        "matplotlib",
        "config",
        "load_ext",
        "reload_ext",
        "precision",
        "autoreload",
        "aimport",
        "xmode",
        "colors",
    }
)
# cell magics that only display their body, which the code digest covers
_DISPLAY_MAGICS = frozenset({"html", "HTML", "javascript", "js", "latex", "markdown", "svg"})
# options of the magics that take them before their code (IPython's `parse_options` specs)
_TIMING_MAGICS = frozenset({"time", "timeit", "prun"})
_CAPTURE_FLAGS = frozenset({"--no-stderr", "--no-stdout", "--no-display"})
# `$name` in a shell command (`!ls $path`): IPython substitutes the variable; `$$` is a `$`
_DOLLAR = re.compile(r"(?<!\$)\$([A-Za-z_]\w*)")


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


def is_ipython_name(name: str) -> bool:
    """Whether a name is IPython's or Python's own (`In`, `_5`, `_i3`, `__builtins__`), never
    a cell's output.

    >>> is_ipython_name("_i3"), is_ipython_name("__warningregistry__"), is_ipython_name("df")
    (True, True, False)
    """
    return name in IPYTHON_NAMES or bool(_SKIP_OUTPUT.match(name)) or name[:2] == name[-2:] == "__"


_DEF_NODES = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


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
        if isinstance(node, _SCOPES) or (isinstance(node, ast.Call) and _shell_call(node)):
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
    for node in _walk(tree):
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
    for node in _walk(tree):
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
_CODE_RUNNERS = frozenset({"eval", "exec"})
# pandas methods that read `@name` from the caller's namespace
_QUERY_METHODS = frozenset({"query", "eval"})
_AT_NAME = re.compile(r"@([A-Za-z_]\w*)")


def _uncacheable(tree: ast.AST) -> str | None:
    """Why the cell's magics or indirect reads keep it from being cached, or None."""
    for node in _walk(tree):
        if _reads_main(node):
            return "it reads the notebook's variables through the __main__ module"
        if not isinstance(node, ast.Call):
            continue
        magic = _shell_call(node)
        if isinstance(magic, str):
            return magic
        func = node.func
        if isinstance(func, ast.Name):
            if func.id in _NAMESPACE_READERS and not node.args and not node.keywords:
                return f"it reads names through {func.id}(), which tore_nb cannot follow"
            if func.id in _CODE_RUNNERS and _literal_code(node) is None:
                return f"it runs code built at run time with {func.id}()"
        elif (
            isinstance(func, ast.Attribute)
            and func.attr in _QUERY_METHODS
            and node.args
            and _query_text(node.args[0]) is None
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


def _literal_code(call: ast.Call) -> tuple[ast.stmt, ...] | None:
    """The statements of `eval("...")` / `exec("...")` with a literal string, else None."""
    if len(call.args) != 1 or call.keywords:
        return None
    arg = call.args[0]
    if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
        return None
    try:
        return tuple(ast.parse(arg.value).body)
    except SyntaxError:
        return None


def _query_text(node: ast.expr) -> str | None:
    """The literal text of a pandas query/eval expression (an f-string's constant parts)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(
            v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)
        )
    return None


# -- IPython syntax, as `transform_cell` writes it: get_ipython().run_line_magic('time', 'x = 1')
@dataclass(frozen=True)
class _Magic:
    """What a magic (or a shell command) does that the analysis can follow."""

    code: tuple[ast.stmt, ...] = ()  # runs in the namespace (%%capture)
    binds: tuple[str, ...] = ()  # names it assigns (%%capture NAME)


def _shell_call(node: ast.Call) -> _Magic | str | None:
    """A call of `get_ipython().<method>(...)`: what its magic runs, or why the cell cannot be
    cached; None for any other call."""
    func = node.func
    if not (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Call)
        and isinstance(func.value.func, ast.Name)
        and func.value.func.id == "get_ipython"
    ):
        return None
    method = func.attr
    texts = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    literal = len(texts) == len(node.args) and not node.keywords
    if method in ("system", "getoutput"):
        # `!cmd`: its output is recorded like any other; `{x}` and `$x` in it read x (a command
        # made by the code is a plain call: its arguments are read)
        return _Magic(code=_expansions(texts[0])) if literal and len(texts) == 1 else None
    if method not in ("run_line_magic", "run_cell_magic"):
        return f"it calls get_ipython().{method}(), which tore_nb cannot see into"
    cell = method == "run_cell_magic"
    if not literal or len(texts) != (3 if cell else 2):
        return "it runs a magic whose arguments tore_nb cannot read"
    return _read_magic(texts[0], texts[1], texts[2] if cell else None)


@functools.lru_cache(maxsize=512)
def _read_magic(name: str, line: str, body: str | None) -> _Magic | str:
    """What `%name line` (or `%%name line` over `body`) runs, or why the cell cannot be cached."""
    shown = f"%{name}" if body is None else f"%%{name}"
    if (body is None and name in SETUP_MAGICS) or (body is not None and name in _DISPLAY_MAGICS):
        return _Magic()
    if name in _TIMING_MAGICS:
        # a timing is measured when the cell runs: replaying an old one would be a lie
        return f"it times its code ({shown}): timings are measured on every run"
    if name != "capture" or body is None:
        return f"it runs {shown}, which tore_nb cannot see into"
    words = [w for w in line.split() if w not in _CAPTURE_FLAGS]
    if len(words) > 1 or not all(w.isidentifier() for w in words):
        return f"tore_nb cannot read the options of {shown}"
    stmts = _parse_code(body)
    if stmts is None:
        return f"tore_nb cannot read the code {shown} runs"
    return _Magic(code=stmts, binds=tuple(words))


def _parse_code(code: str) -> tuple[ast.stmt, ...] | None:
    """The statements of the code a magic runs; it may hold IPython syntax of its own."""
    try:
        return tuple(ast.parse(code).body)
    except SyntaxError:
        pass
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        manager = TransformerManager()  # type: ignore[no-untyped-call]
        return tuple(ast.parse(manager.transform_cell(code)).body)
    except Exception:  # no IPython, or code that does not parse either way
        return None


def _expansions(command: str) -> tuple[ast.stmt, ...]:
    """What IPython substitutes into a shell command, as statements that read it: `{expr}`
    and `$name` (an expression that does not parse is left as text by IPython too)."""
    exprs: list[ast.expr] = [ast.Name(n, ast.Load()) for n in _DOLLAR.findall(command)]
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(command) if f]
    except ValueError:  # an unmatched brace: IPython leaves the command as it is
        fields = []
    for field in fields:
        try:
            exprs.append(ast.parse(field, mode="eval").body)
        except SyntaxError:
            continue
    return tuple(ast.Expr(e) for e in exprs)


def _walk(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of `tree` and of the code its magics run (`ast.walk` order within each)."""
    todo: list[ast.AST] = [tree]
    while todo:
        for node in ast.walk(todo.pop()):
            yield node
            if isinstance(node, ast.Call):
                magic = _shell_call(node)
                if isinstance(magic, _Magic):
                    todo += magic.code


def is_setup_magic(stmt: ast.stmt) -> bool:
    """Whether a statement runs a settings magic (`%matplotlib inline`, `%load_ext x`): a hit
    should run it again, as it runs the cell's definitions.

    >>> is_setup_magic(ast.parse("get_ipython().run_line_magic('load_ext', 'x')").body[0])
    True
    """
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Call)
        and isinstance(stmt.value.func, ast.Attribute)
        and stmt.value.func.attr == "run_line_magic"
        and _shell_call(stmt.value) == _Magic()
    )


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
    if func.attr not in _MUTATORS and not inplace:
        return None
    base = func.value
    while isinstance(base, ast.Subscript) or (inplace and isinstance(base, ast.Attribute)):
        base = base.value
    return base.id if isinstance(base, ast.Name) else None


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
        magic = _shell_call(node)
        if isinstance(magic, _Magic):  # the code a magic runs, here (an `uncacheable` one: no)
            for stmt in magic.code:
                self.visit(stmt)
            for name in magic.binds:
                self.bind(name)
            return
        self.generic_visit(node)
        func = node.func
        if isinstance(func, ast.Name) and func.id in _CODE_RUNNERS:
            for stmt in _literal_code(node) or ():  # eval("x + 1") reads x here
                self.visit(stmt)
        elif isinstance(func, ast.Attribute) and func.attr in _QUERY_METHODS and node.args:
            for name in _AT_NAME.findall(_query_text(node.args[0]) or ""):
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
        if isinstance(node, ast.Call):
            magic = _shell_call(node)
            if isinstance(magic, _Magic):  # the code a magic runs is part of this scope
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
