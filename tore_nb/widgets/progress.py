"""Run progress: a progress callback for `IncrementalProcessor` that is also a view.

`RunProgress()` follows the Progress protocol of `tore_nb.incremental.progress` (Ray runs
included) and counts pages done, cached and failed; its widget is a bar with those counts.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from .base import View, in_kernel, ipywidgets_module, widgets_available
from .tables import FONT, TRACK, esc

if TYPE_CHECKING:
    from ..incremental.results import RunResult


class RunProgress(View):
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
        if self.show and self._widget is None and in_kernel() and widgets_available():
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
        rows = [e for e in run.events if e.new_position is not None]
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
            f'<div class="tore-nb-progress" style="{FONT}">'
            f'<div style="width:260px;height:10px;background:{TRACK};display:inline-block;'
            f'vertical-align:middle;margin-right:8px"><div style="height:10px;'
            f'width:{round(260 * min(frac, 1.0))}px;background:{color}"></div></div>'
            f"{esc(self.to_text())}</div>"
        )

    def _build(self) -> Any:
        w = ipywidgets_module()
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
            f"<b>{self.done}</b>/{self.total} {esc(self.description)} done &middot; "
            f"<b>{self.cached}</b> cached &middot; <b>{self.failed}</b> failed &middot; "
            f"{self.seconds:.1f} s"
        )
        self._label.value = f'<span style="{FONT}">{counts}</span>'
