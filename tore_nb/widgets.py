"""Views of the cache and of incremental runs: a live dashboard, a change report, run progress.

Each view is a plain object over plain data (a cache's `MetricsSnapshot`, a `RunResult`, progress
counts) with a text form for terminals (`str(view)`) and an HTML form for exported notebooks
(`view._repr_html_()`). The ipywidgets face is built lazily, only when the view is displayed in
a Jupyter kernel, so importing this module costs nothing.

- `CacheDashboard(cache)`: per tier hit rate, hits, misses, entries, size, latency, errors and
  breaker state, the compute time saved, and charts of hit rate and latency over time. It
  refreshes after every cell, on a timer while cells run, and on its button; a tier can be
  cleared from it after a confirmation. `%tcache dashboard` shows one.
- `ChangeReportView(run)`: an incremental run's change report with status colours, a summary
  per document, and thumbnails of changed pages beside their previous version.
- `RunProgress()`: a progress callback for `IncrementalProcessor` (Ray runs included): pages
  done, cached, failed.

>>> import tempfile
>>> from tore_nb import CacheConfig, MultiLevelCache
>>> cache = MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp()))
>>> cache.set("k", 1), cache.get("k")
(True, 1)
>>> print(CacheDashboard(cache, interval=None).to_text().splitlines()[0])
tore_nb cache: hit rate 100.0%, 1 requests, 1 hits, 0 misses, saved 0.00 s
"""

from __future__ import annotations

import base64
import dataclasses
import html
import itertools
import logging
import math
import os
import struct
import sys
import threading
import time
import weakref
import zlib
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import pandas as pd

    from .incremental.processor import RunResult
    from .stats import MetricsSnapshot, TierSnapshot
    from .tiered import MultiLevelCache

__all__ = [
    "CacheDashboard",
    "ChangeReportView",
    "RunProgress",
    "show_dashboard",
]

log = logging.getLogger("tore_nb.widgets")

TIER_COLORS = {"memory": "#4c78a8", "disk": "#f58518", "redis": "#e45756", "s3": "#54a24b"}
STATUS_COLORS = {
    "added": "#e3f4e6",
    "modified": "#fff1d6",
    "moved": "#e4edfb",
    "removed": "#fbe3e3",
    "unchanged": "#ffffff",
}
_STATE_COLORS = {"closed": "#2e7d32", "half-open": "#ef6c00", "open": "#c62828"}
_FONT = "font-family:var(--jp-ui-font-family,system-ui,sans-serif);font-size:13px"
_CELL = "padding:2px 8px;border-bottom:1px solid #ddd"


