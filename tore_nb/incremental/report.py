"""Change reports of a run: a pandas DataFrame per page and stage, and a summary per document.

Columns of `change_report`: document, page, status, old_position, new_position, identity,
stage, served_by (memory, disk, redis, s3, computed, this-run (an identical page computed in
the same run) or failed), level (page: the page's own
cache entry; document: reused from the previous document result), seconds, error.

>>> from tore_nb.incremental.processor import RunResult
>>> change_report(RunResult((), (), (), {}, 0.0)).columns[:3].tolist()
['document', 'page', 'status']
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from .processor import RunResult

__all__ = ["REPORT_COLUMNS", "change_report", "format_report", "format_summary", "summary"]

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
SUMMARY_COLUMNS = [
    "document",
    "mode",
    "pages",
    "added",
    "removed",
    "moved",
    "modified",
    "unchanged",
    "computed",
    "cached",
    "failed",
    "seconds",
]


def change_report(run: RunResult) -> pd.DataFrame:
    """One row per (page, stage) of every document, plus one row per removed page."""
    import pandas as pd

    rows = [
        (
            e.document,
            e.page,
            e.status,
            e.old_position,
            e.new_position,
            e.identity,
            e.stage,
            e.served_by,
            e.level,
            e.seconds,
            e.error,
        )
        for e in run.events
    ]
    df = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    for col in ("page", "old_position", "new_position"):
        df[col] = df[col].astype("Int64")
    return df


def _summary_rows(run: RunResult) -> list[tuple[object, ...]]:
    by_doc: dict[str, Counter[str]] = {}
    secs: dict[str, float] = {}
    for e in run.events:
        c = by_doc.setdefault(e.path, Counter())
        if e.stage is not None:
            c[e.served_by if e.served_by in ("computed", "failed") else "cached"] += 1
        secs[e.path] = secs.get(e.path, 0.0) + e.seconds
    rows: list[tuple[object, ...]] = []
    for result, cs in zip(run.documents, run.changes, strict=False):
        counts = cs.counts()
        c = by_doc.get(result.path, Counter())
        rows.append(
            (
                result.document.name,
                result.metadata.get("mode"),
                result.document.page_count,
                counts["added"],
                counts["removed"],
                counts["moved"],
                counts["modified"],
                counts["unchanged"],
                c["computed"],
                c["cached"],
                c["failed"],
                round(secs.get(result.path, 0.0), 4),
            )
        )
    return rows


def summary(run: RunResult) -> pd.DataFrame:
    """One row per document: mode, pages per status, stage results computed/cached/failed."""
    import pandas as pd

    return pd.DataFrame(_summary_rows(run), columns=SUMMARY_COLUMNS)


def format_summary(run: RunResult) -> str:
    """The summary as plain text (no pandas needed)."""
    rows = [tuple(SUMMARY_COLUMNS), *(tuple(str(v) for v in r) for r in _summary_rows(run))]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(SUMMARY_COLUMNS))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    for path, why in run.failures.items():
        lines.append(f"FAILED {path}: {why}")
    lines.append(f"{len(run.documents)} document(s) in {run.seconds:.3f}s")
    return "\n".join(lines)


def format_report(run: RunResult, *, max_rows: int = 200, changed_only: bool = False) -> str:
    """The change report as text: identities shortened, one line per page and stage."""
    df = change_report(run)
    if changed_only:
        df = df[(df["status"] != "unchanged") | (df["served_by"].isin(["computed", "failed"]))]
    if df.empty:
        return "no page changed and nothing was computed" if changed_only else "no pages"
    df = df.assign(identity=df["identity"].str.slice(0, 12), seconds=df["seconds"].round(4))
    if "error" in df and df["error"].isna().all():
        df = df.drop(columns=["error"])
    return df.to_string(index=False, max_rows=max_rows)
