"""The records of a run: each page's and document's results, what happened to each page, the run.

`PageResult` holds one page's stage results; `ProcessingResult` a document's pages in page order
with the run's metadata (it is what the cache keeps under `result_key`); `PageEvent` what a run
did with one page: its change status and where each stage's result came from; `RunResult` all
of them for one `process()` call, with the change report and the summary as rows and tables.
The processor makes them; the reports and the widgets read them.

>>> run = RunResult((), (), (), {}, 0.0)
>>> len(run), run.report().columns[:3].tolist()
(0, ['document', 'page', 'status'])
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from .changes import ChangeSet
    from .documents import Document
    from .stages import Pipeline

__all__ = [
    "SHARED",
    "REPORT_COLUMNS",
    "SUMMARY_COLUMNS",
    "PageEvent",
    "PageResult",
    "ProcessingResult",
    "RunResult",
    "result_key",
]

REPORT_COLUMNS = [
    "document",
    "page",
    "status",
    "old_position",
    "new_position",
    "identity",
    "stage",
    "served_by",
    "level",
    "seconds",
    "error",
]
#: served_by of a result copied from an identical page computed in the same run
SHARED = "this-run"

SUMMARY_COLUMNS = [
    "document",
    "mode",
    # a new document diffed against another one that shares most of its pages (its name)
    "based_on",
    "pages",
    "added",
    "removed",
    "moved",
    "modified",
    "unchanged",
    # stage results (a page has one per stage), not pages: 117 pages, 351 results
    "results_computed",
    "results_from_cache",
    "results_failed",
    # a stage with nothing to do on the page (OCR on a page with a text layer)
    "results_skipped",
    # the time the stages took, summed over pages; the run's wall time is RunResult.seconds
    "stage_seconds",
    # what computing the results served from a cache took when they were computed
    "saved_seconds",
    # stage results computed twice across the cluster (a claim lost while working): 0
    "duplicates",
    # further attempts at stage results that failed first (a worker lost, a stage raising)
    "retries",
    "error",
]


def _kind(served_by: str) -> str:
    """computed, failed, skipped or cached: how the summary counts a stage result."""
    if served_by in ("computed", "failed"):
        return served_by
    return "skipped" if served_by.startswith("skipped") else "cached"


def result_key(document_id: str, pipeline: Pipeline) -> str:
    """The cache key of a document-level result for a pipeline.

    >>> from tore_nb.incremental.stages import Pipeline, Stage
    >>> result_key("report-0a1b", Pipeline([Stage("n", len)])).startswith("result:report-0a1b:")
    True
    """
    return f"result:{document_id}:{pipeline.fingerprint[:16]}"


@dataclass(frozen=True, slots=True)
class PageResult:
    """The stage results of one page; `errors` holds the stages that failed.

    >>> r = PageResult(0, "id", {"text": "hello"}, {})
    >>> r["text"], r.number, r.ok
    ('hello', 1, True)
    """

    index: int
    identity: str
    results: Mapping[str, Any]
    errors: Mapping[str, str] = field(default_factory=dict)

    @property
    def number(self) -> int:
        return self.index + 1

    @property
    def ok(self) -> bool:
        return not self.errors

    def __getitem__(self, stage: str) -> Any:
        return self.results[stage]


@dataclass(frozen=True)
class ProcessingResult:
    """A document's pages' results in page order, with the seed's metadata.

    `metadata`: last_updated (UTC datetime), changed_pages (1-based), incremental_update, mode
    ("full", "incremental" or "unchanged"), failed_pages, change counts, page_seconds (what
    computing each page's results took, wherever and whenever they were computed),
    saved_seconds (of that, what this run served from a cache), based_on (the document a new
    one was diffed against, when it shares most of its pages with it), duplicates (stage
    results computed twice across a cluster) and retries (further attempts).

    >>> from tore_nb.incremental.documents import Document, FileFingerprint
    >>> doc = Document("/a/b.pdf", "b-1", FileFingerprint(1, 1, "h"), ())
    >>> ProcessingResult(doc, (), ("text",), "fp", {"mode": "full"})
    ProcessingResult('b.pdf', pages=0, mode='full', changed_pages=[])
    """

    document: Document
    pages: tuple[PageResult, ...]
    stages: tuple[str, ...]
    pipeline_fingerprint: str
    metadata: Mapping[str, Any]

    @property
    def path(self) -> str:
        return self.document.path

    @property
    def failed_pages(self) -> tuple[int, ...]:
        """1-based numbers of pages with a failed stage."""
        return tuple(p.number for p in self.pages if not p.ok)

    def stage_results(self, stage: str) -> list[Any]:
        """One stage's result for every page, in page order (None where it failed)."""
        return [p.results.get(stage) for p in self.pages]

    def text(self, separator: str = "\f") -> str:
        """The text of all pages: the text layer, or OCR where a page has none."""
        from .builtin import page_text  # the records stay light: no PDF reader on import

        return separator.join(page_text(p.results) for p in self.pages)

    def __repr__(self) -> str:
        m = self.metadata
        return (
            f"ProcessingResult({self.document.name!r}, pages={len(self.pages)}, "
            f"mode={m.get('mode')!r}, changed_pages={list(m.get('changed_pages', ()))})"
        )


@dataclass(frozen=True, slots=True)
class PageEvent:
    """What a run did with one page: its change status and how each stage's result was served.

    Positions are 1-based (None where the page is absent). Per stage, in pipeline order:
    `served` says where the result came from (memory, disk, redis, s3, computed, this-run (an
    identical page computed in the same run) or failed) or that the stage had nothing to do
    (`skipped (text layer)`), `levels` whether from the page's own
    cache entry ("page") or from the previous document result ("document"), `timings` its
    seconds and `errors` why it failed. A removed page has no stages.

    >>> e = PageEvent("a.pdf", "/d/a.pdf", 2, "modified", 2, 2, "ab", {"text": "computed"},
    ...               {"text": "page"}, {"text": 0.5})
    >>> e.seconds, e.error, e.report_rows()[0][6:9]
    (0.5, None, ('text', 'computed', 'page'))
    """

    document: str
    path: str
    page: int | None
    status: str
    old_position: int | None
    new_position: int | None
    identity: str
    served: Mapping[str, str] = field(default_factory=dict)
    levels: Mapping[str, str] = field(default_factory=dict)
    timings: Mapping[str, float] = field(default_factory=dict)
    errors: Mapping[str, str] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        """The time its stages took (0 where served from a cache)."""
        return sum(self.timings.values(), 0.0)

    @property
    def error(self) -> str | None:
        """The first failed stage and why (`stage: message`), or None."""
        return next((f"{s}: {why}" for s, why in self.errors.items() if why), None)

    def report_rows(self) -> list[tuple[Any, ...]]:
        """Its rows of the change report (`REPORT_COLUMNS`): one per stage, one if removed."""
        page = (
            self.document,
            self.page,
            self.status,
            self.old_position,
            self.new_position,
            self.identity,
        )
        if self.new_position is None:
            return [(*page, None, "-", "page", 0.0, None)]
        return [
            (*page, s, by, self.levels[s], self.timings[s], self.errors.get(s))
            for s, by in self.served.items()
        ]


@dataclass(frozen=True)
class RunResult:
    """What one `process()` call did: a result and a ChangeSet per document, a PageEvent per page.

    `failures` maps paths that could not be read to the reason; `rejected` counts the cached
    entries this run refused (failed verification: tampered, or signed with another secret
    such as a worker's without TORE_NB_SECRET; or older than one already seen): each was a miss.
    """

    documents: tuple[ProcessingResult, ...]
    changes: tuple[ChangeSet, ...]
    events: tuple[PageEvent, ...]
    failures: Mapping[str, str]
    seconds: float
    rejected: int = 0

    def __getitem__(self, key: int | str | os.PathLike[str]) -> ProcessingResult:
        if isinstance(key, int):
            return self.documents[key]
        from .documents import document_id_for

        doc_id = document_id_for(key)
        for r in self.documents:
            if r.document.document_id == doc_id:
                return r
        raise KeyError(os.fspath(key))

    def __len__(self) -> int:
        return len(self.documents)

    def report_rows(self) -> list[tuple[Any, ...]]:
        """The change report as tuples of `REPORT_COLUMNS`: per page and stage, per removed page,
        and one per document that could not be read (status and served_by "failed")."""
        rows = [row for e in self.events for row in e.report_rows()]
        for path, why in self.failures.items():
            name = os.path.basename(path)
            rows.append(
                (name, None, "failed", None, None, "", None, "failed", "document", 0.0, why)
            )
        return rows

    def summary_rows(self) -> list[tuple[Any, ...]]:
        """The summary as tuples of `SUMMARY_COLUMNS`: one per document."""
        by_doc: dict[str, Counter[str]] = {}
        secs: dict[str, float] = {}
        for e in self.events:
            c = by_doc.setdefault(e.path, Counter())
            total = secs.get(e.path, 0.0)
            for s, by in e.served.items():
                c[_kind(by)] += 1
                total += e.timings[s]
            secs[e.path] = total
        rows: list[tuple[Any, ...]] = []
        for result, cs in zip(self.documents, self.changes, strict=False):
            counts = cs.counts()
            c = by_doc.get(result.path, Counter())
            # an unchanged document's result keeps the metadata of the run that computed it:
            # its duplicates and retries are that run's, not this one's (nothing ran)
            ran = result.metadata.get("mode") != "unchanged"
            rows.append(
                (
                    result.document.name,
                    result.metadata.get("mode"),
                    result.metadata.get("based_on"),
                    result.document.page_count,
                    counts["added"],
                    counts["removed"],
                    counts["moved"],
                    counts["modified"],
                    counts["unchanged"],
                    c["computed"],
                    c["cached"],
                    c["failed"],
                    c["skipped"],
                    round(secs.get(result.path, 0.0), 4),
                    round(float(result.metadata.get("saved_seconds", 0.0)), 4),
                    int(result.metadata.get("duplicates", 0)) if ran else 0,
                    int(result.metadata.get("retries", 0)) if ran else 0,
                    None,
                )
            )
        for path, why in self.failures.items():  # documents that could not be read
            name = os.path.basename(path)
            row: dict[str, Any] = dict.fromkeys(SUMMARY_COLUMNS, 0)
            row.update(document=name, mode="failed", based_on=None, error=why)
            row.update(stage_seconds=0.0, saved_seconds=0.0)
            rows.append(tuple(row.values()))
        return rows

    @property
    def warnings(self) -> dict[str, tuple[str, ...]]:
        """What reading each document reported (a damaged file repaired, pypdf's messages):
        path -> messages, for the documents that have any."""
        return {r.path: r.document.warnings for r in self.documents if r.document.warnings}

    @property
    def saved_seconds(self) -> float:
        """What computing the results this run served from a cache took when they were made."""
        return sum(float(r.metadata.get("saved_seconds", 0.0)) for r in self.documents)

    def report(self) -> pd.DataFrame:
        """The change report: one row per page and stage, plus one per removed page."""
        import pandas as pd

        df = pd.DataFrame(self.report_rows(), columns=REPORT_COLUMNS)
        for col in ("page", "old_position", "new_position"):
            df[col] = df[col].astype("Int64")
        return df

    def summary(self) -> pd.DataFrame:
        """One row per document: mode, pages per status, stage results computed/cached/failed."""
        import pandas as pd

        return pd.DataFrame(self.summary_rows(), columns=SUMMARY_COLUMNS)

    def __str__(self) -> str:
        """The summary as plain text (no pandas needed), then the failures."""
        rows = [tuple(SUMMARY_COLUMNS), *(tuple(str(v) for v in r) for r in self.summary_rows())]
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(SUMMARY_COLUMNS))]
        lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
        lines.append(f"{len(self.documents)} document(s) in {self.seconds:.3f}s (wall time)")
        return "\n".join(lines)
