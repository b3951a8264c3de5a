"""Reads over planned lanes (see `routing.plan_reads`): the first tier that holds a valid entry
serves it, and the faster tiers of its lane get a copy (see `promotion`).

Per-tier statistics are counted here; requests, hits and misses of the whole cache are the
caller's. Entries that fail to decode are rejected (counted, removed) and read as misses.

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

__all__ = ["Reader"]


class Reader:
    """The read path of one cache: its codec, write stamps and object tier (if any)."""

    __slots__ = ("codec", "memory", "objects", "stamps")

    def __init__(self, codec: Codec, stamps: WriteStamps, memory: GuardedTier | None) -> None:
        self.codec = codec
        self.stamps = stamps
        self.memory = memory
        self.objects = None if memory is None else cast(ObjectTier, memory.tier)

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
            st.hit(perf_counter_ns() - t1, len(data))
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
            if remaining is None or remaining > 0:
                return True
        return False

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
