"""Write planning: encode each value once and sort the entries into per-tier batches.

An entry goes to the tiers its size routes it to (or the explicit ones), where it fits: not
larger than the tier's `max_item_bytes`, and a key the tier can name; elsewhere it counts as
rejected. A value that cannot be pickled is dropped with one warning: its old entry must go.

`Placed` remembers which keys this process wrote to (or read from) a tier where a stale copy
costs a billed request to look for (S3): a rewrite routed elsewhere deletes the old copy there
only for those keys, so that a key never written to that tier costs it no request at all.

>>> from tore_nb.codec import Codec
>>> from tore_nb.stats import TierStats
>>> from tore_nb.tiers.memory import MemoryTier
>>> g = GuardedTier(MemoryTier(1000, 60), TierStats())
>>> codec, to_memory = Codec(b"s" * 32), lambda size: ("memory",)
>>> plan = plan_writes(["k", "big"], [1, "x" * 2000], None, codec, [g], to_memory)
>>> list(plan.batches["memory"]), plan.dropped, g.stats.rejected
(['k'], [], 1)
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from ..codec import Codec
from ..errors import UnpicklableError
from .guarded import GuardedTier

__all__ = ["PLACED_KEPT", "Placed", "WritePlan", "entry_created", "plan_writes"]

log = logging.getLogger("tore_nb.cache")

#: keys a `Placed` remembers per tier (least recently used ones go first)
PLACED_KEPT = 100_000
# the signed creation time: after magic (4s), version, codec, flags and a reserved byte (see
# the entry layout in tore_nb.codec)
_CREATED = struct.Struct("<d")
_CREATED_AT = 8


def entry_created(data: bytes) -> float:
    """The creation time an encoded entry carries (signed with it).

    >>> from tore_nb.codec import Codec
    >>> entry_created(Codec(b"s" * 32).encode("k", 1)) > 1e9
    True
    """
    return float(_CREATED.unpack_from(data, _CREATED_AT)[0])


class Placed:
    """Keys that may have a copy in one tier because this process wrote or read them there.

    Bounded: past `limit` keys the least recently used are forgotten, and a stale copy of one
    of those is no longer deleted by a rewrite routed elsewhere (reads still refuse it when it
    is older than what this process wrote; see `reads.Versions`).

    >>> p = Placed()
    >>> p.add(["a", "b"]); p.take(["a", "c"]), "a" in p, "b" in p
    (['a'], False, True)
    """

    __slots__ = ("_keys", "_lock", "limit")

    def __init__(self, limit: int = PLACED_KEPT) -> None:
        self.limit = limit
        self._keys: dict[str, None] = {}  # insertion order: least recently used first
        self._lock = threading.Lock()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, keys: Iterable[str]) -> None:
        with self._lock:
            d = self._keys
            for k in keys:
                d.pop(k, None)
                d[k] = None
            while len(d) > self.limit:
                del d[next(iter(d))]

    def take(self, keys: Iterable[str]) -> list[str]:
        """Those of `keys` that may have a copy, forgotten now (their copy is being deleted)."""
        if not self._keys:
            return []
        with self._lock:
            d = self._keys
            return [k for k in keys if d.pop(k, 0) is None]


class WritePlan(NamedTuple):
    """Per-tier batches (tier -> key -> entry), the encoded (key, value, size) in order, and
    the keys whose value could not be encoded."""

    batches: dict[str, dict[str, bytes]]
    encoded: list[tuple[str, Any, int]]
    dropped: list[str]


def plan_writes(
    keys: Sequence[str],
    values: Iterable[Any],
    ttl: float | None,
    codec: Codec,
    tiers: Sequence[GuardedTier],
    route: Callable[[int], Sequence[str]],
    explicit: Sequence[str] | None = None,
    created: dict[str, float] | None = None,
) -> WritePlan:
    """Encode the values of `keys` (checked) and batch them per tier: the `explicit` tiers, or
    the tiers that `route(size)` names for an entry of that size. `created` gets the creation
    time of each entry (see `reads.Versions`)."""
    batches: dict[str, dict[str, bytes]] = {g.name: {} for g in tiers}
    encoded: list[tuple[str, Any, int]] = []
    dropped: list[str] = []
    for key, value in zip(keys, values, strict=True):
        try:
            data = codec.encode(key, value, ttl)
        except UnpicklableError as exc:
            log.warning("not cached: %s", exc)
            dropped.append(key)  # the old value must not be served for this set
            continue
        encoded.append((key, value, len(data)))
        if created is not None:
            created[key] = entry_created(data)
        names = route(len(data)) if explicit is None else explicit
        for g in tiers:
            if g.name not in names:
                continue
            if len(data) <= g.tier.max_item_bytes and (len(key) < 256 or g.key_fits(key)):
                batches[g.name][key] = data
            else:  # too large, or a key the store cannot name (S3: 1024 bytes)
                g.stats.rejected += 1
    return WritePlan(batches, encoded, dropped)
