"""Backend specifics the contract does not cover: Redis bookkeeping kept out of the key space,
fnmatch globs on every tier, the Redis index pruned, namespaces on disk, TTL edge values."""

from __future__ import annotations

import fnmatch
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support import SECRET
from tore_nb import CacheConfig, MultiLevelCache
from tore_nb.testing import MotoS3
from tore_nb.tiers import DiskTier, MemoryTier, Tier, build_tier

PREFIX = "ns|"


@pytest.fixture
def rtier(redis_url: str) -> Iterator[Tier]:
    from tore_nb.tiers.redis import RedisTier

    t = RedisTier(url=redis_url, prefix=PREFIX)
    yield t
    t.close()


@pytest.fixture
def raw(redis_url: str) -> Iterator[object]:
    import redis

    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(params=["memory", "disk", "redis", "s3"])
def any_tier(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Tier]:
    kind = request.param
    t: Tier
    if kind == "memory":
        t = MemoryTier(max_bytes=10**7, ttl=3600)
    elif kind == "disk":
        t = DiskTier(tmp_path / "disk", size_limit=10**9, prefix=PREFIX)
    elif kind == "redis":
        from tore_nb.tiers.redis import RedisTier

        t = RedisTier(url=request.getfixturevalue("redis_url"), prefix=PREFIX)
    else:
        from tore_nb.tiers.s3 import S3Tier

        moto: MotoS3 = request.getfixturevalue("moto_server")
        t = S3Tier(
            bucket=request.getfixturevalue("s3_bucket"),
            prefix="cache/ns/",
            endpoint_url=moto.endpoint_url,
            region="us-east-1",
        )
    yield t
    t.close()


# -- 1. Redis bookkeeping is not in the user key space ------------------------------------------
@pytest.mark.redis
def test_user_keys_named_like_redis_bookkeeping(rtier: Tier) -> None:
    names = ["__created__", "__lock__:x", "tore_nb#created|ns|"]
    rtier.set_many({k: k.encode() for k in names}, None)
    rtier.set("after", b"v", None)  # the index is intact: no WRONGTYPE
    assert rtier.get_many([*names, "after"]) == [*(k.encode() for k in names), b"v"]
    assert sorted(rtier.iter_keys()) == sorted([*names, "after"])
    assert rtier.usage().entries == 4
    assert rtier.expire_older_than(time.time() + 1) == 4
    assert list(rtier.iter_keys()) == []


@pytest.mark.redis
def test_redis_locks_are_not_entries(rtier: Tier, raw: object) -> None:
    rtier.set("k", b"v", None)
    with rtier.lock("k") as got:  # type: ignore[attr-defined]
        assert got
        assert list(rtier.iter_keys()) == ["k"]
        assert rtier.usage().entries == 1
        assert rtier.clear() == 1
        assert raw.keys(b"tore_nb#lock|ns|*") != []  # type: ignore[attr-defined]  # still held
    assert raw.keys(b"tore_nb#lock|*") == []  # type: ignore[attr-defined]


@pytest.mark.redis
def test_redis_index_of_an_earlier_version_is_no_entry(rtier: Tier, raw: object) -> None:
    raw.zadd("ns|__created__", {"ns|old": 1.0})  # type: ignore[attr-defined]
    raw.set("ns|old", b"v")  # type: ignore[attr-defined]
    assert rtier.get("__created__") is None  # WRONGTYPE is a miss, not an outage
    assert rtier.get_many(["__created__", "old"]) == [None, b"v"]
    assert sorted(rtier.iter_keys()) == ["old"]
    assert rtier.clear() == 1
    assert raw.exists("ns|__created__") == 0  # type: ignore[attr-defined]
    rtier.set("__created__", b"mine", None)
    assert rtier.get("__created__") == b"mine"
    assert list(rtier.iter_keys()) == ["__created__"]


@pytest.mark.redis
def test_cache_key_named_like_the_index_keeps_redis_up(tmp_path: Path, redis_url: str) -> None:
    cfg = CacheConfig.embedded(tmp_path / "c").replace(redis_url=redis_url)
    c = MultiLevelCache(cfg, secret=SECRET)
    assert c.set("__created__", "v", tiers=["redis"])
    assert c.set("a", 1, tiers=["redis"])
    assert c.breaker_state("redis") == "closed"
    assert c.get("__created__", tiers=["redis"]) == "v"
    c.close()


