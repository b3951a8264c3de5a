"""Run or restore a cell: look its key up; on a hit restore and replay, on a miss run and store.

The key is made before the run from what the code may read (`cell_key`), plus the hidden state
any cell reads silently (matplotlib's rcParams, pandas' options). A miss runs the cell under
observation: the namespace before and after (names added, rebound, deleted), the inputs hashed
again (an object changed in place by any call is an output), the files, folders and
environment variables it read, the global random states it drew from, the state it changed.
What it read beyond its key is a dependency (`deps`): the entry is stored under a second key
that includes their digests. A hit restores exactly what the run changed: objects that existed
before as themselves (in place), views as views, state probes' changes, the cell's definitions
run again; then it replays the outputs in order.

A cell is run as it is, uncached, with one note saying why, when it cannot be keyed (an input
that cannot be content-hashed, an indirect read), when the loaded code of a local module
differs from its file, when it builds widgets, or when what it changed cannot be restored as a
plain run would leave it. A cell that raises is not cached.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

from .analysis import IPYTHON_NAMES, CellAnalysis, analyze_cell, is_ipython_name
from .capture import OutputRecorder, replay
from .deps import Manifest, current_digest, dependent_key
from .entry import CellEntry
from .explanation import latest_parts
from .keys import CELL_FORMAT, CellKey, KeyPart, UnhashableInput, cell_key
from .modules import stale_modules
from .observe import observe
from .outcome import (
    CacheWarning,
    CellError,
    CellOptions,
    CellOutcome,
    Status,
    warn_uncached,
)
from .restore import outputs_still_there, register_source, restore
from .snapshot import ObjectIndex
from .state import State, capture_state
from .store import NotCached, Run, store, watch_aliases, watched_inputs

# outages already said to the user, by (tier, its breaker's outage number): one warning each
_OUTAGES_SAID: set[tuple[tuple[str, int], ...]] = set()

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


def _default_run(source: str, namespace: dict[str, Any]) -> Callable[[], None]:
    def run() -> None:
        exec(compile(source, register_source(source), "exec", dont_inherit=True), namespace)

    return run


def run_cached_cell(
    source: str,
    namespace: dict[str, Any],
    cache: MultiLevelCache,
    run: Callable[[], None] | None = None,
    *,
    options: CellOptions | None = None,
    shell: Any = None,
    skip: Collection[str] = IPYTHON_NAMES,
    on_key: Callable[[CellKey, tuple[KeyPart, ...]], None] | None = None,
) -> CellOutcome:
    """Serve a cell from the cache, or run it (`run()`, which raises when the cell fails) and
    store what it changed and showed. `source` is plain Python (IPython syntax transformed).
    `on_key(key, parts)` is called once the key and the current dependency digests are known,
    before the cell is restored or run (for `--explain`).

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

    def uncached(reason: str, key: CellKey | None = None) -> CellOutcome:
        if opts.warn:
            warn_uncached(f"cell not cached: {reason}")
        run()
        return CellOutcome("not-cached", key, seconds=time.perf_counter() - t0, reason=reason)

    if analysis.uncacheable:
        return uncached(analysis.uncacheable)
    try:
        prepared = _prepare(analysis, namespace, cache, opts, skip)
    except Exception as exc:  # a cache failure never breaks the cell: it runs plainly
        log.warning("tcache: could not key the cell (%s: %s)", type(exc).__name__, exc)
        return uncached(f"tore_nb failed keying it ({type(exc).__name__}: {exc})")
    if isinstance(prepared, str):
        return uncached(prepared)
    key, state, found, parts = prepared
    if on_key is not None:
        on_key(key, parts)
    if found is not None:
        entry, tier = found
        try:
            restored, result = restore(entry, analysis, namespace, state)
        except Exception as exc:  # RestoreError, or a failure of ours: the cell runs instead
            log.warning("tcache: could not restore cell %s (%s); running it", key.label, exc)
        else:
            replay(entry.events, shell, result=result)
            took = time.perf_counter() - t0
            saved = max(0.0, entry.compute_seconds - took)
            cache.metrics.record_saved(saved)
            return CellOutcome(
                "hit",
                key,
                tier,
                took,
                entry.compute_seconds,
                saved,
                restored,
                previous=entry.parts,
                nbytes=entry.nbytes,
                parts=parts,
            )
    try:
        previous = latest_parts(cache, key.label)
        before = dict(namespace)
        unchanged = set(analysis.read_only) - set(key.changed_by_calls)  # not hashed again
        inputs = {n: d for n, d in watched_inputs(key, namespace).items() if n not in unchanged}
        index = ObjectIndex(before, deep=inputs, skip=is_ipython_name)
        watch_aliases(inputs, index, namespace)
        ignore = [cache.config.disk_cache_path, *_library_caches()]
        state.take_all()
    except Exception as exc:
        log.warning("tcache: could not prepare the run (%s: %s)", type(exc).__name__, exc)
        return uncached(f"tore_nb failed preparing its run ({type(exc).__name__}: {exc})", key)
    with observe(state.snapshots, ignore=ignore) as watcher, OutputRecorder(shell) as recorder:
        t1 = time.perf_counter()
        run()
        compute = time.perf_counter() - t1
    run_ = Run(
        key,
        analysis,
        before,
        inputs,
        index,
        state,
        watcher.result,
        recorder,
        compute,
        previous,
        parts,
    )
    try:
        return store(cache, namespace, opts, run_, t0)
    except Exception as exc:  # NotCached says why; anything else is a failure of ours
        reason = str(exc)
        if not isinstance(exc, NotCached):
            log.warning("tcache: could not store the cell", exc_info=True)
            reason = f"tore_nb failed storing it ({type(exc).__name__}: {exc})"
        outage = exc.outage if isinstance(exc, NotCached) else ()
        if outage in _OUTAGES_SAID:  # said once for this outage: every cell would repeat it
            log.debug("tcache: cell not cached: %s", reason)
        elif opts.warn:
            if outage:
                _OUTAGES_SAID.add(outage)
                names = ", ".join(t for t, _ in outage)
                reason += f"; {names} down: cells are not cached there until it is back (said once)"
            warn_uncached(f"cell not cached: {reason}")
        return CellOutcome(
            "not-cached",
            key,
            None,
            time.perf_counter() - t0,
            compute,
            reason=reason,
            previous=previous,
            parts=parts,
        )


