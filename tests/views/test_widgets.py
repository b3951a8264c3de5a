"""Widgets without a frontend: the state of the widget models after cache activity, the text and
HTML forms, the clear confirmation, live refresh (timer and after-cell hook), run progress."""

from __future__ import annotations

import base64
import doctest
import html
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support import SECRET
from tore_nb.config import CacheConfig
from tore_nb.tiered import MultiLevelCache

if TYPE_CHECKING:
    from tore_nb.testing import RedisServer

import ipywidgets

from tore_nb import widgets
from tore_nb.widgets.thumbnails import encode_png


@pytest.fixture
def cache(tmp_path: Path) -> MultiLevelCache:
    return MultiLevelCache(CacheConfig.embedded(tmp_path / "cache"), secret=SECRET)


def tier_cell(table_html: str, tier: str, col: str) -> str:
    """The text of one cell of the tier table (by data-tier and data-col)."""
    row = re.search(rf'<tr data-tier="{tier}">(.*?)</tr>', table_html, re.S)
    assert row, f"no row for {tier} in {table_html[:200]}"
    cell = re.search(rf'<td data-col="{col}"[^>]*>(.*?)</td>', row.group(1), re.S)
    assert cell
    return html.unescape(re.sub(r"<[^>]+>", "", cell.group(1))).strip(" \u25cf")


def activity(cache: MultiLevelCache) -> None:
    """3 writes, 3 memory hits, then after emptying memory 2 disk hits and 1 miss."""
    for i in range(3):
        cache.set(f"k{i}", i)
    for i in range(3):
        assert cache.get(f"k{i}") == i
    cache.clear(tiers=["memory"])
    assert cache.get("k0") == 0 and cache.get("k1") == 1
    assert cache.get("nope") is None


