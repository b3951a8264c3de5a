"""Change detection: is the file new, and which of its pages were added, removed, moved or modified.

File level: a stat fast path (size and mtime_ns equal to the last manifest's: unchanged, nothing
read), then a content hash (equal: unchanged, only the mtime moved). Page level: the previous and
current page identities are aligned (difflib's longest matching blocks), so an inserted page
shifts the others without flagging them; pages whose identity reappears elsewhere are `moved`,
an unmatched page that took the slot of a vanished one is `modified`, the rest `added` or
`removed`. Manifests live in the cache tiers (memory, disk, Redis, S3), not in process memory,
so they survive restarts and are shared by workers.

A document seen for the first time that shares most of its pages with one seen before (a new
version saved under a new name) is diffed against that one (`ChangeSet.based_on`). Each saved
manifest indexes its document under a few of its page identities (the `SKETCH` smallest: the
same sample from every document that holds them), so finding it costs one batched read.

>>> [c.status for c in diff_pages(["a", "b", "c"], ["a", "x", "b", "c"])]
['unchanged', 'added', 'unchanged', 'unchanged']
>>> [c.status for c in diff_pages(["a", "b", "c"], ["a", "c", "b"])]
['unchanged', 'moved', 'unchanged']
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Literal, get_args

from .documents import (
    Document,
    FileFingerprint,
    document_id_for,
    fingerprint_file,
    read_document,
)
from .shared import result_tiers

if TYPE_CHECKING:
    from ..tiered import MultiLevelCache

__all__ = [
    "MANIFEST_PREFIX",
    "SKETCH",
    "ChangeDetector",
    "ChangeSet",
    "Manifest",
    "PageChange",
    "PageStatus",
    "best_base",
    "diff_pages",
    "manifest_key",
]

PageStatus = Literal["added", "removed", "moved", "modified", "unchanged"]
MANIFEST_PREFIX = "manifest"
SKETCH = 8  # page identities a document is indexed under
_WORK: frozenset[str] = frozenset({"added", "modified"})


def manifest_key(document_id: str) -> str:
    """The cache key of a document's manifest.

    >>> manifest_key("report-0a1b")
    'manifest:report-0a1b'
    """
    return f"{MANIFEST_PREFIX}:{document_id}"


@dataclass(frozen=True, slots=True)
class PageChange:
    """One page's fate between two versions; positions are 0-based, None where absent.

    >>> PageChange("added", None, 4, "ab").needs_processing
    True
    """

    status: PageStatus
    old_index: int | None
    new_index: int | None
    identity: str
    old_identity: str | None = None

    @property
    def needs_processing(self) -> bool:
        """Added and modified pages have content no earlier version had."""
        return self.status in _WORK


@dataclass(frozen=True, slots=True)
class Manifest:
    """What was last processed for a document: its `Document` record and when.

    >>> Manifest(Document("/a.pdf", "a-1", FileFingerprint(1, 1, "h"), ()), 0.0).identities
    ()
    """

    document: Document
    recorded_at: float

    @property
    def identities(self) -> tuple[str, ...]:
        return self.document.identities


@dataclass(frozen=True)
class ChangeSet:
    """The difference between the last manifest (None on a first run) and the current document.

    >>> from tore_nb.incremental.documents import Page
    >>> cs = ChangeSet.compare(None, Document("/a.pdf", "a-1", FileFingerprint(1, 1, "h"),
    ...     (Page(0, "x", 1.0, 1.0, 0),)))
    >>> cs.is_new, cs.pages_to_process
    (True, (0,))
    """

    document: Document
    previous: Manifest | None
    file_changed: bool
    changes: tuple[PageChange, ...]

    @classmethod
    def compare(
        cls, previous: Manifest | None, document: Document, *, file_changed: bool = True
    ) -> ChangeSet:
        """Diff `document` against the previous manifest."""
        old = previous.identities if previous is not None else ()
        return cls(document, previous, file_changed, diff_pages(old, document.identities))

    @cached_property
    def _by_status(self) -> dict[str, tuple[PageChange, ...]]:
        groups: dict[str, list[PageChange]] = {s: [] for s in get_args(PageStatus)}
        for c in self.changes:
            groups[c.status].append(c)
        return {s: tuple(cs) for s, cs in groups.items()}

    @property
    def document_id(self) -> str:
        return self.document.document_id

    @property
    def is_new(self) -> bool:
        """True when no earlier version is known (a first run, not based on another document)."""
        return self.previous is None

    @property
    def based_on(self) -> Document | None:
        """The other document this one is diffed against (it shares most of its pages), or None
        when the previous version is this document's own."""
        if self.previous is None or self.previous.document.document_id == self.document_id:
            return None
        return self.previous.document

    @property
    def added(self) -> tuple[PageChange, ...]:
        return self._by_status["added"]

    @property
    def removed(self) -> tuple[PageChange, ...]:
        return self._by_status["removed"]

    @property
    def moved(self) -> tuple[PageChange, ...]:
        return self._by_status["moved"]

    @property
    def modified(self) -> tuple[PageChange, ...]:
        return self._by_status["modified"]

    @property
    def unchanged(self) -> tuple[PageChange, ...]:
        return self._by_status["unchanged"]

    @property
    def pages_to_process(self) -> tuple[int, ...]:
        """0-based indices (in the current version) of pages with new content."""
        return _to_process(self.changes)

    @property
    def changed_pages(self) -> tuple[int, ...]:
        """1-based page numbers with new content (the seed's `changed_pages`)."""
        return tuple(i + 1 for i in self.pages_to_process)

    @property
    def changed_fraction(self) -> float:
        """Share of pages added, modified or removed, relative to the larger version."""
        n = max(len(self.document.pages), len(self.previous.identities) if self.previous else 0)
        if n == 0:
            return 0.0
        return (len(self.added) + len(self.modified) + len(self.removed)) / n

    @property
    def has_changes(self) -> bool:
        """True when any page was added, removed, moved or modified."""
        return any(c.status != "unchanged" for c in self.changes)

    def counts(self) -> dict[str, int]:
        """Number of pages per status."""
        return {s: len(cs) for s, cs in self._by_status.items()}

    def __str__(self) -> str:
        parts = ", ".join(f"{n} {s}" for s, n in self.counts().items() if n)
        state = "new" if self.is_new else ("changed" if self.file_changed else "unchanged")
        if self.based_on is not None:
            state = f"new, based on {self.based_on.name},"
        return f"{self.document.name}: {state} file; {parts or 'no pages'}"


