"""Page identities (tore_nb.incremental.pdf): what pdfium draws is hashed, nothing else is.

A page's identity must change with anything that changes how the page looks, and with nothing
else: not a rewrite by another tool, a metadata-only resave, re-compressed streams, a new path.
Most cases edit a shared sample PDF with pypdf and compare identities; every file is read by
both readers (the fast raw reader and pypdf's), which must agree. The fast reader's own checks
against pypdf (cross-references, damaged files, speed) are in test_pdf_against_pypdf.py.
"""

from __future__ import annotations

import base64
import io
import shutil
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import DATA
from tests.support import sample_pdf as pdf
from tore_nb.incremental.documents import fingerprint_file, page_identities, read_document
from tore_nb.incremental.pdf import PageHasher, RawObjects

pypdf = pytest.importorskip("pypdf")
from pypdf import generic as g  # noqa: E402

PDFS = DATA / "pdfs"
ALL_PDFS = sorted(p.name for p in PDFS.glob("*.pdf")) or ["dmca.pdf"]
# an encrypted file is always read by pypdf, so the fast reader has nothing to agree on there
UNENCRYPTED = [
    n for n in ALL_PDFS if not (PDFS / n).exists() or b"/Encrypt" not in (PDFS / n).read_bytes()
]
SAMPLE = "us-001.pdf"  # three text pages with embedded fonts: the file the edits start from


def identities(data: bytes) -> list[str]:
    """The page identities, checked to be the same from the fast reader and from pypdf's."""
    fast = [p.identity for p in page_identities(data)]
    reader = pypdf.PdfReader(io.BytesIO(data))
    hasher = PageHasher(RawObjects(data, reader, raw=False))
    assert [hasher.page(p)[0] for p in reader.pages] == fast
    return fast


def plain() -> list[str]:
    """The identities of the unedited sample."""
    return identities(pdf(SAMPLE).read_bytes())


def edited(edit: Callable[[Any], None]) -> bytes:
    """The sample, edited by `edit(writer)` and written again by pypdf."""
    writer = pypdf.PdfWriter(clone_from=str(pdf(SAMPLE)))
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


# -- what a page draws changes its identity ----------------------------------------------------
def test_rotation_alone_changes_the_identity() -> None:
    v1, v2 = read_document(pdf("dmca.pdf")), read_document(pdf("dmca_v2.pdf"))
    assert v2.pages[6].rotation == 90 and v1.pages[6].rotation == 0
    assert v1.pages[6].identity != v2.pages[6].identity
    assert (v2.pages[6].width, v2.pages[6].height) == (v1.pages[6].height, v1.pages[6].width)


def test_image_only_pages_are_told_apart_by_their_images() -> None:
    doc = read_document(pdf("multipage.pdf"))
    assert len(set(doc.identities)) == doc.page_count == 6


def test_markup_annotations_without_appearance_change_the_identity() -> None:
    """Regression: annotations were hashed through their /AP only, so a highlight or a square
    without one (pdfium synthesises its appearance from /C, /QuadPoints, /Rect...) changed no
    identity, and a page that looked different kept its cached results."""
    from pypdf.annotations import Highlight, Rectangle

    def annotate(color: str) -> Callable[[Any], None]:
        def edit(w: Any) -> None:
            quads = num(50, 600, 300, 600, 50, 550, 300, 550)
            rect = (50, 550, 300, 600)
            w.add_annotation(0, Highlight(rect=rect, quad_points=quads, highlight_color=color))
            w.add_annotation(1, Rectangle(rect=(50, 50, 300, 300)))

        return edit

    before = plain()
    red, blue = identities(edited(annotate("ff0000"))), identities(edited(annotate("0000ff")))
    assert red[0] != before[0] and red[1] != before[1] and red[2] == before[2]
    assert red[0] != blue[0] and red[1] == blue[1]


