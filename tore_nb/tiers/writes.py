"""Write planning: encode each value once and sort the entries into per-tier batches.

An entry goes to the tiers its size routes it to (or the explicit ones), where it fits: not
larger than the tier's `max_item_bytes`, and a key the tier can name; elsewhere it counts as
rejected. A value that cannot be pickled is dropped with one warning: its old entry must go.

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
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from ..codec import Codec
from ..errors import UnpicklableError
from .guarded import GuardedTier

__all__ = ["WritePlan", "plan_writes"]

log = logging.getLogger("tore_nb.cache")


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
) -> WritePlan:
    """Encode the values of `keys` (checked) and batch them per tier: the `explicit` tiers, or
    the tiers that `route(size)` names for an entry of that size."""
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
        names = route(len(data)) if explicit is None else explicit
        for g in tiers:
            if g.name not in names:
                continue
            if len(data) <= g.tier.max_item_bytes and (len(key) < 256 or g.key_fits(key)):
                batches[g.name][key] = data
            else:  # too large, or a key the store cannot name (S3: 1024 bytes)
                g.stats.rejected += 1
    return WritePlan(batches, encoded, dropped)
