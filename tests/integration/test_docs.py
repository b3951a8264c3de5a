"""The docs site builds in strict mode (warnings are errors) and has what it promises: every
notebook rendered with its saved outputs, the API reference from docstrings, examples as code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO, missing

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    for module in ("mkdocs", "material", "mkdocs_jupyter", "mkdocstrings_handlers.python"):
        try:
            __import__(module)
        except ImportError:
            missing(f"{module} (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    if proc.returncode != 0:
        pytest.fail(f"mkdocs build --strict failed:\n{proc.stderr[-4000:]}", pytrace=False)
    return out


def page(site: Path, path: str) -> str:
    file = site / path / "index.html"
    assert file.is_file(), f"{path} was not built"
    return file.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["quickstart", "tiers", "incremental", "dashboard"])
def test_every_notebook_is_a_page_with_its_outputs(site: Path, name: str) -> None:
    html = page(site, f"notebooks/{name}")
    assert "jp-OutputArea" in html or "jp-RenderedText" in html
    assert "Traceback" not in html


def test_notebook_outputs_are_the_saved_ones(site: Path) -> None:
    assert "restored from disk" in page(site, "notebooks/quickstart")
    dashboard = page(site, "notebooks/dashboard")
    assert "tore-nb-tiers" in dashboard  # the dashboard's HTML form, readable without a kernel
    assert "changed_pages=[3, 7, 19]" in page(site, "notebooks/incremental")


def test_api_reference_from_docstrings(site: Path) -> None:
    widgets = page(site, "reference/widgets")
    for name in ("CacheDashboard", "ChangeReportView", "RunProgress", "confirm_clear"):
        assert name in widgets
    cache = page(site, "reference/cache")
    assert "MultiLevelCache" in cache and "CacheConfig" in cache
    # docstring examples (doctests) are rendered as code, not as Markdown text
    assert '<span class="gp">&gt;&gt;&gt; </span>' in cache  # a console prompt, highlighted


def test_sections(site: Path) -> None:
    index = page(site, "")
    for section in ("Tutorials", "How-to guides", "Explanation", "Reference"):
        assert section in index
    for path in (
        "how-to/configure",
        "how-to/binder",
        "explanation/keys",
        "explanation/tiers",
        "explanation/incremental",
        "explanation/security",
        "reference/cli",
    ):
        page(site, path)