def _prepare(
    analysis: CellAnalysis,
    namespace: Mapping[str, Any],
    cache: MultiLevelCache,
    opts: CellOptions,
    skip: Collection[str],
) -> str | tuple[CellKey, State, tuple[CellEntry, str] | None, tuple[KeyPart, ...]]:
    """The key, the state and the entry found, or why the cell cannot be cached."""
    stale = stale_modules()
    if stale:
        return stale[0]
    state = capture_state()
    try:
        key = cell_key(
            analysis,
            namespace,
            name=opts.name,
            deps=opts.deps,
            files=opts.files,
            variables=opts.variables,
            skip=skip,
            state=state.keyed,
        )
    except UnhashableInput as exc:
        return (
            f"{exc}; define __tore_hash__ on its type, or pass the data it depends on another way"
        )
    except ValueError as exc:  # --files over a folder too large, an indirect read
        return str(exc)
    found, parts = (None, key.parts) if opts.force else _lookup(cache, key, namespace, opts, state)
    return key, state, found, parts


def _library_caches() -> list[str]:
    """Folders where libraries keep caches of their own (matplotlib's font list, numba's
    compiled code): rebuilt at will, they are no input of a cell."""
    found = [os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")]
    found.append(os.environ.get("MPLCONFIGDIR", ""))
    mpl = sys.modules.get("matplotlib")
    if mpl is not None:
        with contextlib.suppress(Exception):
            found.append(mpl.get_cachedir())
    return [f for f in found if f]


# -- lookup ---------------------------------------------------------------------------------------
def _lookup(
    cache: MultiLevelCache,
    key: CellKey,
    namespace: Mapping[str, Any],
    opts: CellOptions,
    state: State,
) -> tuple[tuple[CellEntry, str] | None, tuple[KeyPart, ...]]:
    """The entry of this key and the current digests of its dependencies, if any: ((entry,
    tier) or None, the key's parts with the dependencies' as they are now)."""
    hit = cache.fetch(key.key, opts.tiers)
    if hit is None:
        return None, key.parts
    head = hit.value
    if isinstance(head, CellEntry):
        if head.format == CELL_FORMAT and outputs_still_there(head):
            return (head, hit.tier), key.parts
        return None, key.parts
    if not isinstance(head, Manifest):
        return None, key.parts
    digests = _Digests(state)
    newest: tuple[KeyPart, ...] | None = None
    for variant in head.variants:
        dep_parts = tuple(
            d.part(current_digest(d, namespace, digests, state.snapshots.get("os.environ")))
            for d in variant
        )
        if newest is None:
            newest = dep_parts
        found = cache.fetch(dependent_key(key.key, dep_parts), opts.tiers)
        entry = found.value if found is not None else None
        if (
            found is not None
            and isinstance(entry, CellEntry)
            and entry.format == CELL_FORMAT
            and outputs_still_there(entry)
        ):
            return (entry, found.tier), (*key.parts, *dep_parts)
    return None, (*key.parts, *(newest or ()))


class _Digests(dict[str, str]):
    """Probe digests computed on demand (most cells never ask)."""

    def __init__(self, state: State) -> None:
        super().__init__()
        self.state = state

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        if name not in self and name in self.state.snapshots:
            self[name] = self.state.digest(name)
        return super().get(name, default)
