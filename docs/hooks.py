"""MkDocs hooks for the tore_nb site (mkdocs.yml `hooks:`).

- The notebooks live in notebooks/ (run by CI, launched by Binder); they are added to the site as
  notebooks/*.ipynb before mkdocs-jupyter renders them, so there is one copy of each.
- Docstring examples (`>>>` doctest blocks, the project's style) are shown as Python console code
  blocks, in API pages and elsewhere, instead of being read as Markdown.
- A link from one notebook to another (`[the dashboard](dashboard.ipynb)`, right in Jupyter and
  on GitHub) is pointed at that notebook's page on the site; mkdocs-jupyter leaves such links as
  they are, and `--strict` does not check them (tests/integration/test_docs.py checks every
  link of the built site).
- A nav entry whose page does not exist yet (benchmarks.md, reliability.md are written with the
  core) is left out with a note instead of failing the strict build.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from markdown import Extension, Markdown
from markdown.preprocessors import Preprocessor
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page
from mkdocs.utils import get_relative_url

log = logging.getLogger("mkdocs.hooks.tore_nb")
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
OPTIONAL = {"benchmarks.md", "reliability.md"}


def _prune(nav: Any, docs_dir: Path) -> Any:
    if isinstance(nav, list):
        kept = [_prune(item, docs_dir) for item in nav]
        return [item for item in kept if item is not None]
    if isinstance(nav, dict):
        out = {k: _prune(v, docs_dir) for k, v in nav.items()}
        return {k: v for k, v in out.items() if v is not None} or None
    if isinstance(nav, str) and nav in OPTIONAL and not (docs_dir / nav).exists():
        log.info("nav: %s is not written yet; left out", nav)
        return None
    return nav


_FENCE = re.compile(r"^\s*(```|~~~)")
_PROMPT = re.compile(r"^(\s*)>>> ")


class DoctestFences(Preprocessor):
    """Wrap each doctest block (a `>>>` line, its `...` lines and its output) in a pycon fence."""

    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        fenced = False
        i = 0
        while i < len(lines):
            line = lines[i]
            if _FENCE.match(line):
                fenced = not fenced
            prompt = None if fenced else _PROMPT.match(line)
            if prompt is None:
                out.append(line)
                i += 1
                continue
            indent = prompt.group(1)
            block = []
            while i < len(lines) and lines[i].strip() and lines[i].startswith(indent):
                block.append(lines[i][len(indent) :])
                i += 1
            out += ["", f"{indent}```pycon", *(indent + b for b in block), f"{indent}```", ""]
        return out


class DoctestExtension(Extension):
    def extendMarkdown(self, md: Markdown) -> None:
        md.preprocessors.register(DoctestFences(md), "tore_nb_doctest", 40)


@event_priority(100)  # before mkdocstrings' on_config, which copies the Markdown extensions
def on_config(config: MkDocsConfig) -> MkDocsConfig:
    config.markdown_extensions.append(DoctestExtension())  # type: ignore[arg-type]
    if config.nav:
        config.nav = _prune(config.nav, Path(config.docs_dir))
    return config


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns .ipynb files into pages
def on_files(files: Files, config: MkDocsConfig) -> Files:
    for notebook in sorted(NOTEBOOKS.glob("*.ipynb")):
        # a real file outside docs_dir: src_dir is the repository, so the page is notebooks/NAME
        files.append(
            File(
                f"notebooks/{notebook.name}",
                src_dir=str(NOTEBOOKS.parent),
                dest_dir=config.site_dir,
                use_directory_urls=config.use_directory_urls,
            )
        )
    return files


_NOTEBOOK_LINK = re.compile(r'href="(?!\w+:|/|#)([^"#/]+\.ipynb)(#[^"]*)?"')


def on_page_content(html: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    src = page.file.src_uri
    if not (src.startswith("notebooks/") and src.endswith(".ipynb")):
        return html

    def to_page(match: re.Match[str]) -> str:
        target = files.get_file_from_path(f"notebooks/{match.group(1)}")
        if target is None:
            return match.group(0)  # not a notebook of the site: left for the link check to report
        url = get_relative_url(target.url, page.url)
        return f'href="{url}{match.group(2) or ""}"'

    return _NOTEBOOK_LINK.sub(to_page, html)
