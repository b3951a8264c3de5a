"""MultiLevelCache under interleavings and hostile input: reads racing writes, breakers after an
outage, bad keys and TTLs, explicit tiers, clears that a down tier missed.

Interleavings are forced with events, never with sleeps: a gated tier pauses inside a call until
the test lets it go. Waits have timeouts only so that a broken build fails instead of hanging.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from tests.support import SECRET
from tore_nb import CacheConfig, MultiLevelCache
from tore_nb.testing import FlakyTier
from tore_nb.tiers import DiskTier, MemoryTier
from tore_nb.tiers.base import TierCapabilities
from tore_nb.tiers.memory import MISSING
from tore_nb.tiers.stamps import RECENT_WRITES

WAIT = 10.0  # a safety net against hangs, never a timing assumption
S3_LIKE = TierCapabilities(shared=True, sizes=frozenset({"large", "huge"}))


class GatedTier(FlakyTier):
    """A FlakyTier whose next `get` (after reading) or `set` (before writing) pauses until the
    test calls `release()`; `paused` is set once the call is parked.
    """

    def __init__(
        self, inner: Any, name: str | None = None, capabilities: TierCapabilities | None = None
    ) -> None:
        super().__init__(inner)
        if name is not None:
            self.name = name
        if capabilities is not None:
            self.capabilities = capabilities
        self.gate: str | None = None
        self.paused = threading.Event()
        self._go = threading.Event()

    def arm(self, op: str) -> None:
        self.gate = op
        self.paused.clear()
        self._go.clear()

    def release(self) -> None:
        self._go.set()

    def _park(self, op: str) -> None:
        if self.gate == op:
            self.gate = None
            self.paused.set()
            assert self._go.wait(WAIT), "the test never released the gate"

    def get(self, key: str) -> bytes | bytearray | memoryview | None:
        data = super().get(key)
        self._park("get")
        return data

    def get_many(self, keys: Sequence[str]) -> Sequence[bytes | bytearray | memoryview | None]:
        data = super().get_many(keys)
        self._park("get")
        return data

    def set(self, key: str, value: bytes, ttl: float | None, created: float | None = None) -> None:
        self._park("set")
        super().set(key, value, ttl, created)

    def lock(self, key: str) -> AbstractContextManager[bool]:
        return self.inner.lock(key)  # type: ignore[no-any-return]


class Reader(threading.Thread):
    """Runs `fn` in a thread and keeps its result (or exception)."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:  # re-raised in the test's thread by finish()
            self.error = exc

    def finish(self) -> Any:
        self.join(WAIT)
        assert not self.is_alive()
        if self.error is not None:
            raise self.error
        return self.result


def two_level(tmp_path: Path, **cfg: Any) -> tuple[MultiLevelCache, MemoryTier, GatedTier]:
    mem = MemoryTier(10**7, 3600)
    disk = GatedTier(DiskTier(tmp_path / "d", size_limit=10**8))
    config = CacheConfig.embedded(tmp_path, **cfg)
    return MultiLevelCache(config, tiers=[mem, disk], secret=SECRET), mem, disk


@pytest.fixture
def cache2(tmp_path: Path) -> Iterator[tuple[MultiLevelCache, MemoryTier, GatedTier]]:
    c, mem, disk = two_level(tmp_path)
    yield c, mem, disk
    disk.release()
    c.close()


