"""IncrementalProcessor with the serial executor: exact pages recomputed per MANIFEST.md, the
bytes executed are the bytes detected, TTLs, forced runs and the metadata and report of a run."""

from __future__ import annotations

import dataclasses
import random
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tore_nb.incremental.builtin as builtin
from tests.support import SECRET, missing
from tests.support import sample_pdf as pdf
from tore_nb.config import CacheConfig
from tore_nb.incremental.caches import Embedder
from tore_nb.incremental.executors import SerialExecutor
from tore_nb.incremental.processor import IncrementalProcessor
from tore_nb.incremental.progress import TextProgress
from tore_nb.incremental.report import REPORT_COLUMNS, format_documents, format_report
from tore_nb.incremental.results import RunResult
from tore_nb.incremental.shared import result_tiers
from tore_nb.incremental.stages import PageContext, Pipeline, Stage, code_fingerprint, stage
from tore_nb.tiered import MultiLevelCache

CALLS: Counter[str] = Counter()


def chars(ctx: PageContext) -> int:
    CALLS[ctx.page.identity] += 1
    return len(ctx.text())


def upper(ctx: PageContext) -> str:
    return f"{ctx.results['chars']}:{ctx.page.rotation}"


STAGES = [Stage("chars", chars), Stage("shape", upper, requires=("chars",))]


@pytest.fixture
def proc(tmp_path: Path) -> IncrementalProcessor:
    CALLS.clear()
    cache = MultiLevelCache(CacheConfig.embedded(tmp_path / "cache"), secret=SECRET)
    return IncrementalProcessor(cache, stages=STAGES)


def computed_pages(run: RunResult) -> list[int]:
    df = run.report()
    return sorted({int(p) for p in df[df.served_by == "computed"]["page"]})


def versioned(tmp_path: Path, v1: str) -> Path:
    work = tmp_path / "work.pdf"
    shutil.copy(pdf(v1), work)
    return work


TRUTH = [
    ("dmca.pdf", "dmca_v2.pdf", [3, 7, 19]),
    ("ca-warn-report.pdf", "ca-warn-report_v2.pdf", [2]),
    ("multipage.pdf", "multipage_v2.pdf", []),
    ("federal-register-2020-17221.pdf", "federal-register-2020-17221_resaved.pdf", []),
    (
        "Seige_of_Vicksburg_Sample_OCR.pdf",
        "Seige_of_Vicksburg_Sample_OCR-crazyones-merged.pdf",
        [2],
    ),
]


@pytest.mark.parametrize(("v1", "v2", "expected"), TRUTH, ids=[t[0].split(".")[0] for t in TRUTH])
def test_reprocesses_exactly_the_changed_pages(
    proc: IncrementalProcessor, tmp_path: Path, v1: str, v2: str, expected: list[int]
) -> None:
    work = versioned(tmp_path, v1)
    first = proc.process([work])
    n1 = first[0].document.page_count
    assert computed_pages(first) == list(range(1, n1 + 1))
    shutil.copy(pdf(v2), work)
    second = proc.process([work])
    assert computed_pages(second) == expected
    result = second[0]
    assert list(result.metadata["changed_pages"]) == expected
    # each page's own work ran exactly once per new identity
    assert all(n == 1 for n in CALLS.values())
    # merged in page order, every page has both stages, equal to a from-scratch run
    fresh = IncrementalProcessor(
        MultiLevelCache(CacheConfig.embedded(tmp_path / "fresh"), secret=SECRET), stages=STAGES
    ).process([work])[0]
    assert [p.results for p in result.pages] == [p.results for p in fresh.pages]
    assert [p.index for p in result.pages] == list(range(result.document.page_count))


def test_third_run_serves_everything_from_cache(proc: IncrementalProcessor, tmp_path: Path) -> None:
    work = versioned(tmp_path, "dmca.pdf")
    proc.process(work)
    again = proc.process(work)
    assert again[0].metadata["mode"] == "unchanged"
    df = again.report()
    assert set(df.served_by) == {"memory"} and set(df.level) == {"document"}
    # a new process: the document result comes from disk
    cold = IncrementalProcessor(
        MultiLevelCache(CacheConfig.embedded(tmp_path / "cache"), secret=SECRET), stages=STAGES
    )
    df2 = cold.process(work).report()
    assert set(df2.served_by) == {"disk"}
    assert list(df2.columns) == REPORT_COLUMNS