def test_hidden_annotations_links_and_popups_without_appearance_draw_nothing() -> None:
    """The other side of the fix above: what pdfium does not draw (hidden or NoView
    annotations, links and popups without /AP) must leave the identity alone."""
    from pypdf.annotations import Link, Popup, Rectangle

    def edit(w: Any) -> None:
        hidden = Rectangle(rect=(50, 50, 300, 300))
        hidden[g.NameObject("/F")] = g.NumberObject(2)
        w.add_annotation(0, hidden)
        w.add_annotation(0, Link(rect=(10, 10, 50, 50), url="https://example.org"))
        w.add_annotation(0, Popup(rect=(10, 10, 200, 200), open=True))

    assert identities(edited(edit))[0] == plain()[0]


@pytest.mark.parametrize("glyph", ["A", "B", "P", "M", "ID"])
def test_type3_glyph_procedure_changes_the_identity(glyph: str) -> None:
    """Regression: the keys that link the object graph back to pages (/P, /A, /B, /M, /ID...)
    were skipped in every dictionary, so a Type 3 glyph named /A in /CharProcs was never hashed
    and redrawing it changed nothing; they are now skipped only in annotation, page and
    structure dictionaries."""

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


def test_form_without_resources_is_scoped_by_the_page_resources() -> None:
    """Regression: only the page resources its own content names were hashed, so a font used
    only inside a form XObject without /Resources (drawn by pdfium with the page's resources)
    could change without changing the identity."""

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


def test_a_change_of_decoded_stream_data_changes_the_identity() -> None:
    """Streams are hashed inflated (see the test below): one flipped bit of a font program,
    re-compressed, must still change the identity."""

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

    assert identities(edited(edit)) != plain()


# -- what does not change how a page looks keeps its identity ----------------------------------
def flate_streams(writer: Any) -> list[Any]:
    """The writer's Flate streams without a predictor: the ones a rewrite may re-encode."""
    objects = [ref.get_object() for ref in writer._objects if ref is not None]
    return [
        o
        for o in objects
        if isinstance(o, g.StreamObject)
        and o.get("/Filter") == "/FlateDecode"
        and "/DecodeParms" not in o
    ]


def test_recompressed_and_decompressed_streams_keep_every_identity() -> None:
    """Regression: streams were hashed as stored, so qpdf or Ghostscript re-compressing a file
    (another zlib level, or no filter at all) changed every identity and recomputed every page."""

    def recompress(level: int | None) -> Callable[[Any], None]:
        def edit(w: Any) -> None:
            for obj in flate_streams(w):
                inflated = zlib.decompress(obj._data)
                if level is None:  # stored without a filter
                    del obj[g.NameObject("/Filter")]
                    obj._data = inflated
                else:
                    obj._data = zlib.compress(inflated, level)

        return edit

    before = plain()
    fast, small = edited(recompress(1)), edited(recompress(9))
    assert fast != small
    assert identities(fast) == identities(small) == identities(edited(recompress(None))) == before


def run_length(data: bytes) -> bytes:
    """RunLengthDecode's encoding, literal runs only (what some writers emit)."""
    out = bytearray()
    for i in range(0, len(data), 128):
        chunk = data[i : i + 128]
        out += bytes([len(chunk) - 1]) + chunk
    return bytes(out + b"\x80")


TRANSPORT = {
    "ASCIIHex": (lambda d: d.hex().encode() + b">", ["/ASCIIHexDecode"]),
    "ASCII85": (lambda d: base64.a85encode(d, adobe=True)[2:], ["/ASCII85Decode"]),
    "RunLength": (run_length, ["/RunLengthDecode"]),
    "ASCII85 over Flate": (
        lambda d: base64.a85encode(zlib.compress(d), adobe=True)[2:],
        ["/ASCII85Decode", "/FlateDecode"],
    ),
}


