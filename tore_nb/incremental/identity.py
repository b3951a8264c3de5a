"""Page content identities: an xxh3-128 digest of what a page draws.

A page's identity covers its decoded content stream(s), the resources those streams name (fonts,
images, form XObjects recursively with their own scoped resources, graphics states, colour spaces,
patterns, shadings), the appearance streams of its annotations (for an annotation without one, the
entries pdfium draws it from), its boxes and its /Rotate. A form without /Resources draws with the
resources of the content invoking it, so the names it uses scope those. Object numbers, /Info,
unused entries of a shared /Resources dictionary, dictionary key order, direct or indirect storage,
the writer's formatting of reals (6 significant digits are kept) and the compression of Flate
streams (their inflated data is hashed) are left out, so a rewrite of the file by another tool
changes no identity.

The cross-reference sections, the page tree and every object are read straight from the file
bytes by regexes (`RawObjects`), several times faster than pypdf's parser; pypdf reads a file (or
an object) only where that reader cannot. A file's dictionaries with the same text are parsed
once and share their values, and the digest of a shared direct value is computed once.

>>> [t for t, _ in tokenize(b"<< /Type /Font /W [1 2.5] /F 3 0 R >>")]
['<<', 'name', 'name', 'name', '[', 'num', 'num', ']', 'name', 'ref', '>>']
"""

from __future__ import annotations

import io
import re
import zlib
from collections.abc import Iterator
from typing import Any

import xxhash

from ..keys import hash_bytes

__all__ = ["IDENTITY_VERSION", "Fallback", "PageHasher", "RawObjects", "read_xref", "tokenize"]

