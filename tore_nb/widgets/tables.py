"""Text and HTML building blocks shared by the views: escaping, numbers, tables, theme colours.

Plain string functions, no widgets: a text table padded to its widest cell (numbers
right-aligned) for terminals, and an HTML table for exported notebooks and the widgets' HTML.

Colours come from JupyterLab's theme variables, each with a light fallback for front-ends that
do not define them (VS Code, exported HTML): a background and its text colour are always set as
a pair, so that a fallback never meets a theme colour (white text on a light grey). Body text
is not coloured at all: it inherits the front-end's, which suits its background.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

FONT = "font-family:var(--jp-ui-font-family,system-ui,sans-serif);font-size:13px"
#: a header or panel: background and text as one pair, the theme's or both light fallbacks
HEAD = "background:var(--jp-layout-color2,#eeeeee);color:var(--jp-ui-font-color1,#212121)"
#: a plot or card surface, with its text colour
SURFACE = "background:var(--jp-layout-color0,#ffffff);color:var(--jp-ui-font-color1,#212121)"
#: secondary text (labels, captions): the inherited colour, fainter, reads on any background
MUTED = "opacity:0.75"
#: lines and frames
BORDER = "var(--jp-border-color2,#d0d0d0)"
#: the empty part of a bar (hit rate, progress)
TRACK = "var(--jp-layout-color3,#e0e0e0)"
#: a failure: a red tint under inherited text reads in both themes, red text would not
FAILED_TINT = "rgba(229,57,53,0.28)"
_CELL = f"padding:2px 8px;border-bottom:1px solid {BORDER}"


def esc(value: object) -> str:
    """Any value as HTML text, quotes escaped too (safe inside an attribute).

    >>> esc('<b title="x">')
    '&lt;b title=&quot;x&quot;&gt;'
    """
    return html.escape(str(value), quote=True)


def fmt_num(value: float | None, digits: int = 3) -> str:
    """A number with `digits` decimals; "-" for a missing one.

    >>> fmt_num(1.23456), fmt_num(2.5, 2), fmt_num(None)
    ('1.235', '2.50', '-')
    """
    if value is None:
        return "-"
    return f"{value:.{digits}f}"


def fmt_pct(rate: float) -> str:
    """A rate between 0 and 1 as a percentage with one decimal.

    >>> fmt_pct(5 / 6)
    '83.3%'
    """
    return f"{100.0 * rate:.1f}%"


def text_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned.

    >>> print(text_table(["tier", "hits"], [["memory", 3], ["disk", 12]]))
    tier    hits
    memory     3
    disk      12
    """
    cells = [[str(c) for c in header], *([str(c) for c in r] for r in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    numeric = [
        all(_looks_numeric(r[i]) for r in cells[1:]) and bool(rows) for i in range(len(header))
    ]
    lines = []
    for r in cells:
        parts = [
            c.rjust(w) if right else c.ljust(w)
            for c, w, right in zip(r, widths, numeric, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _looks_numeric(text: str) -> bool:
    return text == "-" or text.rstrip("%").replace(".", "", 1).lstrip("-").isdigit()


def html_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    css_class: str,
    row_attrs: Sequence[str] | None = None,
    keys: Sequence[str] | None = None,
    titles: Sequence[str] | None = None,
) -> str:
    """An HTML table whose cells are already escaped HTML; `keys` name the data-col attributes,
    `titles` are the headers' tooltips.

    >>> html_table(["tier"], [["memory"]], css_class="t").count('<td data-col="tier"')
    1
    """
    keys = keys or header
    tips = titles or [""] * len(header)
    head = "".join(
        f'<th style="{_CELL};text-align:left;{HEAD}"'
        + (f' title="{esc(tip)}"' if tip else "")
        + f">{esc(h)}</th>"
        for h, tip in zip(header, tips, strict=True)
    )
    body = []
    for i, row in enumerate(rows):
        attrs = row_attrs[i] if row_attrs else ""
        tds = "".join(
            f'<td data-col="{esc(k)}" style="{_CELL}">{c}</td>'
            for k, c in zip(keys, row, strict=True)
        )
        body.append(f"<tr {attrs}>{tds}</tr>")
    return (
        f'<table class="{css_class}" style="border-collapse:collapse;{FONT}">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )
