"""Claims: every page computed once across kernels that process the same documents at once,
and a page whose claimant died taken over within one lease (real processes, a private Redis)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import REPO, SECRET
from tests.support import sample_pdf as pdf
from tore_nb.incremental.claims import claim_lease

KERNEL = r"""
import json, os, sys, time
from tore_nb import CacheConfig, MultiLevelCache
from tore_nb.incremental import IncrementalProcessor, Stage

log = sys.argv[1]

def chars(ctx):
    with open(log, "a") as f:
        f.write(f"{os.getpid()} {ctx.page.identity}\n")
    if os.path.exists(f"hang-{ctx.page.identity}"):  # a flag file: the code stays the same
        time.sleep(60)  # killed meanwhile
    time.sleep(0.2)  # pages take a while, so that the kernels overlap
    return len(ctx.text())

cache = MultiLevelCache(CacheConfig.from_env())
run = IncrementalProcessor(cache, stages=[Stage("chars", chars)]).process(sys.argv[2:])
s = run.summary()
print(json.dumps({
    "computed": int(s.results_computed.sum()), "duplicates": int(s.duplicates.sum()),
    "retries": int(s.retries.sum()),
    "results": [[p["chars"] for p in d.pages] for d in run.documents],
}))
"""


def kernel(
    tmp_path: Path, name: str, redis_url: str, log: Path, docs: list[Path]
) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DISK_CACHE_PATH": str(tmp_path / name),  # another machine: its own disk
        "TORE_NB_SECRET": SECRET.decode(),
        "TORE_NB_CLAIM_LEASE": "1.5",
        "PYTHONPATH": str(REPO),
    }
    args = [sys.executable, "-c", KERNEL, str(log), *map(str, docs)]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True, cwd=tmp_path)


def computations(log: Path) -> list[tuple[int, str]]:
    return [(int(p), i) for p, i in (line.split() for line in log.read_text().splitlines())]


def test_two_kernels_on_the_same_new_documents_compute_each_page_once(
    tmp_path: Path, private_redis: Any
) -> None:
    """Regression: two kernels processing the same new documents with spare capacity computed
    all 115 pages twice (twice the Redis writes and S3 PUTs). Each page is claimed before it
    is computed now: the kernels share the work, each page is computed once, both get every
    result, equal to each other, and the report counts 0 duplicates."""
    log = tmp_path / "computed.log"
    docs = [pdf("dmca.pdf"), pdf("us-036.pdf")]
    kernels = [kernel(tmp_path, f"k{i}", private_redis.url, log, docs) for i in range(2)]
    outs = [json.loads(k.communicate(timeout=180)[0]) for k in kernels]
    assert [k.returncode for k in kernels] == [0, 0]
    done = computations(log)
    assert len(done) == len({i for _, i in done}) == 18 + 3  # each page once
    assert len({p for p, _ in done}) == 2  # and both kernels did some of the work
    assert outs[0]["results"] == outs[1]["results"]
    assert sum(o["computed"] for o in outs) == 21 and [o["duplicates"] for o in outs] == [0, 0]


def test_pages_whose_claimant_died_are_taken_over_within_a_lease(
    tmp_path: Path, private_redis: Any
) -> None:
    """A kernel killed while computing a page (out of memory, interrupted) leaves the claims of
    its batch (`CLAIM_BATCH` pages): the other kernel computes the rest, waits for those pages'
    results, then takes them over once the dead kernel's heartbeat lapses, and its report
    counts them as second attempts."""
    from tore_nb.incremental.documents import read_document
    from tore_nb.incremental.work import CLAIM_BATCH

    log = tmp_path / "computed.log"
    doc = pdf("dmca.pdf")
    pages = read_document(doc).pages
    assert len(pages) > CLAIM_BATCH  # the survivor has pages of its own to compute
    first = pages[0].identity
    hang = tmp_path / f"hang-{first}"
    hang.touch()  # the doomed kernel hangs on the first page
    doomed = kernel(tmp_path, "doomed", private_redis.url, log, [doc])
    deadline = time.monotonic() + 60
    while not (log.exists() and first in log.read_text()):
        assert time.monotonic() < deadline and doomed.poll() is None
        time.sleep(0.05)
    hang.unlink()  # the survivor will not hang there when it takes the page over
    survivor = kernel(tmp_path, "survivor", private_redis.url, log, [doc])
    # the survivor finds the first batch claimed, computes the others, then waits for it
    rest = len(pages) - CLAIM_BATCH
    while sum(pid == survivor.pid for pid, _ in computations(log)) < rest:
        assert time.monotonic() < deadline and survivor.poll() is None
        time.sleep(0.05)
    time.sleep(0.3)
    assert sum(pid == survivor.pid for pid, _ in computations(log)) == rest  # and waits
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    t0 = time.monotonic()
    out = json.loads(survivor.communicate(timeout=60)[0])
    assert survivor.returncode == 0
    assert time.monotonic() - t0 < 3 * claim_lease({"TORE_NB_CLAIM_LEASE": "1.5"}) + 5
    by_pid: dict[int, list[str]] = {}
    for pid, ident in computations(log):
        by_pid.setdefault(pid, []).append(ident)
    assert by_pid[doomed.pid] == [first]  # it got no further
    assert sorted(by_pid[survivor.pid]) == sorted(p.identity for p in pages)
    assert out["computed"] == len(pages) and out["duplicates"] == 0
    assert out["retries"] == CLAIM_BATCH, out  # taken over: second attempts, and says so


@pytest.mark.parametrize("raw", ["0", "abc", "nan", "99999"])
def test_a_bad_claim_lease_is_a_config_error(raw: str) -> None:
    from tore_nb.errors import ConfigError

    with pytest.raises(ConfigError, match="TORE_NB_CLAIM_LEASE"):
        claim_lease({"TORE_NB_CLAIM_LEASE": raw})


def test_pages_claimed_by_a_worker_that_never_finishes_are_computed_after_a_while(
    tmp_path: Path, private_redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claimant that keeps renewing but never finishes (a stage stuck) must not hold every
    other run forever: past `MAX_WAIT` the waiting worker computes the pages itself, and its
    report counts them as duplicates."""
    import tore_nb.incremental.work as work
    from tore_nb import CacheConfig, MultiLevelCache
    from tore_nb.incremental import IncrementalProcessor, Stage
    from tore_nb.incremental.claims import Claims, claim_key
    from tore_nb.incremental.documents import read_document
    from tore_nb.incremental.stages import Pipeline

    monkeypatch.setattr(work, "MAX_WAIT", 1.0)
    config = CacheConfig(disk_cache_path=str(tmp_path / "d"), redis_url=private_redis.url)
    cache = MultiLevelCache(config, secret=SECRET)
    stages = [Stage("n", len_of_text)]
    pipeline = Pipeline(stages, 86400.0)
    doc = read_document(pdf("us-036.pdf"))
    stuck = Claims(cache, ["redis"], lease=1.5)  # another worker, renewing forever
    keys = [claim_key(pipeline, p.identity, ("n",)) for p in doc.pages]
    assert stuck.take(keys) == set(keys)
    try:
        t0 = time.monotonic()
        run = IncrementalProcessor(cache, stages=stages).process(pdf("us-036.pdf"))
        assert 1.0 <= time.monotonic() - t0 < 30
        row = run.summary().iloc[0]
        assert (row["results_computed"], row["duplicates"]) == (3, 3)
    finally:
        stuck.close()