# -- shared helpers --------------------------------------------------------------------------------
def _in_kernel() -> bool:
    """True inside a Jupyter kernel (where widgets can render), False in a terminal or script."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _widgets_available() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def _ipywidgets() -> Any:
    from .errors import require

    return require("ipywidgets", "notebook")


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def _pct(rate: float) -> str:
    return f"{100.0 * rate:.1f}%"


def _text_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    cells = [[str(c) for c in header], *([str(c) for c in r] for r in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    numeric = [
        all(_looks_numeric(r[i]) for r in cells[1:]) and bool(rows) for i in range(len(header))
    ]
    lines = []
    for r in cells:
        parts = [
            c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _looks_numeric(text: str) -> bool:
    return text == "-" or text.rstrip("%").replace(".", "", 1).lstrip("-").isdigit()


def _html_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    css_class: str,
    row_attrs: Sequence[str] | None = None,
    keys: Sequence[str] | None = None,
) -> str:
    """An HTML table whose cells are already escaped HTML; `keys` name the data-col attributes."""
    keys = keys or header
    head = "".join(
        f'<th style="{_CELL};text-align:left;background:#f5f5f5">{_esc(h)}</th>' for h in header
    )
    body = []
    for i, row in enumerate(rows):
        attrs = row_attrs[i] if row_attrs else ""
        tds = "".join(
            f'<td data-col="{_esc(k)}" style="{_CELL}">{c}</td>'
            for k, c in zip(keys, row, strict=True)
        )
        body.append(f"<tr {attrs}>{tds}</tr>")
    return (
        f'<table class="{css_class}" style="border-collapse:collapse;{_FONT}">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


class _View:
    """A text form, an HTML form, and an ipywidgets form built only when displayed in a kernel."""

    _widget: Any = None

    def to_text(self) -> str:
        raise NotImplementedError

    def to_html(self) -> str:
        raise NotImplementedError

    def _build(self) -> Any:
        raise NotImplementedError

    def widget(self) -> Any:
        """The ipywidgets view (built on first use; needs `tore_nb[notebook]`)."""
        if self._widget is None:
            self._widget = self._build()
        return self._widget

    _handle: Any = None

    def display(self) -> None:
        """Show the view: the live widget in a kernel, the text form elsewhere."""
        if _in_kernel():
            from IPython.display import display

            self._handle = display(self, display_id=True)  # type: ignore[no-untyped-call]
        else:
            print(self.to_text())

    def _update_display(self) -> None:
        """Refresh the output shown by `display()`: its saved text and HTML forms follow too."""
        if self._handle is not None:
            try:
                self._handle.update(self)
            except Exception:  # a view must never break the user's code
                log.debug("display update failed", exc_info=True)

    def __str__(self) -> str:
        return self.to_text()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.to_text())

    def _repr_html_(self) -> str:
        return self.to_html()

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None, **kwargs: Any
    ) -> dict[str, Any]:
        bundle: dict[str, Any] = {"text/plain": self.to_text(), "text/html": self.to_html()}
        if _in_kernel() and _widgets_available():
            view = self.widget()._repr_mimebundle_()
            key = "application/vnd.jupyter.widget-view+json"
            if key in view:
                bundle[key] = view[key]
        return bundle


# -- the cache dashboard ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    """Cumulative counters at one moment, the raw material of the charts."""

    at: float
    requests: int
    hits: int
    tiers: Mapping[str, tuple[int, int, float | None]]  # hits, misses, p50_ms


def _sample(snap: MetricsSnapshot, at: float) -> Sample:
    tiers = {n: (t.hits, t.misses, t.p50_ms) for n, t in snap.tiers.items()}
    return Sample(at, snap.total_requests, snap.hits, tiers)


def _activity(snap: MetricsSnapshot) -> tuple[Any, ...]:
    """What changes when the cache is used; a refresh with the same activity draws nothing new."""
    return (
        snap.total_requests,
        snap.saved_seconds,
        *(
            (t.hits, t.misses, t.sets, t.errors, t.deletes, t.corrupt, t.state)
            for t in snap.tiers.values()
        ),
    )


_COLUMNS = (
    ("tier", "tier"),
    ("state", "breaker"),
    ("hit_rate", "hit rate"),
    ("hits", "hits"),
    ("misses", "misses"),
    ("entries", "entries"),
    ("size_mb", "size MB"),
    ("p50_ms", "p50 ms"),
    ("p95_ms", "p95 ms"),
    ("errors", "errors"),
    ("corrupt", "rejected"),
    ("promotions", "promoted"),
    ("sets", "writes"),
)


def _tier_cells(t: TierSnapshot) -> dict[str, str]:
    return {
        "tier": t.tier,
        "state": t.state,
        "hit_rate": _pct(t.hit_rate),
        "hits": str(t.hits),
        "misses": str(t.misses),
        "entries": "-" if t.entries is None else str(t.entries),
        "size_mb": _num(t.size_mb, 2),
        "p50_ms": _num(t.p50_ms),
        "p95_ms": _num(t.p95_ms),
        "errors": str(t.errors),
        "corrupt": str(t.corrupt),
        "promotions": str(t.promotions),
        "sets": str(t.sets),
    }


def _summary_text(snap: MetricsSnapshot) -> str:
    return (
        f"tore_nb cache: hit rate {_pct(snap.overall_hit_rate)}, {snap.total_requests} requests, "
        f"{snap.hits} hits, {snap.misses} misses, saved {snap.saved_seconds:.2f} s"
    )


def _summary_html(snap: MetricsSnapshot) -> str:
    def stat(label: str, value: str, key: str) -> str:
        return (
            f'<div style="display:inline-block;margin:0 18px 6px 0">'
            f'<div style="font-size:11px;color:#666">{_esc(label)}</div>'
            f'<div data-stat="{key}" style="font-size:20px;font-weight:600">{_esc(value)}</div>'
            f"</div>"
        )

    return (
        f'<div class="tore-nb-summary" style="{_FONT}">'
        + stat("hit rate", _pct(snap.overall_hit_rate), "hit_rate")
        + stat("requests", str(snap.total_requests), "requests")
        + stat("hits", str(snap.hits), "hits")
        + stat("misses", str(snap.misses), "misses")
        + stat("compute time saved", f"{snap.saved_seconds:.2f} s", "saved_seconds")
        + "</div>"
    )


def _tier_table_html(snap: MetricsSnapshot) -> str:
    rows, attrs = [], []
    for t in snap.tiers.values():
        cells = {k: _esc(v) for k, v in _tier_cells(t).items()}
        color = TIER_COLORS.get(t.tier, "#888")
        cells["tier"] = (
            f'<span style="display:inline-block;width:9px;height:9px;border-radius:2px;'
            f'background:{color};margin-right:6px"></span>{cells["tier"]}'
        )
        cells["state"] = (
            f'<span style="color:{_STATE_COLORS.get(t.state, "#333")}">&#9679;</span> '
            f"{cells['state']}"
        )
        width = round(60 * t.hit_rate)
        cells["hit_rate"] = (
            f'<span style="display:inline-block;width:60px;height:8px;background:#eee;'
            f'margin-right:6px;vertical-align:middle"><span style="display:block;height:8px;'
            f'width:{width}px;background:{color}"></span></span>{cells["hit_rate"]}'
        )
        rows.append([cells[k] for k, _ in _COLUMNS])
        attrs.append(f'data-tier="{_esc(t.tier)}"')
    if not rows:
        return f'<div style="{_FONT}">this cache has no tiers (caching is off)</div>'
    return _html_table(
        [h for _, h in _COLUMNS],
        rows,
        css_class="tore-nb-tiers",
        row_attrs=attrs,
        keys=[k for k, _ in _COLUMNS],
    )


def _span(seconds: float) -> str:
    """A duration for an axis label: 4.2 s, 38 s, 12 min."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _segments(points: Iterable[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    """Split a series at its gaps (None values) into drawable runs."""
    out: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if y is None:
            if out[-1]:
                out.append([])
        else:
            out[-1].append((x, y))
    return [s for s in out if s]


def _chart_svg(
    title: str,
    series: Mapping[str, list[tuple[float, float | None]]],
    *,
    y_range: tuple[float, float],
    log_scale: bool = False,
    unit: str = "",
    width: int = 340,
    height: int = 140,
) -> str:
    """A small line chart as inline SVG: no plotting library, renders in any HTML output."""
    pad_l, pad_r, pad_t, pad_b = 46, 8, 20, 18
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    xs = [x for pts in series.values() for x, y in pts if y is not None]
    lo, hi = y_range
    if log_scale:
        lo, hi = math.log10(lo), math.log10(hi)
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    x1 = x1 if x1 > x0 else x0 + 1.0

    def px(x: float) -> float:
        return pad_l + plot_w * (x - x0) / (x1 - x0)

    def py(y: float) -> float:
        v = math.log10(max(y, 10**lo)) if log_scale else y
        v = min(max(v, lo), hi)
        return pad_t + plot_h * (1.0 - (v - lo) / (hi - lo))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'class="tore-nb-chart" role="img" aria-label="{_esc(title)}" '
        f'style="{_FONT};background:#fff;margin:4px 12px 4px 0">',
        f'<text x="{pad_l}" y="13" font-size="12" font-weight="600">{_esc(title)}</text>',
        f'<rect x="{pad_l}" y="{pad_t}" width="{plot_w}" height="{plot_h}" fill="none" '
        f'stroke="#ccc"/>',
    ]
    ticks = range(math.floor(lo), math.ceil(hi) + 1) if log_scale else (lo, (lo + hi) / 2, hi)
    for tick in ticks:
        value = 10**tick if log_scale else tick
        label = f"{value:.3g}{unit}"
        y = pad_t + plot_h * (1.0 - (tick - lo) / (hi - lo))
        parts.append(
            f'<text x="{pad_l - 4}" y="{y + 4:.1f}" font-size="10" text-anchor="end" '
            f'fill="#666">{_esc(label)}</text>'
        )
    if not xs:
        parts.append(
            f'<text x="{pad_l + plot_w / 2}" y="{pad_t + plot_h / 2}" font-size="11" '
            f'text-anchor="middle" fill="#999">waiting for cache activity</text>'
        )
    legend_x = pad_l
    for name, pts in series.items():
        color = TIER_COLORS.get(name, "#333")
        for seg in _segments(pts):
            if len(seg) == 1:
                x, y = seg[0]
                parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2" fill="{color}"/>')
            else:
                coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in seg)
                parts.append(
                    f'<polyline points="{coords}" fill="none" stroke="{color}" stroke-width="1.6"/>'
                )
        parts.append(
            f'<text x="{legend_x}" y="{height - 4}" font-size="10" fill="{color}">'
            f"&#9632; {_esc(name)}</text>"
        )
        legend_x += 8 + 7 * len(name) + 12
    parts.append(
        f'<text x="{width - pad_r}" y="{height - 4}" font-size="10" text-anchor="end" '
        f'fill="#666">last {_span(x1 - x0)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _charts_html(samples: Sequence[Sample]) -> str:
    """Hit rate per tier between consecutive samples, and p50 latency per tier (log scale)."""
    if not samples:
        return ""
    t0 = samples[0].at
    names = list(samples[-1].tiers)
    rate: dict[str, list[tuple[float, float | None]]] = {"all": []}
    latency: dict[str, list[tuple[float, float | None]]] = {n: [] for n in names}
    rate.update({n: [] for n in names})
    for prev, cur in itertools.pairwise(samples):
        x = cur.at - t0
        looked = cur.requests - prev.requests
        rate["all"].append((x, 100.0 * (cur.hits - prev.hits) / looked if looked > 0 else None))
        for n in names:
            h0, m0, _ = prev.tiers.get(n, (0, 0, None))
            h1, m1, p50 = cur.tiers.get(n, (0, 0, None))
            d = (h1 - h0) + (m1 - m0)
            rate[n].append((x, 100.0 * (h1 - h0) / d if d > 0 else None))
            latency[n].append((x, p50 if p50 is not None and d > 0 else None))
    lat_values = [y for pts in latency.values() for _, y in pts if y is not None and y > 0]
    lo = 10 ** math.floor(math.log10(min(lat_values))) if lat_values else 0.001
    hi = 10 ** math.ceil(math.log10(max(lat_values))) if lat_values else 10.0
    hi = hi if hi > lo else lo * 10
    return (
        '<div class="tore-nb-charts">'
        + _chart_svg("hit rate between refreshes", rate, y_range=(0.0, 100.0), unit="%")
        + _chart_svg("p50 latency (ms)", latency, y_range=(lo, hi), log_scale=True)
        + "</div>"
    )


class _Live:
    """Calls `refresh` of every live dashboard after each cell (one IPython hook per shell)."""

    dashboards: ClassVar[weakref.WeakSet[CacheDashboard]] = weakref.WeakSet()
    shells: ClassVar[weakref.WeakSet[Any]] = weakref.WeakSet()

    @classmethod
    def add(cls, dashboard: CacheDashboard) -> None:
        cls.dashboards.add(dashboard)
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
        if shell is not None and shell not in cls.shells:
            shell.events.register("post_run_cell", cls.after_cell)
            cls.shells.add(shell)

    @classmethod
    def after_cell(cls, *args: Any) -> None:
        for dashboard in list(cls.dashboards):
            try:
                dashboard.refresh()
            except Exception:  # a view must never break the user's cell
                log.debug("dashboard refresh failed", exc_info=True)


def _ticker(ref: weakref.ref[CacheDashboard], stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        dashboard = ref()
        if dashboard is None:
            return
        try:
            dashboard.refresh()
        except Exception:
            log.debug("dashboard refresh failed", exc_info=True)
        del dashboard


class CacheDashboard(_View):
    """A live view of a cache's tiers: hit rates, latency, usage, errors, breakers, time saved.

    `interval` seconds between refreshes while cells run (None: only after cells and on the
    button); `usage_every` bounds how often entries and sizes are asked of the tiers (a call
    to each, S3 included). Clearing a tier takes two clicks: "Clear tier", then "Confirm".

    >>> import tempfile
    >>> from tore_nb import CacheConfig, MultiLevelCache
    >>> cache = MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp()))
    >>> dash = CacheDashboard(cache, interval=None)
    >>> cache.get("missing") is None, dash.refresh().misses
    (True, 1)
    >>> dash.request_clear("disk"); dash.confirm_clear()
    'Clear every entry of tier disk (0 entries)? Press Confirm.'
    0
    """

    def __init__(
        self,
        cache: MultiLevelCache | None = None,
        *,
        interval: float | None = 2.0,
        usage_every: float = 5.0,
        history: int = 240,
    ) -> None:
        if cache is None:
            from . import get_cache

            cache = get_cache()
        self.cache = cache
        self.interval = interval
        self.usage_every = usage_every
        self.samples: deque[Sample] = deque(maxlen=history)
        self.message = ""
        self.pending_clear: str | None = None
        self._lock = threading.RLock()
        self._stop: threading.Event | None = None
        self._usage_at = time.monotonic()
        self.last: MetricsSnapshot = cache.snapshot(usage=True)
        self._seen = _activity(self.last)
        self.samples.append(_sample(self.last, time.time()))

    def __repr__(self) -> str:
        return f"CacheDashboard({self.cache!r})"

    # -- data ------------------------------------------------------------------------------------
    def refresh(self, usage: bool | None = None) -> MetricsSnapshot:
        """Take a fresh snapshot, record a chart sample when something happened, redraw.

        `usage` None asks the tiers for entries and sizes at most every `usage_every` seconds.
        """
        with self._lock:
            now = time.monotonic()
            if usage is None:
                usage = now - self._usage_at >= self.usage_every
            snap = self.cache.snapshot(usage=usage)
            if usage:
                self._usage_at = now
            else:  # keep the last known usage figures
                snap = dataclasses.replace(
                    snap,
                    tiers={
                        n: dataclasses.replace(t, entries=old.entries, size_mb=old.size_mb)
                        if (old := self.last.tiers.get(n)) is not None
                        else t
                        for n, t in snap.tiers.items()
                    },
                )
            activity = _activity(snap)
            active = activity != self._seen
            changed = active or snap != self.last
            self.last, self._seen = snap, activity
            if active:
                self.samples.append(_sample(snap, time.time()))
            if changed:
                self._redraw()
            return snap

    def rows(self) -> list[dict[str, Any]]:
        """The tier table as plain records (one per tier)."""
        return [dataclasses.asdict(t) for t in self.last.tiers.values()]

    def to_frame(self) -> pd.DataFrame:
        """The last snapshot as a DataFrame, one row per tier."""
        return self.last.to_frame()

    # -- clearing with confirmation --------------------------------------------------------------
    def request_clear(self, tier: str) -> str:
        """Step one of clearing a tier: remember it and ask for confirmation."""
        if tier not in self.cache.tier_names:
            raise ValueError(f"no tier {tier!r}; this cache has {', '.join(self.cache.tier_names)}")
        t = self.last.tiers.get(tier)
        count = "" if t is None or t.entries is None else f" ({t.entries} entries)"
        self.pending_clear = tier
        self.message = f"Clear every entry of tier {tier}{count}? Press Confirm."
        self._redraw()
        return self.message

    def confirm_clear(self) -> int:
        """Step two: clear the tier asked for by `request_clear`; the number of entries removed."""
        tier, self.pending_clear = self.pending_clear, None
        if tier is None:
            self.message = "Nothing to confirm: choose a tier and press Clear tier first."
            self._redraw()
            return 0
        removed = self.cache.clear(tiers=[tier])
        self.message = f"Cleared {removed} entr{'y' if removed == 1 else 'ies'} from {tier}."
        self.refresh(usage=True)
        self._redraw()
        return removed

    def cancel_clear(self) -> None:
        self.pending_clear = None
        self.message = "Clearing cancelled."
        self._redraw()

    # -- live refresh ----------------------------------------------------------------------------
    def start(self, interval: float | None = None) -> None:
        """Refresh every `interval` seconds in a background thread (also while a cell runs)."""
        interval = interval or self.interval or 2.0
        self.stop()
        self._stop = threading.Event()
        thread = threading.Thread(
            target=_ticker,
            args=(weakref.ref(self), self._stop, interval),
            name="tore-nb-dashboard",
            daemon=True,
        )
        thread.start()

    def stop(self) -> None:
        """Stop the background refresh (after-cell refresh and the button still work)."""
        if self._stop is not None:
            self._stop.set()
            self._stop = None

    @property
    def live(self) -> bool:
        return self._stop is not None

    def close(self) -> None:
        """Stop refreshing and close the widgets."""
        self.stop()
        _Live.dashboards.discard(self)
        if self._widget is not None:
            for w in vars(self.ui).values():
                w.close()
            self._widget.close()
            self._widget = None

    def __del__(self) -> None:
        if self._stop is not None:
            self._stop.set()

    # -- forms -----------------------------------------------------------------------------------
    def to_text(self) -> str:
        snap = self.last
        header = [h for _, h in _COLUMNS]
        rows = [[_tier_cells(t)[k] for k, _ in _COLUMNS] for t in snap.tiers.values()]
        lines = [_summary_text(snap), _text_table(header, rows)]
        if self.message:
            lines.append(self.message)
        return "\n".join(lines)

    def to_html(self) -> str:
        snap = self.last
        message = (
            f'<div class="tore-nb-message" style="{_FONT}">{_esc(self.message)}</div>'
            if self.message
            else ""
        )
        return (
            f'<div class="tore-nb-dashboard">{_summary_html(snap)}{_tier_table_html(snap)}'
            f"{_charts_html(list(self.samples))}{message}</div>"
        )

    def _build(self) -> Any:
        w = _ipywidgets()
        ui = _DashboardUI(
            summary=w.HTML(_summary_html(self.last)),
            table=w.HTML(_tier_table_html(self.last)),
            charts=w.HTML(_charts_html(list(self.samples))),
            refresh_button=w.Button(description="Refresh", icon="refresh", tooltip="Refresh now"),
            live_toggle=w.ToggleButton(
                value=False, description="Live", icon="play", tooltip="Refresh on a timer"
            ),
            tier_select=w.Dropdown(
                options=list(self.cache.tier_names),
                description="Tier",
                layout=w.Layout(width="180px"),
            ),
            clear_button=w.Button(description="Clear tier", button_style="warning", icon="trash"),
            confirm_button=w.Button(
                description="Confirm", button_style="danger", layout=w.Layout(display="none")
            ),
            cancel_button=w.Button(description="Cancel", layout=w.Layout(display="none")),
            message=w.HTML(""),
        )
        self.ui = ui
        ui.refresh_button.on_click(lambda _: self.refresh(usage=True))
        ui.clear_button.on_click(lambda _: self.request_clear(ui.tier_select.value))
        ui.confirm_button.on_click(lambda _: self.confirm_clear())
        ui.cancel_button.on_click(lambda _: self.cancel_clear())
        ui.live_toggle.observe(self._on_live, names="value")
        controls = w.HBox(
            [
                ui.refresh_button,
                ui.live_toggle,
                ui.tier_select,
                ui.clear_button,
                ui.confirm_button,
                ui.cancel_button,
            ]
        )
        box = w.VBox([ui.summary, ui.table, ui.charts, controls, ui.message])
        box.add_class("tore-nb-dashboard")
        _Live.add(self)
        if self.interval:
            ui.live_toggle.value = True  # starts the timer through _on_live
        return box

    def _on_live(self, change: Mapping[str, Any]) -> None:
        if change["new"]:
            self.start()
        else:
            self.stop()
        self.ui.live_toggle.icon = "pause" if change["new"] else "play"

    def _redraw(self) -> None:
        if self._widget is None:
            return
        ui = self.ui
        ui.summary.value = _summary_html(self.last)
        ui.table.value = _tier_table_html(self.last)
        ui.charts.value = _charts_html(list(self.samples))
        ui.message.value = (
            f'<span style="{_FONT}">{_esc(self.message)}</span>' if self.message else ""
        )
        confirming = "inline-flex" if self.pending_clear else "none"
        ui.confirm_button.layout.display = confirming
        ui.cancel_button.layout.display = confirming
        if self.pending_clear:
            ui.confirm_button.description = f"Confirm clear {self.pending_clear}"


@dataclass
class _DashboardUI:
    """The dashboard's widgets, reachable for tests and for users who restyle them."""

    summary: Any
    table: Any
    charts: Any
    refresh_button: Any
    live_toggle: Any
    tier_select: Any
    clear_button: Any
    confirm_button: Any
    cancel_button: Any
    message: Any


