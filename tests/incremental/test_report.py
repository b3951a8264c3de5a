"""The CLI lines of a run (`format_documents`): results shared with an identical page in the
same run worded apart from the cache, the words adding up to the totals, and work done again
(retries, results computed twice) said in the totals only when there was any."""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.support import SECRET
from tests.support import sample_pdf as pdf
from tore_nb.config import CacheConfig
from tore_nb.incremental.executors import SerialExecutor
from tore_nb.incremental.processor import IncrementalProcessor
from tore_nb.incremental.report import format_documents
from tore_nb.incremental.results import RunResult
from tore_nb.incremental.stages import PageContext, Stage
from tore_nb.tiered import MultiLevelCache


def chars(ctx: PageContext) -> int:
    return len(ctx.text())


def make_proc(tmp_path: Path, stages: list[Stage], **kw: Any) -> IncrementalProcessor:
    cache = MultiLevelCache(CacheConfig.embedded(tmp_path / "cache"), secret=SECRET)
    return IncrementalProcessor(cache, stages=stages, **kw)


def results_words(line: str) -> dict[str, int]:
    """`stage results 3 computed, 16 from cache (memory), 3 shared ...` -> counts by phrase."""
    part = line.split("stage results ", 1)[1].split(";", 1)[0]
    part = re.sub(r" \([^)]*\)", "", part)  # the tiers of "from cache (...)"
    return {m[2]: int(m[1]) for m in re.finditer(r"(\d+) ([a-z ]+)", part)}


def test_results_of_an_identical_page_in_the_same_run_are_shared_not_from_cache(
    tmp_path: Path,
) -> None:
    """dmca_v2 shares 16 pages with dmca: processed together, those results are copied from
    the pages computed for dmca (served_by `this-run`). They used to read `from cache
    (this-run 32)`; they are their own phrase now, and not counted as from cache."""
    run = make_proc(tmp_path, [Stage("n", chars), Stage("m", lambda ctx: 1)]).process(
        [pdf("dmca.pdf"), pdf("dmca_v2.pdf")]
    )
    lines = format_documents(run)
    assert lines[0] == "dmca.pdf: 18 pages, new; stage results 36 computed"
    assert "; stage results 6 computed, 32 shared with identical pages;" in lines[1]
    assert "stage results 42 computed, 0 from cache, 32 shared with identical pages;" in lines[-1]
    assert not any("this-run" in line for line in lines)
    summary = run.summary()
    assert summary.results_from_cache.tolist() == [0, 32]  # the summary keeps both together


def test_the_words_add_up_to_every_stage_result(tmp_path: Path) -> None:
    """A document served partly by the cache and partly by its twin computed in this run:
    computed + from cache + shared is every result, per document and in the totals."""
    proc = make_proc(tmp_path, [Stage("n", chars)])
    proc.process(pdf("dmca.pdf"))
    a, b = tmp_path / "a.pdf", tmp_path / "b.pdf"
    shutil.copy(pdf("dmca_v2.pdf"), a)
    shutil.copy(pdf("dmca_v2.pdf"), b)
    run = proc.process([a, b])  # b's 3 new pages were computed for a, its 16 others cached
    lines = format_documents(run)
    assert re.search(
        r"results 16 from cache \(memory\), 3 shared with identical pages(;|$)", lines[1]
    )
    summary = run.summary()
    for line, row in zip(lines, summary.itertuples(), strict=False):
        words = results_words(line)
        assert sum(words.values()) == row.pages  # one stage: a result per page
        cached = words.get("from cache", 0) + words.get("shared with identical pages", 0)
        assert cached == row.results_from_cache
    assert results_words(lines[-1]) == {
        "computed": 3,
        "from cache": 32,
        "shared with identical pages": 3,
    }


def flaky_once() -> Stage:
    """A stage that fails the first attempt at each page and succeeds the next."""
    seen: Counter[int] = Counter()

    def flaky(ctx: PageContext) -> int:
        seen[ctx.page.index] += 1
        if seen[ctx.page.index] == 1:
            raise RuntimeError("a worker lost")
        return ctx.page.index

    return Stage("flaky", flaky)


def test_retries_are_said_in_the_totals_of_the_run_that_made_them(tmp_path: Path) -> None:
    stage = flaky_once()
    proc = make_proc(tmp_path, [stage], executor=SerialExecutor(retries=2))
    run = proc.process(pdf("us-036.pdf"))  # 3 pages, each computed at the second attempt
    assert run.summary().retries.tolist() == [3]
    assert "; 3 retries;" in format_documents(run)[-1]
    assert "retr" not in format_documents(run)[0]  # the totals only
    # the next run computes nothing: the stored result's retries are not this run's
    again = proc.process(pdf("us-036.pdf"))
    assert again.summary().retries.tolist() == [0]
    assert "retr" not in format_documents(again)[-1]


def with_work_counts(run: RunResult, duplicates: int, retries: int) -> RunResult:
    """The run as if its pages had been computed on a cluster with these counts."""
    doc = run.documents[0]
    meta = {**doc.metadata, "duplicates": duplicates, "retries": retries}
    return dataclasses.replace(run, documents=(dataclasses.replace(doc, metadata=meta),))


@pytest.mark.parametrize(
    ("duplicates", "retries", "said"),
    [
        (0, 0, None),
        (1, 0, "; 1 result computed twice;"),
        (0, 1, "; 1 retry;"),
        (2, 3, "; 3 retries, 2 results computed twice;"),
    ],
)
def test_work_done_twice_is_said_plainly_and_only_when_there_was_any(
    tmp_path: Path, duplicates: int, retries: int, said: str | None
) -> None:
    run = make_proc(tmp_path, [Stage("n", chars)]).process(pdf("us-036.pdf"))
    total = format_documents(with_work_counts(run, duplicates, retries))[-1]
    if said is None:
        assert "retr" not in total and "twice" not in total
    else:
        assert said in total
        assert total.startswith("1 document, 3 pages (3 new or modified); stage results 3")
