"""The per-tier figures, one plain name each, shared by the dashboard and `%tcache stats`.

Every figure of a `TierSnapshot` has one label used everywhere: the dashboard's table and
text form, and the DataFrame of `%tcache stats`. Two counters that used to share the word
"rejected" are named for what they count: `failed verification` (entries read back that failed
their signature or checksum, or were older than one already seen: removed, read as misses) and
`refused writes` (values too large for the tier, or keys it cannot name).

The dashboard's table keeps to the figures read first (`MAIN`); the others (`DETAILS`) sit in a
disclosure below it, so the table fits a notebook column. A problem is never hidden there:
errors and failed verifications also show beside the tier's breaker state.

>>> [f.label for f in MAIN]
['tier', 'breaker', 'hit rate', 'entries', 'size MB', 'p50 ms']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .tables import FAILED_TINT, FONT, TRACK, esc, fmt_num, fmt_pct, html_table

if TYPE_CHECKING:
    import pandas as pd

    from ..stats import MetricsSnapshot, TierSnapshot

MB = 1024 * 1024
TIER_COLORS = {"memory": "#4c78a8", "disk": "#f58518", "redis": "#e45756", "s3": "#54a24b"}
_STATE_COLORS = {"closed": "#2e7d32", "half-open": "#ef6c00", "open": "#c62828"}


@dataclass(frozen=True)
class Figure:
    """One figure of a tier: its `TierSnapshot` field, plain label, meaning, and rounding."""

    key: str
    label: str
    help: str
    digits: int | None = None  # decimals of a float; None: an int or a word

    def text(self, t: TierSnapshot) -> str:
        """The figure of `t` as text: rounded, "-" when unknown."""
        if self.key == "hit_rate":
            return fmt_pct(t.hit_rate)
        value = figure_value(t, self.key)
        if value is None:
            return "-"
        if self.digits is not None:
            return fmt_num(float(value), self.digits)
        return str(value)


def figure_value(t: TierSnapshot, key: str) -> float | int | str | None:
    """A figure's raw value: a field of `t`, or a derived one (MB read and written)."""
    if key == "read_mb":
        return t.bytes_read / MB
    if key == "written_mb":
        return t.bytes_written / MB
    value: float | int | str | None = getattr(t, key)
    return value


_F = Figure
FIGURES = {
    f.key: f
    for f in (
        _F("tier", "tier", "the cache tier"),
        _F(
            "state",
            "breaker",
            "circuit breaker: closed (in use), open (skipped after errors), half-open (trying "
            "again), read-only (writes refused)",
        ),
        _F("hit_rate", "hit rate", "hits / lookups in this tier", 1),
        _F("hits", "hits", "lookups this tier answered"),
        _F("misses", "misses", "lookups this tier did not have"),
        _F("entries", "entries", "entries stored (counted when sizes are read)"),
        _F("size_mb", "size MB", "bytes stored, in MiB (counted when sizes are read)", 2),
        _F("p50_ms", "p50 ms", "median lookup time over the last 1024 lookups, ms", 3),
        _F("p95_ms", "p95 ms", "95th percentile lookup time, ms", 3),
        _F("p99_ms", "p99 ms", "99th percentile lookup time, ms", 3),
        _F("errors", "errors", "calls to the tier that failed (timeouts, connection errors)"),
        _F(
            "corrupt",
            "failed verification",
            "entries read back that failed their signature or checksum, or were older than one "
            "already seen: removed and read as misses",
        ),
        _F(
            "rejected",
            "refused writes",
            "writes this tier refused: the value was too large for it, or the key too long",
        ),
        _F("promotions", "promoted", "entries copied up into this tier after a hit below it"),
        _F("sets", "writes", "entries written"),
        _F("deletes", "deletes", "entries deleted"),
        _F("read_mb", "read MB", "bytes read on hits, MiB", 2),
        _F("written_mb", "written MB", "bytes written, MiB", 2),
    )
}
MAIN = tuple(FIGURES[k] for k in ("tier", "state", "hit_rate", "entries", "size_mb", "p50_ms"))
DETAILS = tuple(
    FIGURES[k]
    for k in (
        "tier",
        "hits",
        "misses",
        "p95_ms",
        "errors",
        "corrupt",
        "rejected",
        "promotions",
        "sets",
    )
)
#: the text form: what a terminal line holds (the problems follow as notes)
TEXT = tuple(
    FIGURES[k]
    for k in ("tier", "state", "hit_rate", "hits", "misses", "entries", "size_mb", "p50_ms")
)
#: `%tcache stats` without `--all`: the columns people read first
STATS = ("hit_rate", "hits", "misses", "entries", "size_mb", "p50_ms", "p95_ms", "errors", "state")
_MORE = ("p99_ms", "corrupt", "rejected", "promotions", "sets", "deletes", "read_mb", "written_mb")
#: `%tcache stats --all`
STATS_ALL = (*STATS, *_MORE)


