"""Run or restore a cell: look its key up; on a hit restore and replay, on a miss run and store.

`run_cached_cell` looks the key up. On a hit it unpickles the stored variables (fresh copies
each time), assigns them all at once, re-executes the cell's definitions (which so see the
cell's values, as they did when it ran), and replays what the cell printed and displayed, in
order, putting the last expression's value back in `Out`. On a miss it runs the cell while
recording its stdout, stderr and rich outputs, then stores the variables and the outputs. A
cell that raises is not cached; a variable that cannot be pickled, an input that cannot be
hashed, or a cell its analysis marks uncacheable, leaves the cell uncached (it still runs) with
one `CacheWarning` naming why.
"""

from __future__ import annotations
import __future__

import ast
import contextlib
import dataclasses
import linecache
import logging
import pickle
import time
import types
import warnings
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..keys import hash_value
from .analysis import _DEF_NODES, IPYTHON_NAMES, CellAnalysis, analyze_cell, is_setup_magic
from .capture import NO_RESULT, OutputEvent, OutputRecorder, replay
from .entry import CellEntry, _dump_result, _dumps, _load_result, _loads, _unpicklable
from .explanation import latest_parts
from .keys import CELL_FORMAT, LATEST_PREFIX, CellKey, KeyPart, UnhashableInput, cell_key

if TYPE_CHECKING:
    from ..tiered import MultiLevelCache

__all__ = [
    "CacheWarning",
    "CellError",
    "CellOptions",
    "CellOutcome",
    "Status",
    "run_cached_cell",
]

log = logging.getLogger("tore_nb.cells")


class CacheWarning(UserWarning):
    """A cell or function result that tore_nb could not cache (it still ran)."""


class CellError(Exception):
    """Raised by a `run` callable when the cell failed; wraps the cell's own exception."""

    def __init__(self, error: BaseException | None) -> None:
        super().__init__(f"the cell raised {type(error).__name__}: {error}")
        self.error = error


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
    key: CellKey | None = None,
) -> CellOutcome:
    """Serve a cell from the cache, or run it (`run()`, which raises when the cell fails) and
    store its variables and outputs. `source` is plain Python (IPython syntax transformed).

    `key` is the cell's key when the caller has made it already (`cell_key` of this source,
    namespace, options and `skip`), so that its inputs are not hashed a second time.

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
    uncacheable = analysis.uncacheable
    if uncacheable:
        _warn(f"cell not cached: {uncacheable}")
        run()
        return CellOutcome("not-cached", seconds=time.perf_counter() - t0, reason=uncacheable)
    if key is None:
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
                replay(entry.events, shell, result=_load_result(entry, namespace))
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
        recorder.result,
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
    result: Any = NO_RESULT,
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
    result_name, result_blob = _dump_result(result, values)
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
        nbytes + len(result_blob or b""),
        result_name,
        result_blob,
    )
    stored = cache.set(key.key, entry, opts.ttl, opts.tiers)
    if not stored and result_blob is not None:  # Out[n] is not worth losing the entry for
        entry = dataclasses.replace(entry, result=None, nbytes=nbytes)
        stored = cache.set(key.key, entry, opts.ttl, opts.tiers)
    if not stored:
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
        "stored",
        key,
        None,
        took,
        compute,
        0.0,
        tuple(names),
        previous=previous,
        nbytes=entry.nbytes,
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
    """Assign the cell's variables, then re-run its definitions, all or nothing.

    Variables first: default arguments, class attributes and decorator arguments are evaluated
    when a definition runs, and must see the cell's values, as they did when the cell ran, not
    the notebook's current ones."""
    touched = set(analysis.definitions) | set(entry.names) | set(entry.deleted)
    saved = {n: namespace[n] for n in touched if n in namespace}
    module = namespace.get("__name__")
    seen: set[tuple[str, str]] = set()

    def rollback() -> None:
        for n in touched:
            if n in saved:
                namespace[n] = saved[n]
            else:
                namespace.pop(n, None)

    try:
        defs = _definitions_code(analysis)
        try:
            values = _loads(entry, seen)
        except Exception:
            # the values need a class the cell defines, not defined here (a fresh kernel):
            # define what can be without the cell's values, to load them; defined again below
            for code in defs:
                with contextlib.suppress(Exception):
                    exec(code, namespace)
            values = _loads(entry, seen)
        namespace.update(values)
        for code in defs:
            exec(code, namespace)
        if any(m == module and n.split(".")[0] in analysis.definitions for m, n in seen):
            # instances of the cell's classes (or its functions): bind to the final definitions
            namespace.update(_loads(entry))
    except Exception as exc:
        rollback()
        raise _RestoreFailed(f"{type(exc).__name__}: {exc}") from exc
    for n in entry.deleted:
        namespace.pop(n, None)
    return entry.names


def _definitions_code(analysis: CellAnalysis) -> list[types.CodeType]:
    """The cell's top-level imports, defs, classes and settings magics (`%load_ext`,
    `%matplotlib`), compiled one statement each (under the cell's own `__future__` imports, as
    when they ran together): what a hit runs again, since no variable carries their effect."""
    statements = [
        s for s in ast.parse(analysis.source).body if isinstance(s, _DEF_NODES) or is_setup_magic(s)
    ]
    if not statements:
        return []
    flags = 0
    for s in statements:
        if isinstance(s, ast.ImportFrom) and s.module == "__future__":
            for alias in s.names:
                feature = getattr(__future__, alias.name, None)
                flags |= getattr(feature, "compiler_flag", 0)
    filename = _register_source(analysis.source)
    return [
        compile(ast.Module(body=[s], type_ignores=[]), filename, "exec", flags=flags)
        for s in statements
    ]


def _warn(message: str) -> None:
    # shown as "tcache:1: CacheWarning: ..." rather than pointing into this module
    warnings.warn_explicit(message, CacheWarning, "tcache", 1, module="tore_nb.cells")
