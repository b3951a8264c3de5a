"""A stream's data with its transport filters undone, so that identities survive a rewrite.

Tools that rewrite PDFs (qpdf, pikepdf, Ghostscript) change how streams are encoded, not what
they hold: Flate recompressed, ASCII85 or ASCIIHex dropped, LZW and RunLength turned into Flate.
A page's identity hashes what the filters decode to. Image codecs (DCT, JPX, JBIG2, CCITT) are
the data itself: decoding stops at the first of them, and the codecs left are part of the digest.

>>> import zlib
>>> a = transport_decoded({"/Filter": "/FlateDecode"}, zlib.compress(b"BT ET"))
>>> b = transport_decoded({"/Filter": ["/ASCIIHexDecode"]}, b"42542045 54>")
>>> a == b == (b"BT ET", ())
True
>>> transport_decoded({"/Filter": ["/ASCII85Decode", "/DCTDecode"]}, b"9jqo^~>")
(b'Man ', ('/DCTDecode',))
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

__all__ = ["CODECS", "MAX_DECODED", "transport_decoded"]

#: Beyond this many decoded bytes (a decompression bomb) a stream is hashed as stored.
MAX_DECODED = 256 * 1024 * 1024
#: Filters whose output is an image codec's data, not the image: decoding stops before them.
CODECS = frozenset({"/DCTDecode", "/JPXDecode", "/JBIG2Decode", "/CCITTFaxDecode"})
_TRANSPORT = {
    "/FlateDecode": "FlateDecode",
    "/Fl": "FlateDecode",
    "/ASCIIHexDecode": "ASCIIHexDecode",
    "/AHx": "ASCIIHexDecode",
    "/ASCII85Decode": "ASCII85Decode",
    "/A85": "ASCII85Decode",
    "/LZWDecode": "LZWDecode",
    "/LZW": "LZWDecode",
    "/RunLengthDecode": "RunLengthDecode",
    "/RL": "RunLengthDecode",
}


def transport_decoded(
    stream: Mapping[str, Any], raw: bytes, limit: int = MAX_DECODED
) -> tuple[bytes, tuple[str, ...]] | None:
    """`raw` with the stream's transport filters undone, and the image codecs left; None when
    a filter is unknown, its parameters are not plain, the data does not decode, or it decodes
    to more than `limit` bytes."""
    filters = stream.get("/Filter")
    chain = [filters] if isinstance(filters, str) else list(filters or [])
    parms = _plain(stream.get("/DecodeParms"))
    parms_list = [_plain(x) for x in parms] if isinstance(parms, list) else [parms] * len(chain)
    if not all(isinstance(f, str) for f in chain) or len(parms_list) != len(chain):
        return None
    data = raw
    for i, name in enumerate(chain):
        if name in CODECS:
            return data, tuple(chain[i:])
        kind = _TRANSPORT.get(name)
        p = parms_list[i]
        if kind is None or (p is not None and not isinstance(p, dict)):
            return None
        # Flate, the common case: a bounded inflate, no pypdf. A predictor stays applied: tools
        # that recompress keep it, and undoing it in Python would cost seconds an image
        out = _inflate(data, limit) if kind == "FlateDecode" else _pypdf_decode(kind, data, p)
        if out is None or len(out) > limit:
            return None
        data = out
    return data, ()


def _plain(value: Any) -> Any:
    """pypdf's null as None, as the raw reader gives it: both readers must hash alike."""
    return None if type(value).__name__ == "NullObject" else value


def _inflate(data: bytes, limit: int) -> bytes | None:
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, limit + 1)
        if not d.eof:  # truncated data: what inflates of it, as pdfium draws it
            out += d.flush()
    except zlib.error:
        return None
    return out


def _pypdf_decode(kind: str, data: bytes, parms: Mapping[str, Any] | None) -> bytes | None:
    from pypdf import filters
    from pypdf.generic import DictionaryObject, NameObject, NumberObject

    if kind == "RunLengthDecode" and len(data) * 128 > MAX_DECODED:
        return None  # each byte may expand 128 times
    pdict = DictionaryObject()
    early = (parms or {}).get("/EarlyChange", 1)
    if kind == "LZWDecode" and early != 1:
        if early not in (0, 1) or isinstance(early, bool):
            return None
        pdict[NameObject("/EarlyChange")] = NumberObject(early)
    # a predictor stays applied, as for Flate: an LZW stream recompressed to Flate keeps it
    try:
        out = getattr(filters, kind).decode(data, pdict)
    except Exception:  # pypdf's decoders raise what they like on bad data: hashed as stored
        return None
    return out if isinstance(out, bytes) else None
