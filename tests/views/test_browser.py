"""The dashboard in a real browser: Voila serves notebooks/dashboard.ipynb on loopback (its kernel
talks to a real Redis), headless Chromium from Debian's packages opens it through Playwright, and
the live widget's tier table must show the hits that the notebook's cells produced. Clearing a
tier from the page goes through the confirmation. Screenshots land in build/browser/.

Needs: voila, playwright (Python) and /usr/bin/chromium (scripts/browser-deps.sh installs it).
With CI=true a missing piece fails the test; elsewhere it skips.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO, missing
from tore_nb.testing import free_port

NOTEBOOK = REPO / "notebooks" / "dashboard.ipynb"
SHOTS = REPO / "build" / "browser"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(240)]


def chromium() -> str:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    missing("Debian's chromium (bash scripts/browser-deps.sh)")
    raise AssertionError("unreachable")


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"voila exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"voila did not listen on port {port}:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def serve(notebook: Path, tmp_path: Path, env_extra: dict[str, str]) -> Iterator[str]:
    """Voila serving `notebook` on 127.0.0.1 with a kernel of its own folders; its URL."""
    try:
        import voila as _  # noqa: F401
    except ImportError:
        missing("voila (pip install voila)")
    port = free_port()
    env = {
        **os.environ,
        "DISK_CACHE_PATH": str(tmp_path / "cache"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "TORE_NB_SECRET": "browser-test-secret-0123456789abcdef",
        # the kernel imports the tore_nb of this checkout, whatever else is installed
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        **env_extra,
    }
    for var in ("S3_CACHE_BUCKET", "S3_ENDPOINT_URL", "TORE_NB_TIERS"):
        env.pop(var, None)
    log = tmp_path / "voila.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "voila",
                str(notebook),
                "--no-browser",
                f"--port={port}",
                "--Voila.ip=127.0.0.1",
                "--show_tracebacks=True",
            ],
            cwd=notebook.parent,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_port(port, proc, log, timeout=60)
        yield f"http://127.0.0.1:{port}/"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


@pytest.fixture
def voila(tmp_path: Path, redis_url: str) -> Iterator[str]:
    """Voila serving the dashboard notebook on 127.0.0.1; its kernel uses a tmp disk and Redis."""
    with serve(NOTEBOOK, tmp_path, {"REDIS_URL": redis_url}) as url:
        yield url


@pytest.fixture
def page() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright (pip install playwright)")
    executable = chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield browser.new_page(viewport={"width": 1920, "height": 1080})
        finally:
            browser.close()


def table_hits(page: Any) -> dict[str, int]:
    """Hits per tier as the live widget's details table holds them (the first dashboard on the
    page; read as text, folded or not)."""
    table = page.locator(".jupyter-widgets table.tore-nb-tier-details").first
    out = {}
    for row in table.locator("tbody tr").all():
        tier = row.get_attribute("data-tier")
        out[tier] = int(row.locator('td[data-col="hits"]').text_content())
    return out


def poll(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})")


def test_dashboard_shows_the_notebooks_hits(voila: str, page: Any) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(voila, wait_until="domcontentloaded", timeout=90_000)
    # the live widget (not the static HTML fallback) renders once the kernel is connected
    page.wait_for_selector(".jupyter-widgets table.tore-nb-tiers", timeout=90_000)
    # the notebook prints the hits it produced; the widget's table must show the same figures
    printed = page.get_by_text(re.compile(r"hits per tier: \{")).first
    printed.wait_for(timeout=90_000)
    expected = ast.literal_eval(re.search(r"\{.*\}", printed.inner_text()).group(0))
    assert expected == {"memory": 10, "disk": 5, "redis": 5}
    poll(lambda: table_hits(page) == expected, 30, f"the tier table to show {expected}")
    first = page.locator(".jupyter-widgets").filter(has=page.locator("table.tore-nb-tiers")).first
    summary = page.locator('[data-stat="hit_rate"]').first.inner_text()
    assert summary.endswith("%") and float(summary[:-1]) > 0
    assert page.locator(".jupyter-widgets svg.tore-nb-chart").count() >= 2
    page.screenshot(path=str(SHOTS / "dashboard.png"), full_page=True)
    assert first.is_visible()
    # at 1920 px nothing scrolls sideways: the main table fits a notebook column
    widths = page.evaluate(
        """() => ({page: document.scrollingElement.scrollWidth, view: innerWidth,
                  table: document.querySelector('.jupyter-widgets table.tore-nb-tiers')
                      .getBoundingClientRect().width})"""
    )
    assert widths["page"] <= widths["view"] and widths["table"] < 800, widths

    # clear the disk tier from the page: two clicks, and the table follows
    dropdown = page.locator(".widget-dropdown select").first
    dropdown.select_option("disk")
    page.get_by_role("button", name="Clear tier").first.click()
    confirm = page.get_by_role("button", name="Confirm clear disk").first
    confirm.wait_for(state="visible", timeout=10_000)
    assert page.get_by_text("Clear every entry of tier disk").first.is_visible()
    confirm.click()
    page.get_by_text(re.compile(r"Cleared \d+ entries from disk")).first.wait_for(timeout=10_000)

    def disk_entries() -> bool:
        cell = page.locator(
            '.jupyter-widgets table.tore-nb-tiers tr[data-tier="disk"] td[data-col="entries"]'
        ).first
        return cell.inner_text().strip() == "0"

    poll(disk_entries, 10, "the disk tier's entries to drop to 0")
    page.screenshot(path=str(SHOTS / "dashboard-cleared.png"), full_page=False)
    assert (SHOTS / "dashboard.png").stat().st_size > 10_000


# -- light and dark themes -------------------------------------------------------------------------
VIEWS_NOTEBOOK = """
import shutil
from tore_nb import CacheConfig, MultiLevelCache
from tore_nb.incremental.builtin import text_stage
from tore_nb.incremental.processor import IncrementalProcessor
from tore_nb.widgets import CacheDashboard, ChangeReportView