def show_dashboard(cache: MultiLevelCache | None = None, **kwargs: Any) -> CacheDashboard:
    """Display a `CacheDashboard` of `cache` (default: `tore_nb.get_cache()`) and return it.

    This is what `%tcache dashboard` calls.
    """
    dashboard = CacheDashboard(cache, **kwargs)
    dashboard.display()
    return dashboard


# -- thumbnails ------------------------------------------------------------------------------------
def _png(pixels: Any) -> bytes:
    """Encode an (h, w, 3) or (h, w) uint8 array as PNG with zlib alone (no Pillow needed)."""
    import numpy as np

    arr = np.ascontiguousarray(pixels, dtype=np.uint8)
    h, w = arr.shape[:2]
    color = 2 if arr.ndim == 3 else 0
    rows = np.hstack([np.zeros((h, 1), np.uint8), arr.reshape(h, -1)])

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def page_thumbnail(path: str | os.PathLike[str], index: int, width: int = 160) -> bytes:
    """A PNG of one page (0-based `index`) of a PDF, `width` pixels wide.

    >>> page_thumbnail("../shared/data/pdfs/dmca.pdf", 0)[:4]  # doctest: +SKIP
    b'\\x89PNG'
    """
    from .incremental.documents import open_pdfium

    pdf = open_pdfium(path)
    try:
        page = pdf[index]
        scale = width / max(page.get_width(), 1.0)
        bitmap = page.render(scale=scale, rev_byteorder=True)
        pixels = bitmap.to_numpy()
        if pixels.ndim == 3 and pixels.shape[2] == 4:
            pixels = pixels[:, :, :3]
        return _png(pixels)
    finally:
        pdf.close()