def len_of_text(ctx: Any) -> int:
    return len(ctx.text())


HOLDER = r"""
import sys, time
from tore_nb import CacheConfig, MultiLevelCache
from tore_nb.incremental.claims import Claims

cache = MultiLevelCache(CacheConfig(disk_cache_path=sys.argv[2], redis_url=sys.argv[1]))
claims = Claims(cache, ["redis"], lease=0.5)
print(len(claims.take(sys.argv[3:])), flush=True)
time.sleep(60)  # killed meanwhile, holding them
"""


@pytest.mark.parametrize("where", ["redis", "redis cluster"])
def test_claims_are_exclusive_until_released_or_their_holders_process_dies(
    where: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A batch of claims is one command and so is its release; a claim lives as long as its
    holder's process keeps its heartbeat (renewed past many leases), and a claim whose
    holder was killed is cleared by the next worker that asks, which may then take it. On a
    single Redis and on a Redis Cluster, where a batch spans many slots."""
    from tore_nb import CacheConfig, MultiLevelCache
    from tore_nb.incremental.claims import Claims

    url = (
        request.getfixturevalue("private_redis").url
        if where == "redis"
        else request.getfixturevalue("redis_cluster_url")
    )

    def claims() -> Claims:
        config = CacheConfig(disk_cache_path=str(tmp_path / os.urandom(4).hex()), redis_url=url)
        return Claims(MultiLevelCache(config, secret=SECRET), ["redis"], lease=0.5)

    a, b = claims(), claims()
    keys = [f"page-{i}" for i in range(10)]
    assert a.take(keys[:6]) == set(keys[:6])
    assert b.take(keys) == set(keys[6:])  # what a holds stays a's
    time.sleep(1.5)  # three leases: the heartbeat is renewed meanwhile
    assert b.lapsed(keys[:6]) == [] and b.take(keys[:6]) == set()
    assert a.done(keys[:3]) == set()  # nothing lost: released
    assert b.lapsed(keys[:6]) == keys[:3] and b.take(keys[:3]) == set(keys[:3])
    a.close()
    assert b.lapsed(keys[3:6]) == keys[3:6]

    doomed_keys = [f"doomed-{i}" for i in range(4)]
    args = [sys.executable, "-c", HOLDER, url, str(tmp_path / "h"), *doomed_keys]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TORE_NB_SECRET": SECRET.decode()}
    holder = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "4"
        assert b.take(doomed_keys) == set() and b.lapsed(doomed_keys) == []
        holder.kill()
        holder.wait(timeout=10)
        t0 = time.monotonic()
        while b.lapsed(doomed_keys) != doomed_keys:
            assert time.monotonic() - t0 < 3.0, "a dead holder's claims were never cleared"
            time.sleep(0.1)
        assert b.take(doomed_keys) == set(doomed_keys)
    finally:
        holder.kill()
        holder.wait(timeout=10)
        b.close()


def counted(ctx: Any) -> int:
    with open(os.environ["TORE_NB_TEST_LOG"], "a") as f:  # one short line: an atomic append
        f.write(f"{ctx.page.identity}\n")
    time.sleep(0.002)  # long enough for the workers to overlap
    return len(ctx.text())


def overlapping_worker(
    url: str, namespace: str, disk: str, order: list[int], out: str, log: str
) -> None:
    """One worker process of the test below: runs its pages, writes what it got as JSON."""
    os.environ["TORE_NB_TEST_LOG"] = log
    from tore_nb import CacheConfig, MultiLevelCache
    from tore_nb.incremental.documents import read_document
    from tore_nb.incremental.stages import Pipeline, Stage
    from tore_nb.incremental.work import WorkItem, run_items

    path = pdf("dmca.pdf")
    pages = read_document(path).pages
    config = CacheConfig(disk_cache_path=disk, redis_url=url, namespace=namespace)
    cache = MultiLevelCache(config, secret=SECRET)
    pipeline = Pipeline([Stage("chars", counted)], 86400.0)
    items = [WorkItem("d", pages[i], ("chars",)) for i in order]
    outs = run_items(items, pipeline, {"d": str(path)}, cache, ["redis"])
    Path(out).write_text(json.dumps({o.page_index: o.value for o in outs if o.ok}))
    cache.close()


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    orders=st.lists(
        st.permutations(range(18)).flatmap(
            lambda p: st.integers(1, 18).map(lambda n: p[:n])  # some pages, in some order
        ),
        min_size=2,
        max_size=3,
    )
)
def test_workers_on_overlapping_pages_compute_each_page_once_and_agree_with_a_plain_run(
    redis_url: str, orders: list[list[int]]
) -> None:
    """Generated: two or three worker processes (each with its own memory and disk, one
    Redis) run the same document's pages at once, each in an order and a subset of its own.
    Every page is computed once in all, and every worker gets for each of its pages what a
    plain run of that page gives."""
    import multiprocessing
    import tempfile

    from tore_nb.incremental.documents import read_document
    from tore_nb.incremental.stages import Pipeline, Stage
    from tore_nb.incremental.work import WorkItem, run_items

    path = pdf("dmca.pdf")
    pages = read_document(path).pages
    with tempfile.TemporaryDirectory() as d:
        os.environ["TORE_NB_TEST_LOG"] = f"{d}/plain.log"
        try:
            pipeline = Pipeline([Stage("chars", counted)], 86400.0)
            items = [WorkItem("d", p, ("chars",)) for p in pages]
            plain = {o.page_index: o.value for o in run_items(items, pipeline, {"d": str(path)})}
        finally:
            del os.environ["TORE_NB_TEST_LOG"]
        log = Path(d) / "computed.log"
        namespace = "t" + os.urandom(6).hex()  # a fresh key space for each example
        # forked from a server started clean (no threads of earlier tests), tore_nb preloaded
        fork = multiprocessing.get_context("forkserver")
        fork.set_forkserver_preload([__name__])
        procs = [
            fork.Process(
                target=overlapping_worker,
                args=(redis_url, namespace, f"{d}/disk{n}", order, f"{d}/out{n}", str(log)),
            )
            for n, order in enumerate(orders)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(timeout=120)
        assert [proc.exitcode for proc in procs] == [0] * len(procs)
        computed = log.read_text().split() if log.exists() else []
        got = [json.loads(Path(f"{d}/out{n}").read_text()) for n in range(len(orders))]
    assert len(computed) == len(set(computed))  # no page computed twice
    assert set(computed) == {pages[i].identity for o in orders for i in o}
    for order, mine in zip(orders, got, strict=True):
        assert {int(k): v for k, v in mine.items()} == {i: plain[i] for i in order}


def test_claims_held_when_redis_failed_are_released_once_it_is_back(
    tmp_path: Path, private_redis: Any
) -> None:
    """A worker whose Redis stops answering computes without claims; the claims it held then
    stay in Redis, and while another worker of the same process keeps the heartbeat alive they
    would look held, so others would wait for pages nobody computes. When the worker closes
    and Redis answers again, it releases them (only its own)."""
    from tore_nb import CacheConfig, MultiLevelCache
    from tore_nb.incremental.claims import Claims

    def claims() -> Claims:
        config = CacheConfig(
            disk_cache_path=str(tmp_path / os.urandom(4).hex()),
            redis_url=private_redis.url,
            redis_socket_timeout=0.2,
        )
        return Claims(MultiLevelCache(config, secret=SECRET), ["redis"], lease=1.0)

    keeper, worker, other = claims(), claims(), claims()
    assert keeper.take(["kept"]) == {"kept"}  # the process's heartbeat stays alive
    assert worker.take(["a", "b"]) == {"a", "b"}
    private_redis.pause()
    try:
        assert worker.take(["c"]) == {"c"}  # unanswered: computed without a claim
    finally:
        private_redis.resume()
    assert worker.unclaimed == 1
    assert other.lapsed(["a", "b"]) == []  # still held, as far as anyone can tell
    worker.close()
    assert other.lapsed(["a", "b", "kept"]) == ["a", "b"]
    keeper.close()


def test_a_worker_whose_heartbeat_lapsed_releases_only_what_is_still_its_own(
    tmp_path: Path, private_redis: Any
) -> None:
    """A process stalled past its lease (its heartbeat gone) may find some of its claims taken
    over meanwhile: releasing them must leave the new holder's claim alone, and say which page
    was lost, since that work was then done twice."""
    import redis

    from tore_nb import CacheConfig, MultiLevelCache
    from tore_nb.incremental.claims import Claims

    def claims() -> Claims:
        config = CacheConfig(
            disk_cache_path=str(tmp_path / os.urandom(4).hex()), redis_url=private_redis.url
        )
        return Claims(MultiLevelCache(config, secret=SECRET), ["redis"], lease=0.5)

    stalled, other = claims(), claims()
    assert stalled.take(["x", "y"]) == {"x", "y"}
    raw = redis.Redis.from_url(private_redis.url)
    for name in raw.scan_iter("*alive|*"):  # the stall: its heartbeat lapsed
        raw.delete(name)
    assert other.lapsed(["x"]) == ["x"]  # x's holder looks dead: cleared
    raw.set(b"tore_nb#lock|tore_nb|claim|x", b"someone-else:w")  # and taken over
    time.sleep(0.5)  # a renewal finds the heartbeat gone
    assert stalled.done(["x", "y"]) == {"x"}
    assert raw.get(b"tore_nb#lock|tore_nb|claim|x") == b"someone-else:w"
    assert raw.get(b"tore_nb#lock|tore_nb|claim|y") is None
    raw.close()
