"""Store a run: what it changed (observed, not guessed), what it read beyond its key, its outputs.

`store` turns one observed run into a `CellEntry`: the names it bound to new objects and the
inputs it changed in place (the inputs hashed again after the run), pickled so that objects
that existed before stay references (`snapshot`); the state probes' changes; the files it wrote.
What it read beyond its key (files, env keys, random state, variables its outputs refer to)
becomes a `Dependency`: the entry then lies under `deps.dependent_key` and a `Manifest` under
the key. A run that cannot be restored as a plain run would leave the namespace raises
`NotCached` with the reason.
"""

from __future__ import annotations

import functools
import os
import pickle
import time
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..code_origin import is_local_module
from ..fingerprint import dependency_token
from ..keys import hash_value
from .analysis import CellAnalysis, is_ipython_name
from .capture import NO_RESULT, OutputRecorder
from .deps import PER_LAUNCH_ENV, Dependency, Manifest, current_digest, dependent_key, merge
from .effects import describe
from .entry import CellEntry
from .keys import CELL_FORMAT, LATEST_PREFIX, CellKey, KeyPart
from .observe import Observation
from .outcome import CellOptions, CellOutcome, format_bytes
from .snapshot import ObjectIndex, dumps, held_elsewhere, inplace_state, namespace_changes
from .state import State

if TYPE_CHECKING:
    from ..tiered import MultiLevelCache

__all__ = ["NotCached", "Run", "store", "watch_aliases", "watched_inputs"]


# not compared before and after a run: modules and classes count by their code; a function
# is (a call can change its mutable defaults, closure and attributes)
_CODE = (types.ModuleType, type, types.BuiltinFunctionType, types.MethodType, functools.partial)


class NotCached(Exception):
    """Why a run that succeeded cannot be stored; `outage` names the tiers that were down
    when that is why, each with its breaker's outage number, so that the caller can say it
    once per outage."""

    def __init__(self, reason: str, *, outage: tuple[tuple[str, int], ...] = ()) -> None:
        super().__init__(reason)
        self.outage = outage


@dataclass(frozen=True)
class Run:
    """Everything known about one run of a cell, for `_store`."""

    key: CellKey
    analysis: CellAnalysis
    before: Mapping[str, Any]
    inputs: Mapping[str, str]  # names whose content the key holds -> digest before the run
    index: ObjectIndex
    state: State
    seen: Observation
    recorder: OutputRecorder
    compute: float
    previous: tuple[KeyPart, ...] | None
    parts: tuple[KeyPart, ...]


def watched_inputs(key: CellKey, namespace: Mapping[str, Any]) -> dict[str, str]:
    """The inputs whose content the key holds (not code, not modules): name -> digest."""
    out = {}
    for part in key.parts:
        if part.kind != "input" or part.name not in namespace:
            continue
        value = namespace[part.name]
        if isinstance(value, _CODE):
            continue
        out[part.name] = part.digest
    return out


def watch_aliases(inputs: dict[str, str], index: ObjectIndex, namespace: Mapping[str, Any]) -> None:
    """Add to `inputs` the variables whose objects an input holds (`table = [row, row]`: row):
    a change made through the input changes them too, and they must be restored with it."""
    for name in list(inputs):
        for other in sorted(index.aliases.get(name, ())):
            if other in inputs or other not in namespace:
                continue
            try:
                inputs[other] = dependency_token(namespace[other], strict=True)
            except TypeError:
                continue  # cannot be compared: no change can be seen in it


