"""Documents and pages with a content identity that survives a rewrite of the file.

A page's identity (see the `pdf` subpackage) is a digest of what it draws: its decoded content, the
resources it names (fonts, images, forms), its annotations' appearances, its boxes and rotation.
A metadata-only resave changes no page identity; image-only pages are told apart by their images.

>>> from tore_nb.incremental.documents import read_document
>>> doc = read_document("data/pdfs/multipage.pdf")  # doctest: +SKIP
>>> len(doc.pages), len(set(doc.identities))  # doctest: +SKIP
(6, 6)
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ToreError
from ..keys import hash_bytes
from .pdf import IDENTITY_VERSION, PageHasher, RawObjects

if TYPE_CHECKING:
    import pypdfium2

log = logging.getLogger("tore_nb.incremental")

__all__ = [
    "IDENTITY_VERSION",
    "PDFIUM_LOCK",
    "Document",
    "DocumentError",
    "FileFingerprint",
    "Page",
    "collector_paused",
    "document_id_for",
    "fingerprint_file",
    "open_pdfium",
    "page_identities",
    "read_document",
]

_SAFE_ID = re.compile(r"[^A-Za-z0-9_.\-]+")

#: pdfium is not thread-safe, not even on different documents: two threads in it at once abort
#: the process. tore_nb holds this lock while it uses pdfium, so runs in threads take turns.
PDFIUM_LOCK = threading.RLock()


class DocumentError(ToreError, ValueError):
    """A file could not be read as a PDF (missing, encrypted with a password, damaged)."""


@dataclass(frozen=True, slots=True)
class FileFingerprint:
    """What identifies a file's bytes: size and mtime_ns (the stat fast path) and a content hash.

    >>> fp = FileFingerprint(size=3, mtime_ns=1, content_hash="ab")
    >>> fp.same_stat(FileFingerprint(3, 1, "cd"))
    True
    """

    size: int
    mtime_ns: int
    content_hash: str

    def same_stat(self, other: FileFingerprint | os.stat_result) -> bool:
        """True when size and mtime_ns match: the file is taken as unchanged without reading it."""
        if isinstance(other, os.stat_result):
            return self.size == other.st_size and self.mtime_ns == other.st_mtime_ns
        return self.size == other.size and self.mtime_ns == other.mtime_ns


@dataclass(frozen=True, slots=True)
class Page:
    """One page: its position (0-based `index`), content `identity`, size in points and rotation.

    >>> Page(index=0, identity="ab", width=612.0, height=792.0, rotation=0).number
    1
    """

    index: int
    identity: str
    width: float
    height: float
    rotation: int

    @property
    def number(self) -> int:
        """The 1-based page number."""
        return self.index + 1


@dataclass(frozen=True, slots=True)
class Document:
    """A PDF file as its path, a stable document id, the file fingerprint and its pages.

    `warnings` are what reading it reported (pypdf's messages, a repair of a damaged file), for a
    report to show; a file read plainly has none.

    >>> d = Document("/a/b.pdf", "b-1", FileFingerprint(1, 1, "h"), ())
    >>> d.name, d.page_count, d.warnings
    ('b.pdf', 0, ())
    """

    path: str
    document_id: str
    fingerprint: FileFingerprint
    pages: tuple[Page, ...]
    warnings: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def page_count(self) -> int:
        return len(self.pages)

    @property
    def identities(self) -> tuple[str, ...]:
        return tuple(p.identity for p in self.pages)


def document_id_for(path: str | os.PathLike[str]) -> str:
    """A stable, readable id for a file path: its stem plus a digest of the absolute path.

    The id stays the same across versions of the file, so the previous manifest is found.

    >>> document_id_for("/tmp/My Report.pdf").startswith("My_Report-")
    True
    """
    resolved = Path(path).expanduser().resolve()
    stem = _SAFE_ID.sub("_", resolved.stem)[:48] or "doc"
    return f"{stem}-{hash_bytes(str(resolved).encode())[:12]}"


def fingerprint_file(
    path: str | os.PathLike[str], previous: FileFingerprint | None = None
) -> tuple[FileFingerprint, bytes | None]:
    """Stat the file; when size and mtime_ns equal `previous`, return it without reading.

    Otherwise read and hash the bytes, which are returned too so they are read only once.

    >>> import tempfile; f = tempfile.NamedTemporaryFile(delete=False); _ = f.write(b"x"); f.close()
    >>> fp, data = fingerprint_file(f.name); fingerprint_file(f.name, fp) == (fp, None)
    True
    """
    try:
        st = os.stat(path)
        if previous is not None and previous.same_stat(st):
            return previous, None
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DocumentError(f"cannot read {os.fspath(path)!r}: {exc.strerror or exc}") from exc
    return FileFingerprint(len(data), st.st_mtime_ns, hash_bytes(data)), data


def read_document(
    path: str | os.PathLike[str],
    *,
    data: bytes | None = None,
    fingerprint: FileFingerprint | None = None,
    document_id: str | None = None,
) -> Document:
    """Read a PDF and compute the identity of every page (about 0.5-2 ms a page).

    >>> doc = read_document("data/pdfs/dmca.pdf")  # doctest: +SKIP
    >>> doc.page_count  # doctest: +SKIP
    18
    """
    if data is None or fingerprint is None:
        fingerprint, data = fingerprint_file(path)
        assert data is not None
    pages, warnings = _read_pages(data, os.fspath(path))
    return Document(
        path=str(Path(path).expanduser().resolve()),
        document_id=document_id or document_id_for(path),
        fingerprint=fingerprint,
        pages=pages,
        warnings=warnings,
    )


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a file's objects are parsed and hashed, or a run's
    results are merged and pickled: these make hundreds of thousands of short-lived acyclic
    objects, freed by reference counting as soon as they end, yet their number tips a full
    collection of the whole process (150-280 ms with a notebook's results in memory) into one
    run out of two."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def page_identities(data: bytes, *, source: str = "<bytes>") -> tuple[Page, ...]:
    """The pages of a PDF given as bytes, each with its content identity.

    A plain file is read by the fast reader alone (cross-reference sections, page tree and
    objects); anything it cannot read plainly (an encrypted or damaged file) is read with pypdf.
    Both give the same identities. Bytes that do not start as a PDF (`%PDF-` within the first
    1024 bytes, as readers require) are refused as "not a PDF".

    >>> page_identities(b"hello", source="notes.txt")
    Traceback (most recent call last):
    ...
    tore_nb.incremental.documents.DocumentError: notes.txt is not a PDF (no %PDF- header)
    """
    return _read_pages(data, source)[0]


def _read_pages(data: bytes, source: str) -> tuple[tuple[Page, ...], tuple[str, ...]]:
    """`page_identities`, and the warnings of reading the file (see `Document.warnings`)."""
    if b"%PDF-" not in data[:1024]:
        raise DocumentError(f"{source} is not a PDF (no %PDF- header)")
    try:
        with collector_paused():
            raw = RawObjects(data)
            hasher = PageHasher(raw)
            pages = tuple(Page(i, *hasher.page(page)) for i, page in enumerate(raw.pages()))
            return pages, ()
    except Exception as exc:  # anything unusual: pypdf reads the file, and reports its errors
        why = str(exc) or type(exc).__name__
    return _pypdf_page_identities(data, source, why)


_PYPDF_ERRORS = (ValueError, KeyError, TypeError, AttributeError, RecursionError)
# what pdfium does not need at the end of a file and pypdf does: with a wrong pointer, pypdf
# rebuilds the cross-reference table from the objects' headers
_TAIL = b"\nstartxref\n0\n%%EOF\n"


def _pypdf_page_identities(
    data: bytes, source: str, why: str
) -> tuple[tuple[Page, ...], tuple[str, ...]]:
    """The pages as pypdf reads them (it repairs what it can), and the warnings of reading them.

    A file truncated of its `startxref ... %%EOF` tail, which pdfium opens, is given one.
    """
    from pypdf.errors import PyPdfError

    tail = False
    with _pypdf_warnings() as said:
        try:
            pages, encrypted = _pypdf_pages(data, source)
        except (PyPdfError, *_PYPDF_ERRORS) as exc:
            # the file as it is explains a failure best: the retry's errors only follow from it
            reasons = f"; pypdf: {'; '.join(dict.fromkeys(said))}" if said else ""
            failure = DocumentError(f"cannot read {source} as a PDF: {exc}{reasons}")
            if b"startxref" in data[-1024:]:
                raise failure from exc
            tail = True
            try:
                pages, encrypted = _pypdf_pages(data + _TAIL, source)
            except (PyPdfError, *_PYPDF_ERRORS):
                raise failure from exc
    warnings = tuple(f"pypdf: {message}" for message in dict.fromkeys(said))
    if tail:
        warnings = (
            "no startxref at the end of the file: the cross-reference table rebuilt",
            *warnings,
        )
    if (said or tail) and not encrypted:  # pypdf repaired what the fast reader refused
        warnings = (f"damaged file, read by pypdf's repair: {why}", *warnings)
    return pages, warnings


def _pypdf_pages(data: bytes, source: str) -> tuple[tuple[Page, ...], bool]:
    """The pages of a file read by pypdf, and whether it is encrypted."""
    import pypdf

    reader = pypdf.PdfReader(io.BytesIO(data))
    if reader.is_encrypted and not reader.decrypt(""):
        raise DocumentError(f"{source} is encrypted with a password")
    # in an encrypted file every string and stream is encrypted: pypdf reads them all
    hasher = PageHasher(RawObjects(data, reader, raw=not reader.is_encrypted))
    pages = tuple(Page(i, *hasher.page(page)) for i, page in enumerate(reader.pages))
    return pages, bool(reader.is_encrypted)


@contextlib.contextmanager
def _pypdf_warnings() -> Iterator[list[str]]:
    """pypdf's warnings while it reads a file, collected rather than printed on stderr: they
    belong in the document's failure reason, or nowhere when the file reads well."""
    said: list[str] = []
    handler = _Collect(said)
    logger = logging.getLogger("pypdf")
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield said
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
        for message in said:  # kept in `Document.warnings` too
            log.debug("pypdf: %s", message)


class _Collect(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())


def open_pdfium(source: str | os.PathLike[str] | bytes) -> pypdfium2.PdfDocument:
    """Open a document with pypdfium2 from a path or from bytes."""
    import pypdfium2

    try:
        return pypdfium2.PdfDocument(source if isinstance(source, bytes) else os.fspath(source))
    except pypdfium2.PdfiumError as exc:
        raise DocumentError(f"pdfium cannot open the document: {exc}") from exc
