"""The real default stages (pypdfium2 text, tesseract OCR, pdfplumber tables, embeddings) and
the stage caches."""

from __future__ import annotations

import functools
import re
import shutil
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support import CI, DATA, SECRET, write_module
from tore_nb.config import CacheConfig
from tore_nb.fingerprint import fingerprint
from tore_nb.incremental.builtin import (
    OCRResult,
    PageText,
    default_stages,
    embedding_stage,
    run_ocr,
    tables_stage,
    text_stage,
)
from tore_nb.incremental.caches import (
    EmbeddingCache,
    HashingEmbedder,
    OCRCache,
    ParsingCache,
    TableExtractionCache,
)
from tore_nb.incremental.documents import DocumentError, read_document
from tore_nb.incremental.processor import IncrementalProcessor
from tore_nb.incremental.stages import DocumentHandle, PageContext, Stage, code_fingerprint
from tore_nb.memo import cached
from tore_nb.tiered import MultiLevelCache


def data(rel: str) -> Path:
    path = DATA / rel
    if not path.is_file():
        if CI:
            pytest.fail(f"shared test data missing: {path}", pytrace=False)
        pytest.skip(f"shared test data missing: {path}")
    return path


def need_tesseract() -> None:
    if shutil.which("tesseract") is None:
        if CI:
            pytest.fail("the tesseract binary is required with CI=true", pytrace=False)
        pytest.skip("tesseract not installed")


@pytest.fixture
def cache(tmp_path: Path) -> MultiLevelCache:
    return MultiLevelCache(CacheConfig.embedded(tmp_path / "cache"), secret=SECRET)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def test_text_stage_lines_and_boxes(cache: MultiLevelCache) -> None:
    path = data("pdfs/dmca.pdf")
    run = IncrementalProcessor(cache, stages=[text_stage()]).process(path)
    first: PageText = run[0].pages[0]["text"]
    assert first.has_text and "DIGITAL MILLENNIUM" in first.text.upper()
    assert first.lines and all(
        0 <= ln.bbox[0] <= ln.bbox[2] <= first.width + 1 for ln in first.lines
    )


def test_tables_stage_on_the_award_table(cache: MultiLevelCache) -> None:
    path = data("acceptance/Publication_of_award_of_Bids_for_Transport_Sector__August_2016.pdf")
    run = IncrementalProcessor(cache, stages=[text_stage(), tables_stage()]).process(path)
    for page in run[0].pages:
        (table,) = page["tables"]
        assert len(table.rows[0]) == 11 and 5 <= len(table.rows) <= 15
    assert table.to_frame().shape[1] == 11


def test_a_page_used_twice_gets_its_own_tables_and_every_other_page_too(
    cache: MultiLevelCache, tmp_path: Path
) -> None:
    """A page object inserted twice (pypdf's `insert_page(w.pages[i], index=j)`, as merge tools
    do) is two pages to pdfium and pypdf but one to pdfplumber. The tables stage took its page
    by position, so every page after the duplicate got the next page's tables, and they were
    cached under the real pages' identities: the untouched original processed later with the
    same cache was served wrong tables. Pages are matched by page object now: every page of
    the doubled file has its own page's tables, equal to the original's, and the original
    processed later with the same cache equals a from-scratch run."""
    import pypdf

    original = data("pdfs/us-001.pdf")
    writer = pypdf.PdfWriter(clone_from=str(original))
    writer.insert_page(writer.pages[0], index=2)
    doubled = tmp_path / "doubled.pdf"
    with open(doubled, "wb") as f:
        writer.write(f)
    stages = [text_stage(), tables_stage()]
    run = IncrementalProcessor(cache, stages=stages).process(doubled)
    fresh_cache = MultiLevelCache(CacheConfig.embedded(tmp_path / "fresh"), secret=SECRET)
    fresh = IncrementalProcessor(fresh_cache, stages=stages).process(original)
    tables = [p["tables"] for p in fresh[0].pages]
    assert any(tables) and len(set(map(repr, tables))) == 3  # pages that tell apart
    assert [p["tables"] for p in run[0].pages] == [tables[i] for i in (0, 1, 0, 2)]
    cached = IncrementalProcessor(cache, stages=stages).process(original)
    assert [p["tables"] for p in cached[0].pages] == tables


