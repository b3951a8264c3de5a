"""A slow S3 (a delaying proxy in front of the moto server, counting requests by method): small
writes cost S3 nothing, exit is bounded, and a `@cached` miss reads S3 once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import SECRET, SOURCE_ROOT
from tore_nb import CacheConfig, MultiLevelCache, cached
from tore_nb.testing import MotoS3, S3Proxy
from tore_nb.tiers.fanout import EXIT_WAIT_S

from .conftest import Figures

pytestmark = pytest.mark.s3


@pytest.fixture
def slow_s3(moto_server: MotoS3, s3_bucket: str) -> Iterator[S3Proxy]:
    proxy = S3Proxy(moto_server.endpoint_url, 0.05)
    try:
        yield proxy
    finally:
        proxy.close()


def slow_config(tmp_path: Path, proxy: S3Proxy, bucket: str, **kw: object) -> CacheConfig:
    return CacheConfig(
        disk_cache_path=str(tmp_path / "d"),
        s3_cache_bucket=bucket,
        s3_endpoint_url=proxy.url,
        s3_cache_region="us-east-1",
        s3_read_timeout=5.0,
        **kw,  # type: ignore[arg-type]
    )


def test_small_writes_of_keys_never_in_s3_send_s3_nothing(
    tmp_path: Path, slow_s3: S3Proxy, s3_bucket: str, figures: Figures
) -> None:
    """Regression: each small write with S3 configured queued a background HEAD to S3 (looking
    for a stale copy to delete), a billed request per `set` that exit then waited for. A key
    this process never wrote to S3 is not looked for there."""
    cache = MultiLevelCache(slow_config(tmp_path, slow_s3, s3_bucket), secret=SECRET)
    n = 300
    for i in range(n):
        figures.timed(lambda i=i: cache.set(f"small:{i}", {"i": i}))
    cache.set_many({f"batch:{i}": i for i in range(n)})
    assert cache.flush(30.0)
    assert all(cache.get(f"small:{i}") == {"i": i} for i in range(n))  # memory serves them
    figures.notes.append(f"{2 * n} small sets, S3 at 50 ms: S3 requests {dict(slow_s3.counts)}")
    assert slow_s3.total() == 0
    assert figures.exceptions == figures.corrupt_reads == 0


def test_rewrite_of_a_key_this_process_put_in_s3_still_deletes_that_copy(
    tmp_path: Path, slow_s3: S3Proxy, s3_bucket: str
) -> None:
    cache = MultiLevelCache(
        slow_config(tmp_path, slow_s3, s3_bucket, small_item_mb=0.001, large_item_mb=0.002),
        secret=SECRET,
    )
    assert cache.set("k", os.urandom(5000))  # huge for this config: S3 only
    assert cache.set("k", b"small now")
    assert cache.flush(30.0)
    assert slow_s3.counts["DELETE"] == 1  # the copy it knew of, and nothing else
    assert cache.tier("s3").get("k") is None
    cache.tier("memory").clear()
    cache.tier("disk").clear()
    assert cache.get("k") is None


EXIT_SCRIPT = """
import sys, time
sys.path.insert(0, {root!r})
from tore_nb import CacheConfig, MultiLevelCache
cfg = CacheConfig(disk_cache_path={disk!r}, s3_cache_bucket={bucket!r}, s3_endpoint_url={url!r},
                  s3_cache_region="us-east-1", s3_read_timeout=5.0, **{extra!r})
cache = MultiLevelCache(cfg, secret={secret!r})
{work}
print("DONE", flush=True)
"""


def run_then_exit(
    tmp_path: Path, proxy: S3Proxy, bucket: str, work: str, **extra: object
) -> tuple[float, str]:
    """Run `work` in a fresh interpreter; the seconds from its last line to its exit, and its
    stderr."""
    code = EXIT_SCRIPT.format(
        root=SOURCE_ROOT,
        disk=str(tmp_path / "d"),
        bucket=bucket,
        url=proxy.url,
        extra=extra,
        secret=SECRET,
        work=textwrap.dedent(work),
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        done = time.monotonic()
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert line.strip() == "DONE", err
    return time.monotonic() - done, err


def test_exit_after_2000_small_sets_is_quick_and_sends_s3_nothing(
    tmp_path: Path, slow_s3: S3Proxy, s3_bucket: str, figures: Figures
) -> None:
    """Regression: 2,000 sets took 0.5 s, then exit took 105.6 s with S3 at 50 ms per request,
    waiting for a background HEAD per set."""
    took, err = run_then_exit(
        tmp_path, slow_s3, s3_bucket, "for i in range(2000):\n    cache.set(f'k{i}', i)"
    )
    figures.notes.append(f"exit after 2,000 small sets, S3 at 50 ms: {took:.2f} s")
    assert slow_s3.total() == 0, err
    assert took < EXIT_WAIT_S + 5.0, err  # the interpreter's own teardown, on a loaded machine


def test_exit_abandons_background_clean_up_after_the_documented_wait(
    tmp_path: Path, slow_s3: S3Proxy, s3_bucket: str, figures: Figures
) -> None:
    """With clean-up really queued (stale S3 copies of 40 keys to delete, S3 at 0.3 s per
    request: about 24 s of work), exit waits EXIT_WAIT_S, then leaves it with one line."""
    slow_s3.delay = 0.3
    work = """
    import os
    cache.set_many({f"k{i}": os.urandom(5000) for i in range(40)})  # huge here: S3 only
    cache.set_many({f"k{i}": i for i in range(40)})  # small now: the S3 copies must go
    """
    took, err = run_then_exit(
        tmp_path, slow_s3, s3_bucket, work, small_item_mb=0.001, large_item_mb=0.002
    )
    figures.notes.append(f"exit with ~24 s of S3 clean-up queued: {took:.2f} s")
    assert took < EXIT_WAIT_S + 5.0, err
    assert err.count("abandoned") == 1, err


def test_cached_miss_reads_slow_s3_once(
    tmp_path: Path, slow_s3: S3Proxy, s3_bucket: str, figures: Figures
) -> None:
    """Regression: with S3 answering in 1.5 s, a `@cached` miss took 3.1 s: it read S3 before
    and again after taking the single-flight lock."""
    slow_s3.delay = 1.5
    cache = MultiLevelCache(slow_config(tmp_path, slow_s3, s3_bucket), secret=SECRET)
    calls: list[int] = []

    @cached(cache=cache)
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    t0 = time.monotonic()
    assert square(12) == 144
    took = time.monotonic() - t0
    assert square(12) == 144 and calls == [12]
    figures.notes.append(f"@cached miss with S3 at 1.5 s: {took:.2f} s, {dict(slow_s3.counts)}")
    assert slow_s3.counts["GET"] <= 1
    assert slow_s3.total() == slow_s3.counts["GET"]  # the small result never goes to S3
