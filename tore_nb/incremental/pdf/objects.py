"""The objects of one PDF file: cross-reference sections, object streams, stream data.

`read_xref` reads the cross-reference tables and streams (with their /Prev chain) into object
offsets, objects stored in object streams and the trailer, as pypdf reads them; `RawObjects`
reads the indirect objects at those offsets with the parser of `syntax`, and the page tree.
Whatever pypdf would have to repair or decrypt raises `Fallback`; an object the raw reader cannot
read is read by pypdf. `decoded` undoes a stream's transport filters (`filters`).

>>> import zlib
>>> decoded(Stream({"/Filter": "/FlateDecode"}, zlib.compress(b"0 0 m 10 10 l S")))
b'0 0 m 10 10 l S'
"""

from __future__ import annotations

import io
import re
import zlib
from typing import Any

from .filters import transport_decoded
from .syntax import WHITESPACE, Name, Ref, Stream, Unreadable, parse_object

__all__ = ["Fallback", "RawObjects", "decoded", "read_xref", "stream_raw"]

_OBJ_HEAD = re.compile(rb"[\x00\t\n\x0c\r ]*(\d+)[\x00\t\n\x0c\r ]+(\d+)[\x00\t\n\x0c\r ]+obj")
_MAX_DECODE = 16 * 1024 * 1024
_MISSING: Any = object()


class Fallback(Exception):
    """The file is not plain enough for the fast reader: read it with pypdf instead."""