@pytest.mark.parametrize("encoding", sorted(TRANSPORT))
def test_streams_in_other_transport_filters_keep_every_identity(encoding: str) -> None:
    """Identities hashed only Flate streams decoded: a rewrite by qpdf or pikepdf that turned
    ASCII85, ASCIIHex, LZW or RunLength streams into Flate (19 of 114 public test files) changed
    the pages' identities, and each page was recomputed for nothing."""
    encode, filters = TRANSPORT[encoding]

    def reencode(w: Any) -> None:
        for obj in flate_streams(w):
            obj._data = encode(zlib.decompress(obj._data))
            obj[g.NameObject("/Filter")] = g.ArrayObject(g.NameObject(f) for f in filters)

    data = edited(reencode)
    assert data.count(b"/FlateDecode") < pdf(SAMPLE).read_bytes().count(b"/FlateDecode")
    assert identities(data) == plain()


def test_an_image_codec_is_kept_and_its_transport_undone() -> None:
    """A JPEG wrapped in ASCII85 is the same image as the bare JPEG; its bytes still count."""
    jpeg = b"\xff\xd8 not really a jpeg \xff\xd9"

    def image(wrap: bool, data: bytes = jpeg) -> Callable[[Any], None]:
        def edit(w: Any) -> None:
            filters = ["/ASCII85Decode", "/DCTDecode"] if wrap else ["/DCTDecode"]
            body = base64.a85encode(data, adobe=True)[2:] if wrap else data
            s = g.StreamObject()
            s._data = body
            for key, value in {
                "/Type": g.NameObject("/XObject"),
                "/Subtype": g.NameObject("/Image"),
                "/Width": g.NumberObject(2),
                "/Height": g.NumberObject(2),
                "/ColorSpace": g.NameObject("/DeviceGray"),
                "/BitsPerComponent": g.NumberObject(8),
                "/Filter": g.ArrayObject(g.NameObject(f) for f in filters),
            }.items():
                s[g.NameObject(key)] = value
            draw_on_first_page(w, b"10 0 0 10 0 0 cm /Im9 Do", "/XObject", "/Im9", w._add_object(s))

        return edit

    bare, wrapped = identities(edited(image(False))), identities(edited(image(True)))
    other = identities(edited(image(True, jpeg.replace(b"really", b"REALLY"))))
    assert bare == wrapped and bare[0] != other[0] and bare[1:] == other[1:]


def test_metadata_only_resave_keeps_every_identity() -> None:
    a = read_document(pdf("federal-register-2020-17221.pdf"))
    b = read_document(pdf("federal-register-2020-17221_resaved.pdf"))
    assert a.fingerprint.content_hash != b.fingerprint.content_hash
    assert a.identities == b.identities


def test_identity_is_independent_of_the_path(tmp_path: Path) -> None:
    copy = tmp_path / "copy.pdf"
    shutil.copy(pdf("dmca.pdf"), copy)
    assert read_document(copy).identities == read_document(pdf("dmca.pdf")).identities


@pytest.mark.parametrize("name", ALL_PDFS)
def test_pypdf_rewrite_keeps_every_identity(name: str) -> None:
    """A full rewrite (new object numbers, reserialised dictionaries, rounded reals)."""
    from pypdf import PdfWriter

    src = pdf(name)
    out = io.BytesIO()
    PdfWriter(clone_from=str(src)).write(out)
    before = read_document(src).identities
    after = read_document(src, data=out.getvalue(), fingerprint=fingerprint_file(src)[0])
    assert after.identities == before


# -- the two readers ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", UNENCRYPTED)
def test_raw_reader_agrees_with_pypdf(name: str) -> None:
    """Identities from the fast tokenizer equal those from pypdf's own parser."""
    data = pdf(name).read_bytes()

    def read(raw: bool) -> list[str]:
        reader = pypdf.PdfReader(io.BytesIO(data))
        assert not reader.is_encrypted
        hasher = PageHasher(RawObjects(data, reader, raw=raw))
        return [hasher.page(p)[0] for p in reader.pages]

    assert read(True) == read(False)


