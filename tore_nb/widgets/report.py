"""The change report view: an incremental run's pages by change status, with thumbnails.

`ChangeReportView(run)` shows the change report with status colours, a summary per document,
and thumbnails of changed pages beside their previous version.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import View, ipywidgets_module
from .tables import BORDER, FAILED_TINT, FONT, MUTED, esc, html_table, text_table
from .thumbnails import page_thumbnail

if TYPE_CHECKING:
    import pandas as pd

    from ..incremental.results import PageEvent, RunResult

log = logging.getLogger("tore_nb.widgets")

#: row tints by status: translucent, so the front-end's own text reads on them in light and
#: dark themes alike (an opaque pastel under light theme text is unreadable)
STATUS_COLORS = {
    "added": "rgba(46,160,67,0.22)",
    "modified": "rgba(230,160,0,0.26)",
    "moved": "rgba(56,120,220,0.22)",
    "removed": "rgba(220,50,50,0.24)",
    "unchanged": "transparent",
}


def _position(row: PageEvent) -> str:
    """Where the page is: `3`, `2 -> 3` when it moved, `19 (new)`, `9 (removed)`."""
    old, new = row.old_position, row.new_position
    if old is None:
        return f"{new} (new)"
    if new is None:
        return f"{old} (removed)"
    return str(new) if old == new else f"{old} -> {new}"


_SHOWN = ("added", "modified", "moved", "removed")


class ChangeReportView(View):
    """An incremental run's change report: status colours, a summary per document, thumbnails.

    `previous` maps a document's path (or file name) to a copy of its previous version, so
    modified and removed pages can be shown beside what they were. Thumbnails are rendered
    from the files as they are when the view is drawn.

    >>> from tore_nb.incremental.results import RunResult
    >>> print(ChangeReportView(RunResult((), (), (), {}, 0.0)).to_text().splitlines()[-1])
    no pages changed
    """

    def __init__(
        self,
        run: RunResult,
        *,
        previous: Mapping[str, str | os.PathLike[str]] | None = None,
        thumbnails: bool = True,
        max_thumbnails: int = 8,
        thumb_width: int = 150,
        changed_only: bool = True,
        max_rows: int = 200,
    ) -> None:
        self.run = run
        self.previous = {k: os.fspath(v) for k, v in (previous or {}).items()}
        self.thumbnails = thumbnails
        self.max_thumbnails = max_thumbnails
        self.thumb_width = thumb_width
        self.changed_only = changed_only
        self.max_rows = max_rows
        self.pages = list(run.events)
        self._thumbs: dict[tuple[str, int], bytes | None] = {}

    def __repr__(self) -> str:
        return f"ChangeReportView({len(self.run.documents)} documents, {len(self.pages)} pages)"

    @property
    def report(self) -> pd.DataFrame:
        """The change report DataFrame (one row per page and stage)."""
        return self.run.report()

    @property
    def summary(self) -> pd.DataFrame:
        """One row per document: pages per status, computed, cached, failed."""
        return self.run.summary()

    def styled(self) -> Any:
        """The change report as a pandas Styler with a background colour per status."""

        def colour(row: pd.Series) -> list[str]:
            bg = STATUS_COLORS.get(str(row["status"]), "transparent")
            return [f"background-color: {bg}"] * len(row)

        return self.report.style.apply(colour, axis=1)

    def stages(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.pages:
            seen.update(dict.fromkeys(r.served))
        return list(seen)

    def changed(self) -> list[PageEvent]:
        """Rows of pages that changed or whose results were computed or failed."""
        return [
            r
            for r in self.pages
            if r.status != "unchanged"
            or any(s in ("computed", "failed") for s in r.served.values())
        ]

    def _shown(self, changed_only: bool | None = None) -> list[PageEvent]:
        only = self.changed_only if changed_only is None else changed_only
        return self.changed() if only else self.pages

    # -- thumbnails ------------------------------------------------------------------------------
    def _previous_file(self, path: str) -> str | None:
        resolved = str(Path(path).resolve())
        for key in (path, resolved, Path(path).name):
            if key in self.previous:
                return self.previous[key]
        return {str(Path(k).resolve()): v for k, v in self.previous.items()}.get(resolved)

    def _thumb(self, path: str | None, index: int | None) -> bytes | None:
        if path is None or index is None:
            return None
        key = (path, index)
        if key not in self._thumbs:
            try:
                self._thumbs[key] = page_thumbnail(path, index, self.thumb_width)
            except Exception as exc:  # a missing or changed file: no picture, never an error
                log.debug("no thumbnail for %s page %s: %s", path, index + 1, exc)
                self._thumbs[key] = None
        return self._thumbs[key]

    def thumbnail_pairs(self) -> list[tuple[PageEvent, bytes | None, bytes | None]]:
        """(row, previous PNG, current PNG) for the first `max_thumbnails` changed pages."""
        out: list[tuple[PageEvent, bytes | None, bytes | None]] = []
        for r in self.pages:
            if r.status not in _SHOWN or r.status == "moved":
                continue
            if len(out) >= self.max_thumbnails:
                break
            before = after = None
            if r.status in ("modified", "removed") and r.old_position is not None:
                before = self._thumb(self._previous_file(r.path), r.old_position - 1)
            if r.status != "removed" and r.new_position is not None:
                after = self._thumb(r.path, r.new_position - 1)
            out.append((r, before, after))
        return out

    # -- forms -----------------------------------------------------------------------------------
    def _summary_rows(self) -> tuple[list[str], list[list[str]]]:
        frame = self.run.summary()
        return [str(c) for c in frame.columns], [[str(v) for v in r] for r in frame.to_numpy()]

    def _page_table(self, rows: Sequence[PageEvent]) -> tuple[list[str], list[list[str]]]:
        stages = self.stages()
        header = ["document", "page", "status", "position", "identity", *stages, "seconds"]
        body = [
            [
                r.document,
                "-" if r.page is None else str(r.page),
                r.status,
                _position(r),
                r.identity[:12],
                *(r.served.get(s, "-") for s in stages),
                f"{r.seconds:.3f}",
            ]
            for r in rows
        ]
        return header, body

    def to_text(self) -> str:
        head, rows = self._summary_rows()
        parts = [text_table(head, rows)] if rows else []
        for path, why in self.run.failures.items():
            parts.append(f"FAILED {path}: {why}")
        shown = self._shown()
        if shown:
            header, body = self._page_table(shown[: self.max_rows])
            parts.append(text_table(header, body))
            if len(shown) > self.max_rows:
                parts.append(f"... {len(shown) - self.max_rows} more pages")
        else:
            parts.append("no pages changed")
        return "\n".join(parts)

    def _report_html(self, rows: Sequence[PageEvent]) -> str:
        if not rows:
            return f'<div style="{FONT}">no pages changed</div>'
        header, body = self._page_table(rows[: self.max_rows])
        cells = []
        for r, values in zip(rows, body, strict=False):
            out = [esc(v) for v in values]
            out[2] = f"<b>{out[2]}</b>"
            for i, v in enumerate(values[5:-1], start=5):
                if v == "computed":
                    out[i] = f'<span style="font-weight:600">{out[i]}</span>'
                elif v == "failed":
                    out[i] = (
                        f'<span style="background:{FAILED_TINT};font-weight:600;padding:0 3px" '
                        f'title="{esc(r.error or "")}">{out[i]}</span>'
                    )
            cells.append(out)
        attrs = [
            f'data-status="{esc(r.status)}" style="background:'
            f'{STATUS_COLORS.get(r.status, "transparent")}"'
            for r in rows[: self.max_rows]
        ]
        more = (
            f'<div style="{FONT}">... {len(rows) - self.max_rows} more pages</div>'
            if len(rows) > self.max_rows
            else ""
        )
        return html_table(header, cells, css_class="tore-nb-report", row_attrs=attrs) + more

    def _summary_html(self) -> str:
        head, rows = self._summary_rows()
        failures = "".join(
            f'<div data-failed="{esc(p)}" style="{FONT};background:{FAILED_TINT};'
            f'padding:2px 6px;margin:2px 0">FAILED {esc(p)}: {esc(w)}</div>'
            for p, w in self.run.failures.items()
        )
        if not rows:
            return failures
        return (
            html_table(head, [[esc(c) for c in r] for r in rows], css_class="tore-nb-summary")
            + failures
        )

    def _thumbs_html(self) -> str:
        if not self.thumbnails:
            return ""

        def img(data: bytes | None, label: str) -> str:
            if data is None:
                return (
                    f'<div style="width:{self.thumb_width}px;height:60px;border:1px dashed '
                    f"{BORDER};{MUTED};font-size:11px;display:flex;align-items:center;"
                    f'justify-content:center">{esc(label)}</div>'
                )
            src = base64.b64encode(data).decode("ascii")
            return (
                f'<img src="data:image/png;base64,{src}" alt="{esc(label)}" '
                f'style="width:{self.thumb_width}px;border:1px solid {BORDER}"/>'
            )

        def labelled(data: bytes | None, label: str, missing: str) -> str:
            return (
                f'<div><div style="font-size:10px;{MUTED}">{label}</div>{img(data, missing)}</div>'
            )

        figures = []
        for r, before, after in self.thumbnail_pairs():
            pair = []
            if r.status in ("modified", "removed"):
                pair.append(labelled(before, "before", "previous version not given"))
            if r.status != "removed":
                pair.append(labelled(after, "now", "page not readable"))
            caption = (
                f"{esc(r.document)} p.{esc(_position(r))} "
                f'<b data-caption="{esc(r.status)}" style="padding:0 4px;border-radius:3px;'
                f'background:{STATUS_COLORS.get(r.status, "transparent")}">{esc(r.status)}</b>'
            )
            figures.append(
                f'<figure style="display:inline-block;margin:4px 12px 8px 0;{FONT}">'
                f'<div style="display:flex;gap:4px">{"".join(pair)}</div>'
                f"<figcaption>{caption}</figcaption></figure>"
            )
        return f'<div class="tore-nb-thumbnails">{"".join(figures)}</div>' if figures else ""

    def to_html(self) -> str:
        return (
            f'<div class="tore-nb-change-report">{self._summary_html()}'
            f"{self._thumbs_html()}{self._report_html(self._shown())}</div>"
        )

    def _build(self) -> Any:
        w = ipywidgets_module()
        documents = ["all documents", *dict.fromkeys(r.document for r in self.pages)]
        doc_select = w.Dropdown(options=documents, description="Document")
        only = w.ToggleButtons(
            options=[("changed pages", True), ("all pages", False)],
            value=self.changed_only,
        )
        table = w.HTML()

        def redraw(_: Any = None) -> None:
            rows = self._shown(only.value)
            if doc_select.value != "all documents":
                rows = [r for r in rows if r.document == doc_select.value]
            table.value = self._report_html(rows)

        doc_select.observe(redraw, names="value")
        only.observe(redraw, names="value")
        redraw()
        parts = [w.HTML(self._summary_html())]
        thumbs = self._thumbs_html()
        if thumbs:
            parts.append(w.HTML(thumbs))
        parts += [w.HBox([doc_select, only]), table]
        return w.VBox(parts)