cache = MultiLevelCache(CacheConfig.embedded({cache!r}))
for i in range(6):
    cache.set(f"k{{i}}", i)
for i in range(8):
    cache.get(f"k{{i}}")
cache.metrics.tier("disk").errors = 2  # a problem shown beside the breaker
proc = IncrementalProcessor(cache, stages=[text_stage()])
shutil.copy({v1!r}, {work!r})
proc.process([{work!r}])
shutil.copy({v2!r}, {work!r})
run = proc.process([{work!r}])
dash = CacheDashboard(cache, interval=None)
dash
---
ChangeReportView(run, previous={{{work!r}: {v1!r}}})
"""

# the WCAG contrast of each element's text against what is painted under it: its own and its
# ancestors' backgrounds, translucent tints composited, opacity applied to the text
CONTRAST_JS = """(selectors) => {
  const parse = (c) => {
    const m = /rgba?\\(([^)]+)\\)/.exec(c || "");
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, under) => [0, 1, 2].map((i) => top[i] * top[3] + under[i] * (1 - top[3]));
  const lum = (c) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  };
  const out = {};
  for (const sel of selectors) {
    let worst = null, count = 0, sample = null;
    for (const el of document.querySelectorAll(sel)) {
      if (!el.textContent.trim()) continue;
      const layers = [];
      let alpha = 1;
      for (let e = el; e; e = e.parentElement) {
        const st = getComputedStyle(e);
        alpha *= Number(st.opacity);
        const c = parse(st.backgroundColor);
        if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
      }
      let bg = [255, 255, 255];
      for (let i = layers.length - 1; i >= 0; i--) bg = over(layers[i], bg);
      const st = getComputedStyle(el);
      const fg = parse(el instanceof SVGElement ? st.fill : st.color);
      const text = over([fg[0], fg[1], fg[2], fg[3] * alpha], bg);
      const [a, b] = [lum(text), lum(bg)].sort((x, y) => y - x);
      const ratio = (a + 0.05) / (b + 0.05);
      count += 1;
      if (worst === null || ratio < worst) {
        worst = ratio;
        sample = {text: el.textContent.trim().slice(0, 30), fg: text, bg};
      }
    }
    out[sel] = {worst, count, sample};
  }
  return out;
}"""

CHECKED = [
    ".tore-nb-tiers th",
    ".tore-nb-tiers td",
    ".tore-nb-tier-details th",
    "[data-problems]",
    ".tore-nb-summary [data-stat]",
    ".tore-nb-summary div > div:first-child",
    "svg.tore-nb-chart text",
    "table.tore-nb-summary th",
    "table.tore-nb-summary td",
    'table.tore-nb-report tr[data-status="modified"] td',
    'table.tore-nb-report tr[data-status="added"] td',
    "b[data-caption]",
    ".tore-nb-thumbnails figcaption",
]


def write_notebook(path: Path, cells: str) -> None:
    """A notebook of code cells (separated by lines of ---), without outputs."""
    nb = {
        "cells": [
            {
                "cell_type": "code",
                "metadata": {},
                "source": c.strip(),
                "outputs": [],
                "execution_count": None,
            }
            for c in cells.split("\n---\n")
        ],
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb))


def test_views_read_in_light_and_dark_themes(tmp_path: Path, page: Any, sample_data: Path) -> None:
    """The dashboard and the change report in Voila's JupyterLab Light and Dark themes: every
    text (headers, captions, tinted rows, chart labels) has a contrast of 4.5 or more."""
    notebook = tmp_path / "views.ipynb"
    pdfs = sample_data / "pdfs"
    write_notebook(
        notebook,
        VIEWS_NOTEBOOK.format(
            cache=str(tmp_path / "nb-cache"),
            v1=str(pdfs / "dmca.pdf"),
            v2=str(pdfs / "dmca_v2.pdf"),
            work=str(tmp_path / "report.pdf"),
        ),
    )
    with serve(notebook, tmp_path, {}) as url:
        for theme, layout0 in (("light", "white"), ("dark", "#111")):
            page.goto(f"{url}?theme={theme}", wait_until="domcontentloaded", timeout=90_000)
            page.wait_for_selector(".jupyter-widgets table.tore-nb-tiers", timeout=90_000)
            page.wait_for_selector(".jupyter-widgets table.tore-nb-report", timeout=90_000)
            page.wait_for_selector(".tore-nb-thumbnails img", timeout=30_000)
            variable = page.evaluate(
                "getComputedStyle(document.body).getPropertyValue('--jp-layout-color0').trim()"
            )
            assert variable == layout0, f"{theme}: the theme was not applied ({variable!r})"
            page.get_by_role("button", name="Details").first.click()
            page.wait_for_selector(".jupyter-widgets table.tore-nb-tier-details", state="visible")
            shot = tmp_path / f"views-{theme}.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            found = page.evaluate(CONTRAST_JS, CHECKED)
            for sel, result in found.items():
                assert result["count"], f"{theme}: nothing matched {sel}"
                assert result["worst"] >= 4.5, f"{theme}: {sel} reads badly: {result}"
            print(theme, {sel: round(r["worst"], 1) for sel, r in found.items()})
            widths = page.evaluate(
                "({page: document.scrollingElement.scrollWidth, view: innerWidth})"
            )
            assert widths["page"] <= widths["view"], f"{theme}: the page scrolls sideways"