def test_import_is_light() -> None:
    code = (
        "import sys, tore_nb.widgets; "
        "print([m for m in ('ipywidgets', 'IPython', 'pandas') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_doctests() -> None:
    result = doctest.testmod(widgets, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_dashboard_text_and_html(cache: MultiLevelCache) -> None:
    dash = widgets.CacheDashboard(cache, interval=None)
    activity(cache)
    snap = dash.refresh(usage=True)
    assert snap.tiers["memory"].hits == 3 and snap.tiers["disk"].hits == 2
    text = str(dash)
    assert text.splitlines()[0].startswith("tore_nb cache: hit rate 83.3%, 6 requests, 5 hits")
    memory_line = next(line for line in text.splitlines() if line.startswith("memory"))
    assert memory_line.split()[1:5] == ["closed", "50.0%", "3", "3"]
    page = dash._repr_html_()
    assert tier_cell(page, "memory", "hits") == "3"
    assert tier_cell(page, "disk", "hits") == "2"
    assert tier_cell(page, "disk", "entries") == "3"
    assert page.count('class="tore-nb-chart"') == 2  # hit rate and latency over time
    assert "<circle" in page  # one interval so far: one point per series
    activity(cache)
    dash.refresh()
    assert "<polyline" in dash.to_html()
    bundle = dash._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}  # no kernel here: no widget view
    frame = dash.to_frame()
    assert frame.loc["memory", "hits"] == 6


def test_dashboard_widget_models_follow_the_cache(cache: MultiLevelCache) -> None:
    dash = widgets.CacheDashboard(cache, interval=None)
    box = dash.widget()
    assert isinstance(box, ipywidgets.VBox)
    ui = dash.ui
    assert tier_cell(ui.table.value, "memory", "hits") == "0"
    activity(cache)
    ui.refresh_button.click()
    assert tier_cell(ui.table.value, "memory", "hits") == "3"
    assert tier_cell(ui.table.value, "disk", "hits") == "2"
    assert tier_cell(ui.table.value, "memory", "state") == "closed"
    assert 'data-stat="hit_rate"' in ui.summary.value and "83.3%" in ui.summary.value
    assert ui.charts.value.count("<svg") == 2
    assert list(ui.tier_select.options) == ["memory", "disk"]
    cache.metrics.record_saved(12.5)
    dash.refresh()
    assert "12.50 s" in ui.summary.value
    dash.close()


def test_clearing_a_tier_needs_confirmation(cache: MultiLevelCache) -> None:
    dash = widgets.CacheDashboard(cache, interval=None)
    dash.widget()
    ui = dash.ui
    for i in range(4):
        cache.set(f"k{i}", i)
    dash.refresh(usage=True)
    ui.tier_select.value = "disk"
    ui.clear_button.click()
    assert ui.confirm_button.layout.display != "none"
    assert "Clear every entry of tier disk (4 entries)" in ui.message.value
    assert len(list(cache.tier("disk").iter_keys())) == 4  # nothing happened yet
    ui.cancel_button.click()
    assert ui.confirm_button.layout.display == "none"
    assert len(list(cache.tier("disk").iter_keys())) == 4
    ui.clear_button.click()
    ui.confirm_button.click()
    assert list(cache.tier("disk").iter_keys()) == []
    assert cache.get("k0") == 0  # the memory tier was left alone
    assert "Cleared 4 entries from disk" in ui.message.value
    assert tier_cell(ui.table.value, "disk", "entries") == "0"
    assert ui.confirm_button.layout.display == "none"
    assert dash.confirm_clear() == 0  # a confirm without a request does nothing
    with pytest.raises(ValueError, match="no tier 'redis'"):
        dash.request_clear("redis")


def test_live_refresh_on_a_timer(cache: MultiLevelCache) -> None:
    dash = widgets.CacheDashboard(cache, interval=0.05)
    dash.widget()
    assert dash.live and dash.ui.live_toggle.value
    cache.set("a", 1)
    cache.get("a")
    deadline = time.monotonic() + 5
    while tier_cell(dash.ui.table.value, "memory", "hits") != "1":
        assert time.monotonic() < deadline, "the timer did not refresh the table"
        time.sleep(0.02)
    dash.ui.live_toggle.value = False
    assert not dash.live
    dash.close()


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Any]:
    """An IPython shell of the test's own (history in memory), put away afterwards."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    main, hook = sys.modules["__main__"], sys.displayhook
    cfg = Config()
    cfg.HistoryManager.hist_file = ":memory:"
    cls: Any = InteractiveShell
    existing = cls.initialized()
    ip = cls.instance(config=cfg, ipython_dir=str(tmp_path / "ipython"))
    try:
        yield ip
    finally:
        if not existing:
            cls.clear_instance()
            sys.modules["__main__"], sys.displayhook = main, hook


def test_refresh_after_each_cell(cache: MultiLevelCache, shell: Any) -> None:
    dash = widgets.CacheDashboard(cache, interval=None)
    dash.widget()  # registers the after-cell hook on the current shell
    shell.user_ns["cache"] = cache
    shell.run_cell("cache.set('x', 1); cache.get('x'); cache.get('x')")
    assert tier_cell(dash.ui.table.value, "memory", "hits") == "2"
    samples = len(dash.samples)
    shell.run_cell("1 + 1")  # nothing happened in the cache: no new chart point
    assert len(dash.samples) == samples
    dash.close()
    shell.run_cell("cache.get('x')")
    assert tier_cell(dash.ui.table.value, "memory", "hits") == "2"  # closed: no longer refreshed


def test_breaker_state_is_shown_when_redis_goes_away(
    tmp_path: Path, private_redis: RedisServer
) -> None:
    server = private_redis
    cache = MultiLevelCache(
        CacheConfig(disk_cache_path=str(tmp_path / "c"), redis_url=server.url),
        secret=SECRET,
    )
    dash = widgets.CacheDashboard(cache, interval=None)
    dash.widget()
    cache.set("a", 1)
    server.kill()
    for i in range(4):
        cache.get(f"missing{i}")
    dash.refresh(usage=True)
    assert tier_cell(dash.ui.table.value, "redis", "state") == "open"
    assert int(tier_cell(dash.ui.table.value, "redis", "errors")) >= 1
    assert re.search(r"^redis\s+open", str(dash), re.M)


# -- change report ---------------------------------------------------------------------------------
@pytest.fixture
def two_runs(tmp_path: Path, sample_data: Path, cache: MultiLevelCache) -> tuple[Any, Path, Path]:
    from tore_nb.incremental.builtin import text_stage
    from tore_nb.incremental.processor import IncrementalProcessor

    v1, v2 = sample_data / "pdfs" / "dmca.pdf", sample_data / "pdfs" / "dmca_v2.pdf"
    work = tmp_path / "report.pdf"
    shutil.copy(v1, work)
    proc = IncrementalProcessor(cache, stages=[text_stage()])
    proc.process([work])
    shutil.copy(v2, work)
    return proc.process([work]), work, v1


def test_change_report_view(two_runs: tuple[Any, Path, Path]) -> None:
    run, work, v1 = two_runs
    view = widgets.ChangeReportView(run, previous={str(work): v1})
    changed = [(r.page, r.status) for r in view.changed()]
    assert changed == [(3, "modified"), (7, "modified"), (19, "added")]
    text = str(view)
    assert "incremental" in text and re.search(r"report\.pdf\s+19\s+added", text)
    page = view._repr_html_()
    assert page.count('data-status="modified"') == 2 and page.count('data-status="added"') == 1
    pairs = view.thumbnail_pairs()
    assert [(r.page, before is not None, after is not None) for r, before, after in pairs] == [
        (3, True, True),
        (7, True, True),
        (19, False, True),
    ]
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 5 and all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert view.report.shape[0] == 19 and list(view.summary["modified"]) == [2]
    styled = view.styled().to_html()
    assert widgets.STATUS_COLORS["modified"] in styled


def test_change_report_widget_filters(two_runs: tuple[Any, Path, Path]) -> None:
    run, _, _ = two_runs
    view = widgets.ChangeReportView(run, thumbnails=False)
    box = view.widget()
    doc_select, only = box.children[1].children
    table = box.children[2]
    assert table.value.count("<tr data-status") == 3
    only.value = False
    assert table.value.count("<tr data-status") == 19
    doc_select.value = "report.pdf"
    assert table.value.count("<tr data-status") == 19
    assert "previous version not given" not in view.to_html()


def test_thumbnail_without_previous_version(two_runs: tuple[Any, Path, Path]) -> None:
    run, _, _ = two_runs
    page = widgets.ChangeReportView(run, max_thumbnails=1).to_html()
    assert "previous version not given" in page and page.count("data:image/png") == 1


def test_png_encoder_roundtrip() -> None:
    np = pytest.importorskip("numpy")
    image = pytest.importorskip("PIL.Image")
    import io

    pixels = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    back = np.asarray(image.open(io.BytesIO(encode_png(pixels))))
    assert (back == pixels).all()


# -- progress --------------------------------------------------------------------------------------
def test_run_progress_counts_and_widget(two_runs: tuple[Any, Path, Path]) -> None:
    run, _, _ = two_runs
    progress = widgets.RunProgress(show=False, min_interval=0)
    progress.widget()
    progress.start(3, "pages")
    assert progress._bar.max == 3 and progress._bar.value == 0
    progress.advance(2)
    assert progress._bar.value == 2 and "<b>2</b>/3 pages done" in progress._label.value
    progress.advance(1)
    progress.close()
    progress.finish(run)
    assert (progress.done, progress.cached, progress.failed, progress.pages) == (3, 16, 0, 19)
    assert progress._bar.bar_style == "success"
    assert str(progress).startswith("pages: 3/3 done, 16 cached, 0 failed (19 pages in")
    assert "16 cached" in progress._repr_html_()


def test_run_progress_is_a_progress_callback(tmp_path: Path, sample_data: Path) -> None:
    from tore_nb.incremental.processor import IncrementalProcessor
    from tore_nb.incremental.progress import Progress
    from tore_nb.incremental.stages import PageContext, Stage

    def fails_on_page_2(ctx: PageContext) -> int:
        if ctx.page.index == 1:
            raise RuntimeError("boom")
        return ctx.page.index

    cache = MultiLevelCache(CacheConfig.embedded(tmp_path / "c"), secret=SECRET)
    proc = IncrementalProcessor(cache, stages=[Stage("n", fails_on_page_2)])
    progress = widgets.RunProgress(show=False)
    assert isinstance(progress, Progress)
    progress.track(proc, [sample_data / "pdfs" / "us-001.pdf"])
    assert (progress.done, progress.total, progress.failed, progress.cached) == (3, 3, 1, 0)
    assert progress._style() == "warning"
