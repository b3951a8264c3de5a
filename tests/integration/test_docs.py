"""The docs site builds in strict mode (warnings are errors) and has what it promises: every
notebook rendered with its saved outputs, the API reference from docstrings, examples as code,
every public name in the reference, and no internal link or #anchor that leads nowhere (which
`--strict` does not check inside rendered notebooks)."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

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


class _Anchors(HTMLParser):
    """The ids (and `<a name>`s) of one HTML page, and the links it makes."""

    LINKING: ClassVar[dict[str, str]] = {
        "a": "href",
        "link": "href",
        "img": "src",
        "script": "src",
        "iframe": "src",
    }

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        if tag == "a" and values.get("name"):
            self.ids.add(str(values["name"]))
        link = values.get(self.LINKING.get(tag, ""))
        if link is not None:
            self.links.append(link)


def parse_site(site: Path) -> dict[Path, _Anchors]:
    pages = {}
    for file in sorted(site.rglob("*.html")):
        parsed = _Anchors()
        parsed.feed(file.read_text(encoding="utf-8"))
        pages[file.resolve()] = parsed
    return pages


def broken_links(site: Path) -> list[str]:
    """Every internal link of every built page whose file or #anchor does not exist."""
    site = site.resolve()
    pages = parse_site(site)
    broken = []
    for file, parsed in pages.items():
        for link in parsed.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc:
                continue  # external: not checked (no network in tests)
            path = unquote(parts.path)
            if not path:
                target = file
            elif path.startswith("/"):  # 404.html links from the site root
                target = (site / path.lstrip("/")).resolve()
            else:
                target = (file.parent / path).resolve()
            if target.is_dir():
                target = target / "index.html"
            where = f"{file.relative_to(site)}: {link}"
            if not target.is_file():
                broken.append(f"{where} (no such page or file)")
            elif (
                parts.fragment
                and target.suffix == ".html"
                and unquote(parts.fragment) not in pages[target].ids
            ):
                broken.append(f"{where} (no such anchor)")
    return broken


def test_every_internal_link_and_anchor_of_the_built_site_resolves(site: Path) -> None:
    broken = broken_links(site)
    assert not broken, "broken links in the built site:\n" + "\n".join(broken)


def test_the_link_check_finds_a_missing_page_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "index.html").write_text(
        '<h2 id="here">x</h2><a href="#here">ok</a><a href="#gone">toc</a>'
        '<a href="dashboard.ipynb">nb</a><a href="https://example.org/x">out</a>'
    )
    assert broken_links(tmp_path) == [
        "a/index.html: #gone (no such anchor)",
        "a/index.html: dashboard.ipynb (no such page or file)",
    ]


#: Public modules: those whose `__all__` is pinned in tests/core/test_package.py.
PUBLIC_MODULES = (
    "tore_nb",
    "tore_nb.cells",
    "tore_nb.incremental",
    "tore_nb.tiers",
    "tore_nb.widgets",
)
#: Names kept importable from `tore_nb` outside `__all__`, that the reference names as such.
SEED_NAMES = ("CacheManager",)


def reference_ids(site: Path) -> set[str]:
    """The mkdocstrings object anchors of the reference: dotted paths such as `tore_nb.x.Y`."""
    ids: set[str] = set()
    for file in (site / "reference").rglob("*.html"):
        ids |= set(re.findall(r'id="(tore_nb(?:\.\w+)*)"', file.read_text(encoding="utf-8")))
    return ids


def resolve(path: str) -> Any:
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            obj = getattr(obj, part, None)
        return obj
    return None


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_public_name_is_in_the_api_reference(site: Path, module: str) -> None:
    """Each name of `__all__` has its object anchor, under its own or its defining module."""
    ids = reference_ids(site)
    by_name: dict[str, list[Any]] = {}
    for anchor in ids:
        by_name.setdefault(anchor.rsplit(".", 1)[-1], []).append(resolve(anchor))
    face = importlib.import_module(module)
    missing = [
        name
        for name in face.__all__
        if f"{module}.{name}" not in ids
        and not any(obj is getattr(face, name) for obj in by_name.get(name, []))
    ]
    assert not missing, f"{module}: not in the API reference: {missing}"


def test_seed_names_are_in_the_api_reference(site: Path) -> None:
    ids = reference_ids(site)
    for name in SEED_NAMES:
        assert any(anchor.endswith(f".{name}") for anchor in ids), name


def test_every_member_a_reference_page_lists_is_rendered(site: Path) -> None:
    """`members: [...]` names silently vanish when not found (inherited ones need
    `inherited_members`): each listed member has its anchor."""
    ids = reference_ids(site)
    missing = []
    for page_md in sorted((REPO / "docs" / "reference").glob("*.md")):
        text = page_md.read_text(encoding="utf-8")
        for block in re.finditer(r"^::: ([\w.]+)\n((?:[ ]{4}.*\n)*)", text, re.M):
            listed = re.search(r"^\s+members: \[([^\]]*)\]", block.group(2), re.M)
            for member in listed.group(1).split(",") if listed else ():
                anchor = f"{block.group(1)}.{member.strip()}"
                if anchor not in ids:
                    missing.append(f"{page_md.name}: {anchor}")
    assert not missing, missing
