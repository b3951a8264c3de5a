"""Executors and their stage groups: a stage runs only with its required stages' results, in
process (`run_items`) and across Ray tasks, and progress counts every page dispatched.

The Ray fan-out itself (workers, GPUs, killed workers, shared tiers) is in test_ray_executor.py.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support import SECRET
from tests.support import sample_pdf as pdf
from tore_nb.config import CacheConfig
from tore_nb.incremental.executors import RayExecutor, WorkItem, run_items
from tore_nb.incremental.processor import IncrementalProcessor, RunResult
from tore_nb.incremental.results import result_key
from tore_nb.incremental.stages import PageContext, Pipeline, Stage
from tore_nb.tiered import MultiLevelCache


def make_proc(tmp_path: Path, stages: list[Stage], **kw: Any) -> IncrementalProcessor:
    cache = MultiLevelCache(CacheConfig.embedded(tmp_path / "cache"), secret=SECRET)
    return IncrementalProcessor(cache, stages=stages, **kw)


def computed(run: RunResult) -> list[int]:
    df = run.report()
    return sorted({int(p) for p in df[df.served_by == "computed"]["page"]})


def index_of(ctx: PageContext) -> int:
    return ctx.page.index


def derived(ctx: PageContext) -> tuple[str, Any]:
    return ("b", ctx.results.get("a"))


def flaky(ctx: PageContext, flag: str) -> int:
    """Fails on page 2 the first time only (the flag file remembers, across Ray workers)."""
    if ctx.page.index == 1 and not os.path.exists(flag):
        Path(flag).touch()
        raise RuntimeError("transient")
    return ctx.page.index * 10


class Recorder:
    """A Progress that remembers the total it was given and the pages reported done."""

    def __init__(self) -> None:
        self.total = self.done = 0

    def start(self, total: int, description: str = "") -> None:
        self.total = total

    def advance(self, n: int = 1) -> None:
        self.done += n

    def close(self) -> None:
        pass


def test_a_stage_whose_required_stage_is_missing_fails_instead_of_running(
    tmp_path: Path,
) -> None:
    """Regression: a work item asking for `b` without `a`'s result (what a Ray task of a later
    resource group sees when `a` failed in an earlier one) ran `b` without its input, reported
    it ok and cached it."""
    pipeline = Pipeline([Stage("a", index_of), Stage("b", derived, requires=("a",))])
    proc = make_proc(tmp_path, list(pipeline.stages))
    page = proc.detector.detect(pdf("us-001.pdf")).document.pages[0]
    [out] = run_items([WorkItem("d", page, ("b",))], pipeline, {"d": str(pdf("us-001.pdf"))})
    assert out.error == "required stage 'a' failed"
    [ok] = run_items(
        [WorkItem("d", page, ("b",), {"a": 7})], pipeline, {"d": str(pdf("us-001.pdf"))}
    )
    assert ok.value == ("b", 7)


def ray_stages(tmp_path: Path) -> list[Stage]:
    # different num_cpus: `a` and `b` run in different Ray tasks
    return [
        Stage("a", flaky, {"flag": str(tmp_path / "failed-once")}, num_cpus=1.0),
        Stage("b", derived, requires=("a",), num_cpus=0.5),
    ]


@pytest.mark.ray
def test_ray_downstream_of_a_retried_stage_sees_its_result(
    ray_session: Any, tmp_path: Path
) -> None:
    """Regression: when `a` failed on a page in one Ray task and succeeded on retry, `b` (in
    another task) had already run without it; `b` now fails with its upstream and is retried
    with it, so its result and its cache entry hold `a`'s value."""
    stages = ray_stages(tmp_path)
    proc = make_proc(tmp_path, stages, executor=RayExecutor(inline_below=0, retries=1))
    work = tmp_path / "work.pdf"
    shutil.copy(pdf("us-001.pdf"), work)
    run = proc.process(work)
    assert (tmp_path / "failed-once").exists()
    assert run[0].stage_results("b") == [("b", 0), ("b", 10), ("b", 20)]
    key = Pipeline(stages, proc.page_ttl).key("b", run[0].pages[1].identity)
    assert Pipeline.unpack(proc.cache.get(key)) == (("b", 10), pytest.approx(0.0, abs=1.0))


@pytest.mark.ray
def test_ray_progress_reaches_its_total_when_pages_need_different_stages(
    ray_session: Any, tmp_path: Path
) -> None:
    """Regression: with pages needing only `a` and pages needing only `b` in one chunk, Ray
    progress stopped short of the total it announced."""
    (tmp_path / "failed-once").touch()  # `a` does not fail here
    stages = ray_stages(tmp_path)
    proc = make_proc(tmp_path, stages, executor=RayExecutor(inline_below=0, retries=1))
    work = tmp_path / "work.pdf"
    shutil.copy(pdf("us-001.pdf"), work)
    run = proc.process(work)
    pipeline = Pipeline(stages, proc.page_ttl)
    for p in run[0].pages[0::2]:
        proc.cache.delete(pipeline.key("a", p.identity))
    proc.cache.delete(pipeline.key("b", run[0].pages[1].identity))
    proc.cache.delete(result_key(run[0].document.document_id, pipeline))
    seen = Recorder()
    again = proc.process(work, progress=seen)
    assert computed(again) == [1, 2, 3]
    assert again[0].stage_results("b") == [("b", 0), ("b", 10), ("b", 20)]
    assert seen.done == seen.total == 3