class RawObjects:
    """Indirect objects of one file, read from its bytes.

    With a pypdf `reader`, at the offsets pypdf found. Without one, the cross-reference sections
    are read here (`Fallback` is raised where pypdf would have to repair or decrypt something)
    and pypdf is opened only if some object cannot be read raw.

    >>> import io, pypdf
    >>> w = pypdf.PdfWriter(); _ = w.add_blank_page(200, 100); out = io.BytesIO(); _ = w.write(out)
    >>> raw = RawObjects(out.getvalue())
    >>> [p["/MediaBox"] for p in raw.pages()], raw.pypdf_opened
    ([[0.0, 0.0, 200, 100]], False)
    """

    def __init__(self, data: bytes, reader: Any = None, *, raw: bool = True) -> None:
        self.data = data
        self._reader = reader
        self.raw = raw
        self.trailer: dict[str, Any] = {}
        self.offsets: dict[tuple[int, int], int]
        self.in_streams: dict[int, tuple[int, int]]
        if reader is not None:
            self.offsets = {
                (idnum, gen): off
                for gen, table in reader.xref.items()
                for idnum, off in table.items()
            }
            self.in_streams = dict(reader.xref_objStm)
        else:
            self.offsets, self.in_streams, self.trailer = read_xref(data)
        self._objstm: dict[int, tuple[bytes, dict[int, int]]] = {}
        self._cache: dict[tuple[int, int], Any] = {}
        self._parsed: dict[bytes, Any] = {}  # flat dictionaries by their text (parse_object)

    @property
    def reader(self) -> Any:
        """The pypdf reader of the same bytes, opened on first use."""
        if self._reader is None:
            import pypdf

            self._reader = pypdf.PdfReader(io.BytesIO(self.data))
        return self._reader

    @property
    def pypdf_opened(self) -> bool:
        """Whether pypdf read this file: given as `reader`, or opened for an object read raw."""
        return self._reader is not None

    def pages(self) -> list[dict[str, Any]]:
        """The page dictionaries in order, inherited attributes filled in as pypdf does."""
        catalog = self._resolve(self.trailer.get("/Root"))
        if type(catalog) is not dict or self._resolve(catalog.get("/Type")) != "/Catalog":
            raise Fallback("no plain catalog")
        root = self._resolve(catalog.get("/Pages"))
        if type(root) is not dict:
            raise Fallback("no page tree")
        pages: list[dict[str, Any]] = []
        # (node, its reference, inherited attributes, the nodes above it)
        todo: list[tuple[dict[str, Any], Any, dict[str, Any], tuple[int, ...]]] = [
            (root, None, {}, ())
        ]
        while todo:
            node, ref, inherit, above = todo.pop()
            if "/Type" in node:
                kind = self._resolve(node["/Type"])
            else:
                kind = "/Page" if "/Kids" not in node else "/Pages"
            if kind == "/Page":
                page = dict(node)
                for key, value in inherit.items():
                    page.setdefault(key, value)
                pages.append(page)
            elif kind == "/Pages":
                if len(above) > 64:
                    raise Fallback("deep page tree")
                inherit = dict(inherit)
                for key in _INHERITED:
                    if key in node:
                        inherit[key] = node[key]
                kids = self._resolve(node.get("/Kids"))
                if kids is None:
                    kids = []
                if type(kids) is not list:
                    raise Fallback("/Kids is not an array")
                path = (*above, id(node))
                children = []
                for kid in kids:
                    if type(kid) is Ref and type(ref) is Ref and _same_ref(kid, ref):
                        raise Fallback("cyclic page tree")
                    child = self._resolve(kid)
                    if type(child) is not dict:
                        if child is None:
                            continue
                        raise Fallback("page tree entry is not a dictionary")
                    if not child:
                        continue
                    if id(child) in path:
                        raise Fallback("cyclic page tree")
                    children.append((child, kid, inherit, path))
                todo.extend(reversed(children))
        return pages

    def _resolve(self, obj: Any) -> Any:
        if type(obj) is Ref:
            obj = self.get(obj.idnum, obj.generation)
            if type(obj) not in _RAW_TYPES:
                raise Fallback("pypdf object in the page tree")
        return obj

    def get(self, idnum: int, generation: int = 0) -> Any:
        key = (idnum, generation)
        value = self._cache.get(key, _MISSING)
        if value is not _MISSING:
            return value
        try:
            if not self.raw:
                raise Unreadable("raw reading is off")
            value = self._read(idnum, generation)
        except (Unreadable, ValueError, IndexError, KeyError, zlib.error, UnicodeDecodeError):
            value = self.reader.get_object(idnum)  # pypdf's objects; the hasher takes both
        self._cache[key] = value
        return value

    def _read(self, idnum: int, generation: int) -> Any:
        if generation == 0 and idnum in self.in_streams:
            stmnum, _ = self.in_streams[idnum]
            body, offsets = self._object_stream(stmnum)
            value, _ = parse_object(body, offsets[idnum], memo=self._parsed)
            return value
        off = self.offsets.get((idnum, generation))
        if off is None:
            return None  # a free or missing object is null
        head = _OBJ_HEAD.match(self.data, off)
        if head is None or int(head.group(1)) != idnum or int(head.group(2)) != generation:
            if self._reader is None:
                raise Fallback("object header not at its offset")  # pypdf would search for it
            raise Unreadable("object header not at its offset")
        value, data_start = parse_object(self.data, head.end(), memo=self._parsed)
        if data_start is not None:
            return Stream(value, self._stream_data(value, data_start))
        return value

    def source_of(self, idnum: int, generation: int = 0) -> bytes | None:
        """The bytes of an uncompressed, non-stream object, or None when not at hand."""
        if not self.raw or (generation == 0 and idnum in self.in_streams):
            return None
        off = self.offsets.get((idnum, generation))
        if off is None:
            return None
        end = self.data.find(b"endobj", off)
        if end < 0:
            return None
        text = self.data[off:end]
        return None if b"stream" in text else text

    def _stream_data(self, d: dict[str, Any], start: int) -> bytes:
        data = self.data
        start = _after_eol(data, start)
        length = d.get("/Length")
        if isinstance(length, Ref):
            length = self.get(length.idnum, length.generation)
        if isinstance(length, int) and not isinstance(length, bool):
            end = start + length
            tail = data[end : end + 20].lstrip(WHITESPACE)
            if tail.startswith(b"endstream"):
                return data[start:end]
        end = data.find(b"endstream", start)
        if end < 0:
            raise Unreadable("no endstream")
        if data[end - 2 : end] == b"\r\n":
            end -= 2
        elif data[end - 1 : end] in (b"\n", b"\r"):
            end -= 1
        return data[start:end]

    def _object_stream(self, stmnum: int) -> tuple[bytes, dict[int, int]]:
        got = self._objstm.get(stmnum)
        if got is not None:
            return got
        container = self.get(stmnum, 0)
        if not isinstance(container, Stream):
            raise Unreadable("object stream is not a stream")
        body = decoded(container)
        if body is None:
            raise Unreadable("object stream filter")
        first = int(container["/First"])
        nums = [int(x) for x in body[:first].split()]
        offsets = {nums[i]: first + nums[i + 1] for i in range(0, len(nums) - 1, 2)}
        self._objstm[stmnum] = (body, offsets)
        return body, offsets


_INHERITED = ("/Resources", "/MediaBox", "/CropBox", "/Rotate")
_RAW_TYPES: set[type] = {Name, int, float, bool, bytes, list, dict, Stream, Ref, type(None)}
_STARTXREF = re.compile(
    rb"startxref[\x00\t\n\x0c\r ]+(\d+)[\x00\t\n\x0c\r ]*%%EOF[\x00\t\n\x0c\r ]*\Z"
)
_XREF_SUBSECTION = re.compile(rb"[\x00\t\n\x0c\r ]*(\d+)[ ]+(\d+)[ ]*(?:\r\n|\r|\n)")
_XREF_ENTRY = re.compile(rb"(\d{10}) (\d{5}) ([nf])(?: \r| \n|\r\n)")
_TRAILER = re.compile(rb"[\x00\t\n\x0c\r ]*trailer")
_XREF_STREAM_KEYS = ("/Root", "/Encrypt", "/Info", "/ID", "/Size")


