"""Cached cells: analyse a cell, key it by what it reads, run or restore it, explain a miss.

`analyze_cell` reads a cell's code through `ast`: which names it reads from the namespace before
binding them (its inputs), which it binds (its outputs), which it binds by `import`, `def` or
`class` (its definitions). `cell_key` turns that into a key made of parts: a format version,
the normalised code, a digest of every input (modules by name and version, user functions and
classes by code fingerprint, other values by content), extra `deps`, and files by content.

`run_cached_cell` looks the key up. On a hit it re-executes the cell's definitions, unpickles
the stored variables (fresh copies each time: an entry is an immutable snapshot, so mutating a
restored value never corrupts the cache), assigns them all at once, and replays what the cell
printed and displayed, in order. On a miss it runs the cell while recording its stdout, stderr
and rich outputs, then stores the variables and the outputs. A cell that raises is not cached;
a variable that cannot be pickled leaves the cell uncached with one warning naming it.

An input that cannot be content-hashed (an open file, a lock, a connection) makes the cell
uncachable, with a warning naming it: hashing it by identity would give keys that differ in
every process. A user type can define `__tore_hash__` to say what counts.

>>> import tempfile
>>> from tore_nb import MultiLevelCache, CacheConfig
>>> cache = MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp()))
>>> ns = {"n": 3}
>>> run_cached_cell("total = sum(range(n))\\nprint(total)", ns, cache).status
3
'stored'
>>> run_cached_cell("total = sum(range(n))  # same code\\nprint(total)", {"n": 3}, cache).status
3
'hit'
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import glob
import importlib
import io
import linecache
import logging
import os
import pickle
import re
import sys
import time
import types
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import xxhash

from .fingerprint import dependency_token
from .keys import hash_value

if TYPE_CHECKING:
    import pandas as pd

    from .tiered import MultiLevelCache

__all__ = [
    "CELL_FORMAT",
    "CacheWarning",
    "CellAnalysis",
    "CellEntry",
    "CellError",
    "CellKey",
    "CellOptions",
    "CellOutcome",
    "Explanation",
    "KeyPart",
    "OutputEvent",
    "OutputRecorder",
    "analyze_cell",
    "cell_key",
    "explain",
    "latest_parts",
    "replay",
    "run_cached_cell",
]

log = logging.getLogger("tore_nb.cells")

CELL_FORMAT = 1
PREFIX = "tcache:cell:"
LATEST_PREFIX = "tcache:latest:"
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
_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
_BUILTIN_NAMES = frozenset(dir(builtins))
_LABEL_SAFE = re.compile(r"[^A-Za-z0-9_.\-+]")


class CacheWarning(UserWarning):
    """A cell or function result that tore_nb could not cache (it still ran)."""


class CellError(Exception):
    """Raised by a `run` callable when the cell failed; wraps the cell's own exception."""

    def __init__(self, error: BaseException | None) -> None:
        super().__init__(f"the cell raised {type(error).__name__}: {error}")
        self.error = error


# -- analysis -------------------------------------------------------------------------------------
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
        code_digest=hash_value(ast.dump(tree, annotate_fields=False, include_attributes=False)),
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


# -- keys -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyPart:
    """One component of a cell's key: kind ('format', 'code', 'input', 'file', 'option'),
    name and digest."""

    kind: str
    name: str
    digest: str


@dataclass(frozen=True)
class CellKey:
    """A cell's cache key and the parts it was made from (kept so `explain` can diff them)."""

    key: str
    label: str
    parts: tuple[KeyPart, ...]


class UnhashableInput(TypeError):
    """An input of the cell cannot be content-hashed, so the cell cannot be keyed."""

    def __init__(self, name: str, error: BaseException) -> None:
        super().__init__(f"input {name!r} cannot be content-hashed ({error})")
        self.name = name


def cell_label(analysis: CellAnalysis, name: str | None = None) -> str:
    """A readable label for a cell's keys: its `--name`, else the names it assigns."""
    if name:
        return _LABEL_SAFE.sub("_", name)[:80]
    shown = "+".join(n for n in analysis.outputs if n not in analysis.definitions)[:60]
    return _LABEL_SAFE.sub("_", shown) or "cell"


