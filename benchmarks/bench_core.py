"""Hit latency of MultiLevelCache beside the raw libraries doing the same work, in one run.

    python benchmarks/bench_core.py [--quick]

For 1 KB and 1 MB values it prints the median time of a hit through each tier next to:
L1 a bare cachetools TTLCache get; L2 diskcache get + pickle.loads; L3 redis-py GET +
pickle.loads; L4 boto3 get_object + pickle.loads (moto on loopback); and get_many of 100 keys on
Redis against a raw MGET + loads and against 100 single gets. It starts its own redis-server
and moto server on free loopback ports. Ratios are ours / raw (lower is better).
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tore_nb import CacheConfig, MultiLevelCache
from tore_nb.testing import MotoS3, RedisServer

SECRET = b"benchmark-secret-0123456789abcdef"


def median_us(fn: Callable[[], Any], n: int, warmup: int = 20) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1000


def compare(
    ours: Callable[[], Any], raw: Callable[[], Any], n: int, warmup: int = 20
) -> tuple[float, float, float]:
    """Medians of both and the median of their per-round ratios.

    The two alternate in rounds so that load drifts hit both alike; the ratio is taken within
    each round (a paired comparison), which keeps a burst of load in one round from tilting it.
    """
    rounds = 15
    a: list[float] = []
    b: list[float] = []
    for _ in range(rounds):
        a.append(median_us(ours, max(1, n // rounds), warmup))
        b.append(median_us(raw, max(1, n // rounds), warmup))
    ratio = statistics.median(x / y for x, y in zip(a, b, strict=True))
    return statistics.median(a), statistics.median(b), ratio


def values() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    text = "".join(chr(97 + int(i)) for i in rng.integers(0, 26, 900))
    return {
        "1KB": {"text": text, "page": 3, "score": 0.25},
        "1MB": rng.random(125_000),  # incompressible float64, 1,000,000 bytes
    }


def row(label: str, measured: tuple[float, float, float], target: float | None) -> str:
    ours, raw, ratio = measured
    verdict = "" if target is None else ("ok" if ratio <= target else "MISS")
    tgt = "" if target is None else f"<= {target:.1f}x"
    return f"| {label} | {ours:,.1f} | {raw:,.1f} | {ratio:.2f}x | {tgt} {verdict} |"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer iterations")
    args = ap.parse_args()
    scale = 0.2 if args.quick else 1.0
    n_fast, n_mid, n_s3 = int(20000 * scale), int(1000 * scale), int(100 * scale)

    import boto3
    import cachetools
    import diskcache
    import redis

    tmp = tempfile.mkdtemp(prefix="tore-bench-")
    lines = [
        f"python {platform.python_version()}, {os.cpu_count()} cores, {platform.machine()}",
        "",
        "| operation | tore_nb (us) | raw library (us) | ratio | target |",
        "|---|---|---|---|---|",
    ]
    with RedisServer() as server, MotoS3() as moto:
        moto.make_bucket("bench")
        cfg = CacheConfig(
            disk_cache_path=os.path.join(tmp, "tore"),
            redis_url=server.url,
            s3_cache_bucket="bench",
            s3_endpoint_url=moto.endpoint_url,
            s3_cache_region="us-east-1",
            memory_max_item_mb=2.0,
        )
        cache = MultiLevelCache(cfg, secret=SECRET)
        raw_ttl: cachetools.TTLCache[str, Any] = cachetools.TTLCache(maxsize=10_000, ttl=3600)
        raw_disk = diskcache.Cache(os.path.join(tmp, "raw"), disk_min_file_size=64 * 1024)
        raw_redis = redis.Redis.from_url(server.url)
        raw_s3 = boto3.client("s3", endpoint_url=moto.endpoint_url, region_name="us-east-1")

        for size, value in values().items():
            key = f"bench:{size}"
            blob = pickle.dumps(value, protocol=5)
            cache.set(key, value, tiers=["memory", "disk", "redis", "s3"])
            raw_ttl[key] = value
            raw_disk.set(key, blob)
            raw_redis.set(key, blob)
            raw_s3.put_object(Bucket="bench", Key=key, Body=blob)

            got = compare(lambda k=key: cache.get(k), lambda k=key: raw_ttl.get(k), n_fast)
            lines.append(row(f"L1 memory hit, {size}", got, 1.5 if size == "1KB" else None))

            got = compare(
                lambda k=key: cache.get(k, tiers=("disk",)),
                lambda k=key: pickle.loads(raw_disk.get(k)),
                n_mid,
            )
            lines.append(row(f"L2 disk hit, {size}", got, 1.3))

            got = compare(
                lambda k=key: cache.get(k, tiers=("redis",)),
                lambda k=key: pickle.loads(raw_redis.get(k)),  # type: ignore[arg-type]
                n_mid,
            )
            lines.append(row(f"L3 redis hit, {size}", got, 1.3))

            got = compare(
                lambda k=key: cache.get(k, tiers=("s3",)),
                lambda k=key: pickle.loads(raw_s3.get_object(Bucket="bench", Key=k)["Body"].read()),
                n_s3,
                warmup=2,
            )
            lines.append(row(f"L4 s3 hit, {size}", got, 1.3))

        keys = [f"many:{i}" for i in range(100)]
        small = values()["1KB"]
        cache.set_many(dict.fromkeys(keys, small), tiers=["redis"])
        raw_redis.mset({k: pickle.dumps(small, protocol=5) for k in keys})
        got = compare(
            lambda: cache.get_many(keys, tiers=("redis",)),
            lambda: [pickle.loads(b) for b in raw_redis.mget(keys)],  # type: ignore[union-attr]
            n_mid // 2,
        )
        lines.append(row("get_many(100) redis vs raw MGET + loads", got, 1.5))
        single, batched, speedup = compare(
            lambda: [cache.get(k, tiers=("redis",)) for k in keys],
            lambda: cache.get_many(keys, tiers=("redis",)),
            n_mid // 5,
            warmup=2,
        )
        verdict = "ok" if speedup >= 20 else "MISS"
        lines.append(
            f"| 100 single gets vs get_many(100) | {single:,.1f} | {batched:,.1f} | "
            f"{speedup:.1f}x faster batched | >= 20x {verdict} |"
        )
        cache.close()
        raw_disk.close()
    print("\n".join(lines))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
