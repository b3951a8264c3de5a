"""The cache dashboard: a live view of a cache's tiers over `MetricsSnapshot`s.

`CacheDashboard(cache)` shows per tier the hit rate, entries, size, latency and breaker state
(with errors and failed verifications beside it), the other figures under "Details", the compute
time saved, and charts of hit rate and latency over the last minutes. It refreshes after every
cell, on a timer while Live is on, and on its button; a tier can be cleared from it after a
confirmation. `%tcache dashboard` returns one, which IPython displays.

What a refresh costs: the counters are in-process and free. Entries and sizes are a call to
each tier; for a shared tier (Redis, S3) a billed request, for S3 a listing. So a refresh asks
a local tier again only when its counters moved, and a shared tier only when its counters moved
and `remote_usage_every` seconds (5 min) have passed; the Refresh button asks every tier now.
An idle dashboard, Live or not, sends no request to any store.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .base import View, ipywidgets_module
from .charts import Sample, charts_html, take_sample
from .figures import details_table_html, text_rows, tier_table_html
from .tables import FONT, MUTED, esc, fmt_pct, text_table

if TYPE_CHECKING:
    import pandas as pd

    from ..stats import MetricsSnapshot, TierSnapshot
    from ..tiered import MultiLevelCache

log = logging.getLogger("tore_nb.widgets")


def _activity(snap: MetricsSnapshot) -> tuple[Any, ...]:
    """What changes when the cache is used; a refresh with the same activity draws nothing new."""
    return (snap.total_requests, snap.saved_seconds, *map(_tier_activity, snap.tiers.values()))


def _tier_activity(t: TierSnapshot) -> tuple[Any, ...]:
    """A tier's counters that move when it is used (and its entries or size may change)."""
    return (t.hits, t.misses, t.sets, t.errors, t.deletes, t.corrupt, t.promotions, t.state)


def _summary_text(snap: MetricsSnapshot) -> str:
    return (
        f"tore_nb cache: hit rate {fmt_pct(snap.overall_hit_rate)}, "
        f"{snap.total_requests} requests, {snap.hits} hits, {snap.misses} misses, "
        f"saved {snap.saved_seconds:.2f} s"
    )