def store(
    cache: MultiLevelCache,
    namespace: dict[str, Any],
    opts: CellOptions,
    r: Run,
    t0: float,
) -> CellOutcome:
    if opts.rerun_effects:
        acted = describe(r.seen.started, r.seen.signalled, r.seen.used_cache)
        if acted:
            raise NotCached(f"{acted}, which a replay would not do again")
    overhead = time.perf_counter() - t0 - r.compute
    if opts.min_seconds and (r.compute < opts.min_seconds or r.compute < overhead):
        return CellOutcome(
            "not-cached",
            r.key,
            None,
            time.perf_counter() - t0,
            r.compute,
            reason="it runs faster than its own hit would",
            cheap=True,
        )
    events = r.recorder.events()
    if r.recorder.widgets:
        raise NotCached("it shows interactive widgets, which live in this kernel only")
    changes = namespace_changes(
        r.before,
        namespace,
        r.inputs,
        lambda v: dependency_token(v, strict=True),
        is_ipython_name,
    )
    if opts.variables is not None:
        missing = [n for n in opts.variables if n not in namespace]
        if missing:
            raise NotCached(f"--vars names {', '.join(missing)}, which the cell did not define")
        rebound = [n for n in opts.variables if n not in changes.mutated]
        mutated = [n for n in changes.mutated if n in opts.variables]
    else:
        rebound = list(changes.rebound)
        mutated = list(changes.mutated)
    values, inplace, replaced = _outputs(r, namespace, rebound, mutated)
    for name in mutated:  # what it holds now is stored as it is now, not referred to
        r.index.forget_inside(name)
    payload: dict[str, Any] = {"values": values, "inplace": inplace}
    result = r.recorder.result
    if result is not NO_RESULT:
        payload["result"] = result
    try:
        stream, buffers, used = dumps(payload, r.index, replaced)
    except Exception:
        payload.pop("result", None)  # Out[n] is not worth losing the entry for
        try:
            stream, buffers, used = dumps(payload, r.index, replaced)
        except Exception:
            raise NotCached(_why_unpicklable(values, inplace)) from None
    deps = _dependencies(r, namespace, used, changes)
    dep_parts = tuple(d.part(_digest_before(d, r, namespace)) for d in deps)
    written, appended = _writes(r.seen)
    nbytes = len(stream) + sum(memoryview(b).nbytes for b in buffers)
    entry = CellEntry(
        CELL_FORMAT,
        r.key.label,
        (*r.key.parts, *dep_parts),
        tuple(values),
        # what the run unbound, and what its `del`s unbind: gone even where it existed before
        tuple(
            dict.fromkeys(n for n in (*changes.deleted, *r.analysis.deleted) if n not in namespace)
        ),
        stream,
        buffers,
        events,
        r.compute,
        time.time(),
        nbytes,
        mutated=tuple(inplace),
        state=_state_changes(r.state),
        written=written,
        appended=appended,
        # a later edit of their files must find them imported, as after a plain run
        imported=tuple(m for m in r.seen.imported if is_local_module(m)),
    )
    parts = (*r.key.parts, *dep_parts)
    items: dict[str, Any] = {}
    if deps:
        head = cache.get(r.key.key)
        entry_key = dependent_key(r.key.key, dep_parts)
        items[entry_key] = entry
        items[r.key.key] = merge(head if isinstance(head, Manifest) else None, deps)
    else:
        entry_key = r.key.key
        items[entry_key] = entry
    pointer = {"key": r.key.key, "parts": parts, "previous": r.previous}
    items[LATEST_PREFIX + r.key.label] = pointer
    # one batch: each tier writes (and a disk tier commits) once
    count = cache.set_many(items, opts.ttl, opts.tiers)
    if count < len(items) and cache.get(entry_key) is None:
        limits = [
            cache.tier(t).max_item_bytes
            for t in cache.tier_names
            if opts.tiers is None or t in opts.tiers
        ]
        if not limits or nbytes > max(limits):
            biggest = max(values, key=lambda n: _size_of(values[n]), default="?")
            raise NotCached(
                f"its entry ({format_bytes(nbytes)}) is larger than every enabled tier "
                f"allows (largest variable: {biggest!r})"
            )
        down = tuple(
            (t, cache.outages(t))
            for t in cache.tier_names
            if (opts.tiers is None or t in opts.tiers) and cache.breaker_state(t) != "closed"
        )
        raise NotCached("no cache tier accepted the entry (see the log)", outage=down)
    return CellOutcome(
        "stored",
        r.key,
        None,
        time.perf_counter() - t0,
        r.compute,
        0.0,
        (*values, *inplace),
        previous=r.previous,
        nbytes=nbytes,
        parts=parts,
    )


MAX_APPENDED = 1 << 20  # bytes of appends replayed on a hit, per file


def _outputs(
    r: Run, namespace: Mapping[str, Any], rebound: list[str], mutated: list[str]
) -> tuple[dict[str, Any], dict[str, tuple[str, Any]], list[Any]]:
    """What a hit puts back: the variables bound to new objects, the objects changed in place
    (with what they hold now), and the objects that existed but are stored as they are now."""
    definitions = set(r.analysis.definitions)  # run again on a hit, not stored
    values = {n: namespace[n] for n in rebound if n not in definitions}
    module = namespace.get("__name__")
    made = {id(namespace[n]) for n in definitions if n in namespace}  # by class statements
    existed = {id(v) for v in r.before.values()}
    for name, value in values.items():
        if (
            isinstance(value, type)
            and value.__module__ == module
            and id(value) not in made
            and id(value) not in existed
        ):
            raise NotCached(
                f"{name!r} is a class made by a call (namedtuple, type(), make_dataclass), "
                f"which another session could not rebuild; define it with a class statement"
            )
    inplace: dict[str, tuple[str, Any]] = {}
    replaced: list[Any] = []
    for name in mutated:
        old = r.before[name]  # the object the name held before: changed in place
        how = inplace_state(old)
        if how is not None:
            inplace[name] = how
        elif held_elsewhere(old, namespace, (r.before, r.index.holders())):
            raise NotCached(
                f"{name!r} was changed in place and other objects hold it; a hit could not "
                f"change it for them"
            )
        elif namespace.get(name) is old:
            values[name] = old  # nothing else holds it: a new object is indistinguishable
            replaced.append(old)
    return values, inplace, replaced