# -- 2. fnmatch globs mean the same on every tier -----------------------------------------------
GLOB_KEYS = ["k1", "k2", "k!", "k^", "k\\", "k[", "k]", "k-", "k*", "k?", "ké", "é1", "a*b", "ab"]
GLOB_PATTERNS = [
    "*",
    "k?",
    "k[!1]",
    "k[^1]",
    "k[!!]",
    "k[]]",
    "k[!]]",
    "k[",
    "k\\",
    "k[\\]",
    "k[a-z0-9]",
    "k[*]",
    "k[?]",
    "[!k]*",
    "a*b",
    "a[*]b",
    "é?",
    "?1",
    "k[!é]",
    "k[-]",
]


def expected(pattern: str) -> list[str]:
    return sorted(k for k in GLOB_KEYS if fnmatch.fnmatchcase(k, pattern))


@pytest.mark.redis
@pytest.mark.parametrize("pattern", GLOB_PATTERNS)
def test_redis_glob_is_fnmatch(rtier: Tier, pattern: str) -> None:
    rtier.set_many({k: b"v" for k in GLOB_KEYS}, None)
    assert sorted(rtier.iter_keys(pattern)) == expected(pattern)


def test_every_tier_globs_like_fnmatch(any_tier: Tier) -> None:
    any_tier.set_many({k: b"v" for k in GLOB_KEYS}, None)
    for pattern in GLOB_PATTERNS:
        assert sorted(any_tier.iter_keys(pattern)) == expected(pattern), pattern


@pytest.mark.redis
def test_redis_glob_random_patterns(rtier: Tier) -> None:
    alphabet = "ab!^[]-\\*?é"
    rng = random.Random(7)
    keys = {"".join(rng.choices("ab!^[]-\\*?é", k=rng.randint(1, 4))) for _ in range(200)}
    rtier.set_many(dict.fromkeys(keys, b"v"), None)
    for _ in range(300):
        pattern = "".join(rng.choices(alphabet, k=rng.randint(1, 5)))
        want = sorted(k for k in keys if fnmatch.fnmatchcase(k, pattern))
        assert sorted(rtier.iter_keys(pattern)) == want, pattern


@pytest.mark.redis
def test_cache_invalidate_with_negated_set(tmp_path: Path, redis_url: str) -> None:
    cfg = CacheConfig.embedded(tmp_path / "c").replace(redis_url=redis_url)
    c = MultiLevelCache(cfg, secret=SECRET)
    for k in ["k1", "k2", "k!"]:
        c.set(k, k, tiers=["redis"])
    assert c.find_keys("k[!1]") == ["k!", "k2"]
    assert c.invalidate("k[!1]") == 2
    assert sorted(c.tier("redis").iter_keys()) == ["k1"]
    c.close()


# -- 3. what Redis expires or evicts is gone from the tier's view, with no index to keep -------
@pytest.mark.redis
def test_redis_usage_follows_ttl_expiry_without_an_index(rtier: Tier, raw: object) -> None:
    """Writes kept a per-namespace index (two zsets every writer contended on, 79% of Redis
    CPU per page); keys are found by SCAN now, so what Redis expired is simply not found."""
    rtier.set_many({f"k{i}": b"v" for i in range(1500)}, 0.2)
    rtier.set("kept", b"v", None)
    time.sleep(0.5)
    assert rtier.usage().entries == 1
    assert raw.exists(rtier.index_key) == 0  # type: ignore[attr-defined]


@pytest.mark.redis
def test_redis_index_pruned_after_eviction(rtier: Tier, raw: object) -> None:
    rtier.set_many({f"k{i}": b"v" for i in range(10)}, None)
    raw.delete(*[f"ns|k{i}" for i in range(5)])  # type: ignore[attr-defined]  # as eviction does
    assert rtier.expire_older_than(0) == 0
    assert rtier.usage().entries == 5


@pytest.mark.redis
def test_redis_index_stays_bounded_by_writes_alone(rtier: Tier, raw: object) -> None:
    for r in range(12):
        rtier.set_many({f"r{r}:{i}": b"v" for i in range(500)}, 0.05)
        time.sleep(0.1)
    # 6000 written, all but the last 500 expired: without pruning the index would hold them all
    assert raw.zcard(rtier.index_key) <= 1000  # type: ignore[attr-defined]


