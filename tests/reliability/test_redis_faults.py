"""Redis down, killed, hung, restarted empty and out of memory: results stay right, calls stay
short, one warning per outage, and the tier is used again within one probe interval."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from tests.support import SECRET
from tore_nb import CacheConfig, MultiLevelCache
from tore_nb.testing import RedisServer, free_port

from .conftest import Figures, expected, outage_warnings, workload

PROBE = 1.0  # breaker_reset_seconds in these scenarios

pytestmark = pytest.mark.redis


def make(tmp_path: Path, url: str, **kw: object) -> MultiLevelCache:
    cfg = CacheConfig(
        disk_cache_path=str(tmp_path / "disk"), redis_url=url, breaker_reset_seconds=PROBE, **kw
    )  # type: ignore[arg-type]
    return MultiLevelCache(cfg, secret=SECRET)


def wait_back(cache: MultiLevelCache, figures: Figures, budget: float) -> float:
    """Seconds until the redis tier serves again (probing with real cache calls)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < budget:
        figures.timed(lambda: cache.set("probe", 1, tiers=["redis"]))
        if cache.breaker_state("redis") == "closed" and cache.tier("redis").get("probe"):
            return time.monotonic() - t0
        time.sleep(0.05)
    return float("inf")


def test_redis_down_at_start(
    tmp_path: Path, figures: Figures, outage_log: pytest.LogCaptureFixture
) -> None:
    cache = make(tmp_path, f"redis://127.0.0.1:{free_port()}/0", memory_enabled=False)
    figures.faults = 1
    workload(cache, figures, 300)
    figures.warnings = outage_warnings(outage_log)
    assert figures.exceptions == figures.corrupt_reads == 0
    assert figures.longest_call_s < 2.0
    assert figures.warnings == 1


def test_redis_killed_during_sets(
    tmp_path: Path,
    private_redis: RedisServer,
    figures: Figures,
    outage_log: pytest.LogCaptureFixture,
) -> None:
    cache = make(tmp_path, private_redis.url, memory_enabled=False, disk_enabled=False)
    big = {i: "x" * 20_000 for i in range(20)}
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            figures.timed(lambda j=i: cache.set(f"w{j % 100}", big))
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(0.3)
    private_redis.kill()
    figures.faults = 1
    time.sleep(1.0)
    private_redis.start()
    back = wait_back(cache, figures, 10 * PROBE)
    stop.set()
    t.join(10)
    figures.warnings = outage_warnings(outage_log)
    figures.notes.append(f"tier used again {back:.2f} s after restart (probe interval {PROBE} s)")
    assert figures.exceptions == 0 and figures.longest_call_s < 2.0
    assert back <= PROBE + 0.5
    assert figures.warnings == 1
    got = cache.get("w1")
    assert got is None or got == big  # a half-written value is never served


def test_redis_hung_longer_than_deadlines(
    tmp_path: Path,
    private_redis: RedisServer,
    figures: Figures,
    outage_log: pytest.LogCaptureFixture,
) -> None:
    cache = make(tmp_path, private_redis.url, memory_enabled=False, disk_enabled=False)
    workload(cache, figures, 50)
    private_redis.pause()
    figures.faults = 1
    try:
        workload(cache, figures, 200, offset=50)
    finally:
        private_redis.resume()
    back = wait_back(cache, figures, 10 * PROBE)
    workload(cache, figures, 100, offset=250)
    figures.warnings = outage_warnings(outage_log)
    figures.notes.append(f"tier used again {back:.2f} s after SIGCONT")
    assert figures.exceptions == figures.corrupt_reads == 0
    assert figures.longest_call_s < 2.0
    assert back <= PROBE + 0.5
    assert figures.warnings == 1


def test_redis_restarted_empty(
    tmp_path: Path,
    private_redis: RedisServer,
    figures: Figures,
    outage_log: pytest.LogCaptureFixture,
) -> None:
    cache = make(tmp_path, private_redis.url, memory_enabled=False, disk_enabled=False)
    workload(cache, figures, 100)
    private_redis.restart()
    figures.faults = 1
    hits_after = workload(cache, figures, 100)
    figures.notes.append(f"hits right after the empty restart: {hits_after}/100 (recomputed)")
    figures.warnings = outage_warnings(outage_log)
    assert figures.exceptions == figures.corrupt_reads == 0
    assert figures.longest_call_s < 2.0
    assert cache.get("item:3") == expected(3)


def test_redis_out_of_memory(
    tmp_path: Path, figures: Figures, outage_log: pytest.LogCaptureFixture
) -> None:
    with RedisServer(maxmemory="2mb", policy="noeviction") as server:
        cache = make(tmp_path, server.url, memory_enabled=False, disk_enabled=False)
        cache.set("kept", "before the OOM")
        payload = os.urandom(200_000)  # incompressible
        for i in range(40):  # fill redis past maxmemory
            figures.timed(lambda j=i: cache.set(f"fill{j}", payload))
        figures.faults = 1
        assert cache.breaker_state("redis") == "read-only"
        assert figures.timed(lambda: cache.get("kept")) == "before the OOM"  # reads go on
        workload(cache, figures, 100)
        figures.warnings = outage_warnings(outage_log)
        assert figures.exceptions == figures.corrupt_reads == 0
        assert figures.longest_call_s < 2.0
        assert figures.warnings == 1