def test_pages_that_cannot_be_matched_by_object_fail_loudly(tmp_path: Path) -> None:
    """When pdfplumber and pdfium count differently and the pages cannot be matched by object
    number, the tables stage fails on that document rather than guess a page."""
    import pypdf

    writer = pypdf.PdfWriter(clone_from=str(data("pdfs/us-001.pdf")))
    writer.insert_page(writer.pages[0], index=2)
    doubled = tmp_path / "doubled.pdf"
    with open(doubled, "wb") as f:
        writer.write(f)
    with DocumentHandle(str(doubled)) as handle:
        handle.plumber.pages.pop()  # as if pdfplumber had missed a page
        with pytest.raises(DocumentError, match="cannot be matched by page object"):
            handle.plumber_page(0)


def test_ocr_stage_recall_and_ocr_cache(cache: MultiLevelCache) -> None:
    need_tesseract()
    scanned, truth = data("pdfs/dmca_scanned.pdf"), data("pdfs/dmca.pdf")
    doc = read_document(scanned)
    with DocumentHandle(str(scanned), cache=cache) as handle:
        ctx = PageContext(handle, doc.pages[0])
        ctx.results["text"] = PageText(ctx.text(), (), 0.0, 0.0)
        assert not ctx.results["text"].has_text  # a scan: OCR is taken
        result = run_ocr(ctx, dpi=200)
    assert isinstance(result, OCRResult) and result.mean_confidence > 50
    with DocumentHandle(str(truth)) as h2:
        expected = set(words(PageContext(h2, read_document(truth).pages[0]).text()))
    got = set(words(result.text))
    recall = len(expected & got) / len(expected)
    assert recall >= 0.9, recall
    # the same image again: served by the OCR cache, tesseract is not run
    with DocumentHandle(str(scanned), cache=cache) as handle:
        ctx = PageContext(handle, doc.pages[0], {"text": PageText("", (), 0.0, 0.0)})
        key = OCRCache(cache).key(ctx.render(200, grayscale=True), result.engine, ("grayscale",))
        assert cache.contains(key)
        again = run_ocr(ctx, dpi=200)
    assert again == result


def test_ocr_skipped_for_pages_with_text(cache: MultiLevelCache) -> None:
    path = data("pdfs/multipage.pdf")
    doc = read_document(path)
    with DocumentHandle(str(path)) as handle:
        ctx = PageContext(handle, doc.pages[3])  # the chart with an OCR text layer
        ctx.results["text"] = PageText(ctx.text(), (), 0.0, 0.0)
        assert ctx.results["text"].has_text
        assert run_ocr(ctx) is None


def test_embeddings_stage_and_cache(cache: MultiLevelCache) -> None:
    stages = [*default_stages(ocr=True, tables=False), embedding_stage(HashingEmbedder(64))]
    path = data("pdfs/us-036.pdf")
    run = IncrementalProcessor(cache, stages=stages).process(path)
    vecs = run[0].stage_results("embeddings")
    assert all(v.shape == (64,) and abs(float(np.linalg.norm(v)) - 1) < 1e-5 for v in vecs)
    text = run[0].pages[0]["text"].text
    assert EmbeddingCache(cache).cache.contains(EmbeddingCache(cache).key(text, "hashing-64"))


def test_default_stage_names_and_fingerprints_are_stable() -> None:
    a, b = default_stages(embeddings=True), default_stages(embeddings=True)
    assert [s.name for s in a] == ["text", "ocr", "tables", "embeddings"]
    assert [s.fingerprint for s in a] == [s.fingerprint for s in b]