def _writes(
    seen: Observation,
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, bytes], ...]]:
    """The files the run created or replaced, with the digest a hit requires them to still
    have, and what it appended to others, which a hit appends again (as it prints again)."""
    sizes = dict(seen.appended)
    written = []
    appended = []
    for path in seen.files_written:
        absolute = seen.absolute(path)
        if path not in sizes:
            written.append((path, current_digest(Dependency("file", absolute), {})))
            continue
        try:
            with open(absolute, "rb") as f:
                f.seek(0, os.SEEK_END)
                end = f.tell()
                if end < sizes[path]:
                    raise NotCached(f"it rewrote {path} (it is shorter than before the run)")
                if end - sizes[path] > MAX_APPENDED:
                    raise NotCached(f"it appended more than 1 MB to {path}")
                f.seek(sizes[path])
                appended.append((path, f.read()))
        except OSError as exc:
            raise NotCached(f"cannot read what it wrote to {path} ({exc})") from None
    return tuple(written), tuple(appended)


def _dependencies(
    r: Run, namespace: Mapping[str, Any], used: set[str], changes: Any
) -> list[Dependency]:
    """What the run read beyond its key."""
    seen = r.seen
    deps: set[Dependency] = set()
    written = set(seen.files_written)
    deps.update(Dependency("file", p) for p in seen.files_read if p not in written)
    deps.update(Dependency("dir", p) for p in seen.dirs_listed)
    deps.update(Dependency("stat", p) for p in seen.stats if p not in written)
    if seen.env_all:
        deps.add(Dependency("env", "*"))
    deps.update(Dependency("env", k) for k in seen.env_read if k not in PER_LAUNCH_ENV)
    if seen.cwd_read:
        deps.add(Dependency("cwd"))
    if seen.imported:
        deps.add(Dependency("sys.path"))
    for probe in r.state.probes:
        if probe.kind != "consumed" or probe.name in seen.seeded:
            continue
        if probe.digest(probe.capture()) != r.state.digest(probe.name):
            deps.add(Dependency("state", probe.name))
    keyed = {p.name for p in r.key.parts if p.kind == "input"}
    # outputs refer to these variables' objects: what they hold must be what it was
    deps.update(Dependency("name", n) for n in used if n not in keyed)
    return sorted(deps)


def _digest_before(dep: Dependency, r: Run, namespace: Mapping[str, Any]) -> str:
    """A dependency's digest as it was before the run."""
    if dep.kind == "state":
        return r.state.digest(dep.name)
    if dep.kind == "env":
        return current_digest(dep, namespace, env=r.state.snapshots.get("os.environ"))
    if dep.kind == "cwd" and "cwd" in r.state.snapshots:
        return hash_value(r.state.snapshots["cwd"])
    if dep.kind == "sys.path" and "sys.path" in r.state.snapshots:
        return hash_value(list(r.state.snapshots["sys.path"]))
    if dep.kind == "name" and dep.name in r.inputs:
        return r.inputs[dep.name]  # digested before the run (it may have changed since)
    if dep.kind == "name" and dep.name in r.before:
        return current_digest(dep, r.before)
    return current_digest(dep, namespace)


def _state_changes(state: State) -> tuple[tuple[str, Any], ...]:
    """What the run changed of each probe's state, as each probe describes it."""
    out = []
    for probe in state.probes:
        change = probe.changes(state.snapshots[probe.name], probe.capture())
        if change is None:
            continue
        if not getattr(probe, "restorable", True):
            raise NotCached(f"it changes {probe.name}, which a hit cannot restore")
        out.append((probe.name, change))
    return tuple(out)


def _why_unpicklable(values: Mapping[str, Any], inplace: Mapping[str, Any]) -> str:
    bad = []
    for name, value in {**values, **inplace}.items():
        try:
            dumps(value)
        except Exception as exc:
            bad.append(f"variable {name!r} cannot be pickled ({type(value).__qualname__}: {exc})")
    return "; ".join(bad) or "the variables cannot be pickled together"


def _size_of(value: Any) -> int:
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    try:
        return len(pickle.dumps(value, protocol=5))
    except Exception:
        return 0
