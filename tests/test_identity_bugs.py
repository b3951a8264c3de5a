"""Regressions of page identities: what pdfium draws must be hashed, re-compression must not be.

Each case edits a shared sample PDF with pypdf and compares identities; both readers (the fast
raw reader and pypdf's) must agree on every file.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tore_nb.incremental.documents import page_identities
from tore_nb.incremental.identity import PageHasher, RawObjects

pypdf = pytest.importorskip("pypdf")
from pypdf import generic as g  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pdfs" / "us-001.pdf"
pytestmark = pytest.mark.skipif(not SAMPLE.exists(), reason="shared PDFs not present")


def identities(data: bytes) -> list[str]:
    """The page identities, checked to be the same from the fast reader and from pypdf's."""
    fast = [p.identity for p in page_identities(data)]
    reader = pypdf.PdfReader(io.BytesIO(data))
    hasher = PageHasher(RawObjects(data, reader, raw=False))
    assert [hasher.page(p)[0] for p in reader.pages] == fast
    return fast


def edited(edit: Callable[[Any], None]) -> bytes:
    writer = pypdf.PdfWriter(clone_from=str(SAMPLE))
    edit(writer)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def stream(writer: Any, data: bytes, **entries: Any) -> Any:
    s = g.DecodedStreamObject()
    s.set_data(data)
    for key, value in entries.items():
        s[g.NameObject("/" + key)] = value
    return writer._add_object(s)


def draw_on_first_page(writer: Any, ops: bytes, kind: str, name: str, obj: Any) -> None:
    """Append `ops` to page 1's content, with `obj` as resource `name` of `kind`."""
    page = writer.pages[0]
    old = page.get_contents().get_data()
    page[g.NameObject("/Contents")] = stream(writer, old + b"\nq " + ops + b" Q\n")
    resources = page["/Resources"].get_object()
    group = g.DictionaryObject(resources.get(g.NameObject(kind), g.DictionaryObject()))
    group[g.NameObject(name)] = obj
    resources[g.NameObject(kind)] = group


def num(*xs: float) -> Any:
    return g.ArrayObject([g.FloatObject(x) for x in xs])


# 1. annotations without /AP: pdfium synthesises their appearance -----------------------------
def test_markup_annotations_without_appearance_change_the_identity() -> None:
    from pypdf.annotations import Highlight, Rectangle

    def annotate(color: str) -> Callable[[Any], None]:
        def edit(w: Any) -> None:
            quads = num(50, 600, 300, 600, 50, 550, 300, 550)
            rect = (50, 550, 300, 600)
            w.add_annotation(0, Highlight(rect=rect, quad_points=quads, highlight_color=color))
            w.add_annotation(1, Rectangle(rect=(50, 50, 300, 300)))

        return edit

    plain = identities(SAMPLE.read_bytes())
    red, blue = identities(edited(annotate("ff0000"))), identities(edited(annotate("0000ff")))
    assert red[0] != plain[0] and red[1] != plain[1] and red[2] == plain[2]
    assert red[0] != blue[0] and red[1] == blue[1]


def test_hidden_annotations_links_and_popups_without_appearance_draw_nothing() -> None:
    from pypdf.annotations import Link, Popup, Rectangle

    def edit(w: Any) -> None:
        hidden = Rectangle(rect=(50, 50, 300, 300))
        hidden[g.NameObject("/F")] = g.NumberObject(2)
        w.add_annotation(0, hidden)
        w.add_annotation(0, Link(rect=(10, 10, 50, 50), url="https://example.org"))
        w.add_annotation(0, Popup(rect=(10, 10, 200, 200), open=True))

    assert identities(edited(edit))[0] == identities(SAMPLE.read_bytes())[0]


