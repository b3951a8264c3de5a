"""Redis down, killed, hung, restarted empty and out of memory: results stay right, calls stay
short, one warning per outage, and the tier is used again within one probe interval."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import SECRET, missing
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


# -- single flight across processes: a dead holder's lock lapses, a live one's is renewed -------
LEASE = 2.0  # seconds; the tier's lock_lease in these scenarios (the default is 12)

HOLDER = """
import os, sys, time
from tore_nb import CacheConfig, MultiLevelCache, cached

url, lease = sys.argv[1], float(sys.argv[2])
cache = MultiLevelCache(
    CacheConfig(redis_url=url, memory_enabled=False, disk_enabled=False),
    secret=os.environb[b"TEST_SECRET"],
)
cache.tier("redis").lock_lease = lease

@cached(cache=cache)
def slow(x):
    print("COMPUTE", flush=True)
    time.sleep(float(os.environ["SLOW_SECONDS"]))  # not in the key: both processes share it
    return x * 2

print("result", slow(21), flush=True)
"""


class Proc:
    """A Python process running the holder script, its output lines read by a thread so every
    wait on them is bounded."""

    def __init__(self, script: Path, url: str, seconds: float) -> None:
        env = {**os.environ, "TEST_SECRET": SECRET.decode(), "SLOW_SECONDS": str(seconds)}
        self.proc = subprocess.Popen(
            [sys.executable, str(script), url, str(LEASE)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._new = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._new:
                self.lines.append(line.rstrip())
                self._new.notify_all()

    def wait_for(self, text: str, budget: float) -> float:
        """Seconds until a line containing `text` appears; fails after `budget` seconds."""
        t0 = time.monotonic()
        with self._new:
            ok = self._new.wait_for(lambda: any(text in ln for ln in self.lines), budget)
        assert ok, f"no {text!r} within {budget} s; output: {self.lines}"
        return time.monotonic() - t0

    def count(self, text: str) -> int:
        return sum(text in ln for ln in self.lines)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def holder_script(tmp_path: Path) -> Path:
    path = tmp_path / "holder.py"
    path.write_text(HOLDER)
    return path


def test_a_killed_lock_holder_is_taken_over_within_a_lease(
    holder_script: Path, private_redis: RedisServer, figures: Figures
) -> None:
    """A `@cached` computation SIGKILLed mid-run (as a kernel killed out of memory) used to
    leave its single-flight lock on Redis for 300 s, and the next caller waited 120 s without
    a word. The lock is now a short lease that only a live holder renews: the next caller says
    once that it waits, takes the lock over within about one lease, and computes."""
    first = Proc(holder_script, private_redis.url, 600)
    second = None
    try:
        first.wait_for("COMPUTE", 60)
        second = Proc(holder_script, private_redis.url, 0)
        second.wait_for("waiting for another process", 60)
        first.proc.kill()
        figures.faults = 1
        took = second.wait_for("result 42", 3 * LEASE)
        figures.notes.append(f"lock taken over {took:.2f} s after its holder was killed")
        figures.notes.append(f"(lease {LEASE} s; before: 120 s of silent wait)")
        assert second.proc.wait(10) == 0
        assert second.count("COMPUTE") == 1  # the waiter computed it, once
        assert second.count("waiting for another process") == 1  # one line, not one a poll
    finally:
        first.close()
        if second is not None:
            second.close()


def test_a_live_holder_computing_longer_than_its_lease_keeps_the_lock(
    holder_script: Path, private_redis: RedisServer, figures: Figures
) -> None:
    """A lease shorter than a computation must not let a second process compute the same key:
    the holder renews its lease while it runs, and the waiter gets the holder's value."""
    seconds = 3 * LEASE
    first = Proc(holder_script, private_redis.url, seconds)
    second = None
    try:
        first.wait_for("COMPUTE", 60)
        second = Proc(holder_script, private_redis.url, 0)
        second.wait_for("result 42", seconds + 60)
        first.wait_for("result 42", 60)
        assert first.proc.wait(10) == second.proc.wait(10) == 0
        assert first.count("COMPUTE") == 1
        assert second.count("COMPUTE") == 0  # served the holder's value, not computed again
        assert second.count("waiting for another process") == 1
        figures.notes.append(f"a {seconds:.0f} s computation kept its {LEASE} s lease")
    finally:
        first.close()
        if second is not None:
            second.close()


