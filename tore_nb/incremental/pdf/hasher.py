"""The page hasher: a page's content identity, an xxh3-128 digest of what the page draws.

A page's identity covers its decoded content stream(s), the resources those streams name (fonts,
images, form XObjects recursively with their own scoped resources, graphics states, colour spaces,
patterns, shadings), the appearance streams of its annotations (for an annotation without one, the
entries pdfium draws it from), its boxes and its /Rotate. A form without /Resources draws with the
resources of the content invoking it, so the names it uses scope those. Object numbers, /Info,
unused entries of a shared /Resources dictionary, dictionary key order, direct or indirect storage,
the writer's formatting of reals (6 significant digits are kept) and the compression of Flate
streams (their inflated data is hashed) are left out, so a rewrite of the file by another tool
changes no identity.

The objects come from `RawObjects` (see `objects`), read raw or by pypdf; the hasher takes both
kinds of object. The digest of an indirect object, and of a direct value that several objects
share, is computed once per file.

>>> import io, pypdf
>>> w = pypdf.PdfWriter(); _ = w.add_blank_page(612, 792); out = io.BytesIO(); _ = w.write(out)
>>> raw = RawObjects(out.getvalue())
>>> [PageHasher(raw).page(p)[1:] for p in raw.pages()]
[(612.0, 792.0, 0)]
"""

from __future__ import annotations

import re
import zlib
from typing import Any

import xxhash

from ...keys import hash_bytes
from .filters import has_parms, transport_decoded
from .objects import Fallback, RawObjects, decoded, stream_raw
from .syntax import CACHE_SIZE, Name, Ref, Stream, used_names

__all__ = ["IDENTITY_VERSION", "LETTER", "PageHasher", "num"]

# 4: transport filters (ASCII85, ASCIIHex, LZW, RunLength) undone and image codecs named
# 5: PNG and TIFF predictors undone, /DecodeParms of a stream decoded to its data left out
IDENTITY_VERSION = 5
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
# a stream's data is hashed decoded (transport filters undone, image codecs named in the
# digest): /Filter is left out too, and /DecodeParms where no codec (nor predictor) is left
_DECODED_SKIP = _STREAM_SKIP | {"/Filter"}
_PLAIN_SKIP = _DECODED_SKIP | {"/DecodeParms"}
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


def num(x: float) -> str:
    """A number as 6 significant digits: writers round reals differently (pypdf keeps 8).

    >>> num(0.123456789), num(612.0)
    ('0.123457', '612')
    """
    f = float(x)
    if f.is_integer() and abs(f) < 1e15:
        return str(int(f))
    return f"{f:.6g}"


_NUMBER_TYPES: set[type] = {int, float}
#: The media box of a page without one (or with a null one), as pdfium draws it: US Letter.
LETTER = [0.0, 0.0, 612.0, 792.0]


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
        media = self._box(page, "/MediaBox", LETTER)
        crop = self._box(page, "/CropBox", media)
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

    def _box(self, page: Any, key: str, default: list[float]) -> list[float]:
        """A page box: `default` where it is null or missing (pdfium draws a page without a
        /MediaBox, or with a null one, on US Letter); raw, `Fallback` where it is irregular."""
        box = self._value(_get(page, key))
        if box is None or isinstance(box, self._g.NullObject):
            return default
        if (
            isinstance(box, list)
            and len(box) == 4
            and all(type(x) in _NUMBER_TYPES and not isinstance(x, bool) for x in box)
        ):
            return [float(x) for x in box]
        if type(page) is dict:  # read raw: pypdf reads what it can of the rest
            raise Fallback(f"irregular {key}")
        try:
            return [float(x) for x in (page.mediabox if key == "/MediaBox" else page.cropbox)]
        except (ValueError, TypeError):
            return default

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
        return data if data is not None else b"raw:" + stream_raw(stream)

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
                if len(_NAME_PARTS) < CACHE_SIZE:
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
        got = _decoded_digest(obj)
        if got is None:  # another filter, or data that does not inflate: the raw bytes
            self._dict(out, obj, False, _STREAM_SKIP)
            _feed_bytes(out, stream_raw(obj))
        else:  # so that re-compressing a stream (qpdf, Ghostscript) changes nothing
            digest, codecs = got
            self._dict(out, obj, False, _DECODED_SKIP if codecs else _PLAIN_SKIP)
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
                if len(_KEY_PARTS) < CACHE_SIZE:
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
        if len(_NUM_STRS) < CACHE_SIZE:
            _NUM_STRS[x] = got
    return got


def _num_bytes(x: float) -> bytes:
    got = _NUM_PARTS.get(x)
    if got is None:
        got = num(x).encode()
        if len(_NUM_PARTS) < CACHE_SIZE:
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


def _decoded_digest(stream: Any) -> tuple[bytes, bool] | None:
    """The digest of a stream's data decoded, and whether codecs (or a predictor) are left.

    None for an unknown filter, data that does not decode, or more than `_MAX_INFLATE` bytes
    decoded. Plain Flate data is inflated in chunks into the hasher: memory stays bounded.
    """
    raw = stream_raw(stream)
    filt = stream.get("/Filter")
    if isinstance(filt, list) and len(filt) == 1:
        filt = filt[0]
    if filt is None:
        return _xxh3(raw), False
    if filt != "/FlateDecode" or has_parms(stream):  # transport undone; image codecs named
        got = transport_decoded(stream, raw)
        if got is None:
            return None
        data, codecs = got
        if codecs:
            return _xxh3("|".join(codecs).encode() + b"\0" + data), True
        return _xxh3(data), False
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
    return h.digest(), False


def _feed_bytes(out: list[bytes], *parts: bytes) -> None:
    for p in parts:
        out += (b"%d:" % len(p), p)
