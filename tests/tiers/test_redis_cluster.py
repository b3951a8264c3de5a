"""The Redis tier on a real 3-master Redis Cluster, and the index-free write path it rests on.

A cluster tier passes the whole tier contract; a batch read is one MGET per hash slot its keys
fall in, a batch write one MSET (or the SETs) per slot; a namespace spreads over every master;
locks hold on a cluster; a MultiLevelCache serves from it. On a single Redis a write is one
command and no index key is written, while an earlier version's index keys stay harmless.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import SECRET
from tore_nb import CacheConfig, MultiLevelCache
from tore_nb.testing import TierContract
from tore_nb.tiers import Tier, build_tier
from tore_nb.tiers.redis import RedisTier

redis = pytest.importorskip("redis")
pytestmark = pytest.mark.redis


def nodes(url: str) -> list[Any]:
    """A plain client per master of the cluster behind `url`."""
    from redis.cluster import RedisCluster

    rc = RedisCluster.from_url(url.replace("+cluster", ""))
    clients = [redis.Redis(host=n.host, port=n.port) for n in rc.get_primaries()]
    rc.close()
    return clients


def calls(clients: list[Any]) -> dict[str, int]:
    """Commands run since the last CONFIG RESETSTAT, summed over `clients`, by name."""
    total: dict[str, int] = {}
    for c in clients:
        for name, stat in c.info("commandstats").items():
            total[name[len("cmdstat_") :]] = total.get(name[len("cmdstat_") :], 0) + stat["calls"]
    total.pop("config|resetstat", None)
    return total


def reset(clients: list[Any]) -> None:
    for c in clients:
        c.config_resetstat()


def slots(tier: RedisTier, keys: list[str]) -> set[int]:
    from redis.crc import key_slot

    return {key_slot(tier._name(k).encode()) for k in keys}


class TestRedisClusterTier(TierContract):
    @pytest.fixture
    def tier(self, redis_cluster_url: str) -> Iterator[Tier]:
        t = RedisTier(url=redis_cluster_url, prefix="contract|")
        assert t.cluster
        yield t
        t.close()

    def test_namespaces_do_not_see_each_other(self, tier: Tier, redis_cluster_url: str) -> None:
        other = RedisTier(url=redis_cluster_url, prefix="other|")
        other.set("k", b"theirs", None)
        tier.set("k", b"ours", None)
        assert other.get("k") == b"theirs"
        assert tier.clear() == 1
        assert other.get("k") == b"theirs"
        other.close()


@pytest.fixture
def ctier(redis_cluster_url: str) -> Iterator[RedisTier]:
    t = RedisTier(url=redis_cluster_url, prefix="ns|")
    yield t
    t.close()


def test_a_batch_read_is_one_mget_per_slot(ctier: RedisTier, redis_cluster_url: str) -> None:
    clients = nodes(redis_cluster_url)
    keys = [f"page:{i}" for i in range(300)]
    ctier.set_many({k: k.encode() for k in keys}, None)
    reset(clients)
    got = ctier.get_many([*keys, "absent"])
    assert got == [k.encode() for k in keys] + [None]
    seen = calls(clients)
    print(f"cluster get_many of {len(keys) + 1} keys: {seen}")
    assert seen == {"mget": len(slots(ctier, [*keys, "absent"]))}
    assert seen["mget"] <= ctier.hash_tags

    few = ["page:1"]
    reset(clients)
    assert ctier.get_many(few) == [b"page:1"]
    assert calls(clients) == {"mget": 1}


def test_a_batch_write_is_one_command_per_slot_or_entry(
    ctier: RedisTier, redis_cluster_url: str
) -> None:
    clients = nodes(redis_cluster_url)
    keys = [f"w{i}" for i in range(200)]
    ctier.get("warm")  # connected: the cluster's layout is read once, before the count
    reset(clients)
    ctier.set_many(dict.fromkeys(keys, b"v"), None)
    assert calls(clients) == {"mset": len(slots(ctier, keys))}
    reset(clients)
    ctier.set_many(dict.fromkeys(keys, b"v"), 60)
    assert calls(clients) == {"set": len(keys)}  # SET ... PX each, and no index
    assert 0 < ctier.client.pttl(ctier._name("w0")) <= 60_000


def test_a_namespace_spreads_over_every_master(ctier: RedisTier, redis_cluster_url: str) -> None:
    ctier.set_many({f"k{i}": b"v" for i in range(600)}, None)
    sizes = [c.dbsize() for c in nodes(redis_cluster_url)]
    assert sum(sizes) == 600
    assert min(sizes) > 600 / len(sizes) / 2, sizes  # even enough: no master left out


def test_hash_tags_fill_their_slot_ranges_evenly() -> None:
    from redis.crc import key_slot

    from tore_nb.tiers.redis import _hash_tags

    for count in (1, 16, 64, 256):
        tags = _hash_tags(count)
        buckets = sorted(key_slot(t.encode()) * count // 16384 for t in tags)
        assert buckets == list(range(count)) and max(len(t) for t in tags) <= 4


def test_locks_hold_on_a_cluster(redis_cluster_url: str) -> None:
    a = RedisTier(url=redis_cluster_url, prefix="ns|", lock_lease=0.6)
    b = RedisTier(url=redis_cluster_url, prefix="ns|", lock_lease=0.6)
    with a.lock("job") as got:
        assert got
        time.sleep(1.5)  # past two leases: the renewing thread keeps it
        with b.lock("job", wait=0.3) as other:
            assert other is False
    with b.lock("job", wait=1.0) as other:
        assert other is True
    a.close()
    b.close()


def test_a_cache_serves_from_the_cluster(tmp_path: Path, redis_cluster_url: str) -> None:
    def make(name: str) -> MultiLevelCache:
        cfg = CacheConfig(
            disk_cache_path=str(tmp_path / name), redis_url=redis_cluster_url, memory_enabled=False
        )
        return MultiLevelCache(cfg, secret=SECRET)

    writer, reader = make("a"), make("b")
    assert writer.tier("redis").cluster  # type: ignore[attr-defined]
    writer.set("one", {"v": 1})
    values = {f"p{i}": list(range(i)) for i in range(50)}
    assert writer.set_many(values) == 50
    hit = reader.fetch("one")
    assert hit is not None and hit.tier == "redis" and hit.value == {"v": 1}
    assert reader.get_many([*values, "absent"]) == values
    assert reader.get("p7") == list(range(7))
    writer.close()
    reader.close()


def test_a_cluster_url_builds_a_cluster_tier(redis_cluster_url: str) -> None:
    tier = build_tier("redis", CacheConfig(redis_url=redis_cluster_url))
    assert isinstance(tier, RedisTier) and tier.cluster and "cluster" in repr(tier)
    tier.set("k", b"v", None)
    assert tier.get("k") == b"v"
    tier.close()


def test_an_unreachable_cluster_is_unavailable_and_locks_are_not_held() -> None:
    from tore_nb.errors import TierUnavailable
    from tore_nb.testing import free_port

    tier = RedisTier(url=f"redis+cluster://127.0.0.1:{free_port()}", prefix="ns|")
    with pytest.raises(TierUnavailable):
        tier.get("k")
    with tier.lock("k", wait=0.1) as got:
        assert got is False


# -- a single Redis: no index on the write path --------------------------------------------------
@pytest.fixture
def stier(redis_url: str) -> Iterator[RedisTier]:
    t = RedisTier(url=redis_url, prefix="ns|")
    yield t
    t.close()


def test_a_write_is_one_command_and_writes_no_index(stier: RedisTier, redis_url: str) -> None:
    raw = redis.Redis.from_url(redis_url)
    stier.get("warm")  # connected
    raw.config_resetstat()
    stier.set("a", b"v", None)
    stier.set("b", b"v", 60)
    stier.set_many({f"m{i}": b"v" for i in range(100)}, None)
    stier.set_many({f"t{i}": b"v" for i in range(100)}, 60)
    stier.get_many([f"m{i}" for i in range(100)])
    stats = {k[len("cmdstat_") :]: v["calls"] for k, v in raw.info("commandstats").items()}
    stats.pop("config|resetstat", None)
    print(f"single Redis, 202 entries written and 100 read: {stats}")
    assert stats == {"set": 102, "mset": 1, "mget": 1}
    assert raw.exists(stier.index_key, stier.expiry_key) == 0
    raw.close()


def test_an_earlier_versions_indexes_are_harmless_and_cleared(
    stier: RedisTier, redis_url: str
) -> None:
    raw = redis.Redis.from_url(redis_url)
    raw.zadd(stier.index_key, {"ns|old": 1.0})
    raw.zadd(stier.expiry_key, {"ns|old": 1.0})
    raw.zadd("ns|__created__", {"ns|old": 1.0})
    raw.set("ns|old", b"raw value of an earlier version")
    stier.set("new", b"v", None)
    assert stier.get_many(["__created__", "old", "new"]) == [
        None,
        b"raw value of an earlier version",
        b"v",
    ]
    assert sorted(stier.iter_keys()) == ["new", "old"] and stier.usage().entries == 2
    assert stier.expire_older_than(time.time() - 3600) == 0  # both were touched just now
    assert stier.clear() == 2
    assert raw.exists(stier.index_key, stier.expiry_key, "ns|__created__") == 0
    raw.close()


def test_expire_older_than_reads_the_signed_creation_time(tmp_path: Path, redis_url: str) -> None:
    cfg = CacheConfig(
        disk_cache_path=str(tmp_path), redis_url=redis_url, memory_enabled=False, disk_enabled=False
    )
    cache = MultiLevelCache(cfg, secret=SECRET)
    cache.set("old", 1)
    tier: RedisTier = cache.tier("redis")  # type: ignore[assignment]
    entry = tier.get("old")
    assert entry is not None and bytes(entry)[:4] == b"TNB\x01"  # stored as the entry itself
    time.sleep(0.05)
    cutoff = time.time()
    time.sleep(0.05)
    cache.set("new", 2)
    assert tier.expire_older_than(cutoff) == 1
    assert cache.get("old") is None and cache.get("new") == 2
    cache.close()


def test_usage_of_a_large_keyspace_is_unknown_not_scanned(stier: RedisTier) -> None:
    stier.set_many({f"k{i}": b"v" for i in range(3000)}, None)
    assert stier.usage().entries == 3000
    stier.usage_scan_limit = 1000
    assert stier.usage().entries is None