@pytest.mark.redis
def test_redis_rewrite_without_ttl_stays_indexed(rtier: Tier) -> None:
    rtier.set("k", b"short", 0.1)
    rtier.set("k", b"kept", None)
    time.sleep(0.3)
    assert rtier.usage().entries == 1
    assert rtier.expire_older_than(time.time() + 1) == 1


@pytest.mark.redis
def test_redis_expire_older_than_in_batches(rtier: Tier) -> None:
    rtier.set_many({f"k{i}": b"v" for i in range(2500)}, None)
    cutoff = time.time() + 1
    rtier.set("k0", b"again", 60)  # still counted: written before the cutoff too
    assert rtier.expire_older_than(cutoff) == 2500
    assert rtier.usage().entries == 0


# -- 4. namespaces sharing a disk directory -----------------------------------------------------
def test_disk_namespaces_share_a_directory(tmp_path: Path) -> None:
    a = DiskTier(tmp_path, size_limit=10**8, prefix="a|")
    b = DiskTier(tmp_path, size_limit=10**8, prefix="b|")
    a.set_many({"only-a": b"1", "same": b"A"}, None)
    b.set("same", b"B", None)
    b.set("big", b"x" * 200_000, None)  # kept as a file
    assert (a.get("same"), b.get("same"), b.get("only-a")) == (b"A", b"B", None)
    assert sorted(a.iter_keys()) == ["only-a", "same"] and sorted(b.iter_keys()) == ["big", "same"]
    assert a.usage().entries == 2 and b.usage().entries == 2
    assert b.usage().size_bytes == 200_001
    assert b.expire_older_than(time.time() + 1) == 2
    b.set("same", b"B", None)
    assert b.clear() == 1
    assert a.get("only-a") == b"1" and a.usage().entries == 2
    assert a.clear() == 2
    assert a.usage() == b.usage() and a.usage().entries == 0
    a.close()
    b.close()


def test_disk_tier_built_with_the_namespace(tmp_path: Path) -> None:
    built = build_tier("disk", CacheConfig.embedded(tmp_path, namespace="proj"))
    assert isinstance(built, DiskTier) and built.prefix == "proj|"


def test_cache_namespaces_on_one_disk_path(tmp_path: Path) -> None:
    a = MultiLevelCache(CacheConfig.embedded(tmp_path, namespace="projA"), secret=SECRET)
    b = MultiLevelCache(CacheConfig.embedded(tmp_path, namespace="projB"), secret=SECRET)
    a.set("a-only", 1)
    a.set("shared", "A")
    b.set("shared", "B")
    assert b.find_keys() == ["shared"]
    b.clear()
    a2 = MultiLevelCache(a.config, secret=SECRET)  # a restart: empty memory tier
    assert (a2.get("a-only"), a2.get("shared")) == (1, "A")
    for c in (a, b, a2):
        c.close()


def test_disk_prefix_without_a_next_character(tmp_path: Path) -> None:
    odd = DiskTier(tmp_path, size_limit=10**8, prefix="p\U0010ffff")
    other = DiskTier(tmp_path, size_limit=10**8, prefix="q|")
    odd.set("k", b"v", None)
    other.set("k", b"w", None)
    assert list(odd.iter_keys()) == ["k"] and odd.usage().entries == 1
    assert odd.clear() == 1 and other.get("k") == b"w"


# -- 5. a value too large for the memory tier drops the older one -------------------------------
def test_memory_put_too_large_drops_the_old_value() -> None:
    m = MemoryTier(max_bytes=1000, ttl=60, max_item_bytes=500)
    m.put("k", "old", 3, None)
    assert m.put("k", "new", 600, None) is False
    assert m.get("k") is None
    assert m.put("k", "new", 2000, None) is False and m.usage().entries == 0