# -- 1. a read racing a write never promotes the old value -----------------------------------
@pytest.mark.parametrize("write", ["delete", "set", "set_many", "invalidate", "clear"])
@pytest.mark.parametrize("read", ["get", "get_many", "fetch"])
def test_read_racing_a_write_does_not_promote_the_old_value(
    cache2: tuple[MultiLevelCache, MemoryTier, GatedTier], write: str, read: str
) -> None:
    c, mem, disk = cache2
    c.set("k", "v1")
    mem.delete("k")  # evicted from L1: the disk holds v1
    disk.arm("get")
    reads: dict[str, Callable[[], Any]] = {
        "get": lambda: c.get("k"),
        "get_many": lambda: c.get_many(["k"]).get("k"),
        "fetch": lambda: c.fetch("k"),
    }
    reader = Reader(reads[read])
    reader.start()
    assert disk.paused.wait(WAIT)  # the reader holds v1, read from disk, not yet promoted
    writes: dict[str, Callable[[], object]] = {
        "delete": lambda: c.delete("k"),
        "set": lambda: c.set("k", "v2"),
        "set_many": lambda: c.set_many({"k": "v2"}),
        "invalidate": lambda: c.invalidate("k*"),
        "clear": lambda: c.clear(),
    }
    writes[write]()
    disk.release()
    reader.finish()
    want = "v2" if write.startswith("set") else None
    assert mem.lookup("k") in (MISSING, want)  # never v1 promoted after the write
    assert c.get("k") == want


def test_promotion_into_a_slower_tier_never_overwrites_a_newer_write(tmp_path: Path) -> None:
    # memory, disk, and a third tier (a disk posing as s3) that only a read reaches
    mem = MemoryTier(10**7, 3600)
    disk = GatedTier(DiskTier(tmp_path / "d", size_limit=10**8))
    far = GatedTier(DiskTier(tmp_path / "far", size_limit=10**8), name="s3", capabilities=S3_LIKE)
    c = MultiLevelCache(CacheConfig.embedded(tmp_path), tiers=[mem, disk, far], secret=SECRET)
    c.set("k", "v1", tiers=["s3"])
    disk.arm("set")  # the promotion of v1 into disk pauses before it writes
    reader = Reader(lambda: c.get("k"))
    reader.start()
    assert disk.paused.wait(WAIT)
    c.set("k", "v2")  # lands on disk first; the promotion would then overwrite it with v1
    disk.release()
    assert reader.finish() == "v1"  # the read began before the write: v1 is a fair answer
    c.flush()
    mem.clear()  # L1 evicts: whatever disk holds is served now
    assert c.get("k") in (None, "v2")
    assert c.get("k", tiers=["disk"]) in (None, "v2")
    c.close()


def test_read_racing_a_write_in_progress_does_not_promote(tmp_path: Path) -> None:
    # the write started before the read and ends after it: the read finds disk still holding
    # v1 and must not put it into memory, where the write has already put v2
    mem = MemoryTier(10**7, 3600)
    disk = GatedTier(DiskTier(tmp_path / "d", size_limit=10**8))
    c = MultiLevelCache(CacheConfig.embedded(tmp_path), tiers=[mem, disk], secret=SECRET)
    c.set("k", "v1")
    disk.arm("set")
    writer = Reader(lambda: c.set("k", "v2"))
    writer.start()
    assert disk.paused.wait(WAIT)  # v2 is in memory, the disk write is under way
    mem.delete("k")  # L1 evicts it meanwhile
    assert c.get("k") in ("v1", "v2")  # the read overlaps the write: either is fair
    disk.release()
    assert writer.finish() is True
    assert c.get("k") == "v2"
    mem.clear()
    assert c.get("k") == "v2"
    c.close()


def test_a_write_of_another_key_does_not_stop_promotion(
    cache2: tuple[MultiLevelCache, MemoryTier, GatedTier],
) -> None:
    c, mem, disk = cache2
    c.set("k", "v1")
    mem.delete("k")
    disk.arm("get")
    reader = Reader(lambda: c.get("k"))
    reader.start()
    assert disk.paused.wait(WAIT)
    c.set("other", 1)
    c.delete("other")
    disk.release()
    assert reader.finish() == "v1"
    assert mem.lookup("k") == "v1"  # promoted: only writes of "k" itself matter


