"""Maintenance fan-out: one operation on every tier through its guard, with what a tier missed
remembered for later (see `GuardedTier.record_missed`).

>>> from tore_nb.stats import TierStats
>>> from tore_nb.tiers.memory import MemoryTier
>>> g = GuardedTier(MemoryTier(1000, 60), TierStats())
>>> g.tier.set("page:1", b"v", None)
>>> find_keys([g], "page:*", None), clear([g], None), find_keys([g], "*", None)
(['page:1'], 1, [])
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from typing import TypeVar

from .guarded import FAILED, GuardedTier

__all__ = ["clear", "each", "find_keys"]

T = TypeVar("T")


def each(
    tiers: Sequence[GuardedTier],
    op: Callable[[GuardedTier], T],
    default: T,
    failed: list[GuardedTier] | None = None,
) -> list[T]:
    """op on every tier through its guard (`default` where it failed); those go to `failed`."""
    out = []
    for g in tiers:
        got = g.call(op, g)
        if got is FAILED:
            out.append(default)
            if failed is not None:
                failed.append(g)
        else:
            out.append(got)
    return out


def clear(tiers: Sequence[GuardedTier], names: Container[str] | None) -> int:
    """Clear the tiers called `names` (None: all); how many entries went. A tier that cannot be
    reached is cleared once it answers again; until then nothing is read from it."""
    n = 0
    for g in tiers:
        if names is not None and g.name not in names:
            continue
        before = g.journal()
        got = g.call(g.tier.clear)
        if got is FAILED:
            g.record_missed(None)
            continue
        n += got
        if before:
            g.applied(before)  # this clear covers what was missed
    return n


def find_keys(
    tiers: Sequence[GuardedTier], pattern: str, failed: list[GuardedTier] | None
) -> list[str]:
    """Keys matching the glob in any tier, sorted; tiers that could not list go to `failed`."""
    found: set[str] = set()
    empty: list[str] = []
    # copies that reads skip in a tier are not in the cache
    for keys in each(tiers, lambda g: g.visible(list(g.tier.iter_keys(pattern))), empty, failed):
        found.update(keys)
    return sorted(found)