def _summary_html(snap: MetricsSnapshot) -> str:
    # no colours of its own: the front-end's text on the front-end's background, labels fainter
    def stat(label: str, value: str, key: str) -> str:
        return (
            f'<div style="display:inline-block;margin:0 18px 6px 0">'
            f'<div style="font-size:11px;{MUTED}">{esc(label)}</div>'
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


def _counted_html(counted: Mapping[str, float], shared: Iterable[str]) -> str:
    """When the entries and sizes of the shared tiers were last counted."""
    when = [
        f"{esc(n)} at {time.strftime('%H:%M:%S', time.localtime(counted[n]))}"
        for n in shared
        if n in counted
    ]
    if not when:
        return ""
    return (
        f'<div class="tore-nb-counted" style="{FONT};font-size:11px;{MUTED}">entries and sizes '
        f"counted: {', '.join(when)} (Refresh counts again)</div>"
    )


class Live:
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

    `interval` seconds between refreshes while Live is on (None: only after cells and on the
    button). Entries and sizes are asked of a local tier at most every `usage_every` seconds and
    only when its counters moved, of a shared tier (Redis, S3) at most every
    `remote_usage_every` seconds (None: only on Refresh) and only when its counters moved.
    Clearing a tier takes two clicks: "Clear tier", then "Confirm".

    >>> import tempfile
    >>> from tore_nb import CacheConfig, MultiLevelCache
    >>> cache = MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp()))
    >>> dash = CacheDashboard(cache, interval=None)
    >>> cache.get("missing") is None, dash.refresh().misses
    (True, 1)
    >>> dash.request_clear("disk"); dash.confirm_clear()
    'Clear every entry of tier disk (0 entries now)? Press Confirm.'
    0
    """

    def __init__(
        self,
        cache: MultiLevelCache | None = None,
        *,
        interval: float | None = 2.0,
        usage_every: float = 0.0,
        remote_usage_every: float | None = 300.0,
        history: int = 2000,
    ) -> None:
        if cache is None:
            from ..tiered import get_cache

            cache = get_cache()
        self.cache = cache
        self.interval = interval
        self.usage_every = usage_every
        self.remote_usage_every = remote_usage_every
        self.samples: deque[Sample] = deque(maxlen=history)
        self.message = ""
        self.pending_clear: str | None = None
        self.asked: int | None = None  # the entries counted when clearing was asked
        self.details_open = False
        self._lock = threading.RLock()
        self._stop: threading.Event | None = None
        #: tiers other machines share: their entries and sizes cost a request (S3: a listing)
        self.shared = tuple(
            n
            for n in cache.tier_names
            if getattr(getattr(cache.tier(n), "capabilities", None), "shared", False)
        )
        #: per tier: the counters at its last count of entries and sizes, and when (monotonic)
        self._counted_at: dict[str, tuple[tuple[Any, ...], float]] = {}
        #: per tier: when its entries and sizes were last counted (Unix time, shown)
        self.counted: dict[str, float] = {}
        # one count of every tier when the dashboard is made: what it shows first
        self.last: MetricsSnapshot = cache.snapshot(usage=True)
        self._note_counted(self.last, self.last.tiers)
        self._seen = _activity(self.last)
        self.samples.append(take_sample(self.last, time.time()))

    def __repr__(self) -> str:
        return f"CacheDashboard({self.cache!r})"

    # -- data ------------------------------------------------------------------------------------
    def refresh(self, usage: bool | None = None) -> MetricsSnapshot:
        """Take a fresh snapshot, record a chart sample when something happened, redraw.

        `usage` True counts the entries and sizes of every tier now (a listing for S3), False
        none; None counts those that are due (see the class).
        """
        with self._lock:
            if usage:
                snap = self.cache.snapshot(usage=True)
                self._note_counted(snap, snap.tiers)
            else:
                # the counters only: in-process, no request to any store
                snap = self._with_usage(self.cache.snapshot(usage=False), usage is None)
            activity = _activity(snap)
            active = activity != self._seen
            changed = active or snap != self.last
            self.last, self._seen = snap, activity
            if active:
                self.samples.append(take_sample(snap, time.time()))
            if changed:
                self._redraw()
            return snap

    def _note_counted(self, snap: MetricsSnapshot, names: Iterable[str]) -> None:
        now, wall = time.monotonic(), time.time()
        for n in names:
            self._counted_at[n] = (_tier_activity(snap.tiers[n]), now)
            self.counted[n] = wall

    def _due(self, snap: MetricsSnapshot) -> tuple[list[str], bool]:
        """Local tiers whose counters moved since their last count (throttled), and whether a
        shared tier is due too."""
        now = time.monotonic()
        local, remote = [], False
        for n, t in snap.tiers.items():
            seen, at = self._counted_at.get(n, (None, float("-inf")))
            if seen == _tier_activity(t):
                continue  # nothing happened there: its entries and size are as counted
            if n not in self.shared:
                if now - at >= self.usage_every:
                    local.append(n)
            elif self.remote_usage_every is not None and now - at >= self.remote_usage_every:
                remote = True
        return local, remote

    def _with_usage(self, snap: MetricsSnapshot, count_due: bool) -> MetricsSnapshot:
        """`snap` with entries and sizes: counted again where due, else the last known."""
        local, remote = self._due(snap) if count_due else ([], False)
        if remote:  # rare: every tier through the cache's guards, shared ones included
            full = self.cache.snapshot(usage=True)
            self._note_counted(full, full.tiers)
            return full
        fresh: dict[str, TierSnapshot] = {}
        for n in local:
            try:
                # a local tier (memory, disk) answers from this machine: no billed request
                u = self.cache.tier(n).usage()
            except Exception:  # a statistic that fails is no error of the user's
                log.debug("usage of tier %s failed", n, exc_info=True)
                continue
            size = None if u.size_bytes is None else u.size_bytes / (1024 * 1024)
            fresh[n] = dataclasses.replace(snap.tiers[n], entries=u.entries, size_mb=size)
        self._note_counted(snap, fresh)
        tiers = {}
        for n, t in snap.tiers.items():
            old = self.last.tiers.get(n)
            if n in fresh:
                tiers[n] = fresh[n]
            elif old is not None:
                tiers[n] = dataclasses.replace(t, entries=old.entries, size_mb=old.size_mb)
            else:
                tiers[n] = t
        return dataclasses.replace(snap, tiers=tiers)

    def rows(self) -> list[dict[str, Any]]:
        """The tier table as plain records (one per tier)."""
        return [dataclasses.asdict(t) for t in self.last.tiers.values()]

    def to_frame(self) -> pd.DataFrame:
        """The last snapshot as a DataFrame, one row per tier."""
        return self.last.to_frame()

    # -- clearing with confirmation --------------------------------------------------------------
    def _count(self, tier: str) -> int | None:
        """A tier's entries now (one call to it, on the user's request); None if unknown."""
        try:
            return self.cache.tier(tier).usage().entries
        except Exception:
            log.debug("counting tier %s failed", tier, exc_info=True)
            return None

    def request_clear(self, tier: str) -> str:
        """Step one of clearing a tier: count its entries now, remember it, ask to confirm."""
        if tier not in self.cache.tier_names:
            raise ValueError(f"no tier {tier!r}; this cache has {', '.join(self.cache.tier_names)}")
        n = self._count(tier)
        self.asked = n
        count = "" if n is None else f" ({n} entr{'y' if n == 1 else 'ies'} now)"
        self.pending_clear = tier
        self.message = f"Clear every entry of tier {tier}{count}? Press Confirm."
        self._redraw()
        return self.message

    def confirm_clear(self) -> int:
        """Step two: clear the tier asked for by `request_clear`; the number of entries removed
        (counted as they are removed: entries written since the question go too)."""
        tier, self.pending_clear = self.pending_clear, None
        if tier is None:
            self.message = "Nothing to confirm: choose a tier and press Clear tier first."
            self._redraw()
            return 0
        removed = self.cache.clear(tiers=[tier])
        since = (
            f" ({removed - self.asked} written since you asked)"
            if self.asked is not None and removed > self.asked
            else ""
        )
        self.message = f"Cleared {removed} entr{'y' if removed == 1 else 'ies'} from {tier}{since}."
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
        Live.dashboards.discard(self)
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
        header, rows, notes = text_rows(self.last)
        lines = [_summary_text(self.last), text_table(header, rows), *notes]
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
        details = (
            f'<details class="tore-nb-details" style="{FONT};margin:4px 0">'
            f"<summary>Details: hits, misses, p95, errors, failed verification, refused writes, "
            f"promoted, writes</summary>{details_table_html(snap)}</details>"
        )
        return (
            f'<div class="tore-nb-dashboard">{_summary_html(snap)}{tier_table_html(snap)}'
            f"{details}{_counted_html(self.counted, self.shared)}"
            f"{charts_html(list(self.samples))}{message}</div>"
        )

    def _build(self) -> Any:
        w = ipywidgets_module()
        ui = _DashboardUI(
            summary=w.HTML(_summary_html(self.last)),
            table=w.HTML(tier_table_html(self.last)),
            details_toggle=w.ToggleButton(
                value=self.details_open,
                description="Details",
                icon="list",
                tooltip="hits, misses, p95, errors, failed verification, refused writes, "
                "promoted, writes",
            ),
            details=w.HTML(
                details_table_html(self.last),
                layout=w.Layout(display="" if self.details_open else "none"),
            ),
            counted=w.HTML(_counted_html(self.counted, self.shared)),
            charts=w.HTML(charts_html(list(self.samples))),
            refresh_button=w.Button(
                description="Refresh",
                icon="refresh",
                tooltip="Refresh now, counting the entries and sizes of every tier (S3: a listing)",
            ),
            live_toggle=w.ToggleButton(
                value=False,
                description="Live",
                icon="play",
                tooltip="Refresh the counters on a timer (no request to any store)",
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
        ui.details_toggle.observe(self._on_details, names="value")
        controls = w.HBox(
            [
                ui.refresh_button,
                ui.live_toggle,
                ui.details_toggle,
                ui.tier_select,
                ui.clear_button,
                ui.confirm_button,
                ui.cancel_button,
            ]
        )
        # the details live in a widget of their own: an HTML <details> would close on redraw
        box = w.VBox(
            [ui.summary, ui.table, ui.details, ui.counted, ui.charts, controls, ui.message]
        )
        box.add_class("tore-nb-dashboard")
        Live.add(self)
        if self.interval:
            ui.live_toggle.value = True  # starts the timer through _on_live
        return box

    def _on_live(self, change: Mapping[str, Any]) -> None:
        if change["new"]:
            self.start()
        else:
            self.stop()
        self.ui.live_toggle.icon = "pause" if change["new"] else "play"

    def _on_details(self, change: Mapping[str, Any]) -> None:
        self.details_open = bool(change["new"])
        self.ui.details.layout.display = "" if self.details_open else "none"

    def _redraw(self) -> None:
        if self._widget is None:
            return
        # a trait set to its current value sends nothing: only what changed reaches the page
        ui = self.ui
        ui.summary.value = _summary_html(self.last)
        ui.table.value = tier_table_html(self.last)
        ui.details.value = details_table_html(self.last)
        ui.counted.value = _counted_html(self.counted, self.shared)
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
    details_toggle: Any
    details: Any
    counted: Any
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
