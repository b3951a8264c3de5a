"""Widgets without a frontend: the state of the widget models after cache activity, the text and
HTML forms, the clear confirmation, live refresh (timer and after-cell hook), run progress."""

from __future__ import annotations

import base64
import doctest
import html
import itertools
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
    from tore_nb.testing import MotoS3, RedisServer

import ipywidgets

from tore_nb import widgets
from tore_nb.widgets.dashboard import Live
from tore_nb.widgets.thumbnails import encode_png


@pytest.fixture
def cache(tmp_path: Path) -> MultiLevelCache:
    return MultiLevelCache(CacheConfig.embedded(tmp_path / "cache"), secret=SECRET)


def tier_cell(table_html: str, tier: str, col: str) -> str:
    """The text of one figure of a tier (by data-tier and data-col), in the main tier table or
    in the details table."""
    for row in re.findall(rf'<tr data-tier="{tier}">(.*?)</tr>', table_html, re.S):
        cell = re.search(rf'<td data-col="{col}"[^>]*>(.*?)</td>', row, re.S)
        if cell:
            return html.unescape(re.sub(r"<[^>]+>", "", cell.group(1))).strip(" \u25cf")
    raise AssertionError(f"no {col} for {tier} in {table_html[:300]}")


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
    assert tier_cell(page, "memory", "hits") == "3"  # in the details table
    assert tier_cell(page, "disk", "hits") == "2"
    assert tier_cell(page, "disk", "entries") == "3"
    assert "<details" in page  # the exported page keeps the details, folded
    assert page.count('class="tore-nb-chart"') == 2  # hit rate and latency over time
    assert "<circle" in page  # one bucket so far: one point per series
    bundle = dash._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}  # no kernel here: no widget view
    frame = dash.to_frame()
    assert frame.loc["memory", "hits"] == 3


def test_main_table_is_narrow_and_details_hold_the_rest(cache: MultiLevelCache) -> None:
    dash = widgets.CacheDashboard(cache, interval=None)
    main = re.search(r'<table class="tore-nb-tiers".*?</table>', dash.to_html(), re.S)
    assert main
    headers = re.findall(r"<th [^>]*>(.*?)</th>", main.group(0))
    assert headers == ["tier", "breaker", "hit rate", "entries", "size MB", "p50 ms"]
    details = re.search(r'<table class="tore-nb-tier-details".*?</table>', dash.to_html(), re.S)
    assert details
    assert re.findall(r"<th [^>]*>(.*?)</th>", details.group(0)) == [
        "tier",
        "hits",
        "misses",
        "p95 ms",
        "errors",
        "failed verification",
        "refused writes",
        "promoted",
        "writes",
    ]
    # every header says what it counts
    assert all('title="' in th for th in re.findall(r"<th [^>]*>", main.group(0)))


def test_one_word_per_figure_and_problems_stay_visible(cache: MultiLevelCache) -> None:
    dash = widgets.CacheDashboard(cache, interval=None)
    stats = cache.metrics.tier("disk")
    stats.corrupt, stats.rejected, stats.errors = 1, 2, 3
    dash.refresh()
    page = dash.to_html()
    shown = re.sub(r"<[^>]+>", " ", page) + " ".join(re.findall(r'title="([^"]*)"', page))
    assert "rejected" not in shown.lower()  # the word that meant two things is gone
    problems = re.search(r'data-problems="disk"[^>]*>(.*?)<', page)
    assert problems and problems.group(1) == "3 errors, 1 failed verification, 2 refused writes"
    assert tier_cell(page, "disk", "corrupt") == "1" and tier_cell(page, "disk", "rejected") == "2"
    assert "disk: 3 errors, 1 failed verification, 2 refused writes" in str(dash)


def test_charts_bucket_hit_rate_by_clock_time() -> None:
    from tore_nb.widgets.charts import Sample, bucketed, charts_html

    # refreshes 0.1 s to 2 s apart for 10 minutes, memory hitting 3 lookups in 4: no zig-zag
    samples, at, n = [], 1_000_000.0, 0
    while at < 1_000_600.0:
        samples.append(Sample(at, 4 * n, 3 * n, {"memory": (3 * n, n, 4 * n, 0.04 * n)}))
        at += 0.1 if n % 2 else 2.0
        n += 1
    (x0, x1), rate, latency = bucketed(samples)
    assert x1 - x0 == pytest.approx(300.0)  # the last 5 minutes
    xs = [x for x, _ in rate["memory"]]
    assert all(b - a == 5.0 for a, b in itertools.pairwise(xs))  # 5 s buckets
    values = [v for _, v in rate["memory"] if v is not None]
    assert len(values) >= 55 and all(v == pytest.approx(75.0) for v in values)
    assert all(v == pytest.approx(0.01) for _, v in latency["memory"] if v is not None)
    page = charts_html(samples)
    assert "hit rate of the lookups in each 5 s, %" in page
    assert "mean lookup latency in each 5 s, ms (log scale)" in page and "p50" not in page
    assert page.count("time (local)") == 2
    assert not re.search(r"last \d", page)  # no "last 0.1 s" labels
    ticks = re.findall(r">(\d\d:\d\d)<", page)
    assert len(ticks) >= 8  # clock times under both charts


