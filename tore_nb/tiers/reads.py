"""Reads over planned lanes (see `routing.plan_reads`): the first tier that holds a valid entry
serves it, and the faster tiers of its lane get a copy (see `promotion`).

Per-tier statistics are counted here; requests, hits and misses of the whole cache are the
caller's. Entries that fail to decode are rejected (counted, removed) and read as misses.

Each entry is bound to its write by its signed creation time: `Versions` keeps, per key, the
newest one this process has written or read, and an entry older than that is rejected too
(counted, logged once per tier, a miss, but left in place: it may be a newer write of another
process whose clock is behind). A genuine older entry put back under its key (a replay) is
thus refused by every process that has seen the newer one; see docs/reliability.md for who
stays exposed.

>>> import tempfile
>>> from tore_nb.codec import Codec
>>> from tore_nb.stats import TierStats
>>> from tore_nb.tiers import DiskTier
>>> from tore_nb.tiers.routing import plan_reads
>>> from tore_nb.tiers.stamps import WriteStamps
>>> codec = Codec(b"0123456789abcdef0123456789abcdef")
>>> disk = GuardedTier(DiskTier(tempfile.mkdtemp(), 10**6), TierStats())
>>> disk.write({"k": codec.encode("k", 42)}, None)
True
>>> Reader(codec, WriteStamps(), None).fetch("k", plan_reads(None, [disk], None)[1])[:2]
(42, 'disk')
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from time import perf_counter_ns
from typing import Any, cast

from .. import clock
from ..codec import Codec
from ..errors import SerializationError
from .base import MISSING, ObjectTier
from .checks import check_utf8
from .guarded import FAILED, GuardedTier
from .promotion import promote
from .routing import Lane, ReadPlan
from .stamps import WriteStamps
from .writes import Placed

__all__ = ["VERSIONS_KEPT", "Reader", "Versions"]

log = logging.getLogger("tore_nb.cache")

#: keys whose newest creation time a cache remembers (least recently used ones go first)
VERSIONS_KEPT = 100_000


class Versions:
    """Per key, the newest creation time this process has written or read: older entries of
    the key are superseded. Bounded: the `limit` keys least recently written or read go first.

    >>> v = Versions()
    >>> v.wrote("k", 2.0); v.accept("k", 1.0), v.accept("k", 2.0), v.accept("k", 3.0)
    (False, True, True)
    >>> v.accept("k", 2.0)
    False
    """

    __slots__ = ("_lock", "_newest", "limit")

    def __init__(self, limit: int = VERSIONS_KEPT) -> None:
        self.limit = limit
        self._newest: dict[str, float] = {}  # insertion order: least recently used first
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._newest)

    def wrote(self, key: str, created: float) -> None:
        """This process wrote `key` with an entry created at `created`: it is the newest, even
        if the clock went back since an earlier one (our own write is the value to serve)."""
        with self._lock:
            self._put(key, created)

    def wrote_many(self, created: dict[str, float]) -> None:
        """`wrote` for several keys (key -> creation time)."""
        with self._lock:
            for key, t in created.items():
                self._put(key, t)

    def accept(self, key: str, created: float) -> bool:
        """Whether an entry of `key` created at `created` may be served (not older than the
        newest seen); an accepted one becomes the newest."""
        if self._newest.get(key) == created:  # the entry seen last time: nothing to record
            return True
        with self._lock:
            newest = self._newest.get(key)
            if newest is not None and created < newest:
                return False
            self._put(key, created)
            return True

    def accept_many(self, found: dict[str, tuple[Any, float, float]]) -> list[str]:
        """`accept` for decoded entries (key -> (value, created, expires)); the keys refused."""
        get = self._newest.get
        if all(get(key) == got[1] for key, got in found.items()):  # all seen already
            return []
        with self._lock:
            refused = []
            for key, got in found.items():
                newest = get(key)
                if newest is not None and got[1] < newest:
                    refused.append(key)
                elif newest != got[1]:
                    self._put(key, got[1])
            return refused

    def _put(self, key: str, created: float) -> None:
        d = self._newest
        d.pop(key, None)  # to the end: the most recently used
        d[key] = created
        if len(d) > self.limit:
            del d[next(iter(d))]


def superseded(g: GuardedTier, key: str, warned: set[str]) -> None:
    """Count an entry older than one this process has seen as rejected; warn once per tier.
    It stays in the tier: it may be another process's newer write with a clock behind ours."""
    g.stats.corrupt += 1
    if g.name not in warned:
        warned.add(g.name)
        log.warning(
            "cache tier %s: entry %s is older than one this process has already written or "
            "read (put back, or overwritten meanwhile); it was counted as a miss (further "
            "ones are counted silently)",
            g.name,
            key[:80],
        )


