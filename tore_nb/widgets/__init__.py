"""Views of the cache and of incremental runs: a live dashboard, a change report, run progress.

Colours follow JupyterLab's theme (light or dark) through its CSS variables, with light
fallbacks for front-ends without them (VS Code, Voila, exported HTML).

Each view is a plain object over plain data (a cache's `MetricsSnapshot`, a `RunResult`, progress
counts) with a text form for terminals (`str(view)`) and an HTML form for exported notebooks
(`view._repr_html_()`). The ipywidgets face is built lazily, only when the view is displayed in
a Jupyter kernel, so importing this module costs nothing.

- `CacheDashboard(cache)`: per tier hit rate, entries, size, latency and breaker state (the
  other figures under Details), the compute time saved, and charts of hit rate and latency
  over the last minutes. It refreshes after every cell, on a timer while Live is on, and on its
  button, asking the stores for sizes only when something changed; a tier can be cleared from
  it after a confirmation. `%tcache dashboard` shows one.
- `ChangeReportView(run)`: an incremental run's change report with status colours, a summary
  per document, and thumbnails of changed pages beside their previous version.
- `RunProgress()`: a progress callback for `IncrementalProcessor` (Ray runs included): pages
  done, cached, failed.

>>> import tempfile
>>> from tore_nb import CacheConfig, MultiLevelCache
>>> cache = MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp()))
>>> cache.set("k", 1), cache.get("k")
(True, 1)
>>> print(CacheDashboard(cache, interval=None).to_text().splitlines()[0])
tore_nb cache: hit rate 100.0%, 1 requests, 1 hits, 0 misses, saved 0.00 s

Modules, each with one job; each imports only those above it in this list:

- `tables`: escaping, numbers, text and HTML tables
- `base`: `View`, the text, HTML and widget forms every view has
- `figures`: the per-tier figures, one plain name each (the dashboard, `%tcache stats`)
- `charts`: the dashboard's SVG charts of hit rate and latency over clock time
- `thumbnails`: PDF pages rendered to PNG (`page_thumbnail`)
- `dashboard`: `CacheDashboard`, `show_dashboard`
- `report`: `ChangeReportView`
- `progress`: `RunProgress`

The views of a run read its records (`tore_nb.incremental.results`): a `PageEvent` per page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .charts import Sample as Sample
from .dashboard import CacheDashboard, show_dashboard
from .figures import TIER_COLORS as TIER_COLORS
from .progress import RunProgress
from .report import STATUS_COLORS as STATUS_COLORS
from .report import ChangeReportView
from .thumbnails import page_thumbnail as page_thumbnail

if TYPE_CHECKING:
    from ..incremental.results import PageEvent, RunResult


def __getattr__(name: str) -> Any:
    # `PageRow`, the widgets' own per-page record, was merged into the run's PageEvent; the old
    # name stays importable for one release, loaded on use so `import tore_nb.widgets` stays light
    if name == "PageRow":
        from ..incremental.results import PageEvent

        return PageEvent
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def page_rows(run: RunResult) -> list[PageEvent]:
    """A run's pages, one `PageEvent` each (the same as `list(run.events)`).

    >>> from tore_nb.incremental.results import RunResult
    >>> page_rows(RunResult((), (), (), {}, 0.0))
    []
    """
    return list(run.events)


__all__ = [
    "CacheDashboard",
    "ChangeReportView",
    "RunProgress",
    "show_dashboard",
]
