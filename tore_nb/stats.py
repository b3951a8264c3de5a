"""CacheMetrics: counters and latency samples per tier, a frozen snapshot, and a DataFrame view.

Counting is a few attribute increments on the hot path; percentiles are computed only when a
snapshot is taken, from the last 1024 latency samples of each tier. Beside the ring, each tier
sums the time of every lookup it timed (`latency_total_ms` over `lookups_timed`), so that the
mean latency between two snapshots is a difference of counters, whatever the ring forgot.

>>> m = CacheMetrics(["memory"])
>>> m.tier("memory").hit(1500)
>>> t = m.snapshot().tiers["memory"]
>>> t.hits, t.lookups_timed, t.latency_total_ms
(1, 1, 0.0015)
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CacheMetrics", "MetricsSnapshot", "TierSnapshot", "TierStats"]

_RING = 1024
_MASK = _RING - 1  # precomputed: the hot path pays one global load, not a subtraction too


class TierStats:
    """Mutable counters of one tier. Updated under the GIL; a lost increment only skews stats."""

    __slots__ = (
        "_extra",
        "_i",
        "_lat",
        "bytes_read",
        "bytes_written",
        "corrupt",
        "deletes",
        "errors",
        "hits",
        "latency_total_ns",
        "misses",
        "promotions",
        "rejected",
        "sets",
    )

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        """Zero every counter (in place: the cache keeps references to these objects)."""
        self.hits = self.misses = self.errors = self.corrupt = 0
        self.sets = self.deletes = self.promotions = self.rejected = 0
        self.bytes_read = self.bytes_written = 0
        self._lat: list[int] = [0] * _RING
        self._i = 0  # samples written to the ring, ever
        self.latency_total_ns = 0  # the time of every lookup timed, ever
        # keys of batched lookups beyond their one sample: lookups timed = _i + _extra, which
        # keeps the single-key hot path at one more addition than the ring alone
        self._extra = 0

    def hit(self, latency_ns: int, nbytes: int = 0) -> None:
        self.hits += 1
        self.bytes_read += nbytes
        i = self._i
        self._lat[i & _MASK] = latency_ns
        self._i = i + 1
        self.latency_total_ns += latency_ns

    def miss(self, latency_ns: int) -> None:
        self.misses += 1
        i = self._i
        self._lat[i & _MASK] = latency_ns
        self._i = i + 1
        self.latency_total_ns += latency_ns

    def batch(self, hits: int, misses: int, latency_ns: int, nbytes: int = 0) -> None:
        """Count a batched lookup; its per-key average latency is one sample, and each of its
        keys counts as one lookup timed (its latency summed once)."""
        self.hits += hits
        self.misses += misses
        self.bytes_read += nbytes
        n = hits + misses
        if n:
            self._lat[self._i & _MASK] = latency_ns // n
            self._i += 1
            self._extra += n - 1
            self.latency_total_ns += latency_ns

    @property
    def lookups_timed(self) -> int:
        """Lookups whose latency was measured (a batched lookup counts each of its keys)."""
        return self._i + self._extra

    def latencies_ms(self) -> list[float]:
        n = min(self._i, _RING)
        return sorted(v / 1e6 for v in self._lat[:n])


@dataclass(frozen=True)
class TierSnapshot:
    """One tier's figures at one moment."""

    tier: str
    hits: int
    misses: int
    hit_rate: float
    errors: int
    corrupt: int
    sets: int
    rejected: int
    deletes: int
    promotions: int
    bytes_read: int
    bytes_written: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    # cumulative: the mean between two snapshots is d(latency_total_ms) / d(lookups_timed)
    lookups_timed: int = 0
    latency_total_ms: float = 0.0
    entries: int | None = None
    size_mb: float | None = None
    state: str = "closed"


@dataclass(frozen=True)
class MetricsSnapshot:
    """The whole cache's figures at one moment; `as_dict()` has the seed's field names."""

    total_requests: int
    hits: int
    misses: int
    saved_seconds: float
    tiers: dict[str, TierSnapshot] = field(default_factory=dict)

    @property
    def overall_hit_rate(self) -> float:
        return self.hits / self.total_requests if self.total_requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "total_requests": self.total_requests,
            "hits": self.hits,
            "misses": self.misses,
            "overall_hit_rate": self.overall_hit_rate,
            "saved_seconds": self.saved_seconds,
            "hit_rates": {n: t.hit_rate for n, t in self.tiers.items()},
            "tiers": {n: asdict(t) for n, t in self.tiers.items()},
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per tier."""
        import pandas as pd

        rows = [asdict(t) for t in self.tiers.values()]
        return pd.DataFrame(rows).set_index("tier") if rows else pd.DataFrame()


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(q * len(values)))]


class CacheMetrics:
    """Counters for a MultiLevelCache: requests, hits, misses, time saved, and per tier stats."""

    def __init__(self, tiers: list[str]) -> None:
        self._tiers = {name: TierStats() for name in tiers}
        self.requests = self.hits = self.misses = 0
        self.saved_seconds = 0.0
        self._lock = threading.Lock()

    def tier(self, name: str) -> TierStats:
        return self._tiers[name]

    def record_saved(self, seconds: float) -> None:
        """Add compute time saved by a hit (reported by the layers that know it)."""
        with self._lock:
            self.saved_seconds += max(0.0, seconds)

    def reset(self) -> None:
        with self._lock:
            for stats in self._tiers.values():
                stats.clear()
            self.requests = self.hits = self.misses = 0
            self.saved_seconds = 0.0

    def snapshot(self, extra: dict[str, dict[str, Any]] | None = None) -> MetricsSnapshot:
        """Freeze the counters; `extra` adds per-tier fields such as entries, size_mb, state."""
        tiers = {}
        for name, s in self._tiers.items():
            lat = s.latencies_ms()
            looked = s.hits + s.misses
            tiers[name] = TierSnapshot(
                tier=name,
                hits=s.hits,
                misses=s.misses,
                hit_rate=s.hits / looked if looked else 0.0,
                errors=s.errors,
                corrupt=s.corrupt,
                sets=s.sets,
                rejected=s.rejected,
                deletes=s.deletes,
                promotions=s.promotions,
                bytes_read=s.bytes_read,
                bytes_written=s.bytes_written,
                p50_ms=_pct(lat, 0.5),
                p95_ms=_pct(lat, 0.95),
                p99_ms=_pct(lat, 0.99),
                lookups_timed=s.lookups_timed,
                latency_total_ms=s.latency_total_ns / 1e6,
                **(extra or {}).get(name, {}),
            )
        return MetricsSnapshot(self.requests, self.hits, self.misses, self.saved_seconds, tiers)

    def to_frame(self) -> pd.DataFrame:
        return self.snapshot().to_frame()