def test_write_stamps_stay_bounded_and_promotion_goes_on(
    cache2: tuple[MultiLevelCache, MemoryTier, GatedTier],
) -> None:
    c, mem, _ = cache2
    c.set_many({f"k{i}": i for i in range(10_000)})
    assert len(c._stamps) <= RECENT_WRITES  # older stamps fold into one floor
    mem.clear()
    assert c.get("k0") == 0
    assert mem.lookup("k0") == 0  # reads after those writes promote again


# -- 2. single flight reports back to the breaker -------------------------------------------
@pytest.mark.parametrize("tiers", [None, ["memory"], ["memory", "disk"]])
def test_get_or_compute_does_not_leave_a_breaker_half_open(
    tmp_path: Path, tiers: list[str] | None
) -> None:
    # reset 0: a probe is due at once after the breaker opens
    c, mem, disk = two_level(tmp_path, breaker_failures=1, breaker_reset_seconds=0.0)
    c.set("a", 1)
    mem.clear()
    disk.down = True
    assert c.get("a") is None  # the outage opens the disk breaker
    disk.down = False
    assert c.get_or_compute("x", lambda: 42, tiers=tiers) == 42
    assert c.get("a") == 1  # the disk is probed, answers, and is used again
    assert c.breaker_state("disk") == "closed"
    c.close()


def test_get_or_compute_survives_a_lock_that_fails(tmp_path: Path) -> None:
    class BrokenLock(GatedTier):
        @contextlib.contextmanager
        def lock(self, key: str) -> Iterator[bool]:  # type: ignore[override]
            raise OSError("no space left for the lock file")
            yield True

    mem = MemoryTier(10**7, 3600)
    disk = BrokenLock(DiskTier(tmp_path / "d", size_limit=10**8))
    c = MultiLevelCache(CacheConfig.embedded(tmp_path), tiers=[mem, disk], secret=SECRET)
    assert c.get_or_compute("x", lambda: 42) == 42
    assert c.get("x") == 42
    c.close()


# -- 3. bad keys are the caller's error, never a tier outage ----------------------------------
BAD_KEYS: list[tuple[Any, type[Exception]]] = [
    (123, TypeError),
    (b"bytes", TypeError),
    (None, TypeError),
    (("a", "b"), TypeError),
    ("\ud800", ValueError),
    ("ok\udfffok", ValueError),
]


@pytest.mark.parametrize(("key", "error"), BAD_KEYS)
def test_bad_keys_raise_and_never_touch_a_tier(
    cache2: tuple[MultiLevelCache, MemoryTier, GatedTier], key: Any, error: type[Exception]
) -> None:
    c, mem, disk = cache2
    c.set("good", 1)
    calls = disk.calls
    operations: list[Callable[[], object]] = [
        lambda: c.get(key),
        lambda: c.fetch(key),
        lambda: c.contains(key),
        lambda: c.delete(key),
        lambda: c.set(key, 1),
        lambda: c.set_many({"fine": 1, key: 2}),
        lambda: c.get_many(["good", key]),
        lambda: c.fetch_many(["good", key]),
        lambda: c.get_or_compute(key, lambda: 1),
    ]
    for op in operations:
        with pytest.raises(error, match="key"):
            op()
    if isinstance(key, str):
        for op in (lambda: c.find_keys(key), lambda: c.invalidate(key)):
            with pytest.raises(error):
                op()
    assert disk.calls == calls  # nothing reached the tier
    assert c.breaker_state("disk") == "closed"
    assert c.get("fine") is None  # set_many validated every key before storing any
    mem.clear()
    assert c.get("good") == 1


def test_get_many_refuses_a_single_str(
    cache2: tuple[MultiLevelCache, MemoryTier, GatedTier],
) -> None:
    c, _, _ = cache2
    with pytest.raises(TypeError, match="iterable of keys"):
        c.get_many("abc")


def test_str_subclass_keys_work(cache2: tuple[MultiLevelCache, MemoryTier, GatedTier]) -> None:
    class Key(str):
        pass

    c, mem, _ = cache2
    assert c.set(Key("k"), 1)
    mem.clear()
    assert c.get(Key("k")) == 1 and c.get("k") == 1