def cell_key(
    analysis: CellAnalysis,
    namespace: Mapping[str, Any],
    *,
    name: str | None = None,
    deps: Iterable[str] = (),
    files: Iterable[str] = (),
    variables: Sequence[str] | None = None,
    skip: Collection[str] = (),
) -> CellKey:
    """The key of a cell in a namespace; raises UnhashableInput naming an input it cannot hash.

    >>> a = analyze_cell("y = x * 2")
    >>> cell_key(a, {"x": 1}).key == cell_key(a, {"x": 1}).key != cell_key(a, {"x": 2}).key
    True
    """
    parts = [
        KeyPart("format", "tore_nb.cells", str(CELL_FORMAT)),
        KeyPart("code", "source", analysis.code_digest),
    ]
    names = list(dict.fromkeys([*analysis.inputs, *deps]))
    for n in names:
        if n in skip:
            continue
        if n not in namespace:
            if n in _BUILTIN_NAMES:
                continue
            parts.append(KeyPart("input", n, "undefined"))
            continue
        try:
            token = dependency_token(namespace[n], strict=True)
        except TypeError as exc:
            raise UnhashableInput(n, exc) from None
        parts.append(KeyPart("input", n, token))
    for pattern in files:
        parts.extend(_file_parts(pattern))
    if variables is not None:
        parts.append(KeyPart("option", "vars", ",".join(variables)))
    label = cell_label(analysis, name)
    digest = hash_value([(p.kind, p.name, p.digest) for p in parts])
    return CellKey(f"{PREFIX}{label}:{digest}", label, tuple(parts))


def _file_parts(pattern: str) -> list[KeyPart]:
    paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    if not paths:
        return [KeyPart("file", pattern, "missing")]
    return [KeyPart("file", p, file_digest(p)) for p in paths]


def file_digest(path: str | os.PathLike[str]) -> str:
    """xxh3-128 of a file's bytes, read in 1 MB chunks; 'missing' when it does not exist."""
    h = xxhash.xxh3_128()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except FileNotFoundError:
        return "missing"
    except IsADirectoryError:
        return "directory"
    return h.hexdigest()


# -- recorded outputs -----------------------------------------------------------------------------
@dataclass(frozen=True)
class OutputEvent:
    """One thing a cell showed: 'stdout'/'stderr' text, 'display' data, a 'result' (the value
    of its last expression) or a 'clear'."""

    kind: Literal["stdout", "stderr", "display", "result", "clear"]
    text: str = ""
    data: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] | None = None
    transient: Mapping[str, Any] | None = None
    update: bool = False


