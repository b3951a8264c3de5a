"""The cache dashboard: a live view of a cache's tiers over `MetricsSnapshot`s.

`CacheDashboard(cache)` shows per tier hit rate, hits, misses, entries, size, latency, errors and
breaker state, the compute time saved, and charts of hit rate and latency over time. It
refreshes after every cell, on a timer while cells run, and on its button; a tier can be
cleared from it after a confirmation. `%tcache dashboard` returns one, which IPython displays.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .base import View, ipywidgets_module
from .charts import TIER_COLORS, Sample, charts_html, take_sample
from .tables import FONT, esc, fmt_num, fmt_pct, html_table, text_table

if TYPE_CHECKING:
    import pandas as pd

    from ..stats import MetricsSnapshot, TierSnapshot
    from ..tiered import MultiLevelCache

log = logging.getLogger("tore_nb.widgets")

_STATE_COLORS = {"closed": "#2e7d32", "half-open": "#ef6c00", "open": "#c62828"}


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
        "hit_rate": fmt_pct(t.hit_rate),
        "hits": str(t.hits),
        "misses": str(t.misses),
        "entries": "-" if t.entries is None else str(t.entries),
        "size_mb": fmt_num(t.size_mb, 2),
        "p50_ms": fmt_num(t.p50_ms),
        "p95_ms": fmt_num(t.p95_ms),
        "errors": str(t.errors),
        "corrupt": str(t.corrupt),
        "promotions": str(t.promotions),
        "sets": str(t.sets),
    }


def _summary_text(snap: MetricsSnapshot) -> str:
    return (
        f"tore_nb cache: hit rate {fmt_pct(snap.overall_hit_rate)}, "
        f"{snap.total_requests} requests, {snap.hits} hits, {snap.misses} misses, "
        f"saved {snap.saved_seconds:.2f} s"
    )


def _summary_html(snap: MetricsSnapshot) -> str:
    def stat(label: str, value: str, key: str) -> str:
        return (
            f'<div style="display:inline-block;margin:0 18px 6px 0">'
            f'<div style="font-size:11px;color:#666">{esc(label)}</div>'
            f'<div data-stat="{key}" style="font-size:20px;font-weight:600">{esc(value)}</div>'
            f"</div>"
        )

    return (
        f'<div class="tore-nb-summary" style="{FONT}">'
        + stat("hit rate", fmt_pct(snap.overall_hit_rate), "hit_rate")
        + stat("requests", str(snap.total_requests), "requests")
        + stat("hits", str(snap.hits), "hits")
        + stat("misses", str(snap.misses), "misses")
        + stat("compute time saved", f"{snap.saved_seconds:.2f} s", "saved_seconds")
        + "</div>"
    )


def _tier_table_html(snap: MetricsSnapshot) -> str:
    rows, attrs = [], []
    for t in snap.tiers.values():
        cells = {k: esc(v) for k, v in _tier_cells(t).items()}
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
        attrs.append(f'data-tier="{esc(t.tier)}"')
    if not rows:
        return f'<div style="{FONT}">this cache has no tiers (caching is off)</div>'
    return html_table(
        [h for _, h in _COLUMNS],
        rows,
        css_class="tore-nb-tiers",
        row_attrs=attrs,
        keys=[k for k, _ in _COLUMNS],
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


class CacheDashboard(View):
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
            from ..tiered import get_cache

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
        self.samples.append(take_sample(self.last, time.time()))

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
                self.samples.append(take_sample(snap, time.time()))
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
        rows = [[c[k] for k, _ in _COLUMNS] for c in map(_tier_cells, snap.tiers.values())]
        lines = [_summary_text(snap), text_table(header, rows)]
        if self.message:
            lines.append(self.message)
        return "\n".join(lines)

    def to_html(self) -> str:
        snap = self.last
        message = (
            f'<div class="tore-nb-message" style="{FONT}">{esc(self.message)}</div>'
            if self.message
            else ""
        )
        return (
            f'<div class="tore-nb-dashboard">{_summary_html(snap)}{_tier_table_html(snap)}'
            f"{charts_html(list(self.samples))}{message}</div>"
        )

    def _build(self) -> Any:
        w = ipywidgets_module()
        ui = _DashboardUI(
            summary=w.HTML(_summary_html(self.last)),
            table=w.HTML(_tier_table_html(self.last)),
            charts=w.HTML(charts_html(list(self.samples))),
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
        ui.charts.value = charts_html(list(self.samples))
        ui.message.value = (
            f'<span style="{FONT}">{esc(self.message)}</span>' if self.message else ""
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
    """Display a `CacheDashboard` of `cache` (default: `tore_nb.get_cache()`) and return it."""
    dashboard = CacheDashboard(cache, **kwargs)
    dashboard.display()
    return dashboard