IDENTITY_VERSION = 3
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
# atomic groups and possessive repeats: a failed match gives up at once, without backtracking
_NUM_ARRAY = re.compile(
    rb"\[((?>[\x00\t\n\x0c\r ]*[+-]?(?:\d+\.?\d*|\.\d+)(?![\d.]))*+)[\x00\t\n\x0c\r ]*\]"
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
# entries of annotation, page and structure dictionaries that link the object graph back to pages
# or carry no drawing; only dictionaries of `_LINKED_TYPES` leave them out: elsewhere such a key
# can be a name chosen by the writer (a Type 3 glyph /A in /CharProcs, an appearance state /P)
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
_LINKED_TYPES = frozenset({"/Annot", "/Page", "/Pages", "/Sig", "/StructElem", "/Catalog"})
# entries of a stream's dictionary that carry no drawing (/Length changes with the compression)
_STREAM_SKIP = frozenset(
    {"/Length", "/Metadata", "/PieceInfo", "/LastModified", "/StructParent", "/StructParents"}
)
# a stream's data is hashed decoded where its filter is Flate (or none): /Filter is left out too
_DECODED_SKIP = _STREAM_SKIP | {"/Filter"}
_NO_SKIP: frozenset[str] = frozenset()
_RESOURCE_KINDS = (
    "/ColorSpace",
    "/ExtGState",
    "/Font",
    "/Pattern",
    "/Properties",
    "/Shading",
    "/XObject",
)
_FORM_SKIP = _STREAM_SKIP | {"/Resources", "/Filter", "/DecodeParms"}
# an annotation without /AP: pdfium draws the markup kinds from these entries (it synthesises
# appearances for Square, Circle, Highlight, Underline, Squiggly, StrikeOut, Ink and Text, and
# form fields from their values); links and popups draw nothing, nor hidden or NoView ones
_NO_AP_KEYS = (
    "/Subtype",
    "/Rect",
    "/F",
    "/C",
    "/IC",
    "/CA",
    "/BS",
    "/Border",
    "/BE",
    "/RD",
    "/QuadPoints",
    "/InkList",
    "/Vertices",
    "/L",
    "/LE",
    "/Name",
    "/DA",
    "/DS",
    "/Q",
    "/FT",
    "/Ff",
    "/V",
    "/Opt",
    "/MK",
    "/MaxLen",
)
_NO_AP_FREETEXT_KEYS = ("/Contents", "/RC")  # drawn only by a FreeText annotation
_NO_DRAW_SUBTYPES = frozenset({"/Link", "/Popup"})
_HIDDEN_FLAGS = 2 | 32  # Hidden, NoView: not drawn on screen
_NO_DRAW_ANNOT = re.compile(
    rb"/Subtype[\x00\t\n\x0c\r ]*/(?:Link|Popup)(?![^\x00\t\n\x0c\r ()<>\[\]{}/%])"
)
# streams are inflated in chunks of this size into the hasher; beyond _MAX_INFLATE decoded bytes
# (a decompression bomb) the raw bytes are hashed instead
_INFLATE_CHUNK = 1 << 20
_MAX_INFLATE = 256 * 1024 * 1024


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


def _value_pattern(cap: bool) -> bytes:
    """One scalar value, or an array of numbers, as a regex (capturing each kind when `cap`)."""
    o = b"(" if cap else b"(?:"
    ws, reg = rb"[\x00\t\n\x0c\r ]", rb"[^\x00\t\n\x0c\r ()<>\[\]{}/%]"
    number = rb"[+-]?(?:\d+\.?\d*|\.\d+)"
    after = rb"(?=[\x00\t\n\x0c\r /\]>]|\Z)"
    lit = rb"\((?:[^\\()]|\\.|\((?:[^\\()]|\\.|\((?:[^\\()]|\\.)*\))*\))*\)"
    return (
        rb"(?:" + o + rb"\d+)" + ws + b"+" + o + rb"\d+)" + ws + b"+R(?!" + reg + b")"
        b"|" + o + number + b")" + after + b"|" + o + b"/" + reg + b"*)"
        b"|" + o + lit + b")|" + o + rb"<[0-9A-Fa-f\x00\t\n\x0c\r ]*>)"
        b"|"
        + o
        + b"true|false|null)"
        + after
        + rb"|\["
        + o
        + rb"(?>"
        + ws
        + b"*"
        + number
        + rb"(?![\d.]))*+)"
        + ws
        + rb"*\])"
    )


_WSS = rb"[\x00\t\n\x0c\r ]*"
_KEY = rb"/[^\x00\t\n\x0c\r ()<>\[\]{}/%]*"
_FLAT_DEPTH = 4


def _nested_patterns() -> tuple[list[bytes], list[bytes]]:
    """Values nested up to `_FLAT_DEPTH` dictionaries or arrays deep, without and with groups."""
    plain, grouped = [_value_pattern(False)], [_value_pattern(True)]
    for _ in range(_FLAT_DEPTH):
        inner = plain[-1]
        body_d = rb"(?>" + _WSS + _KEY + _WSS + inner + rb")*+" + _WSS
        body_a = rb"(?>" + _WSS + inner + rb")*+" + _WSS
        grouped.append(rb"(?:" + grouped[0] + rb"|(<<" + body_d + rb">>)|(\[" + body_a + rb"\]))")
        plain.append(rb"(?:" + inner + rb"|<<" + body_d + rb">>|\[" + body_a + rb"\])")
    return plain, grouped


_PLAIN, _GROUPED = _nested_patterns()
# entries of a dictionary and items of an array whose values nest at most `depth` levels
_ENTRY = [re.compile(_WSS + b"(" + _KEY + b")" + _WSS + g, re.S) for g in _GROUPED]
_ITEM = [re.compile(_WSS + g, re.S) for g in _GROUPED]
# a dictionary or array of values nested at most _FLAT_DEPTH levels: a few regexes, no token loop
# (a dictionary's entries are matched one by one with `_ENTRY[_FLAT_DEPTH - 1]`, then its '>>')
_FLAT_ARRAY = re.compile(
    rb"\[((?>" + _WSS + _PLAIN[_FLAT_DEPTH - 1] + rb")*+)" + _WSS + rb"\]", re.S
)
_DICT_CLOSE = re.compile(_WSS + b">>")
# the most entries each memo of tokens and their parts keeps (names, keys, numbers)
_CACHE_SIZE = 65536
_NAMES: dict[bytes, Name] = {}
_KEYS: dict[bytes, str] = {}


def _name(raw: bytes) -> Name:
    """The Name for a name token (`raw` starts with '/'); names repeat, so they are cached."""
    got = _NAMES.get(raw)
    if got is None:
        got = Name(_name_text(raw[1:]))
        if len(_NAMES) < _CACHE_SIZE:
            _NAMES[raw] = got
    return got


def _name_text(body: bytes) -> str:
    """'/' and a name's body (the bytes after its '/'), #xx escapes undone."""
    if b"#" in body:
        body = _NAME_ESC.sub(lambda g: bytes([int(g.group(1), 16)]), body)
    return "/" + body.decode("utf-8", "surrogateescape")


def _key(raw: bytes) -> str:
    got = _KEYS.get(raw)
    if got is None:
        got = str(_name(raw))
        if len(_KEYS) < _CACHE_SIZE:
            _KEYS[raw] = got
    return got


_NUMBERS: dict[bytes, int | float] = {}


def _number(token: bytes) -> int | float:
    """The value of a number token: a float where it has a '.', else an int (cached)."""
    got = _NUMBERS.get(token)
    if got is None:
        got = float(token) if b"." in token else int(token)
        if len(_NUMBERS) < _CACHE_SIZE:
            _NUMBERS[token] = got
    return got


def _numbers(text: bytes) -> list[int | float]:
    """The values of the number tokens in `text` (the body of an array of numbers)."""
    get = _NUMBERS.get
    return [v if (v := get(t)) is not None else _number(t) for t in text.split()]


def _hex(token: bytes) -> bytes:
    digits = re.sub(rb"[^0-9A-Fa-f]", b"", token[1:-1])
    return bytes.fromhex((digits + b"0" if len(digits) % 2 else digits).decode())


def _scalar(g: Any) -> Any:
    """The value of one `_value_pattern(True)` match, given as its groups."""
    rn, rg, nu, nm, lt, hx, kw, arr = g[:8]
    if nm:
        return _name(nm)
    if nu:
        return _number(nu)
    if rn:
        return Ref(int(rn), int(rg))
    if lt:
        return _unescape(lt[1:-1])
    if hx:
        return _hex(hx)
    if kw:
        return True if kw == b"true" else (False if kw == b"false" else None)
    return _numbers(arr)


def _flat_value(g: Any, depth: int) -> Any:
    """The value of one `_GROUPED[depth]` match: a scalar, or a nested dictionary or array."""
    if depth:
        if g[8]:
            return _flat_dict(g[8][2:-2], depth - 1)
        if g[9]:
            return _flat_array(g[9][1:-1], depth - 1)
    return _scalar(g)


def _flat_dict(body: bytes, depth: int = _FLAT_DEPTH - 1) -> dict[str, Any]:
    return _dict_of(_ENTRY[depth].findall(body), depth)


def _dict_of(entries: list[Any], depth: int) -> dict[str, Any]:
    """The dictionary of `_ENTRY[depth]` matches, given as their groups."""
    # names, numbers and references (most values) are read inline; see `_scalar`
    out: dict[str, Any] = {}
    keys, names = _KEYS, _NAMES
    for g in entries:
        k = g[0]
        key = keys.get(k) or _key(k)
        if g[4]:
            out[key] = names.get(g[4]) or _name(g[4])
        elif g[3]:
            out[key] = _number(g[3])
        elif g[1]:
            out[key] = Ref(int(g[1]), int(g[2]))
        else:
            out[key] = _flat_value(g[1:], depth)
    return out


def _flat_array(body: bytes, depth: int = _FLAT_DEPTH - 1) -> list[Any]:
    out: list[Any] = []
    names = _NAMES
    for g in _ITEM[depth].findall(body):
        if g[3]:
            out.append(names.get(g[3]) or _name(g[3]))
        elif g[2]:
            out.append(_number(g[2]))
        elif g[0]:
            out.append(Ref(int(g[0]), int(g[1])))
        else:
            out.append(_flat_value(g, depth))
    return out


_K_REF, _K_NUM, _K_NAME, _K_DOPEN, _K_DCLOSE, _K_AOPEN, _K_ACLOSE = 1, 4, 5, 6, 7, 8, 9
_K_HEX, _K_LIT, _K_KW, _K_WS = 10, 11, 12, 13


def parse_object(
    data: bytes, pos: int = 0, end: int | None = None, memo: dict[bytes, Any] | None = None
) -> tuple[Any, int | None]:
    """The first object at `pos`; the second value is where stream data starts, if any.

    With a `memo`, dictionaries nested at most `_FLAT_DEPTH` levels are parsed once per distinct
    text and their values shared (nothing mutates a parsed object); the returned object itself
    is always a fresh one.
    """
    stack: list[Any] = []
    keys: list[Any] = []
    root: Any = _NONE
    stop = len(data) if end is None else end
    match, numbers = _TOKEN.match, _NUM_ARRAY.match
    entry_scanner = _ENTRY[_FLAT_DEPTH - 1].scanner  # type: ignore[attr-defined]
    dict_close, flat_array = _DICT_CLOSE.match, _FLAT_ARRAY.match
    while pos < stop:
        m = match(data, pos, stop)
        if m is None:
            raise _Bad(f"unexpected byte at {pos}")
        kind = m.lastindex
        pos = m.end()
        value: Any
        if kind == _K_NAME:
            value = _name(m.group(_K_NAME))
        elif kind == _K_NUM:
            tok = m.group(_K_NUM)
            value = _number(tok)
        elif kind == _K_REF:
            value = Ref(int(m.group(2)), int(m.group(3)))
        elif kind == _K_DOPEN:
            # a dictionary nested at most _FLAT_DEPTH levels: its entries matched one after
            # another from its '<<' (as `<<((?>entry)*+)\s*>>` would match them), then '>>'
            start = end = m.end()
            entries = []
            scan = entry_scanner(data, start, stop).match
            while (entry := scan()) is not None:
                entries.append(entry.groups(b""))
                end = entry.end()
            close = dict_close(data, end, stop)
            if close is not None:
                pos = close.end()
                if memo is None:
                    value = _dict_of(entries, _FLAT_DEPTH - 1)
                else:
                    body = data[start:end]
                    value = memo.get(body)
                    if value is None:
                        value = memo[body] = _dict_of(entries, _FLAT_DEPTH - 1)
                    if not stack:
                        value = dict(value)  # the object itself: a fresh dictionary
            else:
                stack.append({})
                keys.append(None)
                continue
        elif kind == _K_AOPEN:
            start = m.start(_K_AOPEN)
            arr = numbers(data, start, stop)
            if arr is not None:  # /Widths, matrices, boxes
                pos = arr.end()
                value = _numbers(arr.group(1))
            else:
                flat = flat_array(data, start, stop)
                if flat is not None:
                    pos = flat.end()
                    value = _flat_array(flat.group(1))
                else:
                    stack.append([])
                    keys.append(None)
                    continue
        elif kind in (_K_DCLOSE, _K_ACLOSE):
            if not stack:
                raise _Bad("unbalanced")
            value = stack.pop()
            keys.pop()
        elif kind == _K_WS:
            continue
        elif kind == _K_LIT:
            value = _unescape(m.group(_K_LIT)[1:-1])
        elif kind == _K_HEX:
            value = _hex(m.group(_K_HEX))
        elif kind == _K_KW:
            word = m.group(_K_KW)
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
            # a following `stream` or `endobj` keyword ends the object
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
    """The bytes of a literal string's body (balanced, as `_TOKEN` matched it): as `_literal`."""
    if b"\\" not in body:
        return body
    return _ESCAPE.sub(_escaped, body)


# an escape of a literal string: a known character, 1-3 octal digits, a line end, 8 or 9 (an error,
# as in `_literal`), or any other character (the backslash is dropped)
_ESCAPE = re.compile(rb"\\(?:[nrtbf()\\]|[0-7]{1,3}|\r\n?|\n|([89])|.)", re.S)
_ESCAPED: dict[bytes, bytes] = {}


def _escaped(m: re.Match[bytes]) -> bytes:
    esc = m.group()
    got = _ESCAPED.get(esc)
    if got is None:
        if m.group(1):
            raise ValueError(f"bad octal escape {esc!r}")  # int(b"8", 8) in `_literal`
        got, _ = _literal(esc + b")", 0)
        if len(_ESCAPED) < 4096:
            _ESCAPED[esc] = got
    return got


_NONE: Any = object()


class Fallback(Exception):
    """The file is not plain enough for the fast reader: read it with pypdf instead."""


class RawObjects:
    """Indirect objects of one file, read from its bytes.

    With a pypdf `reader`, at the offsets pypdf found. Without one, the cross-reference sections
    are read here (`Fallback` is raised where pypdf would have to repair or decrypt something)
    and pypdf is opened only if some object cannot be read raw.
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
        value = self._cache.get(key, _NONE)
        if value is not _NONE:
            return value
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
            value, _ = parse_object(body, offsets[idnum], memo=self._parsed)
            return value
        off = self.offsets.get((idnum, generation))
        if off is None:
            return None  # a free or missing object is null
        head = _OBJ_HEAD.match(self.data, off)
        if head is None or int(head.group(1)) != idnum or int(head.group(2)) != generation:
            if self._reader is None:
                raise Fallback("object header not at its offset")  # pypdf would search for it
            raise _Bad("object header not at its offset")
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
    except (_Bad, ValueError) as exc:
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
    except (_Bad, ValueError) as exc:
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
    if not data[end : end + 20].lstrip(_WS).startswith(b"endstream"):
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
    """A Flate stream's inflated data, the data of an unfiltered one, else None."""
    raw = _stream_raw(stream)
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
    get = _CONTENT_NAMES.get
    return frozenset(
        [
            name if (name := get(raw)) is not None else _content_name(raw)
            for raw in set(_NAME_IN_CONTENT.findall(content))
        ]
    )


_CONTENT_NAMES: dict[bytes, str] = {}


def _content_name(raw: bytes) -> str:
    """A name of a content stream (`raw` is its body) as a str, as `_name_text` (cached)."""
    name = _name_text(raw)
    if len(_CONTENT_NAMES) < _CACHE_SIZE:
        _CONTENT_NAMES[raw] = name
    return name


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
        self._inline: dict[tuple[int, bool], tuple[Any, bytes]] = {}
        self._cycles = 0
        from pypdf import generic

        self._g = generic
        _NUMBER_TYPES.update({generic.NumberObject, generic.FloatObject})

    # pages -----------------------------------------------------------------------------------
    def page(self, page: Any) -> tuple[str, float, float, int]:
        """(identity, width, height, rotation) of a pypdf PageObject or a raw page dictionary."""
        rotation = int(self._value(_get(page, "/Rotate")) or 0) % 360
        if type(page) is dict:  # from RawObjects.pages()
            media = self._box(page, "/MediaBox", ())
            crop = self._box(page, "/CropBox", ("/MediaBox",))
        else:
            media = [float(x) for x in page.mediabox]
            crop = [float(x) for x in page.cropbox]
        h: list[bytes] = [b"page-v%d;r%d;" % (IDENTITY_VERSION, rotation)]
        h.append(" ".join(num(v) for v in media).encode() + b";")
        if crop != media:
            h.append(b"crop " + " ".join(num(v) for v in crop).encode() + b";")
        content = self._content(_get(page, "/Contents"))
        _feed_bytes(h, content)
        resources = self._value(_get(page, "/Resources"))
        self._scoped_resources(h, resources, content)
        for key in ("/Group", "/UserUnit"):
            if key in page:
                h.append(key.encode())
                self._feed(h, _get(page, key))
        annots = self._value(_get(page, "/Annots"))
        if isinstance(annots, list):
            for annot in annots:
                if self._may_draw(annot):
                    self._annotation(h, self._value(annot), resources)
        width, height = abs(crop[2] - crop[0]), abs(crop[3] - crop[1])
        if rotation in (90, 270):
            width, height = height, width
        return hash_bytes(b"".join(h)), width, height, rotation

    def _box(self, page: dict[str, Any], key: str, defaults: tuple[str, ...]) -> list[float]:
        """A page box as pypdf's `mediabox` or `cropbox` reads it; `Fallback` where it warns."""
        box = self._value(page.get(key))
        for other in defaults:
            if box is not None:
                break
            box = self._value(page.get(other))
        if (
            type(box) is not list
            or len(box) != 4
            or any(type(x) is not int and type(x) is not float for x in box)
        ):
            raise Fallback(f"irregular {key}")
        return [float(x) for x in box]

    def _value(self, obj: Any) -> Any:
        """Resolve a reference (raw or pypdf) to its value."""
        t = type(obj)
        if t is Ref:
            return self.raw.get(obj.idnum, obj.generation)
        if t is dict or t is list or t is Name:
            return obj
        if isinstance(obj, self._g.IndirectObject):
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

    def _scoped_resources(self, h: list[bytes], resources: Any, content: bytes) -> None:
        """Hash only the resources that `content` names; shared dictionaries stay out."""
        if not isinstance(resources, dict):
            return
        used: frozenset[str] | None = None
        for kind in _RESOURCE_KINDS:
            group = resources.get(kind)
            if group is None:
                continue
            group = self._value(group)
            if not isinstance(group, dict) or not group:
                continue
            if used is None:
                used = self._used_names(resources, content)
            scoped = kind in ("/XObject", "/Pattern")
            if type(group) is dict and len(used) < len(group):  # str keys: the same names
                names = sorted([n for n in used if n in group])
            else:
                names = sorted(str(n) for n in group if n in used)
            for name in names:
                h.append(b"res" + kind.encode() + name.encode() + b";")
                h.append(self._digest(dict.__getitem__(group, name), scoped))

    def _used_names(self, resources: dict[str, Any], content: bytes) -> frozenset[str]:
        """The names `content` uses, and those of the forms it draws that have no /Resources.

        pdfium draws a form or tiling pattern without /Resources with the resources of the
        content that invokes it: the names its content uses must scope those resources.
        """
        used = used_names(content)
        groups = [self._value(resources.get(kind)) for kind in ("/XObject", "/Pattern")]
        groups = [group for group in groups if isinstance(group, dict) and group]
        todo = used
        while groups and todo:
            more: set[str] = set()
            for group in groups:
                for name in todo:
                    if name not in group:
                        continue
                    obj = self._value(dict.__getitem__(group, name))
                    if _is_stream(obj, self._g) and "/Resources" not in obj and _is_form(obj):
                        more.update(used_names(self._stream_content(obj)))
            todo = frozenset(more - used)
            used |= todo
        return used

    def _may_draw(self, annot: Any) -> bool:
        """False for a link or popup without an appearance stream: it draws nothing.

        Decided from the object's bytes where possible, without parsing it.
        """
        g = self._g
        if isinstance(annot, Ref | g.IndirectObject):
            text = self.raw.source_of(int(annot.idnum), int(annot.generation))
            if text is not None and b"/AP" not in text and _NO_DRAW_ANNOT.search(text):
                return False
        return True

    def _annotation(self, h: list[bytes], annot: Any, page_resources: Any) -> None:
        if not isinstance(annot, dict):
            return
        if "/AP" not in annot:
            self._annotation_without_ap(h, annot)
            return
        h.append(b"annot;")
        for key in ("/Subtype", "/Rect", "/F", "/AS", "/Contents", "/V", "/AP"):
            if key in annot:
                h.append(key.encode())
                h.append(self._digest(dict.__getitem__(annot, key), key == "/AP"))
        # pdfium draws an appearance stream without /Resources with the page's resources
        if isinstance(page_resources, dict):
            for stream in self._appearances(annot):
                if "/Resources" not in stream:
                    self._scoped_resources(h, page_resources, self._stream_content(stream))

    def _appearances(self, annot: dict[str, Any]) -> list[Any]:
        """The normal appearance streams of an annotation (every state's, where it has states)."""
        ap = self._value(annot.get("/AP"))
        if not isinstance(ap, dict):
            return []
        normal = self._value(ap.get("/N"))
        if _is_stream(normal, self._g):
            return [normal]
        if not isinstance(normal, dict):
            return []
        states = [self._value(dict.__getitem__(normal, k)) for k in sorted(str(k) for k in normal)]
        return [s for s in states if _is_stream(s, self._g)]

    def _annotation_without_ap(self, h: list[bytes], annot: dict[str, Any]) -> None:
        """An annotation whose appearance pdfium synthesises from its entries, if it draws."""
        subtype = self._value(annot.get("/Subtype"))
        flags = self._value(annot.get("/F"))
        if (isinstance(subtype, str) and subtype in _NO_DRAW_SUBTYPES) or (
            isinstance(flags, int) and not isinstance(flags, bool) and flags & _HIDDEN_FLAGS
        ):
            return
        h.append(b"annot-noap;")
        keys = _NO_AP_KEYS + _NO_AP_FREETEXT_KEYS if subtype == "/FreeText" else _NO_AP_KEYS
        for key in keys:
            if key in annot:
                h.append(key.encode())
                h.append(self._digest(dict.__getitem__(annot, key)))

    # objects ---------------------------------------------------------------------------------
    # Everything hashed is appended to a list of parts and hashed at once: xxh3 of the joined
    # parts equals the digest of feeding them one by one, at a fraction of the calls.
    def _digest(self, obj: Any, scoped: bool = False) -> bytes:
        """The digest of any object, the same whether it is stored directly or by reference."""
        t = type(obj)
        key: tuple[int, int, bool] | None = None
        if t is Ref:
            key = (obj.idnum, obj.generation, scoped)
        elif t is not dict and t is not list and isinstance(obj, self._g.IndirectObject):
            key = (int(obj.idnum), int(obj.generation), scoped)
        if key is not None:
            hit = self._memo.get(key)
            if hit is not None:
                return hit
            if key in self._busy:
                self._cycles += 1
                return b"cycle"
            self._busy.add(key)
            try:
                digest = self._digest(self._value(obj), scoped)
            finally:
                self._busy.discard(key)
            self._memo[key] = digest
            return digest
        # a direct dictionary or array shared by several objects (see parse_object's memo):
        # its digest is kept with the object itself, so the id cannot be reused meanwhile
        inline = (id(obj), scoped)
        seen = self._inline.get(inline)
        if seen is not None and seen[0] is obj:
            return seen[1]
        cycles = self._cycles
        out: list[bytes] = []
        self._feed(out, obj, scoped)
        digest = _xxh3(b"".join(out))
        if self._cycles == cycles:  # met no cycle: the same digest wherever it is met again
            self._inline[inline] = (obj, digest)
        return digest

    def _feed(self, out: list[bytes], obj: Any, scoped: bool = False) -> None:
        t = type(obj)
        if t is Name:
            token = _NAME_PARTS.get(obj)
            if token is None:
                token = b"/" + obj.encode("utf-8", "surrogateescape") + b";"
                if len(_NAME_PARTS) < _CACHE_SIZE:
                    _NAME_PARTS[obj] = token
            out.append(token)
        elif t is int:
            out.append(b"n%d;" % obj)
        elif t is Ref:
            out.append(b"@" + self._digest(obj, scoped))
        elif t is dict:
            self._dict(out, obj, scoped, _skip_of(obj))
        elif t is list:
            self._list(out, obj, scoped)
        elif t is float:
            out.append(b"n" + _num_bytes(obj) + b";")
        elif t is bytes:
            out += (b"1:s", b"%d:" % len(obj), obj)
        elif t is bool:
            out.append(b"T;" if obj else b"F;")
        elif obj is None:
            out.append(b"N;")
        else:
            self._feed_other(out, obj, scoped)

    def _feed_other(self, out: list[bytes], obj: Any, scoped: bool) -> None:
        """Streams and pypdf's objects (read by pypdf where the raw reader could not).

        `_feed` has taken every other raw type (Name, int, Ref, dict, list, float, bytes, bool,
        None) by its exact type; pypdf's objects, its subclasses of those types among them, come
        here.
        """
        g = self._g
        if type(obj) is Stream:  # read raw; reaches the stream branch below, with fewer checks
            self._stream(out, obj, scoped)
        elif isinstance(obj, g.IndirectObject):
            out.append(b"@" + self._digest(obj, scoped))
        elif isinstance(obj, g.BooleanObject):
            out.append(b"T;" if obj.value else b"F;")
        elif isinstance(obj, g.NameObject):
            out.append(b"/" + str(obj).encode("utf-8", "surrogateescape") + b";")
        elif isinstance(obj, int | float):
            out.append(b"n" + num(obj).encode() + b";")
        elif isinstance(obj, g.TextStringObject):
            _feed_bytes(out, b"s", obj.original_bytes)
        elif isinstance(obj, bytes):
            _feed_bytes(out, b"s", bytes(obj))
        elif isinstance(obj, g.NullObject):
            out.append(b"N;")
        elif isinstance(obj, list):
            self._list(out, obj, scoped)
        elif isinstance(obj, dict):
            if _is_stream(obj, g):
                self._stream(out, obj, scoped)
                return
            self._dict(out, obj, scoped, _skip_of(obj))
        else:
            out.append(b"?" + repr(obj).encode() + b";")

    def _stream(self, out: list[bytes], obj: Any, scoped: bool) -> None:
        if (scoped and obj.get("/Subtype") == "/Form") or obj.get("/PatternType") == 1:
            self._form(out, obj)
            return
        out.append(b"stream;")
        digest = _decoded_digest(obj)
        if digest is None:  # another filter, or data that does not inflate: the raw bytes
            self._dict(out, obj, False, _STREAM_SKIP)
            _feed_bytes(out, _stream_raw(obj))
        else:  # so that re-compressing a stream (qpdf, Ghostscript) changes nothing
            self._dict(out, obj, False, _DECODED_SKIP)
            out.append(b"z" + digest)

    def _list(self, out: list[bytes], obj: list[Any], scoped: bool) -> None:
        if _NUMBER_TYPES.issuperset(map(type, obj)):
            out.append(_number_array(obj))
            return
        out.append(b"[%d;" % len(obj))
        for item in obj:
            t = type(item)
            if t is dict or t is list or isinstance(item, dict | list):
                out.append(b"@" + self._digest(item, scoped))
            else:
                self._feed(out, item, scoped)

    def _dict(
        self, out: list[bytes], d: dict[str, Any], scoped: bool, skip: frozenset[str]
    ) -> None:
        if not skip:
            keys = sorted(d) if type(d) is dict else sorted([str(k) for k in d])
        elif type(d) is dict or type(d) is Stream:  # read raw: every key is a str already
            keys = sorted([k for k in d if k not in skip])
        else:
            keys = sorted([str(k) for k in d if k not in skip])
        out.append(b"<<%d;" % len(keys))
        getitem, names, numbers = dict.__getitem__, _NAME_PARTS, _NUMBER_TYPES
        for k in keys:
            token = _KEY_PARTS.get(k)
            if token is None:
                token = k.encode("utf-8", "surrogateescape") + b"="
                if len(_KEY_PARTS) < _CACHE_SIZE:
                    _KEY_PARTS[k] = token
            out.append(token)
            v = getitem(d, k)
            t = type(v)
            # the common cases of `_feed` and `_digest`, inline: the same bytes, fewer calls
            if t is Name and v in names:
                out.append(names[v])
            elif t is Ref:
                out.append(b"@" + self._digest(v, scoped))
            elif t is list and numbers.issuperset(map(type, v)):
                out.append(b"@" + _xxh3(_number_array(v)))  # = self._digest(v)
            elif t is dict or t is list or isinstance(v, dict | list):
                out.append(b"@" + self._digest(v, scoped))
            else:
                self._feed(out, v, scoped)

    def _form(self, out: list[bytes], stream: Any) -> None:
        """A form XObject or tiling pattern: dictionary, content and its scoped resources."""
        content = self._stream_content(stream)
        out.append(b"form;")
        for key in sorted(str(k) for k in stream if k not in _FORM_SKIP):
            out.append(key.encode() + b"=")
            v = dict.__getitem__(stream, key)
            if isinstance(v, dict | list):
                out.append(b"@" + self._digest(v))
            else:
                self._feed(out, v)
        _feed_bytes(out, content)
        self._scoped_resources(out, self._value(stream.get("/Resources")), content)


_NAME_PARTS: dict[str, bytes] = {}
_KEY_PARTS: dict[str, bytes] = {}
_NUM_PARTS: dict[float, bytes] = {}
_NUM_STRS: dict[float, str] = {}
_xxh3 = xxhash.xxh3_128_digest


def _number_array(v: list[Any]) -> bytes:
    """What `_list` feeds for an array of numbers only (`_dict` hashes it inline)."""
    text = " ".join([str(x) if type(x) is int else _num_str(x) for x in v])
    return b"[%d;" % len(v) + text.encode() + b"]"


def _num_str(x: Any) -> str:
    if type(x) is not float:
        return num(x)
    got = _NUM_STRS.get(x)
    if got is None:
        got = num(x)
        if len(_NUM_STRS) < _CACHE_SIZE:
            _NUM_STRS[x] = got
    return got


def _num_bytes(x: float) -> bytes:
    got = _NUM_PARTS.get(x)
    if got is None:
        got = num(x).encode()
        if len(_NUM_PARTS) < _CACHE_SIZE:
            _NUM_PARTS[x] = got
    return got


def _get(d: Any, key: str) -> Any:
    """A dictionary entry as stored (a reference stays a reference)."""
    try:
        return dict.__getitem__(d, key)
    except KeyError:
        return None


def _is_stream(obj: Any, g: Any) -> bool:
    return isinstance(obj, Stream | g.StreamObject)


def _is_form(stream: Any) -> bool:
    """A form XObject or a tiling pattern: a stream drawn with resources."""
    return bool(stream.get("/Subtype") == "/Form" or stream.get("/PatternType") == 1)


def _skip_of(d: dict[str, Any]) -> frozenset[str]:
    """The keys a (non-stream) dictionary's digest leaves out; see `_SKIP_KEYS`."""
    kind = d.get("/Type")
    return _SKIP_KEYS if isinstance(kind, str) and kind in _LINKED_TYPES else _NO_SKIP


def _decoded_digest(stream: Any) -> bytes | None:
    """The digest of a stream's data inflated, for a Flate stream or an unfiltered one.

    None for another filter, data that does not inflate, or more than `_MAX_INFLATE` bytes
    inflated. The data is inflated in chunks into the hasher: memory stays bounded.
    """
    raw = _stream_raw(stream)
    filt = stream.get("/Filter")
    if isinstance(filt, list) and len(filt) == 1:
        filt = filt[0]
    if filt is None:
        return _xxh3(raw)
    if filt != "/FlateDecode":
        return None
    h, d, total, todo = xxhash.xxh3_128(), zlib.decompressobj(), 0, raw
    try:
        while todo and not d.eof:
            chunk = d.decompress(todo, _INFLATE_CHUNK)
            total += len(chunk)
            if total > _MAX_INFLATE:
                return None
            h.update(chunk)
            todo = d.unconsumed_tail
        if not d.eof:  # truncated data: what inflates of it, as pdfium draws it
            h.update(d.flush())
    except zlib.error:
        return None
    return h.digest()


def _stream_raw(stream: Any) -> bytes:
    data: bytes = stream.data if isinstance(stream, Stream) else stream._data
    return data


def _feed_bytes(out: list[bytes], *parts: bytes) -> None:
    for p in parts:
        out += (b"%d:" % len(p), p)