# -- a rewrite by qpdf (pikepdf) ------------------------------------------------------------------
REWRITE_PDFS = sorted(
    [p for p in PDFS.glob("*.pdf") if p.name != "multipage_v2.pdf"]  # multipage's images again
    + list((DATA / "acceptance").glob("*.pdf"))
)


def qpdf_rewrite(data: bytes) -> bytes:
    """The file as pikepdf (qpdf) rewrites it: object streams, every Flate stream recompressed
    (LZW, ASCII85, ASCIIHex undone, PNG and TIFF predictors dropped)."""
    pikepdf = pytest.importorskip("pikepdf")
    out = io.BytesIO()
    with pikepdf.open(io.BytesIO(data)) as doc:
        doc.save(out, object_stream_mode=pikepdf.ObjectStreamMode.generate, recompress_flate=True)
    return out.getvalue()


@pytest.mark.parametrize("path", REWRITE_PDFS, ids=lambda p: p.name)
def test_pikepdf_rewrite_keeps_every_identity(path: Path) -> None:
    """Regression: qpdf's `recompress_flate` drops the PNG predictor of a Flate image (page 3
    of multipage.pdf), whose predicted rows were hashed: the page changed identity."""
    data = path.read_bytes()  # the fast reader only: both readers agree on them (tests below)
    before, after = page_identities(data), page_identities(qpdf_rewrite(data))
    assert [p.identity for p in after] == [p.identity for p in before]


def raw_pdf(content: bytes, resources: bytes, *objects: bytes) -> bytes:
    """A one-page PDF written byte by byte: `objects` are numbered from 5 on."""
    body = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Contents 4 0 R /Resources "
        + resources
        + b" >>",
        raw_stream(b"<<", content),
        *objects,
    ]
    out, offsets = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"), []
    for n, obj in enumerate(body, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (n, obj)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(body) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(body) + 1, xref)
    return bytes(out)


def raw_stream(head: bytes, data: bytes) -> bytes:
    """A stream object: `head` is its dictionary without the closing >>."""
    return head + b" /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def lzw(data: bytes) -> bytes:
    from pypdf._codecs._codecs import LzwCodec

    return LzwCodec().encode(data)


