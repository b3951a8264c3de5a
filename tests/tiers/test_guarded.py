"""The tier layer's parts: guarded tiers, declared capabilities, the registry, size routing by
capability, write stamps, single flight, and the process-wide cache in tore_nb.tiered."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import tore_nb
import tore_nb.tiered
from tests.support import SECRET
from tore_nb import CacheConfig, MultiLevelCache, tiered
from tore_nb.breaker import Breaker
from tore_nb.errors import ExtraMissing, IntegrityError, SerializationError, TierUnavailable
from tore_nb.stats import TierStats
from tore_nb.testing import FlakyTier
from tore_nb.tiers import (
    REGISTRY,
    DiskTier,
    MemoryTier,
    NullTier,
    TierCapabilities,
    build_tier,
    capabilities_of,
    register_tier,
)
from tore_nb.tiers.base import PLAIN
from tore_nb.tiers.flight import Flights, shared_lock
from tore_nb.tiers.guarded import FAILED, GuardedTier
from tore_nb.tiers.janitor import Janitor
from tore_nb.tiers.routing import SizeRoutes, plan_reads
from tore_nb.tiers.stamps import RECENT_WRITES, WriteStamps


def flaky(tmp_path: Path, failures: int = 2, reset: float = 60.0) -> tuple[GuardedTier, FlakyTier]:
    tier = FlakyTier(DiskTier(tmp_path / "d", size_limit=10**8))
    return GuardedTier(tier, TierStats(), Breaker("disk", failures, reset), Janitor()), tier


# -- the guard ---------------------------------------------------------------------------------
def test_call_returns_the_result_and_failed_on_an_outage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    g, tier = flaky(tmp_path)
    assert g.call(tier.set, "k", b"v", None) is None
    assert g.call(tier.get, "k") == b"v"
    tier.down = True
    with caplog.at_level(logging.WARNING, logger="tore_nb"):
        assert [g.call(tier.get, "k") for _ in range(5)] == [FAILED] * 5
    assert g.stats.errors == 2  # the breaker opened after two; the rest were never sent
    assert tier.calls == 4 and g.state == "open"
    assert sum("unavailable" in r.message for r in caplog.records) == 1  # one per outage


def test_quiet_failures_tell_the_breaker_but_count_no_error(tmp_path: Path) -> None:
    g, tier = flaky(tmp_path, failures=1)
    tier.down = True
    assert g.call(tier.usage, quiet=True) is FAILED
    assert g.stats.errors == 0 and g.state == "open"


def test_an_in_process_tier_has_no_breaker() -> None:
    def boom() -> None:
        raise TierUnavailable("never skipped")

    g = GuardedTier(MemoryTier(10**6, 60), TierStats())
    assert [g.call(boom) for _ in range(5)] == [FAILED] * 5
    assert g.stats.errors == 5 and g.state == "closed"


def test_write_refusal_opens_only_the_write_circuit(tmp_path: Path) -> None:
    from tore_nb.errors import TierWriteError

    g, tier = flaky(tmp_path, failures=1)

    def full(*_: Any) -> None:
        raise TierWriteError("disk full")

    assert g.call(full, write=True) is FAILED
    assert g.state == "read-only"
    assert g.call(tier.get, "k") is None  # reads go on
    assert g.write({"k": b"v"}, None) is False and "k" in g.stale


# -- what a tier missed ------------------------------------------------------------------------
def test_missed_writes_and_deletes_leave_keys_stale_until_they_land(tmp_path: Path) -> None:
    g, tier = flaky(tmp_path, failures=100)
    assert g.write({"a": b"1", "b": b"2"}, None)
    tier.down = True
    assert g.write({"a": b"3"}, None) is False
    assert g.delete(["b"]) == 0
    assert g.stale == {"a", "b"} and g.skips("a") and g.skipped(["a", "b", "c"]) == {"a", "b"}
    tier.down = False
    assert g.write({"a": b"4"}, None) and g.delete(["b"]) == 1
    assert not g.stale and g.stats.sets == 3 and g.stats.deletes == 1


def test_a_delete_that_fails_midway_marks_only_the_rest_stale(tmp_path: Path) -> None:
    g, tier = flaky(tmp_path, failures=100)
    g.write({"a": b"1", "b": b"2", "c": b"3"}, None)

    class Midway(FlakyTier):
        def delete(self, key: str) -> bool:
            self.down = key == "b"
            return super().delete(key)

    mid = Midway(tier.inner)
    gm = GuardedTier(mid, TierStats(), Breaker("disk", 100, 60))
    assert gm.delete(["a", "b", "c"]) == 1
    assert gm.stale == {"b", "c"} and gm.stats.errors == 1


def test_a_missed_clear_hides_the_tier_until_the_janitor_applies_it(tmp_path: Path) -> None:
    g, tier = flaky(tmp_path, failures=1, reset=0.0)  # reset 0: a probe is due at once
    g.write({"page:1": b"1", "other": b"2"}, None)
    tier.down = True
    g.record_missed("page:*")
    assert g.visible(["page:1", "other"]) == ["other"]  # and tries to apply it: the tier is down
    g.janitor.flush()
    assert g.skips("page:1") and not g.skips("other") and g.stats.errors >= 1
    g.janitor.flush()
    tier.down = False
    assert g.covered(["page:1", "other"]) == ["page:1"]  # and applies it, the tier answering
    g.janitor.flush()
    assert tier.inner.get("page:1") is None and tier.inner.get("other") == b"2"
    assert not g.stale and g.journal() == []


def test_rejected_entries_warn_once_per_kind_and_go(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    g, tier = flaky(tmp_path)
    g.write({"a": b"x", "b": b"y", "c": b"z"}, None)
    with caplog.at_level(logging.WARNING, logger="tore_nb"):
        g.reject("a", IntegrityError("bad signature"))
        g.reject("b", IntegrityError("bad signature"))
        g.reject("c", SerializationError("truncated"))
    assert g.stats.corrupt == 3
    assert sum("rejected entry" in r.message for r in caplog.records) == 2
    assert tier.inner.get_many(["a", "b", "c"]) == [None, None, None]


# -- capabilities ------------------------------------------------------------------------------
def test_built_in_tiers_declare_their_capabilities(tmp_path: Path) -> None:
    mem, disk = MemoryTier(10, 1), DiskTier(tmp_path, 10**6)
    assert capabilities_of(mem).holds_objects and capabilities_of(mem).sizes == {"small"}
    assert capabilities_of(disk).lock and not capabilities_of(disk).shared
    assert capabilities_of(disk).sizes == {"small", "large"}
    assert capabilities_of(NullTier()) is PLAIN


def test_optional_tiers_declare_theirs() -> None:
    pytest.importorskip("redis")
    pytest.importorskip("boto3")
    from tore_nb.tiers.redis import RedisTier
    from tore_nb.tiers.s3 import S3Tier

    redis = capabilities_of(RedisTier(url="redis://127.0.0.1:1/0"))
    s3 = capabilities_of(S3Tier(bucket="b"))
    assert redis.shared and redis.lock and redis.sizes == {"small", "large"}
    assert s3.shared and s3.limited_keys and not s3.lock and s3.sizes == {"large", "huge"}


def test_a_wrapper_declares_what_it_wraps_but_keeps_no_objects(tmp_path: Path) -> None:
    assert capabilities_of(FlakyTier(DiskTier(tmp_path, 10**6))) == capabilities_of(
        DiskTier(tmp_path, 10**6)
    )
    wrapped = capabilities_of(FlakyTier(MemoryTier(10, 1)))
    assert not wrapped.holds_objects and wrapped.sizes == {"small"}


class Named(FlakyTier):
    """A tier under another name, declaring what a test says."""

    def __init__(self, inner: Any, name: str, caps: TierCapabilities = PLAIN) -> None:
        super().__init__(inner)
        self.name = name
        self.capabilities = caps


def test_routing_follows_capabilities_not_names(tmp_path: Path) -> None:
    small_shared = TierCapabilities(shared=True, sizes=frozenset({"small"}))
    c = MultiLevelCache(
        CacheConfig.embedded(tmp_path, small_item_mb=0.01, large_item_mb=0.1),
        tiers=[
            MemoryTier(10**7, 60),
            Named(DiskTier(tmp_path / "a", 10**8), "redis"),  # named like redis, declares nothing
            Named(DiskTier(tmp_path / "b", 10**8), "team", small_shared),
        ],
        secret=SECRET,
    )
    assert c.route(100) == ("memory", "team") and c.route(50_000) == () and c.route(10**6) == ()
    assert c.set("k", "v")
    assert {t for t in c.tier_names if c.tier(t).get("k") is not None} == {"memory", "team"}
    assert (c.local_tiers, c.shared_tiers) == (("memory", "redis"), ("team",))
    assert c.set("x", "v", tiers=["redis"]) and c.get("x", tiers=["redis"]) == "v"


def test_the_object_tier_is_found_by_capability(tmp_path: Path) -> None:
    class Objects(MemoryTier):
        name = "l1"

    value = {"a": [1, 2]}
    c = MultiLevelCache(CacheConfig.embedded(tmp_path), tiers=[Objects(10**7, 60)], secret=SECRET)
    assert c.object_tier == "l1"
    assert c.set("k", value, tiers=["l1"])
    assert c.get("k") is value  # kept as the object, never encoded
    hit = c.fetch("k")
    assert hit is not None and hit.tier == "l1"
    # a tier of objects anywhere but first is a store of bytes like any other
    later = MultiLevelCache(
        CacheConfig.embedded(tmp_path),
        tiers=[DiskTier(tmp_path / "d", 10**8), MemoryTier(10**7, 60)],
        secret=SECRET,
    )
    assert later.object_tier is None
    assert later.set("k", value, tiers=["memory"]) and later.get("k") == value
    assert isinstance(later.tier("memory").get("k"), bytes)


def test_embedded_and_full_caches_say_which_tiers_are_shared(
    embedded_config: CacheConfig, full_config: CacheConfig
) -> None:
    c = MultiLevelCache(embedded_config, secret=SECRET)
    assert (c.local_tiers, c.shared_tiers, c.object_tier) == (("memory", "disk"), (), "memory")
    full = MultiLevelCache(full_config, secret=SECRET)
    assert (full.local_tiers, full.shared_tiers) == (("memory", "disk"), ("redis", "s3"))
    full.close()


# -- routing, stamps, single flight ------------------------------------------------------------
def test_size_routes_at_the_thresholds(tmp_path: Path) -> None:
    gs = [
        GuardedTier(MemoryTier(10, 1), TierStats()),
        GuardedTier(DiskTier(tmp_path, 10**6), TierStats()),
        GuardedTier(
            Named(NullTier(), "bulk", TierCapabilities(sizes=frozenset({"huge"}))), TierStats()
        ),
    ]
    routes = SizeRoutes(gs, CacheConfig(small_item_mb=1, large_item_mb=2))
    assert routes(999_999) == ("memory", "disk")
    assert routes(1_000_000) == routes(1_999_999) == ("disk",)
    assert routes(2_000_000) == ("bulk",)


def test_read_plans_promote_into_the_faster_selected_tiers(tmp_path: Path) -> None:
    mem = GuardedTier(MemoryTier(10, 1), TierStats())
    a = GuardedTier(DiskTier(tmp_path / "a", 10**6), TierStats())
    b = GuardedTier(Named(DiskTier(tmp_path / "b", 10**6), "b"), TierStats())
    memory, lanes = plan_reads(mem, [a, b], None)
    assert memory and [(g.name, [f.name for f in faster]) for g, _, _, _, faster in lanes] == [
        ("disk", ["memory"]),
        ("b", ["memory", "disk"]),
    ]
    memory, lanes = plan_reads(mem, [a, b], ("b",))
    assert not memory and [(g.name, faster) for g, _, _, _, faster in lanes] == [("b", ())]


def test_write_stamps_keep_a_bounded_history() -> None:
    s = WriteStamps()
    before = s.tick
    s.begin(["k"])
    with s.lock:
        assert not s.fresh("k", before)  # being written
    s.finish(["k"])
    s.begin(None)
    with s.lock:
        assert not s.fresh("other", s.tick)  # a clear is under way: every key is busy
    s.finish(None)
    after = s.tick
    s.finish([f"k{i}" for i in range(RECENT_WRITES + 10)])
    assert len(s) == RECENT_WRITES
    with s.lock:
        assert not s.fresh("k0", after) and s.fresh("never", s.tick)


def test_shared_lock_is_the_most_shared_closed_tier_that_offers_one(tmp_path: Path) -> None:
    taken: list[str] = []

    class Locking(Named):
        @contextmanager
        def lock(self, key: str) -> Iterator[bool]:
            taken.append(self.name)
            yield True

    caps = TierCapabilities(lock=True)
    near = GuardedTier(Locking(NullTier(), "near", caps), TierStats(), Breaker("near", 1, 60))
    far = GuardedTier(Locking(NullTier(), "far", caps), TierStats(), Breaker("far", 1, 60))
    plain = GuardedTier(Named(NullTier(), "plain"), TierStats(), Breaker("plain", 1, 60))
    with shared_lock([near, far, plain], "k", None) as got:
        assert got
    with shared_lock([near, far, plain], "k", ("near", "plain")):
        pass
    far.fail(TierUnavailable("down"))
    with shared_lock([near, far, plain], "k", None):
        pass
    assert taken == ["far", "near", "near"]
    assert far.stats.errors == 1


def test_flights_hand_one_lock_per_key() -> None:
    f = Flights()
    assert f.lock("a") is f.lock("a") and f.lock("a") is not f.lock("b")


# -- the registry ------------------------------------------------------------------------------
def test_registry_builds_every_tier_by_name(tmp_path: Path) -> None:
    cfg = CacheConfig.embedded(tmp_path)
    assert list(REGISTRY)[:4] == ["memory", "disk", "redis", "s3"]
    assert isinstance(build_tier("memory", cfg), MemoryTier)
    assert REGISTRY["s3"].install_hint == "pip install 'tore_nb[s3]'"
    assert REGISTRY["disk"].install_hint is None
    with pytest.raises(ValueError, match="unknown tier 'nope'; expected memory, disk, redis"):
        build_tier("nope", cfg)


def test_registered_tiers_name_their_extra_when_it_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tiers_module(), "REGISTRY", dict(REGISTRY))
    register_tier("null", lambda cfg: NullTier())
    register_tier("exotic", lambda cfg: NullTier(), ("tore_nb_no_such_module", "exotic"))
    cfg = CacheConfig.embedded(tmp_path)
    assert isinstance(build_tier("null", cfg), NullTier)
    with pytest.raises(ExtraMissing, match=r"pip install 'tore_nb\[exotic\]'"):
        build_tier("exotic", cfg)


def tiers_module() -> Any:
    import tore_nb.tiers

    return tore_nb.tiers


# -- the process-wide cache --------------------------------------------------------------------
def test_get_cache_lives_in_tiered_and_the_face_reexports_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tore_nb import get_cache

    assert get_cache is tore_nb.get_cache is tiered.get_cache
    monkeypatch.setattr(tore_nb.tiered, "_default", None)
    assert tiered.default_cache() is None
    made = get_cache(CacheConfig.embedded(tmp_path))
    assert tore_nb.tiered.default_cache() is made and get_cache() is made


def test_breaker_state_and_reset_by_name(tmp_path: Path) -> None:
    disk = FlakyTier(DiskTier(tmp_path / "d", size_limit=10**8))
    c = MultiLevelCache(
        CacheConfig.embedded(tmp_path, breaker_failures=1),
        tiers=[MemoryTier(10**7, 60), disk],
        secret=SECRET,
    )
    disk.down = True
    assert c.get("k") is None
    assert c.breaker_state("disk") == "open" and c.breaker_state("memory") == "closed"
    disk.down = False
    c.reset_tier("disk")
    assert c.breaker_state("disk") == "closed"
    assert c.snapshot().tiers["disk"].state == "closed"
    c.close()


def test_a_breaker_is_clean_until_a_failure_and_again_after_a_success() -> None:
    from tore_nb.errors import TierWriteError

    b = Breaker("t", threshold=3, reset=60)
    assert b.clean
    b.failure(TierUnavailable("blip"))
    assert not b.clean and b.state == "closed"
    b.success()
    assert b.clean
    b.failure(TierWriteError("full"))
    b.success()  # a read answered; the write circuit still remembers its failure
    assert not b.clean
    b.success(write=True)
    assert b.clean
    b.failure(TierUnavailable("down", permanent=True))
    b.reset()
    assert b.clean and b.state == "closed"
