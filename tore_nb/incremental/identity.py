"""Page content identities: an xxh3-128 digest of what a page draws.

A page's identity covers its decoded content stream(s), the resources those streams name (fonts,
images, form XObjects recursively with their own scoped resources, graphics states, colour spaces,
patterns, shadings), the appearance streams of its annotations, its boxes and its /Rotate. Object
numbers, /Info, unused entries of a shared /Resources dictionary, dictionary key order, direct or
indirect storage and the writer's formatting of reals (6 significant digits are kept) are left out,
so a rewrite of the file by another tool changes no identity.

pypdf reads the cross-reference table and the page tree; every other object is read straight from
the file bytes by a regex tokenizer (`RawObjects`), several times faster than pypdf's parser.

>>> [t for t, _ in tokenize(b"<< /Type /Font /W [1 2.5] /F 3 0 R >>")]
['<<', 'name', 'name', 'name', '[', 'num', 'num', ']', 'name', 'ref', '>>']
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from typing import Any

import xxhash

__all__ = ["IDENTITY_VERSION", "PageHasher", "RawObjects", "tokenize"]

IDENTITY_VERSION = 2
_WS = b"\x00\t\n\x0c\r "
_TOKEN = re.compile(
    rb"""
    (?:[\x00\t\n\x0c\r ]+|%[^\r\n]*)*
    (?:
    (?P<ref>(?P<rn>\d+)[\x00\t\n\x0c\r ]+(?P<rg>\d+)[\x00\t\n\x0c\r ]+R
      (?![^\x00\t\n\x0c\r ()<>\[\]{}/%]))
  | (?P<num>[+-]?(?:\d+\.?\d*|\.\d+))
  | (?P<name>/[^\x00\t\n\x0c\r ()<>\[\]{}/%]*)
  | (?P<dopen><<) | (?P<dclose>>>)
  | (?P<aopen>\[) | (?P<aclose>\])
  | (?P<hex><[0-9A-Fa-f\x00\t\n\x0c\r ]*>)
  | (?P<lit>\((?:[^\\()]|\\.|\((?:[^\\()]|\\.|\((?:[^\\()]|\\.)*\))*\))*\))
  | (?P<kw>[A-Za-z_]+)
  | (?P<ws>\Z)
    )
    """,
    re.X | re.S,
)
_KINDS = {"dopen": "<<", "dclose": ">>", "aopen": "[", "aclose": "]"}
_NUM_ARRAY = re.compile(
    rb"\[((?:[\x00\t\n\x0c\r ]*[+-]?(?:\d+\.?\d*|\.\d+)(?![\d.]))*)[\x00\t\n\x0c\r ]*\]"
)
_NAME_ESC = re.compile(rb"#([0-9A-Fa-f]{2})")
_LIT_SPECIAL = re.compile(rb"[()\\]")
_ESCAPES = {
    b"n": b"\n",
    b"r": b"\r",
    b"t": b"\t",
    b"b": b"\b",
    b"f": b"\f",
    b"(": b"(",
    b")": b")",
    b"\\": b"\\",
}
_OBJ_HEAD = re.compile(rb"[\x00\t\n\x0c\r ]*(\d+)[\x00\t\n\x0c\r ]+(\d+)[\x00\t\n\x0c\r ]+obj")
_NAME_IN_CONTENT = re.compile(rb"/([^\x00\t\n\x0c\r ()<>\[\]{}/%]*)")
_MAX_DECODE = 16 * 1024 * 1024
# dictionary entries that link the object graph back to pages or carry no drawing
_SKIP_KEYS = frozenset(
    {
        "/Parent",
        "/P",
        "/StructParent",
        "/StructParents",
        "/Length",
        "/Dest",
        "/A",
        "/AA",
        "/Metadata",
        "/PieceInfo",
        "/LastModified",
        "/NM",
        "/M",
        "/Popup",
        "/IRT",
        "/Kids",
        "/Thumb",
        "/B",
        "/ID",
    }
)
_RESOURCE_KINDS = (
    "/ColorSpace",
    "/ExtGState",
    "/Font",
    "/Pattern",
    "/Properties",
    "/Shading",
    "/XObject",
)
_FORM_SKIP = _SKIP_KEYS | {"/Resources", "/Filter", "/DecodeParms"}


class Name(str):
    """A PDF name such as /Font (a str, told apart from strings)."""

    __slots__ = ()


class Ref:
    """An indirect reference `n g R`."""

    __slots__ = ("generation", "idnum")

    def __init__(self, idnum: int, generation: int) -> None:
        self.idnum, self.generation = idnum, generation

    def __repr__(self) -> str:
        return f"Ref({self.idnum}, {self.generation})"


class Stream(dict[str, Any]):
    """A stream: its dictionary and its raw (still encoded) data."""

    __slots__ = ("data",)

    def __init__(self, d: dict[str, Any], data: bytes) -> None:
        super().__init__(d)
        self.data = data


class _Bad(Exception):
    """The raw reader cannot read this object; pypdf will."""


def tokenize(data: bytes, pos: int = 0) -> Iterator[tuple[str, Any]]:
    """(kind, value) tokens of PDF object syntax, from `pos` on (for inspection and tests)."""
    n = len(data)
    while pos < n:
        m = _TOKEN.match(data, pos)
        if m is None:
            raise _Bad(f"unexpected byte {data[pos : pos + 1]!r} at {pos}")
        kind = m.lastgroup or "ws"
        pos = m.end()
        if kind == "ws":
            continue
        text = m.group(kind)
        if kind == "lit":
            yield "str", _unescape(text[1:-1])
        elif kind == "ref":
            yield "ref", Ref(int(m.group("rn")), int(m.group("rg")))
        elif kind in ("num", "name", "hex", "kw"):
            yield kind, text
        else:
            yield _KINDS[kind], None


def _literal(data: bytes, pos: int) -> tuple[bytes, int]:
    """A literal string starting after its '(': the unescaped bytes and the end position."""
    depth, out, start = 1, bytearray(), pos
    for m in _LIT_SPECIAL.finditer(data, pos):
        i = m.start()
        if i < start:
            continue
        c = data[i : i + 1]
        out += data[start:i]
        if c == b"\\":
            nxt = data[i + 1 : i + 2]
            if nxt in _ESCAPES:
                out += _ESCAPES[nxt]
                start = i + 2
            elif nxt.isdigit():
                octal = re.match(rb"[0-7]{1,3}", data[i + 1 : i + 4])
                digits = octal.group() if octal else nxt
                out.append(int(digits, 8) & 0xFF)
                start = i + 1 + len(digits)
            elif nxt in (b"\r", b"\n"):
                start = i + 2 + (nxt == b"\r" and data[i + 2 : i + 3] == b"\n")
            else:
                start = i + 1
        elif c == b"(":
            depth += 1
            out += c
            start = i + 1
        else:
            depth -= 1
            if depth == 0:
                return bytes(out), i + 1
            out += c
            start = i + 1
    raise _Bad("unterminated string")


def parse_object(data: bytes, pos: int = 0, end: int | None = None) -> tuple[Any, int | None]:
    """The first object at `pos`; the second value is where stream data starts, if any."""
    stack: list[Any] = []
    keys: list[Any] = []
    root: Any = _NONE
    stop = len(data) if end is None else end
    match, numbers = _TOKEN.match, _NUM_ARRAY.match
    while pos < stop:
        m = match(data, pos, stop)
        if m is None:
            raise _Bad(f"unexpected byte at {pos}")
        kind = m.lastgroup
        pos = m.end()
        if kind == "ws":
            continue
        value: Any
        arr = numbers(data, m.start("aopen"), stop) if kind == "aopen" else None
        if arr is not None:  # /Widths, matrices, boxes: one regex, no token loop
            pos = arr.end()
            value = [float(t) if b"." in t else int(t) for t in arr.group(1).split()]
        elif kind == "num":
            tok = m.group("num")
            value = float(tok) if b"." in tok else int(tok)
        elif kind == "name":
            raw = m.group("name")[1:]
            if b"#" in raw:
                raw = _NAME_ESC.sub(lambda g: bytes([int(g.group(1), 16)]), raw)
            value = Name("/" + raw.decode("utf-8", "surrogateescape"))
        elif kind == "ref":
            value = Ref(int(m.group("rn")), int(m.group("rg")))
        elif kind == "dopen" or kind == "aopen":
            stack.append({} if kind == "dopen" else [])
            keys.append(None)
            continue
        elif kind == "dclose" or kind == "aclose":
            if not stack:
                raise _Bad("unbalanced")
            value = stack.pop()
            keys.pop()
        elif kind == "lit":
            value = _unescape(m.group("lit")[1:-1])
        elif kind == "hex":
            digits = re.sub(rb"[^0-9A-Fa-f]", b"", m.group("hex")[1:-1])
            value = bytes.fromhex((digits + b"0" if len(digits) % 2 else digits).decode())
        elif kind == "kw":
            word = m.group("kw")
            if word == b"stream" or word == b"endobj":
                if root is _NONE or stack:
                    raise _Bad("misplaced keyword")
                return root, (m.end() if word == b"stream" else None)
            if word == b"true" or word == b"false":
                value = word == b"true"
            elif word == b"null":
                value = None
            else:
                raise _Bad(f"unexpected keyword {word!r}")
        else:
            raise _Bad(f"unexpected token {m.group()!r}")
        if not stack:
            if root is not _NONE:
                return root, None
            root = value
            if not isinstance(root, dict | list):
                # a scalar object; a following `stream` or `endobj` keyword ends it
                continue
            continue
        top = stack[-1]
        if type(top) is list:
            top.append(value)
        elif keys[-1] is None:
            if type(value) is not Name:
                raise _Bad("a dictionary key must be a name")
            keys[-1] = value
        else:
            top[str(keys[-1])] = value
            keys[-1] = None
    if root is _NONE or stack:
        raise _Bad("truncated object")
    return root, None


def _unescape(body: bytes) -> bytes:
    if b"\\" not in body:
        return body
    out, _ = _literal(body + b")", 0)
    return out


_NONE: Any = object()


class RawObjects:
    """Indirect objects of one file, read from its bytes at the offsets pypdf found."""

    def __init__(self, data: bytes, reader: Any, *, raw: bool = True) -> None:
        self.data = data
        self.reader = reader
        self.raw = raw
        self.offsets: dict[tuple[int, int], int] = {
            (idnum, gen): off for gen, table in reader.xref.items() for idnum, off in table.items()
        }
        self.in_streams: dict[int, tuple[int, int]] = dict(reader.xref_objStm)
        self._objstm: dict[int, tuple[bytes, dict[int, int]]] = {}
        self._cache: dict[tuple[int, int], Any] = {}

    def get(self, idnum: int, generation: int = 0) -> Any:
        key = (idnum, generation)
        if key in self._cache:
            return self._cache[key]
        try:
            if not self.raw:
                raise _Bad("raw reading is off")
            value = self._read(idnum, generation)
        except (_Bad, ValueError, IndexError, KeyError, zlib.error, UnicodeDecodeError):
            value = self.reader.get_object(idnum)  # pypdf's objects; the hasher takes both
        self._cache[key] = value
        return value

    def _read(self, idnum: int, generation: int) -> Any:
        if generation == 0 and idnum in self.in_streams:
            stmnum, _ = self.in_streams[idnum]
            body, offsets = self._object_stream(stmnum)
            value, _ = parse_object(body, offsets[idnum])
            return value
        off = self.offsets.get((idnum, generation))
        if off is None:
            return None  # a free or missing object is null
        head = _OBJ_HEAD.match(self.data, off)
        if head is None or int(head.group(1)) != idnum:
            raise _Bad("object header not at its offset")
        value, data_start = parse_object(self.data, head.end())
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
        if data[start : start + 2] == b"\r\n":
            start += 2
        elif data[start : start + 1] in (b"\n", b"\r"):
            start += 1
        length = d.get("/Length")
        if isinstance(length, Ref):
            length = self.get(length.idnum, length.generation)
        if isinstance(length, int) and not isinstance(length, bool):
            end = start + length
            tail = data[end : end + 20].lstrip(_WS)
            if tail.startswith(b"endstream"):
                return data[start:end]
        end = data.find(b"endstream", start)
        if end < 0:
            raise _Bad("no endstream")
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
            raise _Bad("object stream is not a stream")
        body = decoded(container)
        if body is None:
            raise _Bad("object stream filter")
        first = int(container["/First"])
        nums = [int(x) for x in body[:first].split()]
        offsets = {nums[i]: first + nums[i + 1] for i in range(0, len(nums) - 1, 2)}
        self._objstm[stmnum] = (body, offsets)
        return body, offsets


def decoded(stream: Any) -> bytes | None:
    """A Flate stream's inflated data, the data of an unfiltered one, else None."""
    raw: bytes = stream.data if isinstance(stream, Stream) else stream._data
    filt = stream.get("/Filter")
    if filt is None:
        return raw
    if isinstance(filt, list):
        if len(filt) != 1:
            return None
        filt = filt[0]
    if filt != "/FlateDecode":
        return None
    try:
        d = zlib.decompressobj()
        out = d.decompress(raw, _MAX_DECODE)
    except zlib.error:
        return None
    return None if d.unconsumed_tail else out