# -- the change report view ------------------------------------------------------------------------
@dataclass(frozen=True)
class PageRow:
    """One page of one document in a run: its change status and how each stage was served."""

    document: str
    path: str
    page: int | None
    status: str
    old_position: int | None
    new_position: int | None
    identity: str
    served: Mapping[str, str]
    seconds: float
    error: str | None


def page_rows(run: RunResult) -> list[PageRow]:
    """The run's report events folded to one row per page (stages as columns)."""
    rows: dict[tuple[str, int | None, int | None], dict[str, Any]] = {}
    for e in run.events:
        key = (e.path, e.new_position, e.old_position)
        row = rows.setdefault(
            key,
            {
                "document": e.document,
                "path": e.path,
                "page": e.page,
                "status": e.status,
                "old_position": e.old_position,
                "new_position": e.new_position,
                "identity": e.identity,
                "served": {},
                "seconds": 0.0,
                "error": None,
            },
        )
        if e.stage is not None:
            row["served"][e.stage] = e.served_by
        row["seconds"] += e.seconds
        if e.error and not row["error"]:
            row["error"] = f"{e.stage}: {e.error}"
    return [PageRow(**r) for r in rows.values()]


def _position(row: PageRow) -> str:
    """Where the page is: `3`, `2 -> 3` when it moved, `19 (new)`, `9 (removed)`."""
    old, new = row.old_position, row.new_position
    if old is None:
        return f"{new} (new)"
    if new is None:
        return f"{old} (removed)"
    return str(new) if old == new else f"{old} -> {new}"