def problems(t: TierSnapshot) -> list[str]:
    """A tier's problems in words, e.g. `['2 errors', '1 failed verification']`; [] if none.

    >>> from tore_nb.stats import CacheMetrics
    >>> problems(CacheMetrics(["disk"]).snapshot().tiers["disk"])
    []
    """
    out = []
    for key, one, many in (
        ("errors", "error", "errors"),
        ("corrupt", "failed verification", "failed verification"),
        ("rejected", "refused write", "refused writes"),
    ):
        n = int(getattr(t, key))
        if n:
            out.append(f"{n} {one if n == 1 else many}")
    return out


def text_rows(snap: MetricsSnapshot) -> tuple[list[str], list[list[str]], list[str]]:
    """The text form's header, one row per tier, and a note per tier with problems."""
    rows = [[f.text(t) for f in TEXT] for t in snap.tiers.values()]
    notes = [f"{t.tier}: {', '.join(p)}" for t in snap.tiers.values() if (p := problems(t))]
    return [f.label for f in TEXT], rows, notes


def _cell(f: Figure, t: TierSnapshot) -> str:
    """A main-table cell as HTML: the tier's colour, the breaker and its problems, a bar."""
    text = esc(f.text(t))
    color = TIER_COLORS.get(t.tier, "#888")
    if f.key == "tier":
        return (
            f'<span style="display:inline-block;width:9px;height:9px;border-radius:2px;'
            f'background:{color};margin-right:6px"></span>{text}'
        )
    if f.key == "state":
        dot = f'<span style="color:{_STATE_COLORS.get(t.state, "#888")}">&#9679;</span> {text}'
        found = problems(t)
        if not found:
            return dot
        return (
            f'{dot} <span data-problems="{esc(t.tier)}" style="background:{FAILED_TINT};'
            f'padding:0 4px;border-radius:3px">{esc(", ".join(found))}</span>'
        )
    if f.key == "hit_rate":
        width = round(60 * t.hit_rate)
        return (
            f'<span style="display:inline-block;width:60px;height:8px;background:{TRACK};'
            f'margin-right:6px;vertical-align:middle"><span style="display:block;height:8px;'
            f'width:{width}px;background:{color}"></span></span>{text}'
        )
    return text


def _table(snap: MetricsSnapshot, figures: Sequence[Figure], css_class: str, main: bool) -> str:
    if not snap.tiers:
        return f'<div style="{FONT}">this cache has no tiers (caching is off)</div>'
    rows = [[_cell(f, t) if main else esc(f.text(t)) for f in figures] for t in snap.tiers.values()]
    return html_table(
        [f.label for f in figures],
        rows,
        css_class=css_class,
        row_attrs=[f'data-tier="{esc(t.tier)}"' for t in snap.tiers.values()],
        keys=[f.key for f in figures],
        titles=[f.help for f in figures],
    )


def tier_table_html(snap: MetricsSnapshot) -> str:
    """The main tier table: the figures read first, narrow enough for a notebook column."""
    return _table(snap, MAIN, "tore-nb-tiers", main=True)


def details_table_html(snap: MetricsSnapshot) -> str:
    """The other figures per tier: hits, misses, p95, errors, failed verification, writes..."""
    return _table(snap, DETAILS, "tore-nb-tier-details", main=False)


def stats_frame(snap: MetricsSnapshot, everything: bool = False) -> pd.DataFrame:
    """`%tcache stats`: one row per tier, rounded, the columns read first (all with `everything`).

    >>> import tempfile
    >>> from tore_nb import CacheConfig, MultiLevelCache
    >>> cache = MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp()))
    >>> list(stats_frame(cache.snapshot()).columns)[:3]
    ['hit rate %', 'hits', 'misses']
    """
    import pandas as pd

    keys = STATS_ALL if everything else STATS
    rows = []
    for t in snap.tiers.values():
        row: dict[str, object] = {}
        for key in keys:
            f = FIGURES[key]
            if key == "hit_rate":
                row["hit rate %"] = round(100.0 * t.hit_rate, 1)
                continue
            value = figure_value(t, key)
            if f.digits is not None and value is not None:
                value = round(float(value), f.digits)
            row[f.label] = value
        rows.append(row)
    frame = pd.DataFrame(rows, index=pd.Index(list(snap.tiers), name="tier"))
    for key in keys:  # whole counts stay whole where one is unknown (entries of a big bucket)
        f = FIGURES[key]
        if f.digits is None and key != "state" and f.label in frame:
            frame[f.label] = frame[f.label].astype("Int64")
    return frame