def test_latency_chart_shows_the_mean_of_each_buckets_own_lookups() -> None:
    """Regression: a bucket showed the p50 of the tier's last 1024 samples, so after a burst of
    slow lookups the next buckets still showed the burst. Each bucket's point is now the mean
    of the lookups made in it; a bucket without lookups is a gap, not zero."""
    from tore_nb.stats import CacheMetrics
    from tore_nb.widgets.charts import bucketed, charts_html, take_sample

    metrics = CacheMetrics(["disk"])
    disk = metrics.tier("disk")
    t0 = 1_000_000.0  # a bucket boundary
    samples = [take_sample(metrics.snapshot(), t0)]
    for _ in range(600):  # a slow burst: 40 ms each
        disk.miss(40_000_000)
    samples.append(take_sample(metrics.snapshot(), t0 + 4.0))
    for _ in range(100):  # then fast lookups: 20 us each, the ring still mostly slow
        disk.hit(20_000)
    disk.batch(3, 1, 4 * 20_000)  # a batch counts each of its keys
    samples.append(take_sample(metrics.snapshot(), t0 + 9.0))
    samples.append(take_sample(metrics.snapshot(), t0 + 14.0))  # an idle bucket
    disk.hit(1_000_000)
    samples.append(take_sample(metrics.snapshot(), t0 + 19.0))

    assert metrics.snapshot().tiers["disk"].p50_ms == 40.0  # what the chart used to show
    _, _, latency = bucketed(samples)
    by_bucket = dict(latency["disk"])
    assert by_bucket[t0 + 2.5] == pytest.approx(40.0)
    assert by_bucket[t0 + 7.5] == pytest.approx(0.02)  # the fast mean, not the ring's p50
    assert by_bucket[t0 + 12.5] is None  # no lookups: a gap
    assert by_bucket[t0 + 17.5] == pytest.approx(1.0)
    svg = charts_html(samples).split("<svg")[2]
    assert "mean lookup latency in each 5 s, ms (log scale)" in svg
    assert svg.count("<polyline") == 1 and svg.count("<circle") == 1  # split at the gap


def test_views_follow_the_theme(cache: MultiLevelCache) -> None:
    """Backgrounds and text colours come in pairs of theme variables with light fallbacks;
    tints are translucent, so the front-end's own text reads on them in either theme."""
    dash = widgets.CacheDashboard(cache, interval=None)
    page = dash.to_html()
    for th in re.findall(r"<th [^>]*>", page):
        assert "background:var(--jp-layout-color2," in th and "color:var(--jp-ui-font-color1," in th
    assert "#f5f5f5" not in page and '#fff"' not in page
    for svg in re.findall(r"<svg [^>]*>", page):
        assert "background:var(--jp-layout-color0,#ffffff)" in svg
        assert "color:var(--jp-ui-font-color1,#212121)" in svg
    assert all(c == "transparent" or c.startswith("rgba(") for c in widgets.STATUS_COLORS.values())


def test_dashboard_widget_models_follow_the_cache(cache: MultiLevelCache) -> None:
    dash = widgets.CacheDashboard(cache, interval=None)
    box = dash.widget()
    assert isinstance(box, ipywidgets.VBox)
    ui = dash.ui
    assert tier_cell(ui.details.value, "memory", "hits") == "0"
    assert ui.details.layout.display == "none"
    ui.details_toggle.value = True
    assert ui.details.layout.display == ""
    activity(cache)
    ui.refresh_button.click()
    assert tier_cell(ui.details.value, "memory", "hits") == "3"
    assert tier_cell(ui.details.value, "disk", "hits") == "2"
    assert tier_cell(ui.table.value, "memory", "hit_rate") == "50.0%"
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
    assert "Clear every entry of tier disk (4 entries now)" in ui.message.value
    assert len(list(cache.tier("disk").iter_keys())) == 4  # nothing happened yet
    ui.cancel_button.click()
    assert ui.confirm_button.layout.display == "none"
    assert len(list(cache.tier("disk").iter_keys())) == 4
    ui.clear_button.click()
    ui.confirm_button.click()
    assert list(cache.tier("disk").iter_keys()) == []
    assert cache.get("k0") == 0  # the memory tier was left alone
    assert "Cleared 4 entries from disk." in ui.message.value
    assert tier_cell(ui.table.value, "disk", "entries") == "0"
    assert ui.confirm_button.layout.display == "none"
    assert dash.confirm_clear() == 0  # a confirm without a request does nothing
    with pytest.raises(ValueError, match="no tier 'redis'"):
        dash.request_clear("redis")