@pytest.mark.redis
def test_bad_keys_leave_redis_breaker_closed(tmp_path: Path, redis_url: str) -> None:
    c = MultiLevelCache(
        CacheConfig.embedded(tmp_path).replace(redis_url=redis_url, memory_enabled=False),
        secret=SECRET,
    )
    c.set("good", 1)
    for key in ("\ud800", 123):
        with pytest.raises((TypeError, ValueError)):
            c.get_many([key])
        with pytest.raises((TypeError, ValueError)):
            c.set(key, 1)
    assert (c.breaker_state("disk"), c.breaker_state("redis")) == ("closed", "closed")
    assert c.get("good", tiers=["redis"]) == 1
    assert c.snapshot(usage=False).tiers["redis"].errors == 0


# -- 4. a value too big for memory never leaves the old one there ------------------------------
def test_new_value_too_big_for_memory_drops_the_old_one(tmp_path: Path) -> None:
    mem = MemoryTier(100_000, 3600)
    disk = DiskTier(tmp_path / "d", size_limit=10**8)
    c = MultiLevelCache(CacheConfig.embedded(tmp_path), tiers=[mem, disk], secret=SECRET)
    c.set("k", "old")
    new = os.urandom(200_000)  # routed to memory (< 1 MB) but over its budget
    assert c.set("k", new)
    assert mem.lookup("k") is MISSING
    assert c.get("k") == new


@pytest.mark.parametrize("ttl", [0, -5])
def test_set_with_non_positive_ttl_never_serves_the_old_value(
    cache2: tuple[MultiLevelCache, MemoryTier, GatedTier], ttl: float
) -> None:
    c, _, _ = cache2
    c.set("k", "old")
    c.set("k", "new", ttl=ttl)
    assert c.get("k") != "old"


# -- 5. TTLs ----------------------------------------------------------------------------------
@pytest.mark.redis
@pytest.mark.parametrize("ttl", [float("inf"), 1e300])
def test_infinite_ttl_means_no_expiry(tmp_path: Path, redis_url: str, ttl: float) -> None:
    import redis

    c = MultiLevelCache(CacheConfig.embedded(tmp_path).replace(redis_url=redis_url), secret=SECRET)
    assert c.set("k", 1, ttl=ttl)
    assert c.get_or_compute("g", lambda: 2, ttl=ttl) == 2
    assert c.set_many({"m": 3}, ttl=ttl) == 1
    assert c.breaker_state("redis") == "closed"
    assert c.snapshot(usage=False).tiers["redis"].errors == 0
    for key, value in (("k", 1), ("g", 2), ("m", 3)):
        assert c.get(key, tiers=["redis"]) == value
    r = redis.Redis.from_url(redis_url)
    assert all(r.ttl(name) == -1 for name in r.keys("*k") + r.keys("*m"))  # no expiry
    r.close()


@pytest.mark.parametrize(
    ("ttl", "error"),
    [(float("nan"), ValueError), ("60", TypeError), (True, TypeError), ([60], TypeError)],
)
def test_bad_ttl_raises_before_anything_is_done(
    cache2: tuple[MultiLevelCache, MemoryTier, GatedTier], ttl: Any, error: type[Exception]
) -> None:
    c, _, disk = cache2
    calls = disk.calls
    computed: list[int] = []
    for op in (
        lambda: c.set("k", 1, ttl=ttl),
        lambda: c.set_many({"k": 1}, ttl=ttl),
        lambda: c.get_or_compute("k", lambda: computed.append(1), ttl=ttl),
    ):
        with pytest.raises(error, match="ttl"):
            op()
    assert not computed and disk.calls == calls
    assert c.breaker_state("disk") == "closed"


