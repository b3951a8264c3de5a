"""Change reports of a run: a pandas DataFrame per page and stage, and a summary per document.

Columns of `change_report`: document, page, status, old_position, new_position, identity,
stage, served_by (memory, disk, redis, s3, computed, this-run (an identical page computed in
the same run) or failed), level (page: the page's own
cache entry; document: reused from the previous document result), seconds, error.
The rows come from the run's records (`results.py`); this module shapes them for reading.

>>> from tore_nb.incremental.results import RunResult
>>> change_report(RunResult((), (), (), {}, 0.0)).columns[:3].tolist()
['document', 'page', 'status']
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .results import REPORT_COLUMNS, SUMMARY_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

    from .results import RunResult

__all__ = [
    "REPORT_COLUMNS",
    "SUMMARY_COLUMNS",
    "change_report",
    "format_report",
    "format_summary",
    "summary",
]


def change_report(run: RunResult) -> pd.DataFrame:
    """One row per (page, stage) of every document, plus one row per removed page.

    >>> from tore_nb.incremental.results import RunResult
    >>> change_report(RunResult((), (), (), {}, 0.0)).shape
    (0, 11)
    """
    return run.report()


def summary(run: RunResult) -> pd.DataFrame:
    """One row per document: mode, pages per status, stage results computed/cached/failed.

    >>> from tore_nb.incremental.results import RunResult
    >>> summary(RunResult((), (), (), {}, 0.0)).columns.tolist() == SUMMARY_COLUMNS
    True
    """
    return run.summary()


def format_summary(run: RunResult) -> str:
    """The summary as plain text (no pandas needed).

    >>> from tore_nb.incremental.results import RunResult
    >>> format_summary(RunResult((), (), (), {"x.pdf": "missing"}, 0.0)).splitlines()[1:]
    ['FAILED x.pdf: missing', '0 document(s) in 0.000s']
    """
    return str(run)


def format_report(run: RunResult, *, max_rows: int = 200, changed_only: bool = False) -> str:
    """The change report as text: identities shortened, one line per page and stage.

    >>> from tore_nb.incremental.results import RunResult
    >>> format_report(RunResult((), (), (), {}, 0.0), changed_only=True)
    'no page changed and nothing was computed'
    """
    df = change_report(run)
    if changed_only:
        df = df[(df["status"] != "unchanged") | (df["served_by"].isin(["computed", "failed"]))]
    if df.empty:
        return "no page changed and nothing was computed" if changed_only else "no pages"
    df = df.assign(identity=df["identity"].str.slice(0, 12), seconds=df["seconds"].round(4))
    if "error" in df and df["error"].isna().all():
        df = df.drop(columns=["error"])
    return df.to_string(index=False, max_rows=max_rows)