def best_base(
    document: Document, candidates: Iterable[Document], threshold: float = 0.5
) -> Document | None:
    """The candidate (another document) holding the most of `document`'s pages, when it holds
    at least `threshold` of them; else None.

    >>> from tore_nb.incremental.documents import Page
    >>> def doc(name, ids):
    ...     pages = tuple(Page(i, x, 1.0, 1.0, 0) for i, x in enumerate(ids))
    ...     return Document(f"/{name}.pdf", name, FileFingerprint(1, 1, name), pages)
    >>> best_base(doc("v2", "abxd"), [doc("v1", "abcd"), doc("other", "xyz")]).name
    'v1.pdf'
    """
    mine = set(document.identities)
    best, shared = None, 0
    for other in candidates:
        if other.document_id == document.document_id:
            continue
        n = len(mine.intersection(other.identities))
        if n > shared:
            best, shared = other, n
    return best if best is not None and shared >= threshold * len(mine) else None


def _sketch(identities: Iterable[str]) -> list[str]:
    """A document's `SKETCH` smallest page identities: two documents that share most of their
    pages share most of these too (identities are digests, so the order is a random one)."""
    return sorted(set(identities))[:SKETCH]


def _index_key(identity: str) -> str:
    return f"{MANIFEST_PREFIX}-index:{identity}"


def _to_process(changes: Iterable[PageChange]) -> tuple[int, ...]:
    return tuple(c.new_index for c in changes if c.needs_processing and c.new_index is not None)