def test_incremental_versus_full_threshold(tmp_path: Path) -> None:
    cache = MultiLevelCache(CacheConfig.embedded(tmp_path / "c"), secret=SECRET)
    work = versioned(tmp_path, "dmca.pdf")
    IncrementalProcessor(cache, stages=STAGES).process(work)
    shutil.copy(pdf("dmca_v2.pdf"), work)
    inc = IncrementalProcessor(cache, stages=STAGES).process(work)[0]
    assert inc.metadata["mode"] == "incremental" and inc.metadata["incremental_update"]
    # with a threshold below the changed fraction the document result is rebuilt in full,
    # but page results still come from the page cache
    shutil.copy(pdf("dmca.pdf"), work)
    IncrementalProcessor(cache, stages=STAGES).process(work)
    shutil.copy(pdf("dmca_v2.pdf"), work)
    full = IncrementalProcessor(cache, stages=STAGES, change_threshold=0.05).process(work)
    assert full[0].metadata["mode"] == "full"
    df = full.report()
    assert set(df[df.served_by != "computed"].level) == {"page"}
    assert computed_pages(full) == []  # every v2 page was computed by the run before


def test_inserting_a_page_costs_one_page(proc: IncrementalProcessor, tmp_path: Path) -> None:
    work = versioned(tmp_path, "Seige_of_Vicksburg_Sample_OCR.pdf")
    proc.process(work)
    CALLS.clear()
    shutil.copy(pdf("Seige_of_Vicksburg_Sample_OCR-crazyones-merged.pdf"), work)
    run = proc.process(work)
    assert sum(CALLS.values()) == 1
    moved = run.report().query("stage == 'chars' and status == 'unchanged'")
    assert list(moved.old_position) == [1, 2, 3, 4, 5, 6]
    assert list(moved.new_position) == [1, 3, 4, 5, 6, 7]


def test_changed_stage_code_recomputes_only_that_stage_and_dependants(
    proc: IncrementalProcessor, tmp_path: Path
) -> None:
    work = versioned(tmp_path, "dmca.pdf")
    proc.process(work)

    def upper2(ctx: PageContext) -> str:
        return f"v2:{ctx.results['chars']}"

    run = proc.process(work, [STAGES[0], Stage("shape", upper2, requires=("chars",))])
    df = run.report()
    assert set(df[df.stage == "chars"].served_by) == {"memory"}
    assert set(df[df.stage == "shape"].served_by) == {"computed"}
    assert run[0].pages[0]["shape"].startswith("v2:")


def test_failed_page_is_reported_and_others_kept(tmp_path: Path) -> None:
    attempts: Counter[int] = Counter()

    def flaky(ctx: PageContext) -> int:
        attempts[ctx.page.index] += 1
        if ctx.page.index == 2:
            raise RuntimeError("broken page")
        return ctx.page.index

    cache = MultiLevelCache(CacheConfig.embedded(tmp_path / "c"), secret=SECRET)
    stages = [Stage("flaky", flaky), Stage("after", lambda ctx: 1, requires=("flaky",))]
    proc = IncrementalProcessor(cache, stages=stages, executor=SerialExecutor(retries=2))
    run = proc.process(pdf("us-001.pdf"))
    result = run[0]
    assert result.failed_pages == (3,)
    assert attempts[2] == 3 and attempts[0] == 1
    assert "broken page" in result.pages[2].errors["flaky"]
    assert "required stage" in result.pages[2].errors["after"]
    assert result.pages[0]["flaky"] == 0 and result.pages[1]["flaky"] == 1
    # the failed page is tried again on the next run; the others come from the cache
    again = proc.process(pdf("us-001.pdf")).report()
    assert set(again[again.page != 3].served_by) == {"memory"}
    assert set(again[again.page == 3].served_by) == {"failed"}