class _Tee:
    """A stream that records what is written and passes it on."""

    def __init__(
        self, stream: Any, kind: Literal["stdout", "stderr"], recorder: OutputRecorder
    ) -> None:
        self._stream = stream
        self._kind: Literal["stdout", "stderr"] = kind
        self._recorder = recorder

    def write(self, text: str) -> int:
        rec = self._recorder
        if text and not rec.muted:
            rec._events.append(OutputEvent(self._kind, text))
        return self._stream.write(text)  # type: ignore[no-any-return]

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class OutputRecorder:
    """Records, in order, what a cell prints and displays, while still showing it live.

    Without a shell only stdout and stderr are recorded; with an IPython shell also display()
    calls, clear_output() and the value of the last expression.

    >>> with OutputRecorder() as rec:
    ...     print("hi")
    hi
    >>> [(e.kind, e.text) for e in rec.events()]
    [('stdout', 'hi\\n')]
    """

    def __init__(self, shell: Any = None) -> None:
        self.shell = shell
        self._events: list[OutputEvent] = []
        self._undo: list[Callable[[], None]] = []
        self.muted = 0  # inside a display call: what it prints is its text form, not output

    def __enter__(self) -> OutputRecorder:
        out, err, hook = sys.stdout, sys.stderr, sys.displayhook
        sys.stdout = _Tee(out, "stdout", self)  # type: ignore[assignment]
        sys.stderr = _Tee(err, "stderr", self)  # type: ignore[assignment]
        if self.shell is not None:
            sys.displayhook = self._muting(hook)

        def restore_streams() -> None:
            sys.stdout, sys.stderr, sys.displayhook = out, err, hook
            self.muted = 0

        self._undo.append(restore_streams)
        shell = self.shell
        if shell is not None:
            pub = getattr(shell, "display_pub", None)
            if pub is not None:
                self._patch(pub, "publish", self._publish_wrapper(pub.publish))
                self._patch(pub, "clear_output", self._clear_wrapper(pub.clear_output))
            shell_hook = getattr(shell, "displayhook", None)
            if shell_hook is not None and hasattr(shell_hook, "write_format_data"):
                wrapped = self._result_wrapper(shell_hook.write_format_data)
                self._patch(shell_hook, "write_format_data", wrapped)
        return self

    def __exit__(self, *exc: object) -> None:
        while self._undo:
            self._undo.pop()()

    def _patch(self, obj: Any, name: str, replacement: Callable[..., Any]) -> None:
        had = name in vars(obj)
        old = vars(obj).get(name)
        setattr(obj, name, replacement)

        def undo() -> None:
            if had:
                setattr(obj, name, old)
            else:
                delattr(obj, name)

        self._undo.append(undo)

    def _muting(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.muted += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self.muted -= 1

        return wrapper

    def _publish_wrapper(self, publish: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(
            data: Mapping[str, Any],
            metadata: Mapping[str, Any] | None = None,
            *args: Any,
            **kwargs: Any,
        ) -> Any:
            _flush()
            if not self.muted:
                self._events.append(
                    OutputEvent(
                        "display",
                        data=dict(data),
                        metadata=dict(metadata or {}),
                        transient=kwargs.get("transient"),
                        update=bool(kwargs.get("update", False)),
                    )
                )
            self.muted += 1
            try:
                return publish(data, metadata, *args, **kwargs)
            finally:
                self.muted -= 1

        return wrapper

    def _clear_wrapper(self, clear: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(wait: bool = False) -> Any:
            _flush()
            self._events.append(OutputEvent("clear", update=wait))
            self.muted += 1
            try:
                return clear(wait)
            finally:
                self.muted -= 1

        return wrapper

    def _result_wrapper(self, write: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(
            format_dict: Mapping[str, Any], md_dict: Mapping[str, Any] | None = None
        ) -> Any:
            self._events.append(
                OutputEvent("result", data=dict(format_dict), metadata=dict(md_dict or {}))
            )
            return write(format_dict, md_dict)

        return wrapper

    def events(self) -> tuple[OutputEvent, ...]:
        """What was recorded: adjacent writes to one stream merged, progress bars collapsed,
        widget views (which cannot outlive their kernel) left out."""
        merged: list[OutputEvent] = []
        for ev in self._events:
            if ev.kind in ("stdout", "stderr"):
                if merged and merged[-1].kind == ev.kind:
                    merged[-1] = OutputEvent(ev.kind, merged[-1].text + ev.text)
                else:
                    merged.append(ev)
                continue
            if ev.data is not None and _WIDGET_MIME in ev.data:
                data = {k: v for k, v in ev.data.items() if k != _WIDGET_MIME}
                if not data:
                    continue
                ev = OutputEvent(
                    ev.kind,
                    data=data,
                    metadata=ev.metadata,
                    transient=ev.transient,
                    update=ev.update,
                )
            merged.append(ev)
        return tuple(
            OutputEvent(ev.kind, _collapse_cr(ev.text)) if ev.kind in ("stdout", "stderr") else ev
            for ev in merged
        )


_CR = re.compile(r"[^\n]*\r(?!\n)")


def _collapse_cr(text: str) -> str:
    """Keep what a terminal would show of carriage-return progress updates."""
    return _CR.sub("", text) if "\r" in text else text


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or odd stream
            stream.flush()


def replay(events: Iterable[OutputEvent], shell: Any = None) -> None:
    """Show recorded outputs again, in order (rich data through the shell when there is one)."""
    pub = getattr(shell, "display_pub", None) if shell is not None else None
    for ev in events:
        if ev.kind == "stdout":
            sys.stdout.write(ev.text)
        elif ev.kind == "stderr":
            sys.stderr.write(ev.text)
        elif ev.kind == "clear":
            _flush()
            if pub is not None:
                pub.clear_output(ev.update)
        elif ev.data is not None:
            _flush()
            if ev.kind == "result" and shell is not None and _replay_result(shell, ev):
                continue
            if pub is not None:
                kwargs: dict[str, Any] = {}
                if ev.transient:
                    kwargs["transient"] = dict(ev.transient)
                if ev.update:
                    kwargs["update"] = True
                pub.publish(dict(ev.data), dict(ev.metadata or {}), **kwargs)
            else:
                sys.stdout.write(str(ev.data.get("text/plain", "")) + "\n")
    _flush()


def _replay_result(shell: Any, ev: OutputEvent) -> bool:
    """Show a recorded last-expression value as an Out[] result through the display hook."""
    hook = getattr(shell, "displayhook", None)
    needed = ("start_displayhook", "write_output_prompt", "write_format_data", "finish_displayhook")
    if hook is None or not all(hasattr(hook, n) for n in needed):
        return False
    try:
        hook.start_displayhook()
        hook.write_output_prompt()
        hook.write_format_data(dict(ev.data or {}), dict(ev.metadata or {}))
        hook.finish_displayhook()
    except Exception:
        log.debug("could not replay a result through the display hook", exc_info=True)
        return False
    return True


# -- stored entries -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CellEntry:
    """What the cache holds for one cell: pickled variables (an immutable snapshot), the outputs
    to replay and the key parts it was stored under."""

    format: int
    label: str
    parts: tuple[KeyPart, ...]
    names: tuple[str, ...]
    deleted: tuple[str, ...]
    stream: bytes
    buffers: tuple[Any, ...]
    events: tuple[OutputEvent, ...]
    compute_seconds: float
    created: float
    nbytes: int = 0


class _Pickler(pickle.Pickler):
    """Pickles modules as a re-import; everything else as usual (protocol 5)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.ModuleType):
            return importlib.import_module, (obj.__name__,)
        return NotImplemented


def _dumps(values: Mapping[str, Any]) -> tuple[bytes, tuple[Any, ...]]:
    buffers: list[pickle.PickleBuffer] = []
    f = io.BytesIO()
    _Pickler(f, protocol=5, buffer_callback=buffers.append).dump(dict(values))
    frozen: list[Any] = []
    for buf in buffers:
        try:
            raw = buf.raw()
        except BufferError:  # not contiguous: fall back to an in-band pickle of everything
            f = io.BytesIO()
            _Pickler(f, protocol=5).dump(dict(values))
            return f.getvalue(), ()
        frozen.append(pickle.PickleBuffer(bytes(raw)))  # a copy: later mutation cannot leak in
    return f.getvalue(), tuple(frozen)


def _loads(entry: CellEntry) -> dict[str, Any]:
    # fresh, writable copies of every buffer: restored arrays never alias the cached entry
    buffers = [bytearray(b) for b in entry.buffers]
    values = pickle.loads(entry.stream, buffers=buffers)
    if not isinstance(values, dict):
        raise TypeError("a cell entry holds a dict of variables")
    return values


def _unpicklable(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    bad = []
    for name, value in values.items():
        try:
            _Pickler(io.BytesIO(), protocol=5, buffer_callback=lambda b: None).dump(value)
        except Exception as exc:
            bad.append((name, f"{type(value).__qualname__}: {exc}"))
    return bad


# -- outcome --------------------------------------------------------------------------------------
Status = Literal["hit", "stored", "not-cached", "off"]


@dataclass(frozen=True)
class CellOptions:
    """The options of one `%%tcache` run (see the magic's help)."""

    name: str | None = None
    ttl: float | None = None
    tiers: tuple[str, ...] | None = None
    force: bool = False
    off: bool = False
    variables: tuple[str, ...] | None = None
    deps: tuple[str, ...] = ()
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class CellOutcome:
    """What happened to a cell: served ('hit'), run and 'stored', run but 'not-cached' (with a
    reason), or run with caching 'off'."""

    status: Status
    key: CellKey | None = None
    tier: str | None = None
    seconds: float = 0.0
    compute_seconds: float = 0.0
    saved_seconds: float = 0.0
    variables: tuple[str, ...] = ()
    reason: str | None = None
    previous: tuple[KeyPart, ...] | None = None
    nbytes: int = 0

    def message(self) -> str:
        """The one short line shown under a cell."""
        if self.status == "hit":
            names = ", ".join(self.variables) or "outputs"
            return (
                f"tcache: {names} restored from {self.tier} in {_fmt(self.seconds)}"
                f" (saved {_fmt(self.saved_seconds)})"
            )
        if self.status == "stored":
            return f"tcache: stored {', '.join(self.variables) or 'outputs'} ({_mb(self.nbytes)})"
        if self.status == "not-cached":
            return f"tcache: not cached: {self.reason}"
        return "tcache: off"


def _fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


class _RestoreFailed(Exception):
    pass


def _default_run(source: str, namespace: dict[str, Any]) -> Callable[[], None]:
    def run() -> None:
        exec(compile(source, _register_source(source), "exec"), namespace)

    return run


def _register_source(source: str) -> str:
    """A file name under which `inspect.getsource` finds code compiled from `source`."""
    name = f"<tcache-{hash_value(source)[:12]}>"
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    return name


def run_cached_cell(
    source: str,
    namespace: dict[str, Any],
    cache: MultiLevelCache,
    run: Callable[[], None] | None = None,
    *,
    options: CellOptions | None = None,
    shell: Any = None,
    skip: Collection[str] = IPYTHON_NAMES,
) -> CellOutcome:
    """Serve a cell from the cache, or run it (`run()`, which raises when the cell fails) and
    store its variables and outputs. `source` is plain Python (IPython syntax transformed).

    >>> import tempfile
    >>> from tore_nb import MultiLevelCache, CacheConfig
    >>> cache = MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp()))
    >>> run_cached_cell("import math\\nr = math.pi", {}, cache).variables
    ('r',)
    """
    opts = options or CellOptions()
    run = run or _default_run(source, namespace)
    t0 = time.perf_counter()
    if opts.off:
        run()
        return CellOutcome("off", seconds=time.perf_counter() - t0)
    try:
        analysis = analyze_cell(source)
    except SyntaxError:
        run()  # let the cell report its own syntax error the usual way
        return CellOutcome("not-cached", reason="the cell could not be parsed")
    try:
        key = cell_key(
            analysis,
            namespace,
            name=opts.name,
            deps=opts.deps,
            files=opts.files,
            variables=opts.variables,
            skip=skip,
        )
    except UnhashableInput as exc:
        _warn(
            f"cell not cached: {exc}; define __tore_hash__ on its type, or pass the "
            f"data it depends on another way"
        )
        run()
        return CellOutcome("not-cached", seconds=time.perf_counter() - t0, reason=str(exc))
    if not opts.force:
        hit = cache.fetch(key.key, opts.tiers)
        entry = hit.value if hit is not None else None
        if hit is not None and isinstance(entry, CellEntry) and entry.format == CELL_FORMAT:
            try:
                restored = _restore(entry, analysis, namespace)
            except _RestoreFailed as exc:
                log.warning("tcache: could not restore cell %s (%s); running it", key.label, exc)
            else:
                replay(entry.events, shell)
                took = time.perf_counter() - t0
                saved = max(0.0, entry.compute_seconds - took)
                cache.metrics.record_saved(saved)
                return CellOutcome(
                    "hit",
                    key,
                    hit.tier,
                    took,
                    entry.compute_seconds,
                    saved,
                    restored,
                    previous=entry.parts,
                    nbytes=entry.nbytes,
                )
    previous = latest_parts(cache, key.label)
    with OutputRecorder(shell) as recorder:
        t1 = time.perf_counter()
        run()
        compute = time.perf_counter() - t1
    return _store(
        cache,
        key,
        analysis,
        namespace,
        opts,
        recorder.events(),
        compute,
        time.perf_counter() - t0,
        previous,
    )


def _store(
    cache: MultiLevelCache,
    key: CellKey,
    analysis: CellAnalysis,
    namespace: Mapping[str, Any],
    opts: CellOptions,
    events: tuple[OutputEvent, ...],
    compute: float,
    took: float,
    previous: tuple[KeyPart, ...] | None,
) -> CellOutcome:
    def not_cached(reason: str) -> CellOutcome:
        _warn(f"cell not cached: {reason}")
        return CellOutcome("not-cached", key, None, took, compute, reason=reason, previous=previous)

    if opts.variables is not None:
        missing = [n for n in opts.variables if n not in namespace]
        if missing:
            return not_cached(f"--vars names {', '.join(missing)}, which the cell did not define")
        names = list(opts.variables)
    else:
        names = [n for n in analysis.outputs if n not in analysis.definitions and n in namespace]
    values = {n: namespace[n] for n in names}
    try:
        stream, buffers = _dumps(values)
    except Exception:
        bad = _unpicklable(values) or [("?", "the variables cannot be pickled together")]
        shown = "; ".join(f"variable {n!r} cannot be pickled ({why})" for n, why in bad)
        return not_cached(shown)
    nbytes = len(stream) + sum(memoryview(b).nbytes for b in buffers)
    deleted = tuple(n for n in analysis.deleted if n not in namespace)
    entry = CellEntry(
        CELL_FORMAT,
        key.label,
        key.parts,
        tuple(names),
        deleted,
        stream,
        buffers,
        events,
        compute,
        time.time(),
        nbytes,
    )
    if not cache.set(key.key, entry, opts.ttl, opts.tiers):
        limits = [
            cache.tier(t).max_item_bytes
            for t in cache.tier_names
            if opts.tiers is None or t in opts.tiers
        ]
        if not limits or nbytes > max(limits):
            biggest = max(values, key=lambda n: _size_of(values[n]), default="?")
            return not_cached(
                f"its entry ({_mb(nbytes)}) is larger than every enabled tier "
                f"allows (largest variable: {biggest!r})"
            )
        return not_cached("no cache tier accepted the entry (see the log)")
    cache.set(
        LATEST_PREFIX + key.label,
        {"key": key.key, "parts": key.parts, "previous": previous},
        opts.ttl,
        opts.tiers,
    )
    return CellOutcome(
        "stored", key, None, took, compute, 0.0, tuple(names), previous=previous, nbytes=nbytes
    )


def _size_of(value: Any) -> int:
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    try:
        return len(pickle.dumps(value, protocol=5))
    except Exception:
        return 0


def _restore(
    entry: CellEntry, analysis: CellAnalysis, namespace: dict[str, Any]
) -> tuple[str, ...]:
    """Re-run the cell's definitions and assign its variables, all or nothing."""
    touched = set(analysis.definitions) | set(entry.names) | set(entry.deleted)
    saved = {n: namespace[n] for n in touched if n in namespace}
    defs = _definitions_code(analysis)

    def rollback() -> None:
        for n in touched:
            if n in saved:
                namespace[n] = saved[n]
            else:
                namespace.pop(n, None)

    values: dict[str, Any] | None = None
    try:
        try:
            if defs is not None:
                exec(defs, namespace)
            values = _loads(entry)
        except NameError:  # a definition uses a variable the cell assigns: variables first
            rollback()
            values = _loads(entry)
            namespace.update(values)
            if defs is not None:
                exec(defs, namespace)
    except Exception as exc:
        rollback()
        raise _RestoreFailed(f"{type(exc).__name__}: {exc}") from exc
    namespace.update(values)
    for n in entry.deleted:
        namespace.pop(n, None)
    return entry.names


def _definitions_code(analysis: CellAnalysis) -> types.CodeType | None:
    tree = ast.parse(analysis.source)
    tree.body = [s for s in tree.body if isinstance(s, _DEF_NODES)]
    if not tree.body:
        return None
    return compile(tree, _register_source(analysis.source), "exec")  # type: ignore[no-any-return]


def _warn(message: str) -> None:
    # shown as "tcache:1: CacheWarning: ..." rather than pointing into this module
    warnings.warn_explicit(message, CacheWarning, "tcache", 1, module="tore_nb.cells")


# -- explain --------------------------------------------------------------------------------------
def latest_parts(cache: MultiLevelCache, label: str) -> tuple[KeyPart, ...] | None:
    """The key parts of the entry most recently stored under a cell label, if any."""
    pointer = cache.get(LATEST_PREFIX + label)
    if isinstance(pointer, dict) and isinstance(pointer.get("parts"), tuple):
        return pointer["parts"]  # type: ignore[no-any-return]
    return None


def previous_parts(cache: MultiLevelCache, label: str) -> tuple[KeyPart, ...] | None:
    """The key parts the latest entry of a label replaced (what changed the last time)."""
    pointer = cache.get(LATEST_PREFIX + label)
    if isinstance(pointer, dict) and isinstance(pointer.get("previous"), tuple):
        return pointer["previous"]  # type: ignore[no-any-return]
    return None


@dataclass(frozen=True)
class ExplainRow:
    """One key part, stored against current: 'unchanged', 'changed', 'added' or 'removed'."""

    part: str
    name: str
    stored: str | None
    current: str | None
    status: str


@dataclass(frozen=True)
class Explanation:
    """Which parts of a cell's key differ from its stored entry."""

    label: str
    rows: tuple[ExplainRow, ...] = field(default_factory=tuple)
    stored: bool = True

    @property
    def changed(self) -> tuple[ExplainRow, ...]:
        return tuple(r for r in self.rows if r.status != "unchanged")

    def to_frame(self) -> pd.DataFrame:
        """One row per key part: part, name, stored, current, status."""
        import pandas as pd

        cols = ["part", "name", "stored", "current", "status"]
        return pd.DataFrame([[getattr(r, c) for c in cols] for r in self.rows], columns=cols)

    def __str__(self) -> str:
        if not self.stored:
            return f"tcache: no stored entry for {self.label!r}"
        if not self.changed:
            return f"tcache: {self.label}: nothing changed"
        lines = [f"tcache: {self.label}: {len(self.changed)} part(s) changed"]
        lines += [f"  {r.status:8} {r.part} {r.name}" for r in self.changed]
        return "\n".join(lines)


def explain(
    current: Sequence[KeyPart], stored: Sequence[KeyPart] | None, label: str = ""
) -> Explanation:
    """Compare the parts of a cell's key now with those of its stored entry.

    >>> a, b = analyze_cell("y = x + 1"), analyze_cell("y = x + 1  # same")
    >>> str(explain(cell_key(b, {"x": 2}).parts, cell_key(a, {"x": 1}).parts, "y"))
    'tcache: y: 1 part(s) changed\\n  changed  input x'
    """
    if stored is None:
        added = tuple(ExplainRow(p.kind, p.name, None, _short(p.digest), "added") for p in current)
        return Explanation(label, added, stored=False)
    old = {(p.kind, p.name): p.digest for p in stored}
    new = {(p.kind, p.name): p.digest for p in current}
    rows = []
    for k in dict.fromkeys([*new, *old]):
        before, after = old.get(k), new.get(k)
        if before is None:
            status = "added"
        elif after is None:
            status = "removed"
        else:
            status = "unchanged" if before == after else "changed"
        rows.append(ExplainRow(k[0], k[1], _short(before), _short(after), status))
    return Explanation(label, tuple(rows))


def _short(digest: str | None) -> str | None:
    return None if digest is None else digest[:12]
