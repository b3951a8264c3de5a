"""Replaying an older genuine entry of a key: its signature verifies, but this process has
written (or read) a newer one, so it is refused as superseded: a miss, counted and logged."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import SECRET
from tore_nb import CacheConfig, MultiLevelCache, clock

from .conftest import Figures


@pytest.fixture
def moved_clock() -> Iterator[None]:
    yield
    clock.reset()


def replay(cache: MultiLevelCache, tier: str, figures: Figures) -> None:
    """Set v1, keep its raw bytes from `tier`, set v2, put v1's bytes back: v1 never returns."""
    assert cache.set("k", "v1")
    raw = cache.tier(tier).get("k")
    assert raw is not None
    assert cache.set("k", "v2")
    cache.tier(tier).set("k", bytes(raw), None)  # the attacker's write, bytes as they were
    figures.faults += 1
    for name in cache.tier_names:
        if name != tier:
            cache.tier(name).clear()  # only the replayed copy is left
    for read in (
        lambda: cache.get("k"),
        lambda: cache.get_many(["k"]).get("k"),
        lambda: h.value if (h := cache.fetch("k")) else None,
    ):
        got = figures.timed(read)
        if got == "v1":
            figures.corrupt_reads += 1
        assert got in ("v2", None)
    assert "k" not in cache
    figures.rejected += cache.get_stats()["tiers"][tier]["corrupt"]


def test_replayed_disk_entry_is_refused(
    tmp_path: Path, figures: Figures, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: `cache.set("k", v2)` went back to v1 when v1's bytes were put back."""
    cache = MultiLevelCache(CacheConfig.embedded(tmp_path), secret=SECRET)
    with caplog.at_level(logging.WARNING, logger="tore_nb"):
        replay(cache, "disk", figures)
    assert figures.corrupt_reads == 0 and figures.rejected >= 1
    assert sum("older than one this process" in r.getMessage() for r in caplog.records) == 1
    assert cache.tier("disk").get("k") is not None  # left in place: it may be a newer write
    assert cache.set("k", "v3") and cache.get("k") == "v3"


@pytest.mark.redis
def test_replayed_redis_entry_is_refused(tmp_path: Path, redis_url: str, figures: Figures) -> None:
    cfg = CacheConfig(disk_cache_path=str(tmp_path / "d"), redis_url=redis_url)
    cache = MultiLevelCache(cfg, secret=SECRET)
    replay(cache, "redis", figures)
    assert figures.corrupt_reads == 0 and figures.rejected >= 1


def test_entry_read_from_another_writer_supersedes_older_ones(tmp_path: Path) -> None:
    """Newer entries seen on reads count too: once this process has read v2 (written by
    another cache), v1 put back is refused."""
    cfg = CacheConfig.embedded(tmp_path, memory_enabled=False)
    writer, reader = (MultiLevelCache(cfg, secret=SECRET) for _ in range(2))
    writer.set("k", "v1")
    raw = writer.tier("disk").get("k")
    assert raw is not None
    writer.set("k", "v2")
    assert reader.get("k") == "v2"
    reader.tier("disk").set("k", bytes(raw), None)
    assert reader.get("k") is None


def test_own_write_wins_even_when_the_clock_went_back(tmp_path: Path, moved_clock: None) -> None:
    """A process's latest write is the value it serves, whatever the clock did meanwhile."""
    cache = MultiLevelCache(CacheConfig.embedded(tmp_path, memory_enabled=False), secret=SECRET)
    clock.advance(3600)
    cache.set("k", "later clock")
    clock.reset()
    cache.set("k", "latest write")
    assert cache.get("k") == "latest write"
    assert cache.get_stats()["tiers"]["disk"]["corrupt"] == 0
