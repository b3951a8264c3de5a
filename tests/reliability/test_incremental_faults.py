"""Redis restarted 10 times while an incremental run goes over a few hundred pages: no
exception reaches the user, and every document's output equals a clean run's."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from tests.support import DATA, SECRET, missing
from tore_nb import CacheConfig, MultiLevelCache
from tore_nb.keys import hash_value
from tore_nb.testing import RedisServer

from .conftest import Figures

pytestmark = pytest.mark.redis
SOURCES = [
    "dmca.pdf",
    "ca-warn-report.pdf",
    "federal-register-2020-17221.pdf",
    "i1040nr.pdf",
    "GeoBase_NHNC1_Data_Model_UML_EN.pdf",
    "us-001.pdf",
    "us-036.pdf",
]
COPIES = 3
RESTARTS = 10


def digests(run: object) -> dict[str, str]:
    return {Path(d.path).name: hash_value(d.text()) for d in run.documents}  # type: ignore[attr-defined]


def test_redis_restarted_during_incremental_run(
    tmp_path: Path, private_redis: RedisServer, figures: Figures
) -> None:
    from tore_nb.incremental import IncrementalProcessor, text_stage

    if not (DATA / "pdfs" / SOURCES[0]).exists():
        missing("the shared sample PDFs")
    paths = []
    for copy in range(COPIES):
        for name in SOURCES:
            dest = tmp_path / "docs" / f"{copy}-{name}"
            dest.parent.mkdir(exist_ok=True)
            shutil.copy(DATA / "pdfs" / name, dest)
            paths.append(dest)
    stages = [text_stage()]

    clean_cache = MultiLevelCache(CacheConfig.embedded(tmp_path / "clean"), secret=SECRET)
    clean = digests(IncrementalProcessor(clean_cache, stages=stages).process(paths))

    cfg = CacheConfig(
        disk_cache_path=str(tmp_path / "unused"),
        redis_url=private_redis.url,
        memory_enabled=False,
        disk_enabled=False,
        breaker_reset_seconds=0.2,
    )
    proc = IncrementalProcessor(MultiLevelCache(cfg, secret=SECRET), stages=stages)
    restarts = 0
    done = threading.Event()

    def chaos() -> None:
        nonlocal restarts
        while restarts < RESTARTS:
            time.sleep(0.25)
            private_redis.restart()
            restarts += 1
        done.set()

    page_count = 0
    wrong = 0
    t = threading.Thread(target=chaos)
    t.start()
    passes = 0
    try:
        while not done.is_set() or passes < 2:
            for path in paths:
                t0 = time.monotonic()
                try:
                    run = proc.process([path])
                except Exception:
                    figures.exceptions += 1
                    continue
                finally:
                    figures.longest_call_s = max(figures.longest_call_s, time.monotonic() - t0)
                figures.operations += 1
                page_count += sum(len(d.pages) for d in run.documents)
                got = digests(run)
                wrong += sum(got[name] != clean[name] for name in got)
            passes += 1
    finally:
        t.join(60)
    figures.faults = restarts
    figures.corrupt_reads = wrong
    figures.notes.append(
        f"{passes} passes over {len(paths)} documents, {page_count} pages "
        f"processed while Redis restarted {restarts} times; longest column is "
        "one whole document"
    )
    assert restarts == RESTARTS
    assert figures.exceptions == 0 and wrong == 0
    assert page_count >= 300
