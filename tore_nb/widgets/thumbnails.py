"""Page thumbnails: a PDF page rendered to PNG bytes, encoded with zlib alone (no Pillow).

pypdfium2 renders the page; `encode_png` writes the pixels as a PNG. numpy and pypdfium2 are
imported when a thumbnail is made, not when the module is.
"""

from __future__ import annotations

import os
import struct
import zlib
from typing import Any


def encode_png(pixels: Any) -> bytes:
    """Encode an (h, w, 3) or (h, w) uint8 array as PNG with zlib alone (no Pillow needed).

    >>> encode_png([[0, 255], [255, 0]])[:8]
    b'\\x89PNG\\r\\n\\x1a\\n'
    """
    import numpy as np

    arr = np.ascontiguousarray(pixels, dtype=np.uint8)
    h, w = arr.shape[:2]
    color = 2 if arr.ndim == 3 else 0
    rows = np.hstack([np.zeros((h, 1), np.uint8), arr.reshape(h, -1)])

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def page_thumbnail(path: str | os.PathLike[str], index: int, width: int = 160) -> bytes:
    """A PNG of one page (0-based `index`) of a PDF, `width` pixels wide.

    >>> page_thumbnail("data/pdfs/dmca.pdf", 0)[:4]  # doctest: +SKIP
    b'\\x89PNG'
    """
    from ..incremental.documents import PDFIUM_LOCK, open_pdfium

    with PDFIUM_LOCK:  # a refresh thread may draw while a run computes
        pdf = open_pdfium(path)
        try:
            page = pdf[index]
            scale = width / max(page.get_width(), 1.0)
            bitmap = page.render(scale=scale, rev_byteorder=True)
            pixels = bitmap.to_numpy().copy()  # its buffer is pdfium's, freed on close
        finally:
            pdf.close()
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = pixels[:, :, :3]
    return encode_png(pixels)
