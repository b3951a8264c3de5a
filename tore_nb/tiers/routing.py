"""Which tiers an operation goes to: reads fast to slow over a selection of tiers (`plan_reads`),
writes by entry size over what tiers declare they take (`SizeRoutes`). No tier is named here.

>>> from tore_nb.config import CacheConfig
>>> from tore_nb.stats import TierStats
>>> from tore_nb.tiers import DiskTier, MemoryTier
>>> from tore_nb.tiers.guarded import GuardedTier
>>> import tempfile
>>> gs = [GuardedTier(MemoryTier(1000, 60), TierStats()),
...       GuardedTier(DiskTier(tempfile.mkdtemp(), 10**6), TierStats())]
>>> routes = SizeRoutes(gs, CacheConfig(small_item_mb=1, large_item_mb=100))
>>> routes(10), routes(2_000_000), routes(200_000_000)
(('memory', 'disk'), ('disk',), ())
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..config import CacheConfig
from ..stats import TierStats
from .base import SizeClass
from .guarded import GuardedTier

__all__ = ["Lane", "ReadPlan", "SizeRoutes", "plan_reads"]

MB = 1_000_000

#: One remote tier of a read: the guarded tier, its `get`, its stats, its stale keys, and the
#: faster tiers a hit there is promoted into. Unpacked on every read, so a plain tuple.
Lane = tuple[
    GuardedTier,
    Callable[[str], "bytes | bytearray | memoryview | None"],
    TierStats,
    set[str],
    tuple[GuardedTier, ...],
]
#: How a read goes: whether it looks in the object tier first, then its remote lanes (a plain
#: tuple too: unpacking a tuple subclass takes the slow path)
ReadPlan = tuple[bool, tuple[Lane, ...]]


def plan_reads(
    memory: GuardedTier | None, remote: Sequence[GuardedTier], names: tuple[str, ...] | None
) -> ReadPlan:
    """The plan of a read over the tiers called `names` (None: all)."""
    wanted = None if names is None else set(names)
    faster: list[GuardedTier] = []
    if memory is not None and (wanted is None or memory.name in wanted):
        faster.append(memory)
    lanes: list[Lane] = []
    for g in remote:
        if wanted is None or g.name in wanted:
            lanes.append((g, g.tier.get, g.stats, g.stale, tuple(faster)))
            faster.append(g)
    return bool(faster) and faster[0] is memory, tuple(lanes)


class SizeRoutes:
    """The tiers an entry goes to by its encoded size: those declaring its size class (under
    `small_item_mb`: small; under `large_item_mb`: large; else huge), fastest first.
    """

    __slots__ = ("_large", "_routes", "_small")

    def __init__(self, tiers: Sequence[GuardedTier], config: CacheConfig) -> None:
        self._small = config.small_item_mb * MB
        self._large = config.large_item_mb * MB
        self._routes: dict[SizeClass, tuple[str, ...]] = {
            c: tuple(g.name for g in tiers if c in g.caps.sizes) for c in ("small", "large", "huge")
        }

    def size_class(self, size: int) -> SizeClass:
        if size < self._small:
            return "small"
        return "large" if size < self._large else "huge"

    def __call__(self, size: int) -> tuple[str, ...]:
        return self._routes[self.size_class(size)]