def test_unreadable_file_does_not_stop_the_run(proc: IncrementalProcessor, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"not a pdf")
    run = proc.process([bad, pdf("us-036.pdf")])
    assert len(run.documents) == 1 and "is not a PDF" in run.failures[str(bad)]
    summary = run.summary().set_index("document")  # failed documents are in both tables
    assert summary.loc["bad.pdf", "mode"] == "failed"
    assert "is not a PDF" in summary.loc["bad.pdf", "error"]
    report = run.report()
    failed = report[report.document == "bad.pdf"]
    assert list(failed.status) == ["failed"] and "is not a PDF" in failed.error.iloc[0]
    assert "bad.pdf" in str(run) and "failed" in str(run)


def test_pypdf_warnings_go_into_the_reason_not_to_stderr(
    proc: IncrementalProcessor, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A damaged file pypdf cannot read either used to print pypdf's own warnings ("EOF
    marker not found") on stderr, between the progress and the report."""
    bad = tmp_path / "cut.pdf"
    bad.write_bytes(pdf("us-036.pdf").read_bytes()[:3000])
    run = proc.process([bad])
    assert run.failures[str(bad)].endswith("; pypdf: EOF marker not found")
    assert "EOF marker" not in capfd.readouterr().err


def test_process_document_returns_one_result_or_raises(
    proc: IncrementalProcessor, tmp_path: Path
) -> None:
    from tore_nb.incremental.documents import DocumentError

    result = proc.process_document(pdf("us-036.pdf"))
    assert Path(result.path).samefile(pdf("us-036.pdf")) and result.pages
    assert result.metadata["mode"] == "full"
    again = proc.process_document(pdf("us-036.pdf"))
    assert again.metadata["mode"] == "unchanged"
    assert again.stage_results("chars") == result.stage_results("chars")
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"not a pdf")
    with pytest.raises(DocumentError):
        proc.process_document(bad)


def test_force_recomputes(proc: IncrementalProcessor) -> None:
    proc.process(pdf("us-036.pdf"))
    run = proc.process(pdf("us-036.pdf"), force=True)
    assert set(run.report().served_by) == {"computed"}


def test_report_summary_and_text(proc: IncrementalProcessor, tmp_path: Path) -> None:
    work = versioned(tmp_path, "ca-warn-report.pdf")
    proc.process(work)
    shutil.copy(pdf("ca-warn-report_v2.pdf"), work)
    run = proc.process(work)
    s = run.summary()
    row = s.iloc[0]
    assert (row["modified"], row["removed"], row["unchanged"], row["results_computed"]) == (
        1,
        1,
        14,
        2,
    )
    text = format_report(run, changed_only=True)
    assert "modified" in text and "removed" in text
    removed = run.report().query("status == 'removed'")
    assert list(removed.old_position) == [9] and removed.new_position.isna().all()


def test_every_tier_keeps_page_results_for_the_same_ttl(tmp_path: Path, redis_url: str) -> None:
    cfg = CacheConfig(disk_cache_path=str(tmp_path / "c"), redis_url=redis_url)
    cache = MultiLevelCache(cfg, secret=SECRET)
    stages = [Stage("chars", chars), Stage("shape", upper, requires=("chars",), ttl=60)]
    proc = IncrementalProcessor(cache, stages=stages, page_ttl=1234)
    run = proc.process(pdf("us-036.pdf"))
    ident = run.documents[0].pages[0].identity
    redis = cache.tier("redis")
    pipeline = Pipeline(stages)
    # the worker side writes Redis, the processor memory and disk: the same TTLs on both sides
    chars_ttl = redis.client.ttl(redis.prefix + pipeline.key("chars", ident))
    shape_ttl = redis.client.ttl(redis.prefix + pipeline.key("shape", ident))
    assert 1200 < chars_ttl <= 1234 and 50 < shape_ttl <= 60


def test_progress_bar_text(tmp_path: Path) -> None:
    import io

    out = io.StringIO()
    cache = MultiLevelCache(CacheConfig.embedded(tmp_path / "c"), secret=SECRET)
    IncrementalProcessor(cache, stages=STAGES, progress=TextProgress(out, interval=0)).process(
        pdf("us-036.pdf")
    )
    assert "3/3" in out.getvalue()