def diff_pages(old: Sequence[str], new: Sequence[str]) -> tuple[PageChange, ...]:
    """Align two sequences of page identities; current pages in order, then removed ones.

    >>> [(c.status, c.old_index, c.new_index) for c in diff_pages(["a", "b"], ["a", "c"])]
    [('unchanged', 0, 0), ('modified', 1, 1)]
    """
    if len(old) == len(new) and all(a == b for a, b in zip(old, new, strict=True)):
        return tuple(PageChange("unchanged", i, i, x) for i, x in enumerate(new))
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    new_status: dict[int, PageChange] = {}
    unmatched_old: list[int] = []
    replace_spans: list[tuple[range, range]] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for k in range(i2 - i1):
                new_status[j1 + k] = PageChange("unchanged", i1 + k, j1 + k, new[j1 + k])
            continue
        unmatched_old.extend(range(i1, i2))
        if tag == "replace":
            replace_spans.append((range(i1, i2), range(j1, j2)))
    # identities that reappear elsewhere: moved, not new work
    free_old: dict[str, list[int]] = defaultdict(list)
    for i in unmatched_old:
        free_old[old[i]].append(i)
    used_old: set[int] = set()
    for j, ident in enumerate(new):
        if j in new_status:
            continue
        slots = free_old.get(ident)
        if slots:
            i = min(slots, key=lambda s: abs(s - j))
            slots.remove(i)
            used_old.add(i)
            new_status[j] = PageChange("moved", i, j, ident)
    # an unmatched page in the slot of a vanished one is a modification of it
    for olds, news in replace_spans:
        free_o = [i for i in olds if i not in used_old]
        free_n = [j for j in news if j not in new_status]
        for i, j in zip(free_o, free_n, strict=False):
            used_old.add(i)
            new_status[j] = PageChange("modified", i, j, new[j], old_identity=old[i])
    for j, ident in enumerate(new):
        if j not in new_status:
            new_status[j] = PageChange("added", None, j, ident)
    removed = [PageChange("removed", i, None, old[i]) for i in unmatched_old if i not in used_old]
    return tuple(new_status[j] for j in range(len(new))) + tuple(removed)