def used_names(content: bytes) -> frozenset[str]:
    """Every name a content stream mentions (resource names among them)."""
    names = set()
    for raw in _NAME_IN_CONTENT.findall(content):
        if b"#" in raw:
            raw = _NAME_ESC.sub(lambda g: bytes([int(g.group(1), 16)]), raw)
        names.add("/" + raw.decode("utf-8", "surrogateescape"))
    return frozenset(names)


def num(x: float) -> str:
    """A number as 6 significant digits: writers round reals differently (pypdf keeps 8)."""
    f = float(x)
    if f.is_integer() and abs(f) < 1e15:
        return str(int(f))
    return f"{f:.6g}"


_NUMBER_TYPES: set[type] = {int, float}


class PageHasher:
    """Digests of the pages of one file; digests of shared objects are computed once."""

    def __init__(self, raw: RawObjects) -> None:
        self.raw = raw
        self._memo: dict[tuple[int, int, bool], bytes] = {}
        self._busy: set[tuple[int, int, bool]] = set()
        from pypdf import generic

        self._g = generic
        _NUMBER_TYPES.update({generic.NumberObject, generic.FloatObject})

    # pages -----------------------------------------------------------------------------------
    def page(self, page: Any) -> tuple[str, float, float, int]:
        """(identity, width, height, rotation) of a pypdf PageObject."""
        rotation = int(self._value(_get(page, "/Rotate")) or 0) % 360
        media = [float(x) for x in page.mediabox]
        crop = [float(x) for x in page.cropbox]
        h = xxhash.xxh3_128()
        h.update(b"page-v%d;r%d;" % (IDENTITY_VERSION, rotation))
        h.update(" ".join(num(v) for v in media).encode() + b";")
        if crop != media:
            h.update(b"crop " + " ".join(num(v) for v in crop).encode() + b";")
        content = self._content(_get(page, "/Contents"))
        _feed_bytes(h, content)
        self._scoped_resources(h, self._value(_get(page, "/Resources")), content)
        for key in ("/Group", "/UserUnit"):
            if key in page:
                h.update(key.encode())
                self._feed(h, _get(page, key))
        annots = self._value(_get(page, "/Annots"))
        if isinstance(annots, list):
            for annot in annots:
                if self._may_draw(annot):
                    self._annotation(h, self._value(annot))
        width, height = abs(crop[2] - crop[0]), abs(crop[3] - crop[1])
        if rotation in (90, 270):
            width, height = height, width
        return h.hexdigest(), width, height, rotation

    def _value(self, obj: Any) -> Any:
        """Resolve a reference (raw or pypdf) to its value."""
        g = self._g
        if isinstance(obj, Ref):
            return self.raw.get(obj.idnum, obj.generation)
        if isinstance(obj, g.IndirectObject):
            return self.raw.get(int(obj.idnum), int(obj.generation))
        return obj

    def _content(self, contents: Any) -> bytes:
        contents = self._value(contents)
        if isinstance(contents, list):
            return b"\n".join(self._stream_content(self._value(c)) for c in contents)
        return self._stream_content(contents)

    def _stream_content(self, stream: Any) -> bytes:
        if not _is_stream(stream, self._g):
            return b""
        data = decoded(stream)
        return data if data is not None else b"raw:" + _stream_raw(stream)

    def _scoped_resources(self, h: Any, resources: Any, content: bytes) -> None:
        """Hash only the resources that `content` names; shared dictionaries stay out."""
        if not isinstance(resources, dict):
            return
        used = used_names(content)
        for kind in _RESOURCE_KINDS:
            group = self._value(resources.get(kind))
            if not isinstance(group, dict):
                continue
            scoped = kind in ("/XObject", "/Pattern")
            for name in sorted(str(n) for n in group if n in used):
                h.update(b"res" + kind.encode() + name.encode() + b";")
                h.update(self._digest(dict.__getitem__(group, name), scoped))

    def _may_draw(self, annot: Any) -> bool:
        """False for an annotation without an appearance stream (a link): it draws nothing.

        Decided from the object's bytes where possible, without parsing it.
        """
        g = self._g
        if isinstance(annot, Ref | g.IndirectObject):
            text = self.raw.source_of(int(annot.idnum), int(annot.generation))
            if text is not None and b"/AP" not in text:
                return False
        return True

    def _annotation(self, h: Any, annot: Any) -> None:
        if not isinstance(annot, dict) or "/AP" not in annot:
            return  # no appearance stream: draws nothing
        h.update(b"annot;")
        for key in ("/Subtype", "/Rect", "/F", "/AS", "/Contents", "/V", "/AP"):
            if key in annot:
                h.update(key.encode())
                h.update(self._digest(dict.__getitem__(annot, key), key == "/AP"))

    # objects ---------------------------------------------------------------------------------
    def _digest(self, obj: Any, scoped: bool = False) -> bytes:
        """The digest of any object, the same whether it is stored directly or by reference."""
        g = self._g
        if isinstance(obj, Ref | g.IndirectObject):
            key = (int(obj.idnum), int(obj.generation), scoped)
            hit = self._memo.get(key)
            if hit is not None:
                return hit
            if key in self._busy:
                return b"cycle"
            self._busy.add(key)
            try:
                digest = self._digest(self._value(obj), scoped)
            finally:
                self._busy.discard(key)
            self._memo[key] = digest
            return digest
        h = xxhash.xxh3_128()
        self._feed(h, obj, scoped)
        return h.digest()

    def _feed(self, h: Any, obj: Any, scoped: bool = False) -> None:
        t = type(obj)
        if t is Name:
            h.update(b"/" + obj.encode("utf-8", "surrogateescape") + b";")
            return
        if t is int:
            h.update(b"n%d;" % obj)
            return
        g = self._g
        if isinstance(obj, Ref | g.IndirectObject):
            h.update(b"@" + self._digest(obj, scoped))
        elif t is bool or isinstance(obj, g.BooleanObject):
            h.update(b"T;" if (obj if t is bool else obj.value) else b"F;")
        elif isinstance(obj, Name | g.NameObject):
            h.update(b"/" + str(obj).encode("utf-8", "surrogateescape") + b";")
        elif isinstance(obj, int | float):
            h.update(b"n" + num(obj).encode() + b";")
        elif isinstance(obj, g.TextStringObject):
            _feed_bytes(h, b"s", obj.original_bytes)
        elif isinstance(obj, bytes):
            _feed_bytes(h, b"s", bytes(obj))
        elif obj is None or isinstance(obj, g.NullObject):
            h.update(b"N;")
        elif isinstance(obj, list):
            h.update(b"[%d;" % len(obj))
            if all(type(x) in _NUMBER_TYPES for x in obj):
                h.update(" ".join(str(x) if type(x) is int else num(x) for x in obj).encode())
                h.update(b"]")
                return
            for item in obj:
                if isinstance(item, dict | list):
                    h.update(b"@" + self._digest(item, scoped))
                else:
                    self._feed(h, item, scoped)
        elif isinstance(obj, dict):
            if _is_stream(obj, g):
                if (scoped and obj.get("/Subtype") == "/Form") or obj.get("/PatternType") == 1:
                    self._form(h, obj)
                    return
                h.update(b"stream;")
                self._dict(h, obj, scoped=False)
                _feed_bytes(h, _stream_raw(obj))
                return
            self._dict(h, obj, scoped)
        else:
            h.update(b"?" + repr(obj).encode() + b";")

    def _dict(self, h: Any, d: dict[str, Any], scoped: bool) -> None:
        keys = sorted(str(k) for k in d if k not in _SKIP_KEYS)
        h.update(b"<<%d;" % len(keys))
        for k in keys:
            h.update(k.encode("utf-8", "surrogateescape") + b"=")
            v = dict.__getitem__(d, k)
            if isinstance(v, dict | list):
                h.update(b"@" + self._digest(v, scoped))
            else:
                self._feed(h, v, scoped)

    def _form(self, h: Any, stream: Any) -> None:
        """A form XObject or tiling pattern: dictionary, content and its scoped resources."""
        content = self._stream_content(stream)
        h.update(b"form;")
        for key in sorted(str(k) for k in stream if k not in _FORM_SKIP):
            h.update(key.encode() + b"=")
            v = dict.__getitem__(stream, key)
            if isinstance(v, dict | list):
                h.update(b"@" + self._digest(v))
            else:
                self._feed(h, v)
        _feed_bytes(h, content)
        self._scoped_resources(h, self._value(stream.get("/Resources")), content)


def _get(d: Any, key: str) -> Any:
    """A dictionary entry as stored (a reference stays a reference)."""
    try:
        return dict.__getitem__(d, key)
    except KeyError:
        return None


def _is_stream(obj: Any, g: Any) -> bool:
    return isinstance(obj, Stream | g.StreamObject)


def _stream_raw(stream: Any) -> bytes:
    data: bytes = stream.data if isinstance(stream, Stream) else stream._data
    return data


def _feed_bytes(h: Any, *parts: bytes) -> None:
    for p in parts:
        h.update(b"%d:" % len(p))
        h.update(p)