# 2. the skip list of object-graph keys must not hide Type 3 glyphs named /A /B /P /M ----------
@pytest.mark.parametrize("glyph", ["A", "B", "P", "M", "ID"])
def test_type3_glyph_procedure_changes_the_identity(glyph: str) -> None:
    def type3(shape: bytes) -> Callable[[Any], None]:
        def edit(w: Any) -> None:
            proc = stream(w, b"1000 0 0 0 1000 1000 d1 " + shape + b" f")
            font = g.DictionaryObject(
                {
                    g.NameObject("/Type"): g.NameObject("/Font"),
                    g.NameObject("/Subtype"): g.NameObject("/Type3"),
                    g.NameObject("/FontBBox"): num(0, 0, 1000, 1000),
                    g.NameObject("/FontMatrix"): num(0.001, 0, 0, 0.001, 0, 0),
                    g.NameObject("/CharProcs"): g.DictionaryObject(
                        {g.NameObject("/" + glyph): proc}
                    ),
                    g.NameObject("/Encoding"): g.DictionaryObject(
                        {
                            g.NameObject("/Type"): g.NameObject("/Encoding"),
                            g.NameObject("/Differences"): g.ArrayObject(
                                [g.NumberObject(65), g.NameObject("/" + glyph)]
                            ),
                        }
                    ),
                    g.NameObject("/FirstChar"): g.NumberObject(65),
                    g.NameObject("/LastChar"): g.NumberObject(65),
                    g.NameObject("/Widths"): num(1000),
                }
            )
            ops = b"BT /FT3 100 Tf 50 50 Td (A) Tj ET"
            draw_on_first_page(w, ops, "/Font", "/FT3", w._add_object(font))

        return edit

    square = identities(edited(type3(b"0 0 1000 1000 re")))
    triangle = identities(edited(type3(b"0 0 m 1000 0 l 500 1000 l h")))
    assert square[0] != triangle[0] and square[1:] == triangle[1:]


# 3. a form without /Resources draws with the resources of the content invoking it -------------
def test_form_without_resources_is_scoped_by_the_page_resources() -> None:
    def form_font(base: str) -> Callable[[Any], None]:
        def edit(w: Any) -> None:
            font = g.DictionaryObject(
                {
                    g.NameObject("/Type"): g.NameObject("/Font"),
                    g.NameObject("/Subtype"): g.NameObject("/Type1"),
                    g.NameObject("/BaseFont"): g.NameObject("/" + base),
                }
            )
            draw_on_first_page(w, b"", "/Font", "/FTest", w._add_object(font))
            form = stream(
                w,
                b"BT /FTest 40 Tf 10 30 Td (Hello) Tj ET",
                Type=g.NameObject("/XObject"),
                Subtype=g.NameObject("/Form"),
                BBox=num(0, 0, 300, 100),
            )
            draw_on_first_page(w, b"/FmTest Do", "/XObject", "/FmTest", form)

        return edit

    helvetica = identities(edited(form_font("Helvetica")))
    courier = identities(edited(form_font("Courier")))
    assert helvetica[0] != courier[0] and helvetica[1:] == courier[1:]


# 4. re-compressing streams changes nothing that is drawn ---------------------------------------
def test_recompressed_and_decompressed_streams_keep_every_identity() -> None:
    def recompress(level: int | None) -> Callable[[Any], None]:
        def edit(w: Any) -> None:
            for ref in w._objects:
                obj = ref.get_object() if ref is not None else None
                if not isinstance(obj, g.StreamObject) or obj.get("/Filter") != "/FlateDecode":
                    continue
                if "/DecodeParms" in obj:
                    continue
                inflated = zlib.decompress(obj._data)
                if level is None:  # stored without a filter
                    del obj[g.NameObject("/Filter")]
                    obj._data = inflated
                else:
                    obj._data = zlib.compress(inflated, level)

        return edit

    plain = identities(SAMPLE.read_bytes())
    fast, small = edited(recompress(1)), edited(recompress(9))
    assert fast != small
    assert identities(fast) == identities(small) == identities(edited(recompress(None))) == plain


def test_a_change_of_decoded_stream_data_changes_the_identity() -> None:
    def edit(w: Any) -> None:
        font_files = [
            ref.get_object()
            for ref in w._objects
            if ref is not None
            and isinstance(ref.get_object(), g.DictionaryObject)
            and any(k in ref.get_object() for k in ("/FontFile", "/FontFile2", "/FontFile3"))
        ]
        descriptor = font_files[0]
        key = next(k for k in ("/FontFile", "/FontFile2", "/FontFile3") if k in descriptor)
        data = descriptor[key].get_object()
        inflated = zlib.decompress(data._data) if data.get("/Filter") else data._data
        data._data = zlib.compress(inflated[:-1] + bytes([inflated[-1] ^ 1]))
        data[g.NameObject("/Filter")] = g.NameObject("/FlateDecode")

    assert identities(edited(edit)) != identities(SAMPLE.read_bytes())