# -- short outages: probed soon after, one warning each -----------------------------------------
def test_short_outages_are_probed_soon_after_redis_is_back(
    tmp_path: Path,
    private_redis: RedisServer,
    figures: Figures,
    outage_log: pytest.LogCaptureFixture,
) -> None:
    """With the default 15 s probe interval, ten 1 s outages kept Redis skipped for ~45 of 48 s
    though it was up ~79% of the time, and the breaker stayed open 8 s after Redis was back.
    The pause before a probe now starts at a quarter second and doubles only while probes
    fail: Redis is used again within about a second of each return."""
    cfg = CacheConfig(
        disk_cache_path=str(tmp_path / "disk"),
        redis_url=private_redis.url,
        memory_enabled=False,
        disk_enabled=False,
        breaker_reset_seconds=15.0,  # the default
    )
    cache = MultiLevelCache(cfg, secret=SECRET)
    up = threading.Event()
    up.set()
    stop = threading.Event()
    samples: list[tuple[bool, bool]] = []  # (redis up, served by redis)

    def client() -> None:
        i = 0
        while not stop.is_set():
            was_up = up.is_set()
            figures.timed(lambda j=i: cache.set(f"k{j % 20}", j))
            served = cache.breaker_state("redis") == "closed"
            if was_up and up.is_set():  # a sample across a change of state says nothing
                samples.append((True, served))
            i += 1
            time.sleep(0.01)

    t = threading.Thread(target=client)
    t.start()
    backs: list[float] = []
    try:
        for _ in range(5):
            time.sleep(2.0)
            up.clear()
            private_redis.kill()
            figures.faults += 1
            time.sleep(1.0)
            private_redis.start()
            up.set()
            t0 = time.monotonic()
            while cache.breaker_state("redis") != "closed" and time.monotonic() - t0 < 20:
                time.sleep(0.01)
            backs.append(time.monotonic() - t0)
    finally:
        stop.set()
        t.join(10)
    skipped = sum(not served for _, served in samples) / max(1, len(samples))
    figures.warnings = outage_warnings(outage_log)
    figures.notes.append(
        f"redis skipped {skipped:.0%} of the time it was up; back in use "
        f"{max(backs):.2f} s at most (mean {sum(backs) / len(backs):.2f} s) after each return"
    )
    assert figures.exceptions == 0 and figures.longest_call_s < 2.0
    assert max(backs) < 2.0  # not the 15 s probe interval
    assert skipped < 0.5
    assert figures.warnings == 5  # one per outage


# -- full: writes refused, reads go on ----------------------------------------------------------
def test_redis_full_refuses_writes_but_keeps_serving_reads(
    tmp_path: Path, figures: Figures, outage_log: pytest.LogCaptureFixture
) -> None:
    """Redis at `maxmemory 1mb` with `noeviction` refuses writes (OOM) and deletes go on failing
    or not: no write or delete may stop reads of what it holds."""
    with RedisServer(maxmemory="1mb", policy="noeviction") as server:
        cache = make(tmp_path, server.url, memory_enabled=False, disk_enabled=False)
        kept = {f"kept{i}": f"value {i}" for i in range(20)}
        for k, v in kept.items():
            cache.set(k, v)
        payload = os.urandom(100_000)
        for i in range(40):
            figures.timed(lambda j=i: cache.set(f"fill{j}", payload))
        figures.faults = 1
        assert cache.breaker_state("redis") == "read-only"
        hits = 0
        for r in range(5):
            for k, v in kept.items():
                got = figures.timed(lambda k=k: cache.get(k))
                hits += got == v
                figures.corrupt_reads += got is not None and got != v
            figures.timed(lambda r=r: cache.set(f"more{r}", payload))
            figures.timed(lambda r=r: cache.delete(f"fill{r}"))
        figures.warnings = outage_warnings(outage_log)
        figures.notes.append(f"reads served while full: {hits}/{5 * len(kept)}")
        assert figures.exceptions == figures.corrupt_reads == 0
        assert hits >= 5 * len(kept) - 5  # the deleted keys aside, all served
        assert cache.breaker_state("redis") in ("read-only", "closed")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs (root only), unmounted afterwards."""
    where = tmp_path / "tmpfs"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)],
        capture_output=True,
        timeout=30,
    )
    if done.returncode != 0:
        missing(f"a tmpfs mount (root): {done.stderr.decode(errors='replace').strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


def test_full_disk_refuses_writes_but_keeps_serving_reads(
    small_disk: Path, figures: Figures, outage_log: pytest.LogCaptureFixture
) -> None:
    """On a full disk, reads went on until one failing `delete` opened the whole tier. A write
    or delete that fails for want of room now stops writes only."""
    cfg = CacheConfig(
        disk_cache_path=str(small_disk / "cache"), memory_enabled=False, breaker_reset_seconds=1.0
    )
    cache = MultiLevelCache(cfg, secret=SECRET)
    kept = {f"kept{i}": f"value {i}" for i in range(20)}
    for k, v in kept.items():
        cache.set(k, v)
    for i in range(200):  # until the tmpfs is full
        figures.timed(lambda j=i: cache.set(f"fill{j}", os.urandom(30_000)))
        if cache.breaker_state("disk") != "closed":
            break
    figures.faults = 1
    assert cache.breaker_state("disk") == "read-only"
    hits = 0
    errors = cache.snapshot().tiers["disk"].errors
    for r in range(5):
        time.sleep(1.1)  # a probe is due: this delete is sent, and fails for want of room
        figures.timed(lambda r=r: cache.delete(f"kept{r}"))
        assert cache.breaker_state("disk") != "open", "a failed delete stopped reads"
        for k, v in kept.items():
            got = figures.timed(lambda k=k: cache.get(k))
            hits += got == v
            figures.corrupt_reads += got is not None and got != v
        figures.timed(lambda r=r: cache.set(f"more{r}", os.urandom(30_000)))
    assert cache.snapshot().tiers["disk"].errors > errors  # the deletes did reach the disk
    figures.warnings = outage_warnings(outage_log)
    figures.notes.append(f"reads served on a full disk: {hits}/{5 * len(kept)}")
    cache.close()
    assert figures.exceptions == figures.corrupt_reads == 0
    assert hits >= 5 * len(kept) - 15  # all but the keys deleted along the way
