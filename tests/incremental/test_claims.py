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


def test_a_page_whose_claimant_died_is_taken_over_within_a_lease(
    tmp_path: Path, private_redis: Any
) -> None:
    """A kernel killed while computing a page (out of memory, interrupted) leaves its claim:
    the other kernel waits for that page's result, then takes it over once the lease lapses,
    and its report counts that page's second attempt."""
    log = tmp_path / "computed.log"
    doc = pdf("us-036.pdf")
    from tore_nb.incremental.documents import read_document

    first = read_document(doc).pages[0].identity
    hang = tmp_path / f"hang-{first}"
    hang.touch()  # the doomed kernel hangs on the first page
    doomed = kernel(tmp_path, "doomed", private_redis.url, log, [doc])
    deadline = time.monotonic() + 60
    while not (log.exists() and first in log.read_text()):
        assert time.monotonic() < deadline and doomed.poll() is None
        time.sleep(0.05)
    hang.unlink()  # the survivor will not hang there when it takes the page over
    survivor = kernel(tmp_path, "survivor", private_redis.url, log, [doc])
    # the survivor finds the first page claimed, computes the other two, then waits for it
    while sum(pid == survivor.pid for pid, _ in computations(log)) < 2:
        assert time.monotonic() < deadline and survivor.poll() is None
        time.sleep(0.05)
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
    assert sorted(by_pid[survivor.pid]) == sorted(p.identity for p in read_document(doc).pages)
    assert out["computed"] == 3 and out["duplicates"] == 0
    assert out["retries"] == 1, out  # the page taken over is a second attempt, and says so


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