# -- 6. explicit tiers never leave a shadowing copy in a faster tier ---------------------------
@pytest.mark.redis
def test_set_to_explicit_tiers_removes_faster_stale_copies(tmp_path: Path, redis_url: str) -> None:
    c = MultiLevelCache(CacheConfig.embedded(tmp_path).replace(redis_url=redis_url), secret=SECRET)
    c.set("k", "v1")  # memory, disk, redis
    assert c.set("k", "v2", tiers=["redis"])
    assert c.get("k") == "v2"
    c.flush()
    assert c.get("k", tiers=["disk"]) in (None, "v2")  # promoted v2 at most, never v1
    c.tier("memory").clear()
    hit = c.fetch("k")
    assert hit is not None and hit.value == "v2"


def test_set_to_explicit_tiers_with_memory_only_leaves_slower_tiers(
    cache2: tuple[MultiLevelCache, MemoryTier, GatedTier],
) -> None:
    # slower tiers than every target are left alone: explicit tiers place entries deliberately
    c, _, disk = cache2
    c.set("k", "v1")
    c.set("k", "v2", tiers=["memory"])
    assert c.get("k") == "v2"
    c.flush()
    assert disk.inner.get("k") is not None


# -- 7. a clear or invalidation that a down tier missed ---------------------------------------
def test_clear_while_a_tier_is_down_never_resurfaces(
    cache2: tuple[MultiLevelCache, MemoryTier, GatedTier],
) -> None:
    c, _, disk = cache2
    c.set("doc1:p1", "old")
    c.set("doc1:p2", "old")
    disk.down = True
    c.clear()
    disk.down = False
    c.reset_tier("disk")
    assert c.get("doc1:p2") is None
    assert c.get_many(["doc1:p1", "doc1:p2"]) == {}
    assert not c.contains("doc1:p1")
    assert c.find_keys() == []
    c.flush()  # the missed clear is applied in the background once the tier answers
    assert disk.inner.get("doc1:p2") is None
    c.set("doc1:p2", "new")
    c.tier("memory").clear()
    hit = c.fetch("doc1:p2")
    assert hit is not None and (hit.value, hit.tier) == ("new", "disk")


def test_invalidate_while_a_tier_is_down_never_resurfaces(
    cache2: tuple[MultiLevelCache, MemoryTier, GatedTier],
) -> None:
    c, mem, disk = cache2
    c.set("doc1:p1", "old")
    c.set("doc2:p1", "kept")
    mem.clear()  # these keys now live only on disk
    disk.down = True
    assert c.invalidate("doc1:*") == 0  # nothing could be listed
    disk.down = False
    c.reset_tier("disk")
    assert c.get("doc1:p1") is None
    assert c.get("doc2:p1") == "kept"  # only the pattern is masked
    c.flush()
    assert disk.inner.get("doc1:p1") is None
    assert disk.inner.get("doc2:p1") is not None


def test_a_clear_that_reaches_the_tier_settles_one_it_missed(
    cache2: tuple[MultiLevelCache, MemoryTier, GatedTier],
) -> None:
    c, mem, disk = cache2
    c.set("a", "old")
    disk.down = True
    c.clear()
    disk.down = False
    c.reset_tier("disk")
    assert c.clear() == 1  # the disk copy of "a"
    c.set("a", "new")
    mem.clear()
    hit = c.fetch("a")
    assert hit is not None and (hit.value, hit.tier) == ("new", "disk")


# -- minor: statistics ------------------------------------------------------------------------
def test_get_or_compute_miss_counts_each_tier_once(
    cache2: tuple[MultiLevelCache, MemoryTier, GatedTier],
) -> None:
    c, _, _ = cache2
    assert c.get_or_compute("k", lambda: 1) == 1
    tiers = c.snapshot(usage=False).tiers
    assert (tiers["memory"].misses, tiers["disk"].misses) == (1, 1)


def test_contains_counts_tier_errors(cache2: tuple[MultiLevelCache, MemoryTier, GatedTier]) -> None:
    c, _, disk = cache2
    disk.down = True
    assert not c.contains("k")
    assert c.snapshot(usage=False).tiers["disk"].errors == 1
