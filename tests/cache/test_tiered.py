"""MultiLevelCache: reads, promotion, routing, TTL, integrity, degradation, maintenance, stats."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import pickle
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.support import SECRET
from tore_nb import CacheConfig, MultiLevelCache, clock
from tore_nb.testing import FlakyTier, RedisServer
from tore_nb.tiers import DiskTier, MemoryTier


def make(cfg: CacheConfig) -> MultiLevelCache:
    return MultiLevelCache(cfg, secret=SECRET)


def with_flaky_disk(tmp_path: Path, **breaker: float) -> tuple[MultiLevelCache, FlakyTier]:
    """Memory over a disk tier that a test can take down (`disk.down = True`)."""
    cfg = CacheConfig.embedded(tmp_path, **breaker)
    disk = FlakyTier(DiskTier(tmp_path / "d", size_limit=10**8))
    return MultiLevelCache(cfg, tiers=[MemoryTier(10**7, 60), disk], secret=SECRET), disk


def test_embedded_roundtrip_and_restart(embedded_config: CacheConfig) -> None:
    c = make(embedded_config)
    key = c.generate_key("doc.pdf", dpi=150)
    arr = np.arange(100_000, dtype="f8")
    assert c.set(key, {"arr": arr, "text": "hello"})
    assert c.fetch(key).tier == "memory"  # type: ignore[union-attr]
    fresh = make(embedded_config)  # a new process: only the disk tier survives
    hit = fresh.fetch(key)
    assert hit is not None and hit.tier == "disk"
    np.testing.assert_array_equal(hit.value["arr"], arr)
    assert hit.value["arr"].flags.writeable
    assert fresh.fetch(key).tier == "memory"  # type: ignore[union-attr]  # promoted


def test_all_four_tiers_promote(full_config: CacheConfig) -> None:
    c = make(full_config)
    key = "k:promote"
    assert c.set(key, "v", tiers=["s3"])
    for t in ("memory", "disk", "redis"):
        assert c.tier(t).get(key) is None
    hit = c.fetch(key)
    assert hit is not None and hit.tier == "s3" and hit.value == "v"
    assert c.tier("redis").get(key) is not None and c.tier("disk").get(key) is not None
    assert c.fetch(key).tier == "memory"  # type: ignore[union-attr]
    stats = c.get_stats()
    assert stats["tiers"]["s3"]["hits"] == 1
    assert stats["tiers"]["redis"]["promotions"] == 1
    assert set(stats["hit_rates"]) == {"memory", "disk", "redis", "s3"}


def test_routing_by_size(full_config: CacheConfig) -> None:
    cfg = full_config.replace(small_item_mb=0.01, large_item_mb=0.1)
    c = make(cfg)
    small, large, huge = b"s" * 1000, os.urandom(50_000), os.urandom(200_000)
    c.set("small", small)
    c.set("large", large)
    c.set("huge", huge)

    def where(k: str) -> set[str]:
        return {t for t in c.tier_names if c.tier(t).get(k) is not None}

    assert where("small") == {"memory", "disk", "redis"}
    assert where("large") == {"disk", "redis", "s3"}
    assert where("huge") == {"s3"}
    assert c.get("huge") == huge


def test_rewrite_removes_stale_copies(full_config: CacheConfig) -> None:
    c = make(full_config.replace(small_item_mb=0.01, large_item_mb=0.1))
    c.set("k", os.urandom(200_000))  # huge: s3 only
    c.set("k", b"small now")  # small: memory, disk, redis; the s3 copy must go
    assert c.get("k") == b"small now"
    c.flush()  # the stale copy is deleted in the background
    assert c.tier("s3").get("k") is None
    c.tier("memory").clear()
    c.tier("disk").clear()
    c.tier("redis").clear()
    assert c.get("k") is None  # never the stale huge value


@pytest.fixture
def moved_clock() -> Iterator[None]:
    """Expiry is decided by tore_nb.clock: tests move it rather than sleep past a TTL."""
    yield
    clock.reset()


def test_ttl(embedded_config: CacheConfig, moved_clock: None) -> None:
    c = make(embedded_config)
    c.set("short", 1, ttl=60)
    c.set("long", 2, ttl=3600)
    assert c.get("short") == 1
    clock.advance(120)
    assert c.get("short") is None
    assert make(embedded_config).get("short") is None  # the entry's own expiry holds on disk
    assert c.get("long") == 2


def test_default_ttl_from_config(embedded_config: CacheConfig, moved_clock: None) -> None:
    c = make(embedded_config.replace(cache_ttl=60))
    c.set("k", 1)
    assert c.get("k") == 1
    clock.advance(120)
    assert c.get("k") is None


def test_promoted_copies_keep_their_age(tmp_path: Path, redis_url: str, moved_clock: None) -> None:
    cfg = CacheConfig(disk_cache_path=str(tmp_path / "d"), redis_url=redis_url)
    writer = make(cfg)
    writer.set("k", "v", tiers=["redis"])
    writer.flush()  # its background delete of faster copies must not land after the promotion
    clock.advance(120)
    fresh = make(cfg)  # another kernel: empty memory, the same Redis
    first = fresh.fetch("k")
    assert first is not None and (first.value, first.tier) == ("v", "redis")
    again = fresh.fetch("k")
    assert again is not None and again.tier == "memory"  # promoted into memory and disk
    # written two minutes ago: every copy goes, the promoted ones included
    assert fresh.expire_older_than(60) >= 3
    assert fresh.get("k") is None
    assert make(cfg).get("k") is None


def test_keys_too_long_for_s3_are_refused_there_not_sent(full_config: CacheConfig) -> None:
    c = make(full_config)
    long_key = "k" * 1100  # S3 names objects with at most 1024 bytes: it answers a longer one
    big = os.urandom(2_000_000)  # with an error, which would open the breaker for every key
    assert c.set(long_key, big)  # routed to disk, Redis and S3: kept by the first two
    assert c.get_stats()["tiers"]["s3"]["rejected"] == 1
    assert list(c.tier("s3").iter_keys()) == []
    c.tier("disk").clear()
    c.tier("redis").clear()
    assert c.get(long_key) is None and not c.delete(long_key)
    assert c.breaker_state("s3") == "closed"
    assert c.set("ok", big) and c.fetch("ok") is not None


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "moved"])
def test_damaged_entries_are_counted_misses(
    embedded_config: CacheConfig, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    c = make(embedded_config.replace(memory_enabled=False))
    c.set("k", {"v": 1})
    c.set("other", {"v": 2})
    disk = c.tier("disk")
    raw = disk.get("k")
    assert raw is not None
    if damage == "flip":
        bad = bytearray(raw)
        bad[-1] ^= 1
        disk.set("k", bytes(bad), None)
    elif damage == "truncate":
        disk.set("k", raw[: len(raw) // 2], None)
    elif damage == "garbage":
        disk.set("k", pickle.dumps({"v": "planted"}), None)
    else:
        disk.set("k", disk.get("other") or b"", None)  # a valid entry under the wrong key
    with caplog.at_level(logging.WARNING, logger="tore_nb"):
        assert c.get("k") is None
        assert c.get("k") is None
    assert c.get_stats()["tiers"]["disk"]["corrupt"] == 1
    assert disk.get("k") is None  # removed
    assert c.get("other") == {"v": 2}
    assert sum("rejected entry" in r.message for r in caplog.records) <= 1


def test_other_namespace_is_rejected(tmp_path: Path) -> None:
    a = make(CacheConfig.embedded(tmp_path, namespace="a", memory_enabled=False))
    b = make(CacheConfig.embedded(tmp_path, namespace="b", memory_enabled=False))
    a.set("k", "from a")
    assert b.get("k") is None  # each namespace has its own keys on a shared disk
    # a's entry copied under b's key still names a's namespace in its signature
    b.tier("disk").set("k", a.tier("disk").get("k"), None)
    assert b.get("k") is None
    assert b.get_stats()["tiers"]["disk"]["corrupt"] == 1


def test_other_secret_is_rejected(embedded_config: CacheConfig) -> None:
    make(embedded_config).set("k", "v")
    other = MultiLevelCache(embedded_config, secret=b"another-secret-of-sufficient-length")
    assert other.get("k") is None


def test_unpicklable_value_is_not_stored(
    embedded_config: CacheConfig, caplog: pytest.LogCaptureFixture
) -> None:
    c = make(embedded_config)
    c.set("k", "old")
    with caplog.at_level(logging.WARNING, logger="tore_nb"):
        assert c.set("k", threading.Lock()) is False
    assert "not cached" in caplog.text
    assert c.get("k") is None  # the old value must not be served for the new set


def test_item_too_large_for_every_tier(embedded_config: CacheConfig) -> None:
    c = make(embedded_config.replace(disk_max_item_mb=0.01, memory_max_item_mb=0.01))
    assert c.set("k", os.urandom(50_000)) is False
    assert c.get("k") is None


def test_flaky_tier_degrades_and_recovers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    c, disk = with_flaky_disk(tmp_path, breaker_reset_seconds=0.2, breaker_failures=1)
    c.set("a", 1)
    disk.down = True
    with caplog.at_level(logging.WARNING, logger="tore_nb"):
        for i in range(20):
            c.set(f"k{i}", i)  # no exception reaches the caller
            assert c.get(f"k{i}") == i  # memory still serves
        calls = disk.calls
        assert c.get("absent") is None
        assert disk.calls == calls  # breaker open: the tier is skipped
    assert sum("unavailable" in r.message for r in caplog.records) == 1  # one warning per outage
    disk.down = False
    time.sleep(0.25)
    c.set("b", 2)  # the probe succeeds and closes the breaker
    assert c.breaker_state("disk") == "closed"
    assert make(c.config.replace(disk_cache_path=str(tmp_path / "d"))).get("b") == 2


def test_delete_during_outage_never_resurfaces(tmp_path: Path) -> None:
    c, disk = with_flaky_disk(tmp_path, breaker_reset_seconds=0.01)
    c.set("k", "v1")
    disk.down = True
    c.delete("k")
    c.set("j", "new")
    disk.down = False
    time.sleep(0.02)
    assert c.get("k") is None  # the stale disk copy is never served by this process


@pytest.mark.redis
def test_redis_down_at_start_is_fast_and_silent(tmp_path: Path) -> None:
    from tore_nb.testing import free_port

    cfg = CacheConfig(disk_cache_path=str(tmp_path), redis_url=f"redis://127.0.0.1:{free_port()}/0")
    c = make(cfg)
    t0 = time.monotonic()
    assert c.set("k", 1)
    assert c.get("k") == 1
    assert c.get("absent") is None
    assert time.monotonic() - t0 < 2.0
    assert c.get_stats()["tiers"]["redis"]["errors"] >= 1


@pytest.mark.redis
def test_redis_hung_is_bounded(tmp_path: Path, private_redis: RedisServer) -> None:
    c = make(
        CacheConfig(
            disk_cache_path=str(tmp_path), redis_url=private_redis.url, memory_enabled=False
        )
    )
    c.set("k", 1)
    private_redis.pause()
    try:
        worst = 0.0
        for i in range(5):
            t0 = time.monotonic()
            c.get(f"x{i}")
            worst = max(worst, time.monotonic() - t0)
        assert worst < 2.0
        assert c.get("k") == 1  # the disk copy still serves
    finally:
        private_redis.resume()


@pytest.mark.redis
def test_get_many_is_one_mget(tmp_path: Path, redis_url: str) -> None:
    import redis

    c = make(
        CacheConfig(
            disk_cache_path=str(tmp_path),
            redis_url=redis_url,
            memory_enabled=False,
            disk_enabled=False,
        )
    )
    keys = [f"k{i}" for i in range(100)]
    c.set_many({k: i for i, k in enumerate(keys)})
    r = redis.Redis.from_url(redis_url)
    r.config_resetstat()
    got = c.get_many([*keys, "missing"])
    assert got == {k: i for i, k in enumerate(keys)}
    stats = r.info("commandstats")
    assert stats["cmdstat_mget"]["calls"] == 1
    assert "cmdstat_get" not in stats


@pytest.mark.redis
def test_shared_redis_between_caches(tmp_path: Path, redis_url: str) -> None:
    a = make(CacheConfig(disk_cache_path=str(tmp_path / "a"), redis_url=redis_url))
    b = make(CacheConfig(disk_cache_path=str(tmp_path / "b"), redis_url=redis_url))
    a.set("shared", [1, 2, 3])
    hit = b.fetch("shared")
    assert hit is not None and hit.tier == "redis" and hit.value == [1, 2, 3]


def test_find_invalidate_expire_clear(embedded_config: CacheConfig) -> None:
    c = make(embedded_config)
    for i in range(3):
        c.set(f"page:doc1:{i}", i)
        c.set(f"page:doc2:{i}", i)
    assert c.find_keys("page:doc1:*") == [f"page:doc1:{i}" for i in range(3)]
    assert c.invalidate("page:doc1:*") == 3
    assert c.get("page:doc1:0") is None and c.get("page:doc2:0") == 0
    time.sleep(0.05)
    c.set("fresh", 1)
    assert c.expire_older_than(0.03) >= 3
    assert c.get("fresh") == 1 and c.get("page:doc2:1") is None
    assert c.clear() == 2  # memory + disk copies of "fresh"
    assert c.find_keys() == []


def test_contains_and_delete(embedded_config: CacheConfig) -> None:
    c = make(embedded_config)
    c.set("k", None)
    assert c.contains("k") and "k" in c
    assert c.delete("k") is True
    assert not c.contains("k")
    assert c.delete("k") is False


def test_stats_frame(embedded_config: CacheConfig) -> None:
    c = make(embedded_config)
    c.set("k", 1)
    c.get("k")
    c.get("nope")
    stats = c.get_stats()
    assert stats["total_requests"] == 2
    assert stats["overall_hit_rate"] == 0.5
    assert stats["tiers"]["memory"]["size_mb"] is not None
    frame = c.to_frame()
    assert list(frame.index) == ["memory", "disk"]
    assert {"hits", "misses", "errors", "p50_ms", "p99_ms", "bytes_read", "size_mb"} <= set(
        frame.columns
    )


def test_every_lookup_is_timed_and_summed_batched_keys_each(embedded_config: CacheConfig) -> None:
    """Cumulative latency per tier: the mean between two snapshots is the difference of
    `latency_total_ms` over that of `lookups_timed`; a batched lookup counts each key."""
    c = make(embedded_config)
    c.set("k", 1)
    c.get("k")
    c.get("nope")
    before = c.snapshot().tiers["memory"]
    c.get_many(["k", "a", "b"])
    snap = c.snapshot().tiers
    mem = snap["memory"]
    assert (before.lookups_timed, mem.lookups_timed) == (2, 5)
    assert mem.lookups_timed == mem.hits + mem.misses
    assert mem.latency_total_ms > before.latency_total_ms > 0
    assert snap["disk"].lookups_timed == snap["disk"].hits + snap["disk"].misses == 3
    c.metrics.reset()
    assert c.snapshot().tiers["memory"].lookups_timed == 0
    assert c.snapshot().tiers["memory"].latency_total_ms == 0.0


def test_disabled_cache_keeps_api(tmp_path: Path) -> None:
    c = make(CacheConfig.embedded(tmp_path, enable_cache=False))
    assert c.set("k", 1) is False
    assert c.get("k", "default") == "default"
    assert c.get_many(["k"]) == {}
    assert c.clear() == 0


def test_single_flight_threads(embedded_config: CacheConfig) -> None:
    c = make(embedded_config)
    calls = []

    def compute() -> int:
        calls.append(1)
        time.sleep(0.2)
        return 42

    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(c.get_or_compute("sf", compute)))
        for _ in range(16)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [42] * 16
    assert len(calls) == 1


def test_cache_pickles_as_its_config(embedded_config: CacheConfig) -> None:
    c = make(embedded_config)
    c.set("k", "v")
    clone = pickle.loads(pickle.dumps(c))
    assert clone.config == c.config
    assert clone.get("k") == "v"


def _child(cfg: CacheConfig, q: mp.Queue) -> None:  # type: ignore[type-arg]
    c = MultiLevelCache(cfg, secret=SECRET)
    q.put(c.get("from-parent"))
    c.set("from-child", os.getpid())


def test_fork_safety(embedded_config: CacheConfig) -> None:
    c = make(embedded_config)
    c.set("from-parent", "hello")
    c.get("from-parent")
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(c.config, q))
    p.start()
    p.join(30)
    assert q.get(timeout=5) == "hello"
    assert c.tier("disk").get("from-child") is not None
    assert make(embedded_config).get("from-child") == p.pid


def _stampede_child(cfg: CacheConfig, counter: str, q: mp.Queue) -> None:  # type: ignore[type-arg]
    c = MultiLevelCache(cfg, secret=SECRET)

    def compute() -> str:
        with open(counter, "a") as f:
            f.write("x")
        time.sleep(0.5)
        return "computed"

    q.put(c.get_or_compute("stampede", compute))


@pytest.mark.parametrize("shared", ["disk", "redis"])
def test_single_flight_across_processes(
    tmp_path: Path, shared: str, request: pytest.FixtureRequest
) -> None:
    if shared == "redis":
        url = request.getfixturevalue("redis_url")
        cfg = CacheConfig(
            disk_cache_path=str(tmp_path / "unused"), redis_url=url, disk_enabled=False
        )
    else:
        cfg = CacheConfig.embedded(tmp_path / "shared")
    counter = str(tmp_path / "count")
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_stampede_child, args=(cfg, counter, q)) for _ in range(6)]
    for p in procs:
        p.start()
    results = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert results == ["computed"] * 6
    assert Path(counter).read_text() == "x"


def test_get_or_compute_counts_one_request(embedded_config: CacheConfig) -> None:
    c = make(embedded_config)
    assert c.get_or_compute("k", lambda: 1) == 1
    assert c.get_or_compute("k", lambda: 2) == 1
    stats = c.get_stats()
    assert (stats["total_requests"], stats["misses"], stats["hits"]) == (2, 1, 1)


def test_contains_agrees_with_get_after_a_missed_delete(tmp_path: Path) -> None:
    c, disk = with_flaky_disk(tmp_path, breaker_reset_seconds=0.01)
    c.set("k", "v1")
    disk.down = True
    c.delete("k")
    disk.down = False
    time.sleep(0.02)
    assert c.get("k") is None
    assert not c.contains("k")


def test_large_disk_hits_are_private_aligned_arrays(embedded_config: CacheConfig) -> None:
    cache = MultiLevelCache(embedded_config, secret=SECRET)
    arr = np.random.default_rng(5).random(200_000)  # 1.6 MB: a file in the disk tier
    cache.set("big", arr, tiers=["disk"])
    first = cache.get("big", tiers=["disk"])
    second = cache.get("big", tiers=["disk"])
    assert first.flags.aligned and first.flags.writeable
    first[:] = 0.0  # each read owns its memory
    np.testing.assert_array_equal(second, arr)
    np.testing.assert_array_equal(cache.get("big", tiers=["disk"]), arr)


def test_fetch_many_says_where_each_hit_came_from(full_config: CacheConfig) -> None:
    cache = MultiLevelCache(full_config, secret=SECRET)
    cache.set("m", 1, tiers=["memory"])
    cache.set("d", 2, tiers=["disk"])
    cache.set("r", 3, tiers=["redis"])
    cache.set("s", 4, tiers=["s3"])
    hits = cache.fetch_many(["m", "d", "r", "s", "absent", "m"])
    assert {k: (h.value, h.tier) for k, h in hits.items()} == {
        "m": (1, "memory"),
        "d": (2, "disk"),
        "r": (3, "redis"),
        "s": (4, "s3"),
    }
    assert all(h.created is not None for k, h in hits.items() if k != "m")
    assert cache.get_many(["m", "d", "r", "s", "absent"]) == {"m": 1, "d": 2, "r": 3, "s": 4}
    stats = cache.get_stats()
    assert stats["total_requests"] == 10 and stats["hits"] == 8