def test_parsing_and_table_caches(cache: MultiLevelCache, tmp_path: Path) -> None:
    calls = []

    def parse(p: Path) -> int:
        calls.append(p)
        return len(p.read_bytes())

    f = tmp_path / "a.pdf"
    shutil.copy(data("pdfs/us-036.pdf"), f)
    pc = ParsingCache(cache)
    assert pc.get_or_parse(f, "size", parse) == pc.get_or_parse(f, "size", parse)
    assert len(calls) == 1 and pc.ttl == 7 * 86400
    tc = TableExtractionCache(cache)
    assert tc.get_or_extract("pid", "lattice", lambda: [1]) == [1]
    assert tc.get_or_extract("pid", "lattice", lambda: [2]) == [1]
    assert tc.get_or_extract("pid", "lattice", lambda: [3], {"snap": 2}) == [3]
    assert tc.invalidate() == 2 and tc.ttl == 86400


def test_editing_a_helper_changes_the_stage_fingerprint() -> None:
    ns: dict[str, object] = {}
    exec("def helper(x):\n    return x + 1\n\ndef st(ctx):\n    return helper(ctx)\n", ns)
    before = code_fingerprint(ns["st"])
    exec("def helper(x):\n    return x + 2\n", ns)
    assert code_fingerprint(ns["st"]) != before


# -- a stage's fingerprint is the one code fingerprint of @cached and %%tcache -------------------
def notebook(source: str, **names: object) -> dict[str, Any]:
    """Runs source as notebook code (module `__main__`: user code) in a fresh namespace."""
    ns: dict[str, Any] = {"__name__": "__main__", **names}
    exec(textwrap.dedent(source), ns)
    return ns


CACHED_STAGE = """
def clean(text):
    return text.strip() + "{helper}"

@cached(cache=cache)
def words(ctx):
    return len(clean(ctx.text()).split()) * {n}
"""


def test_an_edited_cached_stage_function_changes_the_stage_fingerprint(
    cache: MultiLevelCache,
) -> None:
    """A `@cached` function used as a stage counts by its code and its helpers' code, as the
    key `@cached` itself uses, not by the wrapper's class."""

    def build(n: int, helper: str) -> Stage:
        src = CACHED_STAGE.format(n=n, helper=helper)
        return Stage("words", notebook(src, cached=cached, cache=cache)["words"])

    assert build(1, "a").fingerprint == build(1, "a").fingerprint
    assert build(2, "a").fingerprint != build(1, "a").fingerprint
    assert build(1, "b").fingerprint != build(1, "a").fingerprint


CALLABLE_STAGE = """
import threading

class Ocr:
    def __init__(self, lang):
        self.lang = lang
        self.lock = {state}  # a lock cannot be content-hashed: the class's code must count

    def __call__(self, ctx):
        return self.clean(ctx.text())

    def clean(self, text):
        return text.replace("-", "{sep}")
"""


@pytest.mark.parametrize("state", ["threading.Lock()", "None"], ids=["unhashable", "plain"])
def test_an_edited_helper_method_of_a_callable_object_stage_changes_its_fingerprint(
    state: str,
) -> None:
    def build(sep: str, lang: str = "eng") -> Stage:
        ocr = notebook(CALLABLE_STAGE.format(state=state, sep=sep))["Ocr"](lang)
        return Stage("ocr", ocr)

    assert build("").fingerprint == build("").fingerprint
    assert build(" ").fingerprint != build("").fingerprint  # only `clean` was edited
    assert build("", lang="deu").fingerprint != build("").fingerprint  # its state counts


FUNCTION_STAGE = """
from st_helpers import normalise
LIMIT = {limit}

def st(ctx):
    return normalise(ctx.text())[:LIMIT]
"""


