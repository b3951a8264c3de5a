"""Many processes on shared disk and Redis tiers, writers killed mid-write, and stampedes:
zero corrupt reads, zero exceptions, one computation per key."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import xxhash

from tests.support import SECRET
from tore_nb import CacheConfig, MultiLevelCache

from .conftest import Figures

pytestmark = pytest.mark.redis
PROCS = 8
OPS = int(os.environ.get("TORE_NB_CONCURRENCY_OPS", "2000"))
KEYS = 64


def value_for(key: str, rng: random.Random) -> dict[str, Any]:
    payload = rng.randbytes(rng.choice([50, 2_000, 90_000]))
    return {"key": key, "payload": payload, "check": xxhash.xxh64_hexdigest(payload)}


def valid(key: str, v: Any) -> bool:
    return (
        isinstance(v, dict)
        and v.get("key") == key
        and xxhash.xxh64_hexdigest(v["payload"]) == v["check"]
    )


def mixed_ops(cfg: CacheConfig, seed: int, ops: int, q: Any) -> None:
    cache = MultiLevelCache(cfg, secret=SECRET)
    rng = random.Random(seed)
    corrupt = exc = 0
    longest = 0.0
    for _ in range(ops):
        key = f"c{rng.randrange(KEYS)}"
        op = rng.random()
        t0 = time.monotonic()
        try:
            if op < 0.5:
                v = cache.get(key)
                corrupt += v is not None and not valid(key, v)
            elif op < 0.8:
                cache.set(key, value_for(key, rng))
            elif op < 0.9:
                keys = [f"c{rng.randrange(KEYS)}" for _ in range(8)]
                corrupt += sum(not valid(k, v) for k, v in cache.get_many(keys).items())
            else:
                cache.delete(key)
        except Exception:
            exc += 1
        longest = max(longest, time.monotonic() - t0)
    cache.close()
    q.put((corrupt, exc, longest))


def shared_config(tmp_path: Path, redis_url: str) -> CacheConfig:
    return CacheConfig(
        disk_cache_path=str(tmp_path / "shared"), redis_url=redis_url, breaker_reset_seconds=0.5
    )


def test_processes_mixed_operations(tmp_path: Path, redis_url: str, figures: Figures) -> None:
    cfg = shared_config(tmp_path, redis_url)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=mixed_ops, args=(cfg, i, OPS, q)) for i in range(PROCS)]
    for p in procs:
        p.start()
    results = [q.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(30)
    figures.operations = PROCS * OPS
    figures.corrupt_reads = sum(r[0] for r in results)
    figures.exceptions = sum(r[1] for r in results)
    figures.longest_call_s = max(r[2] for r in results)
    figures.notes.append(f"{PROCS} processes x {OPS} mixed operations on shared disk + Redis")
    assert figures.corrupt_reads == 0 and figures.exceptions == 0


def writer_forever(cfg: CacheConfig, seed: int) -> None:
    cache = MultiLevelCache(cfg, secret=SECRET)
    rng = random.Random(seed)
    while True:
        key = f"c{rng.randrange(KEYS)}"
        cache.set(key, value_for(key, rng))


def test_writers_killed_mid_write(tmp_path: Path, redis_url: str, figures: Figures) -> None:
    cfg = shared_config(tmp_path, redis_url)
    ctx = mp.get_context("spawn")
    writers = [ctx.Process(target=writer_forever, args=(cfg, 100 + i)) for i in range(6)]
    for p in writers:
        p.start()
    time.sleep(3.0)  # let them get going (spawn imports take a while on 2 cores)
    rng = random.Random(7)
    for p in writers:
        time.sleep(rng.uniform(0.05, 0.3))
        os.kill(p.pid, signal.SIGKILL)  # mid-write, wherever it is
        figures.faults += 1
    for p in writers:
        p.join(10)
    q = mp.get_context("spawn").Queue()
    mixed_ops(cfg, 999, 1000, q)  # then read and write everything again
    corrupt, exc, longest = q.get(timeout=5)
    reader = MultiLevelCache(cfg, secret=SECRET)
    for i in range(KEYS):
        v = figures.timed(lambda k=f"c{i}": reader.get(k))
        corrupt += v is not None and not valid(f"c{i}", v)
    figures.operations += 1000
    figures.corrupt_reads, figures.exceptions = corrupt, exc
    figures.longest_call_s = max(figures.longest_call_s, longest)
    figures.notes.append("6 writers SIGKILLed mid-write, then 1,064 reads and writes checked")
    assert corrupt == 0 and exc == 0


def stampede_proc(cfg: CacheConfig, threads: int, counter: str, q: Any) -> None:
    cache = MultiLevelCache(cfg, secret=SECRET)
    out: list[Any] = []

    def compute() -> str:
        with open(counter, "a") as f:
            f.write("x")
        time.sleep(0.5)
        return "value"

    ts = [
        threading.Thread(target=lambda: out.append(cache.get_or_compute("hot", compute)))
        for _ in range(threads)
    ]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    q.put(out)


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_stampede_computes_once(
    mode: str, tmp_path: Path, redis_url: str, figures: Figures
) -> None:
    figures.scenario = f"stampede_32_{mode}"
    cfg = shared_config(tmp_path, redis_url)
    counter = str(tmp_path / "count")
    if mode == "threads":
        q: Any = mp.Queue()
        stampede_proc(cfg, 32, counter, q)
        results = q.get(timeout=30)
    else:
        ctx = mp.get_context("spawn")
        q = ctx.Queue()
        procs = [ctx.Process(target=stampede_proc, args=(cfg, 4, counter, q)) for _ in range(8)]
        for p in procs:
            p.start()
        results = [v for _ in procs for v in q.get(timeout=120)]
        for p in procs:
            p.join(30)
    figures.operations = len(results)
    computed = len(Path(counter).read_text())
    figures.notes.append(f"32 concurrent misses, {computed} computation(s)")
    assert results == ["value"] * 32
    assert computed == 1