_SHOWN = ("added", "modified", "moved", "removed")


class ChangeReportView(_View):
    """An incremental run's change report: status colours, a summary per document, thumbnails.

    `previous` maps a document's path (or file name) to a copy of its previous version, so
    modified and removed pages can be shown beside what they were. Thumbnails are rendered
    from the files as they are when the view is drawn.

    >>> from tore_nb.incremental.processor import RunResult
    >>> print(ChangeReportView(RunResult((), (), (), {}, 0.0)).to_text().splitlines()[-1])
    no pages changed
    """

    def __init__(
        self,
        run: RunResult,
        *,
        previous: Mapping[str, str | os.PathLike[str]] | None = None,
        thumbnails: bool = True,
        max_thumbnails: int = 8,
        thumb_width: int = 150,
        changed_only: bool = True,
        max_rows: int = 200,
    ) -> None:
        self.run = run
        self.previous = {k: os.fspath(v) for k, v in (previous or {}).items()}
        self.thumbnails = thumbnails
        self.max_thumbnails = max_thumbnails
        self.thumb_width = thumb_width
        self.changed_only = changed_only
        self.max_rows = max_rows
        self.pages = page_rows(run)
        self._thumbs: dict[tuple[str, int], bytes | None] = {}

    def __repr__(self) -> str:
        return f"ChangeReportView({len(self.run.documents)} documents, {len(self.pages)} pages)"

    @property
    def report(self) -> pd.DataFrame:
        """The change report DataFrame (one row per page and stage)."""
        return self.run.report()

    @property
    def summary(self) -> pd.DataFrame:
        """One row per document: pages per status, computed, cached, failed."""
        return self.run.summary()

    def styled(self) -> Any:
        """The change report as a pandas Styler with a background colour per status."""

        def colour(row: pd.Series) -> list[str]:
            bg = STATUS_COLORS.get(str(row["status"]), "#fff")
            return [f"background-color: {bg}"] * len(row)

        return self.report.style.apply(colour, axis=1)

    def stages(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.pages:
            seen.update(dict.fromkeys(r.served))
        return list(seen)

    def changed(self) -> list[PageRow]:
        """Rows of pages that changed or whose results were computed or failed."""
        return [
            r
            for r in self.pages
            if r.status != "unchanged"
            or any(s in ("computed", "failed") for s in r.served.values())
        ]

    def _shown(self, changed_only: bool | None = None) -> list[PageRow]:
        only = self.changed_only if changed_only is None else changed_only
        return self.changed() if only else self.pages

    # -- thumbnails ------------------------------------------------------------------------------
    def _previous_file(self, path: str) -> str | None:
        for key in (path, str(Path(path).resolve()), Path(path).name):
            if key in self.previous:
                return self.previous[key]
        resolved = {str(Path(k).resolve()): v for k, v in self.previous.items()}
        return resolved.get(str(Path(path).resolve()))

    def _thumb(self, path: str | None, index: int | None) -> bytes | None:
        if path is None or index is None:
            return None
        key = (path, index)
        if key not in self._thumbs:
            try:
                self._thumbs[key] = page_thumbnail(path, index, self.thumb_width)
            except Exception as exc:  # a missing or changed file: no picture, never an error
                log.debug("no thumbnail for %s page %s: %s", path, index + 1, exc)
                self._thumbs[key] = None
        return self._thumbs[key]

    def thumbnail_pairs(self) -> list[tuple[PageRow, bytes | None, bytes | None]]:
        """(row, previous PNG, current PNG) for the first `max_thumbnails` changed pages."""
        out: list[tuple[PageRow, bytes | None, bytes | None]] = []
        for r in self.pages:
            if r.status not in _SHOWN or r.status == "moved":
                continue
            if len(out) >= self.max_thumbnails:
                break
            before = after = None
            if r.status in ("modified", "removed") and r.old_position is not None:
                before = self._thumb(self._previous_file(r.path), r.old_position - 1)
            if r.status != "removed" and r.new_position is not None:
                after = self._thumb(r.path, r.new_position - 1)
            out.append((r, before, after))
        return out

    # -- forms -----------------------------------------------------------------------------------
    def _summary_rows(self) -> tuple[list[str], list[list[str]]]:
        frame = self.run.summary()
        return [str(c) for c in frame.columns], [[str(v) for v in r] for r in frame.to_numpy()]

    def _page_table(self, rows: Sequence[PageRow]) -> tuple[list[str], list[list[str]]]:
        stages = self.stages()
        header = ["document", "page", "status", "position", "identity", *stages, "seconds"]
        body = [
            [
                r.document,
                "-" if r.page is None else str(r.page),
                r.status,
                _position(r),
                r.identity[:12],
                *(r.served.get(s, "-") for s in stages),
                f"{r.seconds:.3f}",
            ]
            for r in rows
        ]
        return header, body

    def to_text(self) -> str:
        head, rows = self._summary_rows()
        parts = [_text_table(head, rows)] if rows else []
        for path, why in self.run.failures.items():
            parts.append(f"FAILED {path}: {why}")
        shown = self._shown()
        if shown:
            header, body = self._page_table(shown[: self.max_rows])
            parts.append(_text_table(header, body))
            if len(shown) > self.max_rows:
                parts.append(f"... {len(shown) - self.max_rows} more pages")
        else:
            parts.append("no pages changed")
        return "\n".join(parts)

    def _report_html(self, rows: Sequence[PageRow]) -> str:
        if not rows:
            return f'<div style="{_FONT}">no pages changed</div>'
        header, body = self._page_table(rows[: self.max_rows])
        cells = []
        for r, values in zip(rows, body, strict=False):
            out = [_esc(v) for v in values]
            out[2] = f"<b>{out[2]}</b>"
            for i, v in enumerate(values[5:-1], start=5):
                if v == "computed":
                    out[i] = f'<span style="font-weight:600">{out[i]}</span>'
                elif v == "failed":
                    out[i] = (
                        f'<span style="color:#c62828;font-weight:600" title="'
                        f'{_esc(r.error or "")}">{out[i]}</span>'
                    )
            cells.append(out)
        attrs = [
            f'data-status="{_esc(r.status)}" style="background:'
            f'{STATUS_COLORS.get(r.status, "#fff")}"'
            for r in rows[: self.max_rows]
        ]
        more = (
            f'<div style="{_FONT}">... {len(rows) - self.max_rows} more pages</div>'
            if len(rows) > self.max_rows
            else ""
        )
        return _html_table(header, cells, css_class="tore-nb-report", row_attrs=attrs) + more

    def _summary_html(self) -> str:
        head, rows = self._summary_rows()
        failures = "".join(
            f'<div style="color:#c62828;{_FONT}">FAILED {_esc(p)}: {_esc(w)}</div>'
            for p, w in self.run.failures.items()
        )
        if not rows:
            return failures
        return (
            _html_table(head, [[_esc(c) for c in r] for r in rows], css_class="tore-nb-summary")
            + failures
        )

    def _thumbs_html(self) -> str:
        if not self.thumbnails:
            return ""
        figures = []
        for r, before, after in self.thumbnail_pairs():

            def img(data: bytes | None, label: str) -> str:
                if data is None:
                    return (
                        f'<div style="width:{self.thumb_width}px;height:60px;border:1px dashed '
                        f"#bbb;color:#999;font-size:11px;display:flex;align-items:center;"
                        f'justify-content:center">{_esc(label)}</div>'
                    )
                src = base64.b64encode(data).decode("ascii")
                return (
                    f'<img src="data:image/png;base64,{src}" alt="{_esc(label)}" '
                    f'style="width:{self.thumb_width}px;border:1px solid #ccc"/>'
                )

            def labelled(data: bytes | None, label: str, missing: str) -> str:
                return (
                    f'<div><div style="font-size:10px;color:#666">{label}</div>'
                    f"{img(data, missing)}</div>"
                )

            pair = []
            if r.status in ("modified", "removed"):
                pair.append(labelled(before, "before", "previous version not given"))
            if r.status != "removed":
                pair.append(labelled(after, "now", "page not readable"))
            caption = (
                f"{_esc(r.document)} p.{_esc(_position(r))} "
                f'<b style="background:{STATUS_COLORS.get(r.status, "#fff")}">'
                f"{_esc(r.status)}</b>"
            )
            figures.append(
                f'<figure style="display:inline-block;margin:4px 12px 8px 0;{_FONT}">'
                f'<div style="display:flex;gap:4px">{"".join(pair)}</div>'
                f"<figcaption>{caption}</figcaption></figure>"
            )
        return f'<div class="tore-nb-thumbnails">{"".join(figures)}</div>' if figures else ""

    def to_html(self) -> str:
        return (
            f'<div class="tore-nb-change-report">{self._summary_html()}'
            f"{self._thumbs_html()}{self._report_html(self._shown())}</div>"
        )

    def _build(self) -> Any:
        w = _ipywidgets()
        documents = ["all documents", *dict.fromkeys(r.document for r in self.pages)]
        doc_select = w.Dropdown(options=documents, description="Document")
        only = w.ToggleButtons(
            options=[("changed pages", True), ("all pages", False)],
            value=self.changed_only,
        )
        table = w.HTML()

        def redraw(_: Any = None) -> None:
            rows = self._shown(only.value)
            if doc_select.value != "all documents":
                rows = [r for r in rows if r.document == doc_select.value]
            table.value = self._report_html(rows)

        doc_select.observe(redraw, names="value")
        only.observe(redraw, names="value")
        redraw()
        parts = [w.HTML(self._summary_html())]
        thumbs = self._thumbs_html()
        if thumbs:
            parts.append(w.HTML(thumbs))
        parts += [w.HBox([doc_select, only]), table]
        return w.VBox(parts)


# -- progress of a run -----------------------------------------------------------------------------
class RunProgress(_View):
    """A progress callback for `IncrementalProcessor` and its executors, Ray included.

    Executors report pages done of those dispatched (`start`, `advance`, `close`); `finish(run)`
    adds the pages served from the cache and the failures. `track` does both. The widget is
    shown on `start` when in a kernel; redraws are throttled to `min_interval` seconds.

    >>> p = RunProgress(show=False); p.start(4, "pages"); p.advance(3); str(p)
    'pages: 3/4 done, 0 cached, 0 failed...'
    """

    def __init__(self, *, show: bool = True, min_interval: float = 0.1) -> None:
        self.show = show
        self.min_interval = min_interval
        self.description = "pages"
        self.total = self.done = self.cached = self.failed = self.pages = 0
        self.finished = False
        self._t0 = self._t1 = 0.0
        self._drawn = 0.0
        self._lock = threading.Lock()
        self._bar: Any = None
        self._label: Any = None

    def __repr__(self) -> str:
        return f"RunProgress({self.to_text()!r})"

    # the Progress protocol of tore_nb.incremental.progress
    def start(self, total: int, description: str = "") -> None:
        with self._lock:
            self.total, self.done, self.description = total, 0, description or "pages"
            self.finished = False
            self._t0, self._t1 = time.perf_counter(), 0.0
        if self.show and self._widget is None and _in_kernel() and _widgets_available():
            self.display()
        self._redraw(force=True)

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
        self._redraw()

    def close(self) -> None:
        with self._lock:
            self._t1 = time.perf_counter()
        self._redraw(force=True)
        self._update_display()

    def finish(self, run: RunResult) -> None:
        """Count the run's pages: computed, served from the cache, failed."""
        rows = [r for r in page_rows(run) if r.new_position is not None]
        with self._lock:
            self.pages = len(rows)
            self.failed = sum(any(s == "failed" for s in r.served.values()) for r in rows)
            self.cached = sum(
                bool(r.served) and all(s not in ("computed", "failed") for s in r.served.values())
                for r in rows
            )
            if not self.total:
                self.total = self.done = self.pages - self.cached
            if not self._t1:
                self._t1 = self._t0 + run.seconds if self._t0 else run.seconds
            self.finished = True
        self._redraw(force=True)
        self._update_display()

    def track(self, processor: Any, paths: Any, **kwargs: Any) -> RunResult:
        """Run `processor.process(paths, progress=self, **kwargs)` and `finish` with its result."""
        self._t0 = time.perf_counter()
        run: RunResult = processor.process(paths, progress=self, **kwargs)
        self.finish(run)
        return run

    @property
    def seconds(self) -> float:
        if not self._t0:
            return 0.0
        return (self._t1 or time.perf_counter()) - self._t0

    def to_text(self) -> str:
        text = (
            f"{self.description}: {self.done}/{self.total} done, {self.cached} cached, "
            f"{self.failed} failed"
        )
        if self.finished:
            return f"{text} ({self.pages} pages in {self.seconds:.2f} s)"
        return f"{text}..."

    def _style(self) -> str:
        if self.failed:
            return "danger" if self.failed >= max(self.pages, 1) else "warning"
        return "success" if self.finished or (self._t1 and self.done >= self.total) else ""

    def to_html(self) -> str:
        frac = self.done / self.total if self.total else (1.0 if self.finished else 0.0)
        color = {"danger": "#c62828", "warning": "#ef6c00", "success": "#2e7d32"}.get(
            self._style(), "#4c78a8"
        )
        return (
            f'<div class="tore-nb-progress" style="{_FONT}">'
            f'<div style="width:260px;height:10px;background:#eee;display:inline-block;'
            f'vertical-align:middle;margin-right:8px"><div style="height:10px;'
            f'width:{round(260 * min(frac, 1.0))}px;background:{color}"></div></div>'
            f"{_esc(self.to_text())}</div>"
        )

    def _build(self) -> Any:
        w = _ipywidgets()
        bar = w.IntProgress(min=0, max=max(self.total, 1), value=min(self.done, self.total))
        label = w.HTML()
        self._bar, self._label = bar, label
        box = w.HBox([bar, label])
        self._redraw(force=True)
        return box

    def _redraw(self, force: bool = False) -> None:
        if self._bar is None:
            return
        now = time.perf_counter()
        if not force and now - self._drawn < self.min_interval and self.done < self.total:
            return
        self._drawn = now
        self._bar.max = max(self.total, 1)
        self._bar.value = min(self.done, self._bar.max)
        self._bar.bar_style = self._style()
        counts = (
            f"<b>{self.done}</b>/{self.total} {_esc(self.description)} done &middot; "
            f"<b>{self.cached}</b> cached &middot; <b>{self.failed}</b> failed &middot; "
            f"{self.seconds:.1f} s"
        )
        self._label.value = f'<span style="{_FONT}">{counts}</span>'
