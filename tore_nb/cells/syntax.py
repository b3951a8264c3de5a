"""IPython's syntax in a cell, as `transform_cell` writes it, and code a cell reads as text.

`get_ipython().run_line_magic('time', 'x = 1')` and its kin: which magics only change settings
(`SETUP_MAGICS`), what code a magic runs in the namespace (`%%capture`), what a shell command
substitutes (`!ls {path}`), and why any other magic keeps a cell from being cached. Literal code
run by `eval`/`exec` and pandas' `query`/`eval` expressions are read here too.

>>> import ast
>>> tree = ast.parse("get_ipython().run_line_magic('time', 'x = 1')")
>>> shell_call(tree.body[0].value)
'it times its code (%time): timings are measured on every run'
"""

from __future__ import annotations

import ast
import functools
import re
import string
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "AT_NAME",
    "CODE_RUNNERS",
    "QUERY_METHODS",
    "SETUP_MAGICS",
    "Magic",
    "is_setup_magic",
    "literal_code",
    "query_text",
    "shell_call",
    "walk",
]

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
# builtins that run code given as text
CODE_RUNNERS = frozenset({"eval", "exec"})
# pandas methods that read `@name` from the caller's namespace
QUERY_METHODS = frozenset({"query", "eval"})
AT_NAME = re.compile(r"@([A-Za-z_]\w*)")


def literal_code(call: ast.Call) -> tuple[ast.stmt, ...] | None:
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


def query_text(node: ast.expr) -> str | None:
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
class Magic:
    """What a magic (or a shell command) does that the analysis can follow."""

    code: tuple[ast.stmt, ...] = ()  # runs in the namespace (%%capture)
    binds: tuple[str, ...] = ()  # names it assigns (%%capture NAME)


def shell_call(node: ast.Call) -> Magic | str | None:
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
        return Magic(code=_expansions(texts[0])) if literal and len(texts) == 1 else None
    if method not in ("run_line_magic", "run_cell_magic"):
        return f"it calls get_ipython().{method}(), which tore_nb cannot see into"
    cell = method == "run_cell_magic"
    if not literal or len(texts) != (3 if cell else 2):
        return "it runs a magic whose arguments tore_nb cannot read"
    return _read_magic(texts[0], texts[1], texts[2] if cell else None)


@functools.lru_cache(maxsize=512)
def _read_magic(name: str, line: str, body: str | None) -> Magic | str:
    """What `%name line` (or `%%name line` over `body`) runs, or why the cell cannot be cached."""
    shown = f"%{name}" if body is None else f"%%{name}"
    if (body is None and name in SETUP_MAGICS) or (body is not None and name in _DISPLAY_MAGICS):
        return Magic()
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
    return Magic(code=stmts, binds=tuple(words))


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


def walk(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of `tree` and of the code its magics run (`ast.walk` order within each)."""
    todo: list[ast.AST] = [tree]
    while todo:
        for node in ast.walk(todo.pop()):
            yield node
            if isinstance(node, ast.Call):
                magic = shell_call(node)
                if isinstance(magic, Magic):
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
        and shell_call(stmt.value) == Magic()
    )
