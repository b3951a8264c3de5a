"""CacheWarmer and CacheInvalidator (by document, pattern, stage and age)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support import SECRET
from tests.support import sample_pdf as pdf
from tore_nb.config import CacheConfig
from tore_nb.incremental.processor import IncrementalProcessor
from tore_nb.incremental.stages import PageContext, Stage
from tore_nb.maintenance import CacheInvalidator, CacheWarmer
from tore_nb.tiered import MultiLevelCache


def n_chars(ctx: PageContext) -> int:
    return len(ctx.text())


STAGES = [Stage("chars", n_chars)]


@pytest.fixture
def cache(tmp_path: Path) -> MultiLevelCache:
    return MultiLevelCache(CacheConfig.embedded(tmp_path / "c"), secret=SECRET)


def served(cache: MultiLevelCache, *paths: Path) -> set[str]:
    run = IncrementalProcessor(cache, stages=STAGES).process(list(paths))
    return set(run.report().served_by)


def test_warmer_fills_the_caches_of_many_documents(cache: MultiLevelCache) -> None:
    docs = [pdf("us-001.pdf"), pdf("us-036.pdf"), pdf("dmca.pdf")]
    run = CacheWarmer(cache, stages=STAGES).warm(docs)
    assert len(run.documents) == 3 and not run.failures
    assert served(cache, *docs) == {"memory"}


def test_invalidate_document_keeps_the_others(cache: MultiLevelCache) -> None:
    a, b = pdf("us-001.pdf"), pdf("us-036.pdf")
    CacheWarmer(cache, stages=STAGES).warm([a, b])
    inv = CacheInvalidator(cache)
    assert inv.invalidate_document(a) == 3 + 1 + 1  # pages, the document result, the manifest
    assert served(cache, a) == {"computed"}
    assert served(cache, b) == {"memory"}
    assert inv.invalidate_document("no-such-document") == 0


def test_invalidate_pattern_and_stage(cache: MultiLevelCache) -> None:
    a = pdf("us-036.pdf")
    CacheWarmer(cache, stages=STAGES).warm([a])
    inv = CacheInvalidator(cache)
    assert inv.invalidate_stage("chars") == 3
    assert inv.invalidate_pattern("result:*") == 1
    run = IncrementalProcessor(cache, stages=STAGES).process(a)
    assert set(run.report().served_by) == {"computed"}


def test_invalidate_by_age(cache: MultiLevelCache) -> None:
    CacheWarmer(cache, stages=STAGES).warm([pdf("us-036.pdf")])
    inv = CacheInvalidator(cache)
    assert inv.invalidate_by_age(3600) == 0
    time.sleep(0.05)
    assert inv.invalidate_by_age(0.01) > 0
    assert cache.find_keys("page:*") == []


def test_warmer_for_processor_shares_settings(cache: MultiLevelCache) -> None:
    proc = IncrementalProcessor(cache, stages=STAGES)
    warmer = CacheWarmer.for_processor(proc)
    assert warmer.warm_cache_for_document(pdf("us-036.pdf")).documents[0].pages[0]["chars"] > 0
    assert warmer.warm_cache_batch([pdf("us-036.pdf")])[0].metadata["mode"] == "unchanged"