def test_edited_globals_and_helpers_of_a_function_stage_change_its_fingerprint(
    local_modules: Path,
) -> None:
    helpers = "def normalise(text):\n    return text.{how}()\n"
    write_module(local_modules, "st_helpers", helpers.format(how="lower"))
    before = Stage("st", notebook(FUNCTION_STAGE.format(limit=10))["st"]).fingerprint
    assert Stage("st", notebook(FUNCTION_STAGE.format(limit=10))["st"]).fingerprint == before
    assert Stage("st", notebook(FUNCTION_STAGE.format(limit=20))["st"]).fingerprint != before
    write_module(local_modules, "st_helpers", helpers.format(how="upper"))  # edited, reloaded
    assert Stage("st", notebook(FUNCTION_STAGE.format(limit=10))["st"]).fingerprint != before


def test_library_callable_objects_count_by_their_state() -> None:
    """A library's callable object (here numpy's poly1d) is configured by its attributes."""
    assert Stage("p", np.poly1d([1, 2])).fingerprint == Stage("p", np.poly1d([1, 2])).fingerprint
    assert Stage("p", np.poly1d([1, 2])).fingerprint != Stage("p", np.poly1d([1, 3])).fingerprint


def test_stages_cached_functions_and_cells_share_one_code_fingerprint(
    cache: MultiLevelCache,
) -> None:
    ns = notebook(
        CALLABLE_STAGE.format(state="threading.Lock()", sep="")
        + CACHED_STAGE.format(n=1, helper="a"),
        cached=cached,
        cache=cache,
    )
    for fn in (ns["words"], ns["Ocr"]("eng"), ns["clean"], functools.partial(ns["clean"])):
        assert code_fingerprint(fn) == fingerprint(fn)
    assert ns["words"].__tore_fingerprint__() == fingerprint(ns["words"])


STAGE_MODULE = """
def shout(text):
    return text.upper(){suffix}

class Counter:
    def __call__(self, ctx):
        return self.count(ctx.text())

    def count(self, text):
        return len(text.split()){extra}

def loud(ctx):
    return shout(ctx.text())[:40]
"""


def test_an_edited_stage_recomputes_and_equals_a_from_scratch_run(
    local_modules: Path, tmp_path: Path
) -> None:
    """Differential: after an edit to a custom stage's helper, a helper method of a callable
    stage, or a default stage's parameters, an incremental run recomputes those stages, and
    what it returns equals a run from scratch with the edited code."""
    pdf = data("pdfs/us-001.pdf")

    def stages(module: Any, snap: int) -> list[Stage]:
        return [
            text_stage(),
            Stage("loud", module.loud),
            Stage("count", module.Counter()),
            tables_stage({"snap_tolerance": snap}),
        ]

    def results(run: Any) -> list[dict[str, Any]]:
        return [{k: repr(v) for k, v in p.results.items() if k != "text"} for p in run[0].pages]

    cache = MultiLevelCache(CacheConfig.embedded(tmp_path / "cache"), secret=SECRET)
    mod = write_module(local_modules, "stage_mod", STAGE_MODULE.format(suffix="", extra=""))
    first = IncrementalProcessor(cache, stages=stages(mod, 3)).process(pdf)
    # each edit: the helper's suffix, the method's factor, and the stages that must recompute
    edits = [('+ "!"', "", {"loud", "tables"}), ('+ "!"', " * 2", {"count", "tables"})]
    for n, (suffix, extra, changed) in enumerate(edits):
        source = STAGE_MODULE.format(suffix=suffix, extra=extra)
        mod = write_module(local_modules, "stage_mod", source)
        pipeline = stages(mod, 4 + n)
        assert pipeline[3].fingerprint != stages(mod, 3)[3].fingerprint
        again = IncrementalProcessor(cache, stages=pipeline).process(pdf)
        fresh_cache = MultiLevelCache(CacheConfig.embedded(tmp_path / f"fresh{n}"), secret=SECRET)
        fresh = IncrementalProcessor(fresh_cache, stages=stages(mod, 4 + n)).process(pdf)
        assert results(again) == results(fresh) != results(first)
        report = again.report()
        served = dict(zip(report["stage"], report["served_by"], strict=False))
        assert {s for s, by in served.items() if by == "computed"} == changed