def _same_ref(a: Ref, b: Ref) -> bool:
    return a.idnum == b.idnum and a.generation == b.generation


def read_xref(
    data: bytes,
) -> tuple[dict[tuple[int, int], int], dict[int, tuple[int, int]], dict[str, Any]]:
    """Offsets of objects, objects in object streams and the trailer, as pypdf reads them.

    Only for a plain file: anything pypdf would repair, and an encrypted file, raise `Fallback`.

    >>> import io, pypdf
    >>> w = pypdf.PdfWriter(); _ = w.add_blank_page(200, 100); out = io.BytesIO(); _ = w.write(out)
    >>> offsets, in_streams, trailer = read_xref(out.getvalue())
    >>> len(offsets) > 0, in_streams, type(trailer["/Root"]).__name__
    (True, {}, 'Ref')
    """
    if not data.startswith(b"%PDF-"):
        raise Fallback("no header")
    tail_start = max(0, len(data) - 1024)
    at = data.rfind(b"startxref", tail_start)
    found = _STARTXREF.match(data, at) if at >= 0 else None
    if found is None:
        raise Fallback("no startxref at the end")
    offsets: dict[tuple[int, int], int] = {}
    in_streams: dict[int, tuple[int, int]] = {}
    trailer: dict[str, Any] = {}
    start: Any = int(found.group(1))
    first, seen, shifted = True, set(), [False]
    while start is not None:
        if type(start) is not int or start <= 0 or start >= len(data) or start in seen:
            raise Fallback("bad xref offset")
        if first and data[start - 1 : start] not in (b"\r", b"\n", b" ", b"\t"):
            raise Fallback("startxref not at a line start")  # pypdf checks, then repairs
        first = False
        seen.add(start)
        pos = start + 1 if data[start : start + 1] in (b"\r", b"\n") else start
        if data.startswith(b"xref", pos):
            section = _xref_table(data, pos + 4, offsets, shifted)
            for key, value in section.items():
                trailer.setdefault(key, value)
            if "/XRefStm" in section:
                _xref_stream(data, section["/XRefStm"], offsets, in_streams)
        elif data[pos : pos + 1].isdigit():
            section = _xref_stream(data, pos, offsets, in_streams)
            for key in _XREF_STREAM_KEYS:
                if key in section:
                    trailer.setdefault(key, section[key])
            if "/XRefStm" in section:
                _xref_stream(data, section["/XRefStm"], offsets, in_streams)
        else:
            raise Fallback("no xref section at its offset")
        start = section.get("/Prev")
    if "/Encrypt" in trailer or "/Root" not in trailer:
        raise Fallback("encrypted, or no /Root")
    if shifted[0]:
        head = _OBJ_HEAD.match
        for (num, gen), off in offsets.items():
            m = head(data, off)
            if m is None or int(m.group(1)) != num or int(m.group(2)) != gen:
                raise Fallback("an xref entry of a table not zero-indexed is off")
    return offsets, in_streams, trailer


def _xref_table(
    data: bytes, pos: int, offsets: dict[tuple[int, int], int], shifted: list[bool]
) -> dict[str, Any]:
    first = True
    while True:
        head = _XREF_SUBSECTION.match(data, pos)
        if head is None:
            break
        num, count = int(head.group(1)), int(head.group(2))
        if first and num != 0:
            shifted[0] = True  # pypdf then checks every entry's header, and may rebuild
        first = False
        pos = head.end()
        block = data[pos : pos + 20 * count]
        entries = _XREF_ENTRY.findall(block)
        if len(entries) != count or len(block) != 20 * count:
            raise Fallback("irregular xref entries")
        for offset, gen, kind in entries:
            if kind == b"n":
                offsets.setdefault((num, int(gen)), int(offset))
            num += 1
        pos += 20 * count
    tag = _TRAILER.match(data, pos)
    if tag is None:
        raise Fallback("no trailer after the xref table")
    end = data.find(b"startxref", tag.end())
    if end < 0:
        raise Fallback("no startxref after the trailer")
    try:
        section, _ = parse_object(data, tag.end(), end)
    except (Unreadable, ValueError) as exc:
        raise Fallback("unreadable trailer") from exc
    if type(section) is not dict:
        raise Fallback("trailer is not a dictionary")
    return section