def test_progress_text_in_a_log_is_a_few_whole_lines() -> None:
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    log, term = io.StringIO(), Terminal()
    for out in (log, term):
        p = TextProgress(out)
        p.start(1000, "pages")
        for _ in range(1000):
            p.advance()
        p.close()
    assert "\r" not in log.getvalue()
    assert [line.split()[-2] for line in log.getvalue().splitlines()] == ["0/1000", "1000/1000"]
    frames = term.getvalue().split("\r")
    assert frames[0] == "" and frames[-1].startswith("pages [###") and frames[-1].endswith("s\n")
    assert " 1000/1000 " in frames[-1]


def test_stage_fingerprints() -> None:
    def f(ctx: Any, n: int = 1) -> int:
        return n

    def g(ctx: Any, n: int = 1) -> int:
        # a comment does not count
        return n

    assert code_fingerprint(f) != code_fingerprint(lambda ctx: 2)
    s1, s2 = Stage("s", f), Stage("s", f, {"n": 2})
    assert s1.fingerprint != s2.fingerprint
    assert s1.key("abc") != s2.key("abc") and s1.key("abc").endswith(":abc")
    pipe = Pipeline([s1, Stage("t", g, requires=("s",))])
    pipe2 = Pipeline([s2, Stage("t", g, requires=("s",))])
    assert pipe.key("t", "x") != pipe2.key("t", "x")  # a dependency's change reaches t
    with pytest.raises(ValueError, match="must come earlier"):
        Pipeline([Stage("t", g, requires=("s",))])

    @stage(name="renamed", num_gpus=1)
    def h(ctx: Any) -> int:
        return 0

    assert (h.name, h.num_gpus) == ("renamed", 1)


def test_renamed_copy_reuses_page_results(proc: IncrementalProcessor, tmp_path: Path) -> None:
    work = versioned(tmp_path, "us-036.pdf")
    proc.process(work)
    moved = tmp_path / "elsewhere" / "renamed.pdf"
    moved.parent.mkdir()
    shutil.copy(work, moved)
    run = proc.process(moved)
    assert run[0].metadata["mode"] == "full"  # a new document id: no previous manifest
    assert computed_pages(run) == []  # but every page result is found by content


def test_identical_pages_in_one_run_are_computed_once(proc: IncrementalProcessor) -> None:
    run = proc.process([pdf("dmca.pdf"), pdf("dmca_v2.pdf")])
    # dmca_v2 shares 16 pages with dmca (3 replaced, 7 rotated, 19 appended)
    assert len(CALLS) == 18 + 3 and set(CALLS.values()) == {1}
    df = run.report()
    v2 = df[df.document == "dmca_v2.pdf"]
    assert sorted({int(p) for p in v2[v2.served_by == "computed"]["page"]}) == [3, 7, 19]
    assert set(v2[~v2.page.isin([3, 7, 19])].served_by) == {"this-run"}
    assert run.documents[1].stage_results("chars") == [
        r.results["chars"] for r in proc.process([pdf("dmca_v2.pdf")]).documents[0].pages
    ]
    summary = run.summary().set_index("document")
    assert summary.loc["dmca_v2.pdf", "results_computed"] == 6


# -- the bytes executed are the bytes detected -----------------------------------------------
def make_proc(tmp_path: Path, stages: list[Stage], **kw: Any) -> IncrementalProcessor:
    cache = MultiLevelCache(CacheConfig.embedded(tmp_path / "cache"), secret=SECRET)
    return IncrementalProcessor(cache, stages=stages, **kw)


def head(ctx: PageContext) -> str:
    return ctx.text()[:40]