def test_clear_counts_when_asked_and_says_what_it_removed(cache: MultiLevelCache) -> None:
    dash = widgets.CacheDashboard(cache, interval=None)
    for i in range(3):
        cache.set(f"k{i}", i)
    # no refresh since: the prompt counts the tier itself, not the dashboard's last figures
    assert dash.request_clear("disk") == "Clear every entry of tier disk (3 entries now)? " + (
        "Press Confirm."
    )
    for i in range(3, 5):
        cache.set(f"k{i}", i)  # written between the question and the click
    assert dash.confirm_clear() == 5
    assert dash.message == "Cleared 5 entries from disk (2 written since you asked)."


def test_live_refresh_on_a_timer(cache: MultiLevelCache) -> None:
    dash = widgets.CacheDashboard(cache, interval=0.05)
    dash.widget()
    assert dash.live and dash.ui.live_toggle.value
    cache.set("a", 1)
    cache.get("a")
    deadline = time.monotonic() + 5
    while tier_cell(dash.ui.details.value, "memory", "hits") != "1":
        assert time.monotonic() < deadline, "the timer did not refresh the table"
        time.sleep(0.02)
    dash.ui.live_toggle.value = False
    assert not dash.live
    dash.close()


@pytest.mark.s3
def test_an_idle_live_dashboard_lists_no_bucket(
    tmp_path: Path, moto_server: MotoS3, s3_bucket: str
) -> None:
    """Live refreshes read in-process counters: S3 is listed (a billed request) only on
    Refresh, or at most every `remote_usage_every` seconds after S3 itself was used."""
    cache = MultiLevelCache(
        CacheConfig(
            disk_cache_path=str(tmp_path / "c"),
            s3_cache_bucket=s3_bucket,
            s3_endpoint_url=moto_server.endpoint_url,
            s3_cache_region="us-east-1",
        ),
        secret=SECRET,
    )
    assert "s3" in cache.tier_names
    dash = widgets.CacheDashboard(cache, interval=0.02)  # counts every tier once, when made
    assert dash.shared == ("s3",)
    lists: list[str] = []
    client = cache.tier("s3").client  # type: ignore[attr-defined]
    client.meta.events.register("before-call.s3.ListObjectsV2", lambda **kw: lists.append("L"))
    dash.widget()
    assert dash.live
    cache.set("a", 1)  # local activity: memory and disk are counted again, S3 is not
    cache.get("a")
    deadline = time.monotonic() + 5
    while tier_cell(dash.ui.details.value, "memory", "hits") != "1":
        assert time.monotonic() < deadline, "the timer did not refresh the table"
        time.sleep(0.02)
    for _ in range(3):
        Live.after_cell()  # what runs after every cell
    time.sleep(1.0)  # ~50 timer refreshes while idle
    cache.get("missing")  # S3 itself is asked (a GET): within 5 minutes of the last count
    time.sleep(0.2)
    assert lists == []
    assert tier_cell(dash.ui.table.value, "disk", "entries") == "1"
    dash.ui.refresh_button.click()  # on demand: one listing
    assert len(lists) == 1
    dash.remote_usage_every = 0.0  # "rarely" reached: counted once more, as S3 was used...
    cache.get("missing-too")
    time.sleep(0.3)
    assert len(lists) == 2
    time.sleep(0.3)  # ...and not again while nothing happens
    assert len(lists) == 2
    assert "s3 at " in dash.ui.counted.value
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
    assert tier_cell(dash.ui.details.value, "memory", "hits") == "2"
    samples = len(dash.samples)
    shell.run_cell("1 + 1")  # nothing happened in the cache: no new chart point
    assert len(dash.samples) == samples
    dash.close()
    shell.run_cell("cache.get('x')")
    assert tier_cell(dash.ui.details.value, "memory", "hits") == "2"  # closed: no longer refreshed


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
    assert tier_cell(dash.ui.table.value, "redis", "state").startswith("open")
    assert int(tier_cell(dash.ui.details.value, "redis", "errors")) >= 1
    assert "error" in tier_cell(dash.ui.table.value, "redis", "state")  # not hidden
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