def _xref_stream(
    data: bytes,
    pos: Any,
    offsets: dict[tuple[int, int], int],
    in_streams: dict[int, tuple[int, int]],
) -> dict[str, Any]:
    if type(pos) is not int or not 0 < pos < len(data):
        raise Fallback("bad xref stream offset")
    head = _OBJ_HEAD.match(data, pos)
    if head is None:
        raise Fallback("no xref stream at its offset")
    try:
        d, data_start = parse_object(data, head.end())
    except (Unreadable, ValueError) as exc:
        raise Fallback("unreadable xref stream") from exc
    if type(d) is not dict:
        raise Fallback("xref stream is not a dictionary")
    widths, size = d.get("/W"), d.get("/Size")
    if (
        data_start is None
        or d.get("/Type") != "/XRef"
        or type(size) is not int
        or type(widths) is not list
        or len(widths) != 3
        or any(type(w) is not int or not 0 <= w <= 8 for w in widths)
        or type(d.get("/Length")) is not int
    ):
        raise Fallback("irregular xref stream")
    index = d.get("/Index", [0, size])
    if type(index) is not list or len(index) % 2 or any(type(x) is not int or x < 0 for x in index):
        raise Fallback("irregular xref stream index")
    body = _png_rows(Stream(d, _plain_stream_data(data, d, data_start)), sum(widths))
    w0, w1, w2 = widths
    i = 0
    for s in range(0, len(index), 2):
        first, count = index[s], index[s + 1]
        if len(body) < i + count * (w0 + w1 + w2):
            raise Fallback("short xref stream")
        for num in range(first, first + count):
            kind = int.from_bytes(body[i : i + w0], "big") if w0 else 1
            a = int.from_bytes(body[i + w0 : i + w0 + w1], "big")
            b = int.from_bytes(body[i + w0 + w1 : i + w0 + w1 + w2], "big")
            i += w0 + w1 + w2
            if kind == 1:
                if (num, b) not in offsets and num not in in_streams:
                    offsets[(num, b)] = a
            elif kind == 2 and (num, 0) not in offsets and num not in in_streams:
                in_streams[num] = (a, b)
    return d


def _after_eol(data: bytes, start: int) -> int:
    """Where a stream's data starts: after the end of line that follows `stream`, if any."""
    if data[start : start + 2] == b"\r\n":
        return start + 2
    if data[start : start + 1] in (b"\n", b"\r"):
        return start + 1
    return start


def _plain_stream_data(data: bytes, d: dict[str, Any], start: int) -> bytes:
    start = _after_eol(data, start)
    end = start + int(d["/Length"])
    if not data[end : end + 20].lstrip(WHITESPACE).startswith(b"endstream"):
        raise Fallback("xref stream /Length is wrong")
    return data[start:end]


def _png_rows(stream: Stream, columns: int) -> bytes:
    """An xref stream's data: inflated, with a PNG predictor of Up or Sub (or none) undone."""
    parms = stream.get("/DecodeParms")
    if type(parms) is list and len(parms) == 1:
        parms = parms[0]
    filt = stream.get("/Filter")
    if filt not in (None, "/FlateDecode", ["/FlateDecode"]):
        raise Fallback("xref stream filter")
    try:
        body = zlib.decompress(stream.data) if filt is not None else stream.data
    except zlib.error as exc:
        raise Fallback("xref stream does not inflate") from exc
    if parms is None or (type(parms) is dict and parms.get("/Predictor", 1) == 1):
        return body
    if (
        type(parms) is not dict
        or not 10 <= parms.get("/Predictor", 1) <= 15
        or parms.get("/Columns", 1) != columns
        or parms.get("/Colors", 1) != 1
        or parms.get("/BitsPerComponent", 8) != 8
    ):
        raise Fallback("xref stream predictor")
    row = columns + 1
    if len(body) % row:
        raise Fallback("xref stream rows")
    out = bytearray()
    prev = bytes(columns)
    for r in range(0, len(body), row):
        kind, line = body[r], body[r + 1 : r + row]
        if kind == 2:
            line = bytes((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif kind == 1:
            acc = bytearray(line)
            for j in range(1, columns):
                acc[j] = (acc[j] + acc[j - 1]) & 0xFF
            line = bytes(acc)
        elif kind != 0:
            raise Fallback("xref stream PNG filter")
        out += line
        prev = line
    return bytes(out)


def decoded(stream: Any) -> bytes | None:
    """A stream's data with its transport filters undone (Flate, ASCII85, ASCIIHex, LZW,
    RunLength), the data of an unfiltered one; None for an image codec or data that does not
    decode.

    >>> decoded(Stream({"/Filter": "/DCTDecode"}, b"...")) is None
    True
    """
    got = transport_decoded(stream, stream_raw(stream), _MAX_DECODE)
    return got[0] if got is not None and not got[1] else None


def stream_raw(stream: Any) -> bytes:
    """A stream's data as stored in the file, of a raw `Stream` or of a pypdf stream object.

    >>> stream_raw(Stream({"/Length": 3}, b"abc"))
    b'abc'
    """
    data: bytes = stream.data if isinstance(stream, Stream) else stream._data
    return data
