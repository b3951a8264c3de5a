"""Cache maintenance: warm the page caches of many documents, invalidate by document, pattern
or age.

>>> import tempfile
>>> from tore_nb.config import CacheConfig
>>> from tore_nb.tiered import MultiLevelCache
>>> inv = CacheInvalidator(MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp())))
>>> inv.invalidate_pattern("page:*")
0
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from .incremental.changes import ChangeDetector, manifest_key
from .incremental.documents import document_id_for

if TYPE_CHECKING:
    from .incremental.executors import Executor
    from .incremental.processor import IncrementalProcessor, RunResult
    from .incremental.progress import Progress
    from .incremental.stages import Stage
    from .tiered import MultiLevelCache

__all__ = ["CacheInvalidator", "CacheWarmer"]


class CacheWarmer:
    """Pre-compute the page results of many documents in one parallel run.

    All documents' missing pages go to the executor together, so with a `RayExecutor` they
    are processed in parallel across documents.

    >>> import tempfile
    >>> from tore_nb.config import CacheConfig
    >>> from tore_nb.tiered import MultiLevelCache
    >>> w = CacheWarmer(MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp())))
    >>> w.warm([]).documents
    ()
    """

    def __init__(
        self,
        cache: MultiLevelCache | None = None,
        *,
        stages: Sequence[Stage] | None = None,
        executor: Executor | None = None,
        progress: Progress | None = None,
    ) -> None:
        from .incremental.processor import IncrementalProcessor

        self.processor: IncrementalProcessor = IncrementalProcessor(
            cache, stages=stages, executor=executor, progress=progress
        )

    @classmethod
    def for_processor(cls, processor: IncrementalProcessor) -> CacheWarmer:
        """A warmer that shares a processor's cache, stages and executor."""
        warmer = cls.__new__(cls)
        warmer.processor = processor
        return warmer

    def warm(self, paths: Iterable[str | os.PathLike[str]]) -> RunResult:
        """Process `paths` so that their page and document results are cached."""
        return self.processor.process(list(paths))

    def warm_cache_for_document(self, path: str | os.PathLike[str]) -> RunResult:
        """The seed's name for warming one document."""
        return self.warm([path])

    def warm_cache_batch(self, paths: Iterable[str | os.PathLike[str]]) -> RunResult:
        """The seed's name for warming many documents in parallel."""
        return self.warm(paths)


class CacheInvalidator:
    """Remove cache entries by document, by key pattern (shell glob), by stage or by age.

    >>> import tempfile
    >>> from tore_nb.config import CacheConfig
    >>> from tore_nb.tiered import MultiLevelCache
    >>> c = MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp())); _ = c.set("embed:m:1", 1)
    >>> CacheInvalidator(c).invalidate_pattern("embed:*")
    1
    """

    def __init__(self, cache: MultiLevelCache) -> None:
        self.cache = cache
        self.detector = ChangeDetector(cache)

    def invalidate_document(self, document: str | os.PathLike[str], *, pages: bool = True) -> int:
        """Forget a document (a path or a document id): its manifest, its document results
        and, with `pages`, the page results of its pages' identities.

        Page results are keyed by content, so a page identical to one of another document
        is dropped for both. Returns the number of keys removed.
        """
        doc_id = _document_id(document)
        removed = 0
        manifest = self.detector.load_manifest(doc_id)
        if pages and manifest is not None:
            idents = set(manifest.identities)
            for key in self.cache.find_keys("page:*"):  # one scan, not one per page
                if key.rsplit(":", 1)[-1] in idents:
                    removed += int(self.cache.delete(key))
        removed += self.cache.invalidate(f"result:{doc_id}:*")
        removed += int(self.cache.delete(manifest_key(doc_id)))
        return removed

    def invalidate_pattern(self, pattern: str) -> int:
        """Remove every key matching a shell-style glob, in every tier."""
        return self.cache.invalidate(pattern)

    def invalidate_stage(self, stage: str) -> int:
        """Remove every page result of one stage (all versions of its code)."""
        return self.cache.invalidate(f"page:{stage}:*")

    def invalidate_by_age(self, max_age: float | _dt.timedelta) -> int:
        """Remove entries written more than `max_age` (seconds or a timedelta) ago."""
        return self.cache.expire_older_than(max_age)


def _document_id(document: str | os.PathLike[str]) -> str:
    text = os.fspath(document)
    if os.path.exists(text) or os.sep in text or text.lower().endswith(".pdf"):
        return document_id_for(text)
    return text