# -- 6. non-finite TTLs -------------------------------------------------------------------------
def test_infinite_ttl_keeps_and_nan_is_refused(any_tier: Tier) -> None:
    any_tier.set("inf", b"v", math.inf)
    any_tier.set_many({"inf2": b"w"}, math.inf)
    any_tier.set("huge", b"h", 1e300)
    assert any_tier.get_many(["inf", "inf2", "huge"]) == [b"v", b"w", b"h"]
    with pytest.raises(ValueError, match="NaN"):
        any_tier.set("nan", b"v", math.nan)
    with pytest.raises(ValueError, match="NaN"):
        any_tier.set_many({"nan": b"v"}, math.nan)
    assert any_tier.get("nan") is None
    any_tier.set("gone", b"v", -math.inf)
    time.sleep(0.01)
    assert any_tier.get("gone") is None


@pytest.mark.redis
def test_cache_infinite_ttl_keeps_redis_up(tmp_path: Path, redis_url: str) -> None:
    cfg = CacheConfig.embedded(tmp_path / "c").replace(redis_url=redis_url)
    c = MultiLevelCache(cfg, secret=SECRET)
    assert c.set("k", 1, ttl=math.inf)
    assert c.breaker_state("redis") == "closed"
    assert c.get("k", tiers=["redis"]) == 1
    c.close()


def test_a_redis_url_that_does_not_parse_never_quotes_its_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Regression: a password with an unencoded '/' made redis-py raise "Port could not be
    cast to integer value as 'hun'", and the outage warning quoted that piece of it."""
    from tore_nb.breaker import Breaker
    from tore_nb.errors import TierUnavailable
    from tore_nb.tiers.redis import RedisTier

    tier = RedisTier(url="redis://:hun/ter2@127.0.0.1:1/0")
    with pytest.raises(TierUnavailable) as exc:
        tier.get("k")
    assert "hun" not in str(exc.value) and "ter2" not in str(exc.value)
    assert exc.value.permanent and "percent-encode" in str(exc.value)
    with caplog.at_level("WARNING"):
        Breaker("redis", 1, 30.0).failure(exc.value)
    assert caplog.records and "hun" not in caplog.text and "ter2" not in caplog.text


# -- 2. S3 expiry that S3 enforces: lifetime tags, lifecycle rules, storage classes -------------
def s3_config(moto: MotoS3, bucket: str, tmp_path: Path, **kw: object) -> CacheConfig:
    return CacheConfig.embedded(tmp_path / "c").replace(
        s3_cache_bucket=bucket, s3_endpoint_url=moto.endpoint_url, s3_cache_region="us-east-1", **kw
    )


@given(st.one_of(st.none(), st.floats(min_value=-1e12, max_value=1e12), st.just(math.inf)))
def test_lifetime_class_never_expires_before_the_ttl(ttl: float | None) -> None:
    from tore_nb.tiers.s3 import LIFETIME_CLASSES, lifetime_class

    name = lifetime_class(ttl)
    days = dict(LIFETIME_CLASSES).get(name, math.inf)
    assert days * 86_400 >= (math.inf if ttl is None else ttl)
    shorter = [d for _, d in LIFETIME_CLASSES if d < days]  # and it is the shortest that holds
    assert ttl is None or not shorter or ttl > max(shorter) * 86_400


@pytest.mark.s3
def test_s3_put_carries_its_lifetime_tag_and_a_storage_class_by_size_and_ttl(
    moto_server: MotoS3, s3_bucket: str, tmp_path: Path
) -> None:
    tier = build_tier("s3", s3_config(moto_server, s3_bucket, tmp_path, namespace="ns"))
    big = b"x" * 200_000
    writes = {  # key: (value, ttl, tag, storage class)
        "small-hour": (b"v", 3600.0, "1d", "STANDARD"),
        "small-forever": (b"v", None, None, "STANDARD"),
        "big-forever": (big, None, None, "STANDARD_IA"),
        "big-10-days": (big, 10 * 86_400.0, "30d", "STANDARD"),
        "big-60-days": (big, 60 * 86_400.0, "365d", "STANDARD_IA"),
        "big-2-years": (big, 730 * 86_400.0, None, "STANDARD_IA"),
    }
    for key, (value, ttl, _, _) in writes.items():
        tier.set(key, value, ttl)
    client = moto_server.client()
    for key, (value, ttl, tag, cls) in writes.items():
        name = f"tore-cache/ns/{key}"
        tags = client.get_object_tagging(Bucket=s3_bucket, Key=name)["TagSet"]
        assert tags == ([{"Key": "tore_nb-expires", "Value": tag}] if tag else []), key
        head = client.head_object(Bucket=s3_bucket, Key=name)
        assert head.get("StorageClass", "STANDARD") == cls, key
        assert ("tore-expires" in head["Metadata"]) == (ttl is not None), key  # exact expiry
        assert tier.get(key) == value
    tier.close()


