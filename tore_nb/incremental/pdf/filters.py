"""A stream's data with its transport filters undone, so that identities survive a rewrite.

Tools that rewrite PDFs (qpdf, pikepdf, Ghostscript) change how streams are encoded, not what
they hold: Flate recompressed, ASCII85 or ASCIIHex dropped, LZW and RunLength turned into Flate,
a PNG or TIFF predictor undone (qpdf's `recompress_flate`). A page's identity hashes what the
filters decode to. Image codecs (DCT, JPX, JBIG2, CCITT) are the data itself: decoding stops at
the first of them, and the codecs left are part of the digest.

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

import numpy as np

__all__ = ["CODECS", "KEPT_PREDICTOR", "MAX_DECODED", "has_parms", "transport_decoded"]

#: Beyond this many decoded bytes (a decompression bomb) a stream is hashed as stored.
MAX_DECODED = 256 * 1024 * 1024
#: Filters whose output is an image codec's data, not the image: decoding stops before them.
CODECS = frozenset({"/DCTDecode", "/JPXDecode", "/JBIG2Decode", "/CCITTFaxDecode"})
#: Named among the codecs left where a predictor could not be undone (see `_unpredicted`).
KEPT_PREDICTOR = "predictor"
# bytes of PNG rows filtered with Average or Paeth undone in Python (about 0.5 us a byte); beyond,
# the predictor stays applied
_MAX_SLOW_ROWS = 2 * 1024 * 1024
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
    """`raw` with the stream's transport filters (and predictors) undone, and the image codecs
    left (`KEPT_PREDICTOR` among them where a predictor stays applied); None when a filter is
    unknown, its parameters are not plain, the data does not decode, or it decodes to more than
    `limit` bytes.

    >>> rows = bytes([2, 1, 2, 2, 3, 4])  # PNG Up rows of 2 bytes: [1, 2] then [1+3, 2+4]
    >>> transport_decoded({"/Filter": "/FlateDecode",
    ...                    "/DecodeParms": {"/Predictor": 12, "/Columns": 2}}, zlib.compress(rows))
    (b'\\x01\\x02\\x04\\x06', ())
    """
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
        # Flate, the common case: a bounded inflate, no pypdf
        out = _inflate(data, limit) if kind == "FlateDecode" else _pypdf_decode(kind, data, p)
        if out is None or len(out) > limit:
            return None
        if p is not None and kind in ("FlateDecode", "LZWDecode"):
            # qpdf drops the predictor when it recompresses: the rows as predicted are not what
            # is drawn
            rows = _unpredicted(out, p)
            if rows is None:
                return None
            if isinstance(rows, tuple):  # could not be undone: the predicted rows, named so
                return rows[0], (KEPT_PREDICTOR, *chain[i + 1 :])
            out = rows
        data = out
    return data, ()


def has_parms(stream: Mapping[str, Any]) -> bool:
    """Whether a stream has /DecodeParms that are not null (its filters may need them)."""
    return _plain(stream.get("/DecodeParms")) is not None


def _plain(value: Any) -> Any:
    """pypdf's null as None, as the raw reader gives it: both readers must hash alike."""
    return None if type(value).__name__ == "NullObject" else value


def _unpredicted(data: bytes, parms: Mapping[str, Any]) -> bytes | tuple[bytes] | None:
    """`data` with a PNG or TIFF predictor undone; `(data,)` where it stays applied (parameters
    or rows this does not undo); None for parameters that are not plain."""
    predictor = _plain(parms.get("/Predictor", 1))
    if predictor is None or predictor == 1:
        return data
    values = [_plain(parms.get(k, d)) for k, d in (("/Colors", 1), ("/BitsPerComponent", 8))]
    values.append(_plain(parms.get("/Columns", 1)))
    if any(not isinstance(v, int) or isinstance(v, bool) for v in (predictor, *values)):
        return None
    colors, bpc, columns = values
    if not (1 <= colors <= 32 and bpc in (1, 2, 4, 8, 16) and 1 <= columns <= 1 << 24):
        return (data,)
    if predictor == 2:
        return _tiff_undone(data, colors, bpc, columns)
    if predictor >= 10:
        return _png_undone(data, max(1, colors * bpc // 8), (columns * colors * bpc + 7) // 8)
    return (data,)


def _tiff_undone(data: bytes, colors: int, bpc: int, columns: int) -> bytes | tuple[bytes]:
    """TIFF predictor 2, 8 bits a component: each sample is the difference to the one left."""
    row = columns * colors
    if bpc != 8 or not data:
        return (data,)
    rows = len(data) // row
    grid = np.frombuffer(data, np.uint8, rows * row).reshape(rows, columns, colors)
    return np.cumsum(grid, axis=1, dtype=np.uint8).tobytes() + data[rows * row :]


def _png_undone(data: bytes, bpp: int, width: int) -> bytes | tuple[bytes]:
    """PNG predictors (a filter type byte before each row of `width` bytes), as qpdf undoes them:
    a last partial row is padded with zeros. None, Sub and Up rows are undone with numpy."""
    stride = width + 1
    rows = -(-len(data) // stride)
    if not rows:
        return b""
    padded = np.zeros(rows * stride, np.uint8)
    padded[: len(data)] = np.frombuffer(data, np.uint8)
    grid = padded.reshape(rows, stride)
    kinds = grid[:, 0].tolist()
    if max(kinds) > 4:
        return (data,)
    if sum(k >= 3 for k in kinds) * width > _MAX_SLOW_ROWS:
        return (data,)
    out = grid[:, 1:].copy()
    if not any(kinds):
        return out.tobytes()
    whole = width - width % bpp
    zero = np.zeros(width, np.uint8)
    for r, kind in enumerate(kinds):
        row, prev = out[r], (out[r - 1] if r else zero)
        if kind == 1:
            head = row[:whole].reshape(-1, bpp)
            np.cumsum(head, axis=0, dtype=np.uint8, out=head)
            for i in range(whole, width):  # a partial last pixel (bpp does not divide the row)
                row[i] = (int(row[i]) + int(row[i - bpp])) & 0xFF
        elif kind == 2:
            row += prev
        elif kind >= 3:
            row[:] = np.frombuffer(_slow_row(kind, row.tobytes(), prev.tobytes(), bpp), np.uint8)
    return out.tobytes()


def _slow_row(kind: int, raw: bytes, prev: bytes, bpp: int) -> bytes:
    """One PNG row filtered with Average (3) or Paeth (4), undone byte by byte."""
    row = bytearray(raw)
    for i in range(len(row)):
        left = row[i - bpp] if i >= bpp else 0
        up = prev[i]
        if kind == 3:
            row[i] = (row[i] + ((left + up) >> 1)) & 0xFF
            continue
        up_left = prev[i - bpp] if i >= bpp else 0
        p = left + up - up_left
        pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
        pred = left if pa <= pb and pa <= pc else (up if pb <= pc else up_left)
        row[i] = (row[i] + pred) & 0xFF
    return bytes(row)


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