class SwapOnStart:
    """A Progress that saves another file over `path` just as the executor starts."""

    def __init__(self, path: Path, replacement: Path) -> None:
        self.path, self.replacement = path, replacement

    def start(self, total: int, description: str = "") -> None:
        shutil.copy(self.replacement, self.path)

    def advance(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def test_file_replaced_during_execution_does_not_poison_the_cache(tmp_path: Path) -> None:
    """Regression: the executor read the file again, so a version saved between detection and
    execution had its results stored under the detected version's page identities; executors
    now run on the detected bytes (verified by hash)."""
    work = versioned(tmp_path, "dmca.pdf")
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
    """Regression (as above): a file changed or deleted after detection was still executed, on
    whatever the executor then read, with results stored under the detected identities; now
    that document fails with the reason, the others run, and nothing is stored for it."""
    work = versioned(tmp_path, "dmca.pdf")
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


# -- TTLs and pipelines ------------------------------------------------------------------------
STAMPS = iter(range(10**6))


def stamp(ctx: PageContext) -> int:
    return next(STAMPS)


def test_a_stage_ttl_expires_the_document_result(tmp_path: Path) -> None:
    """Regression: the document result was kept for the cache's TTL, so its pages were served
    from it after their stage's shorter TTL had expired; it now lives no longer than the least
    of result_ttl and every stage TTL."""
    work = versioned(tmp_path, "us-001.pdf")
    proc = make_proc(tmp_path, [Stage("stamp", stamp, ttl=0.6)])
    first = proc.process(work)[0].stage_results("stamp")
    assert proc.process(work)[0].metadata["mode"] == "unchanged"  # still fresh
    time.sleep(1.0)
    run = proc.process(work)
    assert set(run.report().level) == {"page"} and computed_pages(run) == [1, 2, 3]
    assert set(run[0].stage_results("stamp")).isdisjoint(first)


def rotation(ctx: PageContext) -> int:
    return ctx.page.rotation


def test_changes_are_relative_to_what_this_pipeline_saw(tmp_path: Path) -> None:
    """Regression: two pipelines over one document diffed against the manifest the other one
    saved, so pages were reported unchanged though this pipeline computed them; changes are now
    measured against this pipeline's last result when there is one."""
    work = versioned(tmp_path, "dmca.pdf")
    proc = make_proc(tmp_path, [])
    a, b = [Stage("n", chars)], [Stage("rot", rotation)]
    proc.process(work, a)
    shutil.copy(pdf("dmca_v2.pdf"), work)
    proc.process(work, b)
    run = proc.process(work, a)
    assert run[0].metadata["changed_pages"] == (3, 7, 19)
    assert computed_pages(run) == [3, 7, 19]
    assert run.changes[0].counts()["unchanged"] == 16
    assert proc.process(work, b)[0].metadata["mode"] == "unchanged"


# -- forced runs and the metadata of a run -------------------------------------------------------
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
    """Regression: force=True recomputed the stages, but OCR and embeddings came back from
    their own caches; forced items now refresh those caches too."""
    if shutil.which("tesseract") is None:
        missing("the tesseract binary")
    emb = CountingEmbedder()
    stages = [builtin.text_stage(), builtin.ocr_stage(dpi=40), builtin.embedding_stage(emb)]
    ocr_calls: list[int] = []
    real = builtin._tesseract

    def counting(*a: Any, **k: Any) -> Any:
        ocr_calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(builtin, "_tesseract", counting)
    work = versioned(tmp_path, "dmca_scanned.pdf")
    proc = make_proc(tmp_path, stages)
    n = proc.process(work)[0].document.page_count
    assert (emb.calls, len(ocr_calls)) == (n, n)
    run = proc.process(work, force=True)
    assert (emb.calls, len(ocr_calls)) == (2 * n, 2 * n)
    assert set(run.report().served_by) == {"computed"}
    proc.process(work)  # a plain run is served from the cache
    assert (emb.calls, len(ocr_calls)) == (2 * n, 2 * n)


def test_a_forced_run_still_reports_the_changes(tmp_path: Path) -> None:
    """Regression: a forced run ignored the previous version and reported every page added."""
    work = versioned(tmp_path, "dmca.pdf")
    proc = make_proc(tmp_path, [Stage("n", chars)])
    proc.process(work)
    shutil.copy(pdf("dmca_v2.pdf"), work)
    run = proc.process(work, force=True)
    counts = run.changes[0].counts()
    assert (counts["modified"], counts["added"], counts["unchanged"]) == (2, 1, 16)
    assert run[0].metadata["changed_pages"] == (3, 7, 19)
    assert computed_pages(run) == list(range(1, 20))


def test_unchanged_mode_metadata_is_this_runs(tmp_path: Path) -> None:
    """Regression: a result served whole ("unchanged") carried the previous run's change counts
    and threshold in its metadata."""
    work = versioned(tmp_path, "dmca.pdf")
    proc = make_proc(tmp_path, [Stage("n", chars)], change_threshold=0.5)
    proc.process(work)
    shutil.copy(pdf("dmca_v2.pdf"), work)
    assert proc.process(work)[0].metadata["modified_pages"] == 2
    proc.change_threshold = 0.1
    meta = proc.process(work)[0].metadata
    assert meta["mode"] == "unchanged" and meta["changed_pages"] == ()
    assert (meta["modified_pages"], meta["added_pages"], meta["unchanged_pages"]) == (0, 0, 19)
    assert meta["change_threshold"] == 0.1


# -- new versions under new names, skipped stages, time saved -----------------------------------
def named_copy(tmp_path: Path, sample: str, name: str) -> Path:
    out = tmp_path / name
    shutil.copy(pdf(sample), out)
    return out


def test_a_new_version_under_a_new_name_is_diffed_against_the_old_one(tmp_path: Path) -> None:
    """`process report_v1.pdf` then `report_v2.pdf` reported every v2 page as added; a new
    document sharing at least half its pages with one seen before (here by another processor,
    as in a later session) is now reported against it, and only its new pages are computed."""
    v1 = named_copy(tmp_path, "dmca.pdf", "report_v1.pdf")
    v2 = named_copy(tmp_path, "dmca_v2.pdf", "report_v2.pdf")
    make_proc(tmp_path, [Stage("n", chars)]).process(v1)
    CALLS.clear()
    run = make_proc(tmp_path, [Stage("n", chars)]).process(v2)
    cs = run.changes[0]
    assert cs.based_on is not None and cs.based_on.name == "report_v1.pdf"
    counts = cs.counts()
    assert (counts["modified"], counts["added"], counts["unchanged"]) == (2, 1, 16)
    assert computed_pages(run) == [3, 7, 19] and sum(CALLS.values()) == 3
    row = run.summary().iloc[0]
    assert (row["based_on"], row["mode"], row["results_computed"]) == ("report_v1.pdf", "full", 3)
    assert "based on report_v1.pdf: 2 modified, 1 added, 16 unchanged" in "\n".join(
        format_documents(run)
    )
    # its own history from now on: a second run is unchanged, not based on anything
    again = make_proc(tmp_path, [Stage("n", chars)]).process(v2)
    assert again[0].metadata["mode"] == "unchanged" and again.changes[0].based_on is None


def test_documents_read_earlier_in_the_same_run_are_bases_too(tmp_path: Path) -> None:
    v1 = named_copy(tmp_path, "ca-warn-report.pdf", "a.pdf")
    v2 = named_copy(tmp_path, "ca-warn-report_v2.pdf", "b.pdf")
    other = named_copy(tmp_path, "us-036.pdf", "c.pdf")
    run = make_proc(tmp_path, [Stage("n", chars)]).process([v1, v2, other])
    bases = [cs.based_on.name if cs.based_on else None for cs in run.changes]
    assert bases == [None, "a.pdf", None]
    assert run.summary().based_on.fillna("").tolist() == ["", "a.pdf", ""]


def test_related_threshold_none_reports_new_documents_as_added(tmp_path: Path) -> None:
    v1 = named_copy(tmp_path, "dmca.pdf", "v1.pdf")
    v2 = named_copy(tmp_path, "dmca_v2.pdf", "v2.pdf")
    proc = make_proc(tmp_path, [Stage("n", chars)], related_threshold=None)
    run = proc.process([v1, v2])
    assert [cs.based_on for cs in run.changes] == [None, None]
    assert run.changes[1].counts()["added"] == 19
    with pytest.raises(ValueError, match="related_threshold"):
        make_proc(tmp_path, [Stage("n", chars)], related_threshold=0.0)


def test_previous_names_the_earlier_version_explicitly(tmp_path: Path) -> None:
    v1 = named_copy(tmp_path, "dmca.pdf", "old.pdf")
    v2 = named_copy(tmp_path, "dmca_v2.pdf", "new.pdf")
    proc = make_proc(tmp_path, [Stage("n", chars)])
    proc.process(v2)  # its own history says "unchanged"; previous= asks for another diff
    run = proc.process(v2, previous=v1)  # old.pdf was never processed: it is read, not recorded
    assert run.changes[0].based_on is not None and run.changes[0].based_on.name == "old.pdf"
    counts = run.changes[0].counts()
    assert (counts["modified"], counts["added"], counts["unchanged"]) == (2, 1, 16)
    assert computed_pages(run) == []  # every page result is in the page cache
    mapped = proc.process([v1, v2], previous={v1: v2})
    assert [c.based_on.name if c.based_on else None for c in mapped.changes] == ["new.pdf", None]
    assert proc.process_document(v1, previous=v2).metadata["based_on"] == "new.pdf"
    with pytest.raises(ValueError, match="mapping"):
        proc.process([v1, v2], previous=v1)
    gone = proc.process(v2, previous=tmp_path / "missing.pdf")
    assert "previous version" in gone.failures[str(v2)]


def maybe(ctx: PageContext) -> int | None:
    """Nothing to do on odd pages."""
    return None if ctx.page.index % 2 else ctx.page.index


def test_a_stage_with_nothing_to_do_is_reported_skipped_not_computed(tmp_path: Path) -> None:
    """OCR on a page with a text layer did no work, yet the report said `computed`."""
    proc = make_proc(tmp_path, [Stage("even", maybe, skip_reason="odd page")])
    run = proc.process(pdf("us-036.pdf"))  # 3 pages
    assert run.report().served_by.tolist() == ["computed", "skipped (odd page)", "computed"]
    row = run.summary().iloc[0]
    assert (row["results_computed"], row["results_skipped"]) == (2, 1)
    again = make_proc(tmp_path, [Stage("even", maybe, skip_reason="odd page")]).process(
        pdf("us-036.pdf")
    )
    assert again.report().served_by.tolist() == ["disk", "skipped (odd page)", "disk"]
    assert "1 skipped (odd page)" in format_documents(again)[0]
    assert builtin.ocr_stage().skip_reason == "text layer"


def slow(ctx: PageContext) -> int:
    time.sleep(0.01)
    return ctx.page.index


def test_time_saved_is_what_the_served_results_took_to_compute(tmp_path: Path) -> None:
    """The main job could not say what the cache saved: stored results carried no cost."""
    work = versioned(tmp_path, "us-036.pdf")
    first = make_proc(tmp_path, [Stage("slow", slow)]).process(work)
    assert first.saved_seconds == 0.0
    took = first.summary().stage_seconds.iloc[0]
    # the whole document result (a new process), then page results under another name
    whole = make_proc(tmp_path, [Stage("slow", slow)]).process(work)
    copy = named_copy(tmp_path, "us-036.pdf", "copy.pdf")
    pages = make_proc(tmp_path, [Stage("slow", slow)]).process(copy)
    for run in (whole, pages):
        assert computed_pages(run) == []
        assert took * 0.9 <= run.saved_seconds <= took * 1.1
        assert run.summary().saved_seconds.iloc[0] == pytest.approx(run.saved_seconds, abs=1e-3)
    assert "saved" in format_documents(pages)[-1]


def big_result(ctx: PageContext) -> bytes:
    # over `small_item_mb` (1 MB) even compressed: a large entry
    return random.Random(ctx.page.index).randbytes(2_000_000)


def test_page_results_are_routed_by_size_and_s3_read_only_without_redis(
    tmp_path: Path, full_config: CacheConfig
) -> None:
    """Regression: every page result went to S3 whatever its size (median 330 B, billed as
    128 KB each), and each miss asked S3 after Redis had answered. Results are routed like
    every entry now (small: Redis; large: Redis and S3), and S3 is read for a result only while
    Redis is down."""
    cache = MultiLevelCache(full_config, secret=SECRET)
    stages = [Stage("chars", chars), Stage("big", big_result)]
    run = IncrementalProcessor(cache, stages=stages).process(pdf("us-036.pdf"))
    pipeline = Pipeline(stages, 86400.0)
    idents = [p.identity for p in run[0].pages]
    in_s3 = set(cache.tier("s3").iter_keys("page:*"))
    in_redis = set(cache.tier("redis").iter_keys("page:*"))
    small = {pipeline.key("chars", i) for i in idents}
    large = {pipeline.key("big", i) for i in idents}
    assert in_s3 == large and in_redis == small | large
    # another machine (empty local tiers) is served by Redis, S3 not asked
    other = MultiLevelCache(
        dataclasses.replace(full_config, disk_cache_path=str(tmp_path / "other")), secret=SECRET
    )
    s3 = other.metrics.tier("s3")
    again = IncrementalProcessor(other, stages=stages).process(pdf("us-036.pdf"))
    assert computed_pages(again) == []
    assert set(again.report().served_by) == {"redis"}
    assert s3.hits + s3.misses == 0
    assert result_tiers(other) == ("memory", "disk", "redis")
    other.close()
    cache.close()


def test_entries_signed_with_another_secret_are_counted_as_rejected(tmp_path: Path) -> None:
    """Regression: pages stored by a node without the driver's TORE_NB_SECRET were rejected as
    unsigned and computed again, silently (the report said "computed"). A run counts what it
    rejected, and the totals line says so."""
    stages = [Stage("chars", chars)]
    other = MultiLevelCache(CacheConfig.embedded(tmp_path / "shared"), secret=b"x" * 32)
    IncrementalProcessor(other, stages=stages).process(pdf("us-036.pdf"))
    mine = MultiLevelCache(CacheConfig.embedded(tmp_path / "shared"), secret=SECRET)
    run = IncrementalProcessor(mine, stages=stages).process(pdf("us-036.pdf"))
    assert computed_pages(run) == [1, 2, 3]
    assert run.rejected >= 3  # the three page results, at least
    assert "rejected (failed verification)" in format_documents(run)[-1]
    again = IncrementalProcessor(mine, stages=stages).process(pdf("us-036.pdf"))
    assert again.rejected == 0


THREADS = r"""
import json, sys, tempfile, threading
from tore_nb import CacheConfig, MultiLevelCache
from tore_nb.incremental import IncrementalProcessor, Stage

def render(ctx):
    return int(ctx.render(dpi=40).convert("L").getextrema()[0]) + len(ctx.text())

got = {}
def run(n, path):
    cache = MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp()))
    proc = IncrementalProcessor(cache, stages=[Stage("r", render)])
    for _ in range(4):  # computed each time, while the other threads are in pdfium too
        res = proc.process(path, force=True)
    got[n] = [p["r"] for p in res[0].pages]

threads = [threading.Thread(target=run, args=(n, p)) for n, p in enumerate(sys.argv[1:])]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps([got[n] for n in range(len(threads))]))
"""


def test_runs_in_several_threads_take_turns_in_pdfium_and_match_serial_runs(
    tmp_path: Path,
) -> None:
    """Regression: pdfium is not thread-safe, even on different documents. Two threads each
    processing a document at once aborted the whole process ("Fatal Python error: Aborted"):
    in a notebook, the kernel died. tore_nb's uses of pdfium take turns now; each thread gets
    what a run on its own gives."""
    import json
    import subprocess
    import sys

    from tests.support import REPO

    docs = [pdf("dmca.pdf"), pdf("us-036.pdf"), pdf("dmca.pdf")]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    args = [sys.executable, "-c", THREADS, *map(str, docs)]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    threaded = json.loads(done.stdout.strip().splitlines()[-1])

    def render(ctx: PageContext) -> int:
        return int(ctx.render(dpi=40).convert("L").getextrema()[0]) + len(ctx.text())

    for doc, pages in zip(docs, threaded, strict=True):
        cache = MultiLevelCache(CacheConfig.embedded(tmp_path / doc.name), secret=SECRET)
        alone = IncrementalProcessor(cache, stages=[Stage("r", render)]).process(doc)
        assert pages == [p["r"] for p in alone[0].pages]