class ChangeDetector:
    """Compares files and their pages with the manifests kept in the cache tiers.

    >>> import tempfile
    >>> from tore_nb.config import CacheConfig
    >>> from tore_nb.tiered import MultiLevelCache
    >>> det = ChangeDetector(MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp())))
    >>> cs = det.detect("data/pdfs/dmca.pdf")  # doctest: +SKIP
    >>> cs.is_new, len(cs.pages_to_process)  # doctest: +SKIP
    (True, 18)
    """

    def __init__(self, cache: MultiLevelCache, *, verify_content: bool = False) -> None:
        self.cache = cache
        self.verify_content = verify_content

    # manifests ------------------------------------------------------------------------------
    def load_manifest(self, document_id: str) -> Manifest | None:
        """The last recorded manifest of a document, from whichever tier holds it."""
        value = self.cache.get(manifest_key(document_id), tiers=result_tiers(self.cache))
        return value if isinstance(value, Manifest) else None

    def load_manifests(self, document_ids: Iterable[str]) -> dict[str, Manifest]:
        """Several manifests in one batched lookup."""
        ids = list(document_ids)
        found = self.cache.get_many([manifest_key(d) for d in ids], tiers=result_tiers(self.cache))
        out = {}
        for d in ids:
            m = found.get(manifest_key(d))
            if isinstance(m, Manifest):
                out[d] = m
        return out

    def save_manifest(self, document: Document) -> Manifest:
        """Record `document` as processed now; later runs diff against it, and new documents
        that share most of its pages are reported against it (`related`)."""
        manifest = Manifest(document, time.time())
        # one batch: on Redis the manifest and its index entries are one MSET
        entries: dict[str, object] = {manifest_key(document.document_id): manifest}
        entries.update({_index_key(i): document.document_id for i in _sketch(document.identities)})
        self.cache.set_many(entries)
        return manifest

    def related(
        self,
        documents: Sequence[Document],
        *,
        threshold: float = 0.5,
    ) -> dict[str, Document]:
        """For each document, another seen before that holds at least `threshold` of its pages
        (by identity), the one holding most: document id -> that document. Candidates are the
        documents last indexed under each one's sketch identities: one batched read for all.

        >>> from tore_nb.incremental.documents import Page
        >>> def doc(name, ids):
        ...     pages = tuple(Page(i, x, 1.0, 1.0, 0) for i, x in enumerate(ids))
        ...     return Document(f"/{name}.pdf", name, FileFingerprint(1, 1, name), pages)
        >>> import tempfile
        >>> from tore_nb.config import CacheConfig
        >>> from tore_nb.tiered import MultiLevelCache
        >>> det = ChangeDetector(MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp())))
        >>> v1, v2 = doc("v1", "abcd"), doc("v2", "abxd")
        >>> _ = det.save_manifest(v1)
        >>> det.related([v1, v2]) == {"v2": v1}
        True
        """
        keys = {d.document_id: [_index_key(i) for i in _sketch(d.identities)] for d in documents}
        wanted = [k for ks in keys.values() for k in ks]
        found = self.cache.get_many(wanted, tiers=result_tiers(self.cache)) if wanted else {}
        ids = {v for v in found.values() if isinstance(v, str)}
        stored = {d: m.document for d, m in self.load_manifests(sorted(ids)).items()}
        out: dict[str, Document] = {}
        for d in documents:
            named = {found.get(k) for k in keys[d.document_id]}
            candidates = [stored[v] for v in named if isinstance(v, str) and v in stored]
            base = best_base(d, candidates, threshold)
            if base is not None:
                out[d.document_id] = base
        return out

    def forget(self, document_id: str) -> bool:
        """Drop a document's manifest: its next run is a first run."""
        return self.cache.delete(manifest_key(document_id))

    # files ------------------------------------------------------------------------------------
    def has_file_changed(self, path: str | os.PathLike[str]) -> bool:
        """True when the file differs from its last manifest (or has none). Reads no PDF.

        The stat fast path answers without reading the file when size and mtime_ns match.
        """
        previous = self.load_manifest(document_id_for(path))
        if previous is None:
            return True
        fp, _ = self._fingerprint(path, previous)
        return fp.content_hash != previous.document.fingerprint.content_hash

    def _fingerprint(
        self, path: str | os.PathLike[str], previous: Manifest | None
    ) -> tuple[FileFingerprint, bytes | None]:
        prev_fp = previous.document.fingerprint if previous is not None else None
        return fingerprint_file(path, None if self.verify_content else prev_fp)

    def detect(
        self,
        path: str | os.PathLike[str],
        *,
        previous: Manifest | Literal["load"] | None = "load",
        save: bool = False,
    ) -> ChangeSet:
        """The ChangeSet of a file against its last manifest.

        An unchanged file (same stat, or same content hash) is not parsed: its pages come
        from the manifest. `save=True` records the current version as the new manifest.
        """
        return self.detect_read(path, previous=previous, save=save)[0]

    def detect_read(
        self,
        path: str | os.PathLike[str],
        *,
        previous: Manifest | Literal["load"] | None = "load",
        save: bool = False,
    ) -> tuple[ChangeSet, bytes | None]:
        """`detect`, and the bytes it read: those its page identities come from (None when the
        stat fast path spared reading the file), so a caller need not read and hash it again."""
        document_id = document_id_for(path)
        prev = self.load_manifest(document_id) if previous == "load" else previous
        fp, data = self._fingerprint(path, prev)
        if prev is not None and fp.content_hash == prev.document.fingerprint.content_hash:
            doc = prev.document
            if fp != doc.fingerprint:
                doc = dataclasses.replace(doc, path=_abspath(path), fingerprint=fp)
            cs = ChangeSet.compare(prev, doc, file_changed=False)
        else:
            doc = read_document(path, data=data, fingerprint=fp, document_id=document_id)
            cs = ChangeSet.compare(prev, doc, file_changed=True)
        if save and (prev is None or cs.document is not prev.document):
            self.save_manifest(cs.document)
        return cs, data

    def get_changed_pages(self, document_id: str, identities: Sequence[str]) -> list[int]:
        """1-based numbers of pages whose identity is new since the last manifest (seed API)."""
        prev = self.load_manifest(document_id)
        old = prev.identities if prev is not None else ()
        return [i + 1 for i in _to_process(diff_pages(old, identities))]


def _abspath(path: str | os.PathLike[str]) -> str:
    from pathlib import Path

    return str(Path(path).expanduser().resolve())
