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

from collections import Counter
from typing import TYPE_CHECKING

from .results import REPORT_COLUMNS, SHARED, SUMMARY_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

    from .results import RunResult

__all__ = [
    "REPORT_COLUMNS",
    "SUMMARY_COLUMNS",
    "change_report",
    "format_documents",
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
    >>> print(format_summary(RunResult((), (), (), {"x.pdf": "missing"}, 0.0)).splitlines()[-1])
    0 document(s) in 0.000s (wall time)
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


def _plural(n: int, word: str) -> str:
    if n == 1:
        return f"{n} {word}"
    return f"{n} {word[:-1]}ies" if word.endswith("y") else f"{n} {word}s"


def _sources(counts: Counter[str]) -> str:
    """`(disk)` or `(memory 3, redis 54)`: the tiers stage results were served from."""
    if not counts:
        return ""
    if len(counts) == 1:
        return f" ({next(iter(counts))})"
    return " (" + ", ".join(f"{t} {n}" for t, n in counts.most_common()) + ")"


def _where_from(computed: int, cached: int, tiers: Counter[str], shared: int) -> list[str]:
    """The words for results computed, served from a cache tier, and shared with a twin page:
    one count each, so that with failed and skipped they add up to the results."""
    out = [f"{computed} computed" if computed else ""]
    out += [f"{cached} from cache{_sources(tiers)}" if cached else ""]
    out += [f"{shared} shared with identical pages" if shared else ""]
    return out


def _seconds(s: float) -> str:
    return f"{s:.2f} s" if s < 60 else f"{int(s // 60)} min {s % 60:.0f} s"


def format_documents(run: RunResult) -> list[str]:
    """One line per document: its pages by change, its stage results by where they came from,
    the time they saved; then one line of totals. Failed documents are the caller's to show.

    Results copied from an identical page computed in the same run (served_by `this-run`) are
    "shared with identical pages", apart from those served by a cache tier; the summary counts
    both in `results_from_cache`. Retries and results computed twice, when any, end the totals.

    >>> from tore_nb.incremental.results import RunResult
    >>> format_documents(RunResult((), (), (), {}, 0.5))
    ['0 documents, 0 pages; 0.50 s']
    """
    tiers: dict[str, Counter[str]] = {}
    skips: dict[str, Counter[str]] = {}
    shares: Counter[str] = Counter()
    for e in run.events:  # by path: two documents may share a name
        for by in e.served.values():
            if by.startswith("skipped"):
                skips.setdefault(e.path, Counter())[by] += 1
            elif by == SHARED:
                shares[e.path] += 1
            elif by not in ("computed", "failed"):
                tiers.setdefault(e.path, Counter())[by] += 1
    lines: list[str] = []
    pages = changed = computed = cached = shared = failed = skipped = twice = retries = 0
    every_tier: Counter[str] = Counter()
    # the rows of documents that could not be read come last: the caller says why (stderr)
    for result, values in zip(run.documents, run.summary_rows(), strict=False):
        row = dict(zip(SUMMARY_COLUMNS, values, strict=True))
        name, base, n = row["document"], row["based_on"], row["pages"]
        added, removed, moved = row["added"], row["removed"], row["moved"]
        modified, unchanged, saved = row["modified"], row["unchanged"], row["saved_seconds"]
        path = result.path
        comp, fail, skip = row["results_computed"], row["results_failed"], row["results_skipped"]
        share = shares[path]
        cach = row["results_from_cache"] - share  # the summary counts shared ones as cached
        pages += n
        changed += added + modified
        computed, cached, shared = computed + comp, cached + cach, shared + share
        failed, skipped = failed + fail, skipped + skip
        twice, retries = twice + row["duplicates"], retries + row["retries"]
        every_tier.update(tiers.get(path, Counter()))
        if added == n and not (removed or moved or modified):
            what = "new" if comp else "new, every page known from other documents"
        else:
            parts = [f"{modified} modified" if modified else "", f"{added} added" if added else ""]
            parts += [f"{removed} removed" if removed else "", f"{moved} moved" if moved else ""]
            parts = [p for p in parts if p]
            what = (", ".join(parts) + f", {unchanged} unchanged") if parts else "unchanged"
            if base:
                what = f"based on {base}: {what}"
        results = _where_from(comp, cach, tiers.get(path, Counter()), share)
        results += [f"{fail} failed" if fail else ""]
        results += [f"{k} {why}" for why, k in skips.get(path, Counter()).items()]
        done = ", ".join(r for r in results if r) or "nothing to do"
        spared = f"; saved {_seconds(saved)}" if saved >= 0.005 else ""
        lines.append(f"{name}: {_plural(n, 'page')}, {what}; stage results {done}{spared}")
    docs = len(run.documents)
    total = f"{_plural(docs, 'document')}, {_plural(pages, 'page')}"
    if docs:
        total += f" ({changed} new or modified); stage results {computed} computed, {cached}"
        total += f" from cache{_sources(every_tier)}"
        total += f", {shared} shared with identical pages" if shared else ""
        total += f", {failed} failed" if failed else ""
        total += f", {skipped} skipped" if skipped else ""
    if retries or twice:  # work done again: a stage raising, a worker lost, a claim lost
        again = [_plural(retries, "retry") if retries else ""]
        again += [f"{_plural(twice, 'result')} computed twice" if twice else ""]
        total += "; " + ", ".join(a for a in again if a)
    if run.failures:
        total += f"; {len(run.failures)} could not be read"
    if run.rejected:  # each a miss: tampered, or signed with another secret
        total += f"; {_plural(run.rejected, 'cached entry')} rejected (failed verification)"
    total += f"; {_seconds(run.seconds)}"
    saved_all = run.saved_seconds
    if saved_all >= 0.005:
        total += f", saved {_seconds(saved_all)} of computing"
    lines.append(total)
    return lines
