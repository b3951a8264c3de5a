"""Regressions: upstream failures across Ray tasks, files changing mid-run, stage TTLs behind the
document result, manifests shared by pipelines, forced runs, Ray progress, CLI validation."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tore_nb.incremental.builtin as builtin
from tore_nb.cli import main
from tore_nb.config import CacheConfig
from tore_nb.incremental.caches import Embedder
from tore_nb.incremental.executors import RayExecutor, WorkItem, run_items
from tore_nb.incremental.processor import IncrementalProcessor, RunResult, result_key
from tore_nb.incremental.stages import PageContext, Pipeline, Stage
from tore_nb.tiered import MultiLevelCache

from .conftest import SECRET
from .conftest import sample_pdf as pdf

REPO = Path(__file__).resolve().parents[1]


def make_proc(tmp_path: Path, stages: list[Stage], **kw: Any) -> IncrementalProcessor:
    cache = MultiLevelCache(CacheConfig.embedded(tmp_path / "cache"), secret=SECRET)
    return IncrementalProcessor(cache, stages=stages, **kw)


def work_copy(tmp_path: Path, name: str) -> Path:
    work = tmp_path / "work.pdf"
    shutil.copy(pdf(name), work)
    return work


def computed(run: RunResult) -> list[int]:
    df = run.report()
    return sorted({int(p) for p in df[df.served_by == "computed"]["page"]})


def head(ctx: PageContext) -> str:
    return ctx.text()[:40]


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


# -- 1. a stage never runs without its required stage -----------------------------------------
def test_stage_whose_requirement_is_missing_fails_instead_of_running(tmp_path: Path) -> None:
    # what a Ray task of a later resource group sees when `a` failed in an earlier one
    pipeline = Pipeline([Stage("a", index_of), Stage("b", derived, requires=("a",))])
    proc = make_proc(tmp_path, list(pipeline.stages))
    page = proc.detector.detect(pdf("us-001.pdf")).document.pages[0]
    [out] = run_items([WorkItem("d", page, ("b",))], pipeline, {"d": str(pdf("us-001.pdf"))})
    assert out.error == "required stage 'a' failed"
    [ok] = run_items(
        [WorkItem("d", page, ("b",), {"a": 7})], pipeline, {"d": str(pdf("us-001.pdf"))}
    )
    assert ok.value == ("b", 7)


# -- 2. the bytes executed are the bytes detected ---------------------------------------------
class SwapOnStart:
    """Another process saves a new version just as the executor starts."""

    def __init__(self, path: Path, replacement: Path) -> None:
        self.path, self.replacement = path, replacement

    def start(self, total: int, description: str = "") -> None:
        shutil.copy(self.replacement, self.path)

    def advance(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def test_file_replaced_during_execution_does_not_poison_the_cache(tmp_path: Path) -> None:
    work = work_copy(tmp_path, "dmca.pdf")
    swap = SwapOnStart(work, pdf("federal-register-2020-17221.pdf"))
    proc = make_proc(tmp_path, [Stage("head", head)], progress=swap)
    run = proc.process(work)
    truth = make_proc(tmp_path / "t", [Stage("head", head)]).process(pdf("dmca.pdf"))
    assert run[0].stage_results("head") == truth[0].stage_results("head")
    # the real dmca.pdf, served from this cache, gets dmca's text
    again = IncrementalProcessor(proc.cache, stages=[Stage("head", head)]).process(pdf("dmca.pdf"))
    assert again[0].stage_results("head") == truth[0].stage_results("head")


@pytest.mark.parametrize("what", ["vanished", "changed"])
def test_file_gone_or_changed_after_detection_fails_that_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str
) -> None:
    work = work_copy(tmp_path, "dmca.pdf")
    proc = make_proc(tmp_path, [Stage("head", head)])
    real = IncrementalProcessor._lookup

    def lookup_then_touch(self: IncrementalProcessor, *a: Any) -> Any:
        if what == "vanished":
            work.unlink()
        else:
            shutil.copy(pdf("federal-register-2020-17221.pdf"), work)
        return real(self, *a)

    monkeypatch.setattr(IncrementalProcessor, "_lookup", lookup_then_touch)
    run = proc.process([work, pdf("us-001.pdf")])
    assert list(run.failures) == [str(work)]
    assert [r.document.name for r in run.documents] == ["us-001.pdf"]
    page = proc.detector.detect(pdf("dmca.pdf")).document.pages[0]
    assert proc.cache.get(Pipeline([Stage("head", head)]).key("head", page.identity)) is None


# -- 3. a stage's TTL holds behind the document result ----------------------------------------
STAMPS = iter(range(10**6))


def stamp(ctx: PageContext) -> int:
    return next(STAMPS)


def test_stage_ttl_expires_the_document_result(tmp_path: Path) -> None:
    work = work_copy(tmp_path, "us-001.pdf")
    proc = make_proc(tmp_path, [Stage("stamp", stamp, ttl=0.6)])
    first = proc.process(work)[0].stage_results("stamp")
    assert proc.process(work)[0].metadata["mode"] == "unchanged"  # still fresh
    time.sleep(1.0)
    run = proc.process(work)
    assert set(run.report().level) == {"page"} and computed(run) == [1, 2, 3]
    assert set(run[0].stage_results("stamp")).isdisjoint(first)


# -- 4. the change set is per pipeline --------------------------------------------------------
def chars(ctx: PageContext) -> int:
    return len(ctx.text())


def rotation(ctx: PageContext) -> int:
    return ctx.page.rotation


def test_changes_are_relative_to_what_this_pipeline_saw(tmp_path: Path) -> None:
    work = work_copy(tmp_path, "dmca.pdf")
    proc = make_proc(tmp_path, [])
    a, b = [Stage("n", chars)], [Stage("rot", rotation)]
    proc.process(work, a)
    shutil.copy(pdf("dmca_v2.pdf"), work)
    proc.process(work, b)
    run = proc.process(work, a)
    assert run[0].metadata["changed_pages"] == (3, 7, 19)
    assert computed(run) == [3, 7, 19]
    assert run.changes[0].counts()["unchanged"] == 16
    assert proc.process(work, b)[0].metadata["mode"] == "unchanged"


# -- 5. force bypasses the stage caches too ---------------------------------------------------
class CountingEmbedder(Embedder):
    name = "counting-4"

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, text: str) -> np.ndarray:
        self.calls += 1
        return np.full(4, float(len(text)), dtype=np.float32)


def test_force_recomputes_embeddings_and_ocr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emb = CountingEmbedder()
    stages = [builtin.text_stage(), builtin.ocr_stage(dpi=40), builtin.embedding_stage(emb)]
    ocr_calls: list[int] = []
    real = builtin._tesseract

    def counting(*a: Any, **k: Any) -> Any:
        ocr_calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(builtin, "_tesseract", counting)
    work = work_copy(tmp_path, "dmca_scanned.pdf")
    proc = make_proc(tmp_path, stages)
    n = proc.process(work)[0].document.page_count
    assert (emb.calls, len(ocr_calls)) == (n, n)
    run = proc.process(work, force=True)
    assert (emb.calls, len(ocr_calls)) == (2 * n, 2 * n)
    assert set(run.report().served_by) == {"computed"}
    proc.process(work)  # a plain run is served from the cache
    assert (emb.calls, len(ocr_calls)) == (2 * n, 2 * n)


# -- 6. a forced run's report, and unchanged-mode metadata -------------------------------------
def test_forced_run_still_reports_the_changes(tmp_path: Path) -> None:
    work = work_copy(tmp_path, "dmca.pdf")
    proc = make_proc(tmp_path, [Stage("n", chars)])
    proc.process(work)
    shutil.copy(pdf("dmca_v2.pdf"), work)
    run = proc.process(work, force=True)
    counts = run.changes[0].counts()
    assert (counts["modified"], counts["added"], counts["unchanged"]) == (2, 1, 16)
    assert run[0].metadata["changed_pages"] == (3, 7, 19)
    assert computed(run) == list(range(1, 20))


def test_unchanged_mode_metadata_is_this_runs(tmp_path: Path) -> None:
    work = work_copy(tmp_path, "dmca.pdf")
    proc = make_proc(tmp_path, [Stage("n", chars)], change_threshold=0.5)
    proc.process(work)
    shutil.copy(pdf("dmca_v2.pdf"), work)
    assert proc.process(work)[0].metadata["modified_pages"] == 2
    proc.change_threshold = 0.1
    meta = proc.process(work)[0].metadata
    assert meta["mode"] == "unchanged" and meta["changed_pages"] == ()
    assert (meta["modified_pages"], meta["added_pages"], meta["unchanged_pages"]) == (0, 0, 19)
    assert meta["change_threshold"] == 0.1


# -- 8. CLI validation ------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["2", "-0.1", "nan", "x"])
def test_cli_threshold_out_of_range_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--cache-dir", str(tmp_path), "process", "x.pdf", "--threshold", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--threshold" in err and "Traceback" not in err


def test_cli_empty_stage_list_says_so(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--cache-dir", str(tmp_path), "process", str(pdf("us-001.pdf")), "--stages", ","])
    assert "no stage" in str(exc.value.code) and "[]" not in str(exc.value.code)


# -- Ray: 1. retried upstream re-runs downstream; 7. progress reaches its total ----------------
@pytest.mark.ray
def test_ray_downstream_of_a_retried_stage_sees_its_result(
    ray_session: Any, tmp_path: Path
) -> None:
    # different num_cpus: `a` and `b` run in different Ray tasks
    stages = [
        Stage("a", flaky, {"flag": str(tmp_path / "failed-once")}, num_cpus=1.0),
        Stage("b", derived, requires=("a",), num_cpus=0.5),
    ]
    proc = make_proc(tmp_path, stages, executor=RayExecutor(inline_below=0, retries=1))
    work = work_copy(tmp_path, "us-001.pdf")
    run = proc.process(work)
    assert (tmp_path / "failed-once").exists()
    assert run[0].stage_results("b") == [("b", 0), ("b", 10), ("b", 20)]
    key = Pipeline(stages, proc.page_ttl).key("b", run[0].pages[1].identity)
    assert proc.cache.get(key) == ("b", 10)

    # 7: pages needing only `a` and pages needing only `b`, in one chunk
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


class Recorder:
    def __init__(self) -> None:
        self.total = self.done = 0

    def start(self, total: int, description: str = "") -> None:
        self.total = total

    def advance(self, n: int = 1) -> None:
        self.done += n

    def close(self) -> None:
        pass