class Reader:
    """The read path of one cache: its codec, write stamps and object tier (if any)."""

    __slots__ = ("codec", "memory", "objects", "placed", "stamps", "versions", "warned")

    def __init__(
        self,
        codec: Codec,
        stamps: WriteStamps,
        memory: GuardedTier | None,
        versions: Versions | None = None,
        placed: dict[str, Placed] | None = None,
    ) -> None:
        self.codec = codec
        self.stamps = stamps
        self.memory = memory
        self.objects = None if memory is None else cast(ObjectTier, memory.tier)
        self.versions = versions if versions is not None else Versions()
        #: tiers whose keys this process tracks (see `Placed`): a hit there is noted
        self.placed = placed if placed is not None else {}
        self.warned: set[str] = set()  # tiers that warned of a superseded entry

    def fetch(
        self, key: str, lanes: tuple[Lane, ...], quiet: bool = False
    ) -> tuple[Any, str, float] | None:
        """(value, tier, created) from the first lane's tier that has the key, else None.

        `quiet`: a second look for the same request, whose misses were counted already.
        """
        if not key.isascii():
            check_utf8(key)  # a bad key is the caller's error, never a tier outage
        tick = self.stamps.tick  # before looking: see WriteStamps
        decode = self.codec.decode_fast
        for g, get, st, stale, faster in lanes:
            if stale and g.skips(key):
                continue
            t1 = perf_counter_ns()
            data = g.call(get, key)
            if data is None:
                if not quiet:
                    st.miss(perf_counter_ns() - t1)
                continue
            if data is FAILED:
                continue
            try:
                value, created, expires = decode(key, data)
            except SerializationError as exc:
                g.reject(key, exc)
                st.miss(perf_counter_ns() - t1)
                continue
            if expires and expires <= clock.now():
                if not quiet:
                    st.miss(perf_counter_ns() - t1)
                continue
            if not self.versions.accept(key, created):
                superseded(g, key, self.warned)
                st.miss(perf_counter_ns() - t1)
                continue
            st.hit(perf_counter_ns() - t1, len(data))
            if self.placed:
                self.noted(g.name, (key,))
            if faster:
                items = [(key, value, data, expires, created)]
                promote(items, faster, tick, self.stamps, self.objects)
            return value, g.name, created
        return None

    def contains(self, key: str, lanes: tuple[Lane, ...]) -> bool:
        """Whether a verified, unexpired entry exists; nothing is unpickled or counted."""
        if self.objects is not None and self.objects.lookup(key) is not MISSING:
            return True
        for g, get, _, stale, _ in lanes:
            if stale and g.skips(key):
                continue
            data = g.call(get, key)
            if data is None or data is FAILED:
                continue
            try:
                info = self.codec.verify(key, data)
            except SerializationError as exc:
                g.reject(key, exc)
                continue
            remaining = info.remaining(clock.now())
            if remaining is not None and remaining <= 0:
                continue
            if not self.versions.accept(key, info.created):
                superseded(g, key, self.warned)
                continue
            return True
        return False

    def noted(self, tier: str, keys: Sequence[str]) -> None:
        """Keys were found in `tier`: if this process tracks its keys, it knows of them now."""
        placed = self.placed.get(tier)
        if placed is not None:
            placed.add(keys)

    def lookup_many(
        self,
        todo: list[str],
        plan: ReadPlan,
        served: dict[str, tuple[str, float | None]] | None,
    ) -> tuple[dict[str, Any], list[str]]:
        """(key -> value of the hits, the keys that missed), fast tiers first; `served` gets
        each hit's (tier, created)."""
        t0 = perf_counter_ns()
        tick = self.stamps.tick  # before looking: see WriteStamps
        found: dict[str, Any] = {}
        mem, gmem = self.objects, self.memory
        memory, lanes = plan
        if mem is not None and gmem is not None and todo and memory:
            rest = []
            for k in todo:
                value = mem.lookup(k)
                if value is MISSING:
                    rest.append(k)
                else:
                    found[k] = value
                    if served is not None:
                        served[k] = (gmem.name, None)
            gmem.stats.batch(len(todo) - len(rest), len(rest), perf_counter_ns() - t0)
            todo = rest
        for g, _, st, stale, faster in lanes:
            if not todo:
                break
            skipped: list[str] = []
            if stale:
                skip = g.skipped(todo)
                if skip:
                    skipped = [k for k in todo if k in skip]
                    todo = [k for k in todo if k not in skip]
            if not todo:
                todo = skipped
                continue
            t1 = perf_counter_ns()
            blobs = g.call(g.tier.get_many, todo)
            if blobs is FAILED:
                todo += skipped
                continue
            live, bad, nbytes = self.codec.decode_many(todo, blobs, clock.now())
            for k, error in bad:
                g.reject(k, error)
            if live:
                for k in self.versions.accept_many(live):
                    del live[k]
                    superseded(g, k, self.warned)
                if self.placed:
                    self.noted(g.name, list(live))
            if served is None:
                for k, got in live.items():
                    found[k] = got[0]
            else:
                for k, got in live.items():
                    found[k] = got[0]
                    served[k] = (g.name, got[1])
            rest = [k for k in todo if k not in live] if len(live) < len(todo) else []
            st.batch(len(live), len(rest), perf_counter_ns() - t1, nbytes)
            if live and faster:
                entry = {k: d for k, d in zip(todo, blobs, strict=True) if d is not None}
                items = [(k, v, entry[k], e, c) for k, (v, c, e) in live.items()]
                promote(items, faster, tick, self.stamps, self.objects)
            todo = rest + skipped
        return found, todo
