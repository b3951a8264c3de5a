"""Promotion: a hit in a slower tier back-fills the faster ones, unless a write got there first.

A read notes the write-stamp tick before it looks; keys written since (or being written) are
left alone, for their value may be old. A copy in a store of bytes keeps the entry's creation
time, so `expire_older_than` still finds it, and is dropped again when a write raced it.

>>> from tore_nb.stats import TierStats
>>> from tore_nb.tiers.memory import MemoryTier
>>> from tore_nb.tiers.stamps import WriteStamps
>>> mem = MemoryTier(1000, 60)
>>> g = GuardedTier(mem, TierStats())
>>> promote([("k", "v", b"entry", 0.0, 0.0)], (g,), 0, WriteStamps(), mem)
>>> mem.lookup("k")
'v'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import clock
from ..codec import Blob
from .base import ObjectTier
from .guarded import GuardedTier
from .stamps import WriteStamps

__all__ = ["Found", "promote"]

#: a value found: (key, value, entry bytes, expires or 0, created)
Found = tuple[str, Any, Blob, float, float]


def promote(
    items: Sequence[Found],
    targets: Sequence[GuardedTier],
    tick: int,
    stamps: WriteStamps,
    memory: ObjectTier | None,
) -> None:
    """Back-fill `targets` (faster tiers; `memory`, the object tier, among them or not) with
    `items` read after `tick`."""
    if not items or not targets:
        return
    now = clock.now()
    for g in targets:
        fits = [it for it in items if len(it[2]) <= g.tier.max_item_bytes]
        if g.tier is memory:
            # checked and put under the lock that writes take to finish (WriteStamps.finish)
            with stamps.lock:
                for k, v, data, expires, created in fits:
                    if stamps.fresh(k, tick):
                        g.stats.promotions += memory.put(
                            k, v, len(data), expires - now if expires else None, created
                        )
            continue
        with stamps.lock:
            fits = [it for it in fits if stamps.fresh(it[0], tick)]
        # group by remaining TTL and creation second so that each group is one batched write
        # (rounding creation down: an age-based sweep may take a copy early, never late)
        groups: dict[tuple[float | None, float], dict[str, bytes]] = {}
        for k, _, data, expires, created in fits:
            group = (round(expires - now) if expires else None, float(int(created)))
            groups.setdefault(group, {})[k] = bytes(data)
        for (ttl, born), batch in groups.items():
            if g.write(batch, ttl, born):
                g.stats.promotions += len(batch)
                # a write that began meanwhile may have landed first and been overwritten by
                # this older value: drop the copy (a miss is safe, a stale hit is not)
                with stamps.lock:
                    raced = [k for k in batch if not stamps.fresh(k, tick)]
                if raced:
                    g.delete(raced)