def png_rows(data: bytes, width: int, bpp: int) -> bytes:
    """`data` filtered with PNG predictors, each of the five filter types in turn."""
    rows = [data[i : i + width] for i in range(0, len(data), width)]
    out, prev = bytearray(), bytes(width)
    for r, row in enumerate(rows):
        kind = r % 5
        enc = bytearray()
        for i, x in enumerate(row):
            left = row[i - bpp] if i >= bpp else 0
            up, up_left = prev[i], (prev[i - bpp] if i >= bpp else 0)
            p = left + up - up_left
            paeth = min(
                (abs(p - left), 0, left), (abs(p - up), 1, up), (abs(p - up_left), 2, up_left)
            )[2]
            pred = [0, left, up, (left + up) // 2, paeth][kind]
            enc.append((x - pred) & 0xFF)
        out += bytes([kind]) + enc
        prev = row
    return bytes(out)


PIXELS = bytes((i * 7 + i // 48 * 13) & 0xFF for i in range(16 * 16 * 3))  # 16 x 16, RGB
GRAY = bytes(range(256))  # 16 x 16 palette indexes
IMAGE = b"<< /Type /XObject /Subtype /Image /Width 16 /Height 16 /BitsPerComponent 8 "
RGB = IMAGE + b"/ColorSpace /DeviceRGB "
PALETTE = b"[/Indexed /DeviceRGB 255 <" + PIXELS[:768].hex().encode() + b">]"


def encoded_images(px: bytes) -> dict[str, bytes]:
    """An image XObject of pixels `px` in each encoding."""
    predicted = png_rows(px, 48, 3)
    parms = b"/DecodeParms << /Predictor 15 /Colors 3 /Columns 16 >>"
    return {
        "LZW": raw_stream(RGB + b"/Filter /LZWDecode", lzw(px)),
        "ASCII85": raw_stream(
            RGB + b"/Filter /ASCII85Decode", base64.a85encode(px, adobe=True)[2:]
        ),
        "ASCIIHex": raw_stream(RGB + b"/Filter /ASCIIHexDecode", px.hex().encode() + b">"),
        "RunLength": raw_stream(RGB + b"/Filter /RunLengthDecode", run_length(px)),
        "PNG predictor": raw_stream(
            RGB + b"/Filter /FlateDecode " + parms, zlib.compress(predicted)
        ),
        "PNG predictor in LZW": raw_stream(RGB + b"/Filter /LZWDecode " + parms, lzw(predicted)),
        "palette string": raw_stream(IMAGE + b"/ColorSpace " + palette(px), GRAY),
        "palette stream": raw_stream(IMAGE + b"/ColorSpace [/Indexed /DeviceRGB 255 6 0 R]", GRAY),
    }


def inline_images(px: bytes) -> dict[str, bytes]:
    """An inline image of pixels `px` in each encoding, with abbreviated keys and names."""
    return {
        "inline": b"/CS /RGB ID " + px,
        "inline AHx": b"/CS /RGB /F /AHx ID " + px.hex().encode() + b">",
        "inline A85": b"/CS /RGB /F /A85 ID " + base64.a85encode(px, adobe=True)[2:],
        "inline Fl": b"/CS /RGB /F /Fl ID " + zlib.compress(px),
        "inline LZW": b"/CS /RGB /F /LZW ID " + lzw(px),
        "inline RL": b"/CS /RGB /F /RL ID " + run_length(px),
        "inline palette": b"/CS [/I /RGB 255 <" + px[:768].hex().encode() + b">] ID " + GRAY,
    }


def palette(px: bytes) -> bytes:
    return b"[/Indexed /DeviceRGB 255 <" + px[:768].hex().encode() + b">]"


IMAGES, INLINE = list(encoded_images(PIXELS)), list(inline_images(PIXELS))


def image_pdf(kind: str, px: bytes = PIXELS) -> bytes:
    """A page drawing one image of `kind` (an image XObject, or an inline image)."""
    if kind in INLINE:
        bi = b"BI /W 16 /H 16 /BPC 8 " + inline_images(px)[kind] + b" EI"
        return raw_pdf(b"q 100 0 0 100 10 10 cm " + bi + b" Q", b"<< >>")
    lookup = raw_stream(b"<< /Filter /ASCII85Decode", base64.a85encode(px, adobe=True)[2:])
    return raw_pdf(
        b"q 100 0 0 100 10 10 cm /Im0 Do Q",
        b"<< /XObject << /Im0 5 0 R >> >>",
        encoded_images(px)[kind],
        lookup,
    )


@pytest.mark.parametrize("kind", [*IMAGES, *INLINE])
def test_images_in_every_encoding_keep_their_identity_through_a_pikepdf_rewrite(kind: str) -> None:
    """The issue "Identities that survive other tools": images in LZW, ASCII85, RunLength or a
    palette, and inline images with abbreviated keys, must keep the page's identity when qpdf
    re-encodes the file. Those with a PNG predictor did not (qpdf drops the predictor); the
    others did already and are kept here as a guard."""
    import pypdfium2

    data = image_pdf(kind)
    rewritten = qpdf_rewrite(data)
    assert data != rewritten
    same_drawing = [
        pypdfium2.PdfDocument(d)[0].render().to_pil().tobytes() for d in (data, rewritten)
    ]
    assert same_drawing[0] == same_drawing[1]
    assert identities(rewritten) == identities(data)


@pytest.mark.parametrize(
    "kind", ["inline", "inline AHx", "inline Fl", "PNG predictor", "palette stream"]
)
def test_a_visible_edit_of_image_data_changes_the_identity(kind: str) -> None:
    edited_pixels = bytes([PIXELS[0] ^ 0xFF]) + PIXELS[1:]
    assert identities(image_pdf(kind, edited_pixels)) != identities(image_pdf(kind))


# -- damaged files that pdfium opens ------------------------------------------------------------
def null_media_boxes(data: bytes) -> bytes:
    """Every /MediaBox made null, in place (offsets kept): inherited from nowhere."""
    import re

    return re.sub(
        rb"/MediaBox\s*\[[^\]]*\]", lambda m: b"/MediaBox null".ljust(len(m.group())), data
    )


def without_startxref(data: bytes) -> bytes:
    """The file truncated of its `startxref ... %%EOF` tail."""
    return data[: data.rfind(b"startxref")]


def stream_without_end(data: bytes) -> bytes:
    """A stream whose /Length is larger than its data and whose `endstream` is missing."""
    import re

    m = re.compile(rb"/Length (\d+)\s*(/[^>]*)?>>\s*stream\r?\n").search(data, len(data) // 3)
    assert m is not None
    end = data.index(b"endstream", m.end())
    longer = b"9" * len(m.group(1))
    return data[: m.start(1)] + longer + data[m.end(1) : end] + b" " * 9 + data[end + 9 :]


DAMAGES = {
    "null MediaBox": ("us-036.pdf", null_media_boxes),
    "no startxref": ("us-036.pdf", without_startxref),
    "stream without endstream": ("us-001.pdf", stream_without_end),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_files_pdfium_opens_are_read(damage: str) -> None:
    """Regression: a null /MediaBox (pypdf raises on it), a file without its startxref tail
    (pypdf finds no %%EOF) were refused as "cannot read as a PDF" while pdfium opens them: the
    pages are now those pdfium sees, on US Letter where the media box is null, as pdfium draws
    them, and the document says it was repaired."""
    import pypdfium2

    name, damage_of = DAMAGES[damage]
    data = damage_of(pdf(name).read_bytes())
    pdfium = pypdfium2.PdfDocument(data)
    sizes = [tuple(round(x) for x in pdfium[i].get_size()) for i in range(len(pdfium))]
    doc = read_document(pdf(name), data=data, fingerprint=fingerprint_file(pdf(name))[0])
    assert [(round(p.width), round(p.height)) for p in doc.pages] == sizes
    if damage != "null MediaBox":  # what is drawn is the same
        assert doc.identities == read_document(pdf(name)).identities
    if damage != "no startxref":  # pypdf reads it alone: both readers agree
        assert identities(data) == list(doc.identities)
    if damage == "no startxref":
        assert doc.warnings[0].startswith("damaged file, read by pypdf's repair: ")
        assert doc.warnings[1].startswith("no startxref at the end of the file")
    if damage == "null MediaBox":  # pypdf reads it without a word: only a null is odd
        assert doc.warnings == ()


def test_a_page_without_media_box_is_letter_sized_as_pdfium_draws_it() -> None:
    data = raw_pdf(b"0 0 m 10 10 l S", b"<< >>").replace(b"/MediaBox [0 0 200 200]", b" " * 23)
    (page,) = page_identities(data)
    assert (page.width, page.height) == (612.0, 792.0)


def test_a_file_nobody_can_read_fails_with_a_clear_reason() -> None:
    import pypdfium2

    from tore_nb.incremental.documents import DocumentError

    data = pdf("us-036.pdf").read_bytes()
    cut = data[: len(data) // 2]  # the catalog and the page tree are gone
    with pytest.raises(pypdfium2.PdfiumError):
        pypdfium2.PdfDocument(cut)
    with pytest.raises(DocumentError, match="cannot read <bytes> as a PDF"):
        page_identities(cut)


def test_a_plain_file_has_no_warnings_and_documents_pickle() -> None:
    import pickle

    doc = read_document(pdf(SAMPLE))
    assert doc.warnings == ()
    assert pickle.loads(pickle.dumps(doc)) == doc