@pytest.mark.s3
def test_s3_storage_class_rules_can_be_turned_off(
    moto_server: MotoS3, s3_bucket: str, tmp_path: Path
) -> None:
    cfg = s3_config(moto_server, s3_bucket, tmp_path, s3_ia_min_bytes=0, s3_ia_min_ttl_days=0)
    tier = build_tier("s3", cfg)
    tier.set("k", b"v", 60.0)
    head = moto_server.client().head_object(Bucket=s3_bucket, Key="tore-cache/tore_nb/k")
    assert head["StorageClass"] == "STANDARD_IA"
    tier.close()


def lifecycle(moto: MotoS3, bucket: str) -> list[dict[str, object]]:
    rules: list[dict[str, object]] = moto.client().get_bucket_lifecycle_configuration(
        Bucket=bucket
    )["Rules"]
    return rules


@pytest.mark.s3
def test_s3_install_lifecycle_merges_with_other_rules_and_is_idempotent(
    moto_server: MotoS3, s3_bucket: str, tmp_path: Path
) -> None:
    other = {
        "ID": "logs",
        "Filter": {"Prefix": "logs/"},
        "Status": "Enabled",
        "Expiration": {"Days": 3},
    }
    moto_server.client().put_bucket_lifecycle_configuration(
        Bucket=s3_bucket, LifecycleConfiguration={"Rules": [other]}
    )
    tier = build_tier("s3", s3_config(moto_server, s3_bucket, tmp_path, namespace="ns"))
    assert tier.install_lifecycle() is True  # type: ignore[attr-defined]
    rules = lifecycle(moto_server, s3_bucket)
    assert rules[0] == other
    by_days = {r["Expiration"]["Days"]: r for r in rules[1:]}  # type: ignore[index]
    assert sorted(by_days) == [1, 7, 30, 365]
    for days, rule in by_days.items():
        assert rule["Status"] == "Enabled"
        assert rule["Filter"] == {
            "And": {
                "Prefix": "tore-cache/ns/",
                "Tags": [{"Key": "tore_nb-expires", "Value": f"{days}d"}],
            }
        }
    assert tier.install_lifecycle() is False  # type: ignore[attr-defined]
    assert lifecycle(moto_server, s3_bucket) == rules
    # another namespace in the bucket adds its own rules and keeps these
    tier2 = build_tier("s3", s3_config(moto_server, s3_bucket, tmp_path, namespace="n2"))
    assert tier2.install_lifecycle() is True  # type: ignore[attr-defined]
    after = lifecycle(moto_server, s3_bucket)
    assert after[: len(rules)] == rules and len(after) == len(rules) + 4
    assert tier.install_lifecycle() is False  # type: ignore[attr-defined]
    tier.close()
    tier2.close()


@pytest.mark.s3
def test_s3_install_lifecycle_on_a_bucket_without_one_and_replaces_stale_rules(
    moto_server: MotoS3, s3_bucket: str, tmp_path: Path
) -> None:
    from tore_nb.tiers.s3 import lifecycle_rules

    tier = build_tier("s3", s3_config(moto_server, s3_bucket, tmp_path))
    assert tier.install_lifecycle() is True  # type: ignore[attr-defined]
    assert [r["ID"] for r in lifecycle(moto_server, s3_bucket)] == [
        r["ID"] for r in lifecycle_rules("tore-cache/tore_nb/")
    ]
    # a rule of ours changed by hand (or by an older version) is put back, not kept beside
    stale = lifecycle(moto_server, s3_bucket)
    stale[0]["Expiration"] = {"Days": 99}
    moto_server.client().put_bucket_lifecycle_configuration(
        Bucket=s3_bucket, LifecycleConfiguration={"Rules": stale}
    )
    assert tier.install_lifecycle() is True  # type: ignore[attr-defined]
    fixed = lifecycle(moto_server, s3_bucket)
    assert len(fixed) == 4 and fixed[0]["Expiration"] == {"Days": 1}
    tier.close()
