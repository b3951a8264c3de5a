"""The dashboard in a real browser: Voila serves notebooks/dashboard.ipynb on loopback (its kernel
talks to a real Redis), headless Chromium from Debian's packages opens it through Playwright, and
the live widget's tier table must show the hits that the notebook's cells produced. Clearing a
tier from the page goes through the confirmation. Screenshots land in build/browser/.

Needs: voila, playwright (Python) and /usr/bin/chromium (scripts/browser-deps.sh installs it).
With CI=true a missing piece fails the test; elsewhere it skips.
"""

from __future__ import annotations

import ast
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


@pytest.fixture
def voila(tmp_path: Path, redis_url: str) -> Iterator[str]:
    """Voila serving the dashboard notebook on 127.0.0.1; its kernel uses a tmp disk and Redis."""
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
        "REDIS_URL": redis_url,
        # the kernel imports the tore_nb of this checkout, whatever else is installed
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
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
                str(NOTEBOOK),
                "--no-browser",
                f"--port={port}",
                "--Voila.ip=127.0.0.1",
                "--show_tracebacks=True",
            ],
            cwd=REPO / "notebooks",
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
def page() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright (pip install playwright)")
    executable = chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 1000})
        finally:
            browser.close()


def table_hits(page: Any) -> dict[str, int]:
    """Hits per tier as the live widget's table shows them (the first dashboard on the page)."""
    table = page.locator(".jupyter-widgets table.tore-nb-tiers").first
    out = {}
    for row in table.locator("tbody tr").all():
        tier = row.get_attribute("data-tier")
        out[tier] = int(row.locator('td[data-col="hits"]').inner_text())
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
