"""Incremental document processing: only the pages whose content changed are recomputed.

    pdf/          the fast PDF reader and the page hasher behind page identities
    documents.py  Document, Page, page identities (content + resources + rotation)
    changes.py    ChangeDetector, ChangeSet, manifests kept in the cache tiers
    stages.py     Stage, @stage, Pipeline, PageContext
    builtin.py    the default stages: text/layout, OCR, tables, embeddings
    caches.py     ParsingCache, OCRCache, TableExtractionCache, EmbeddingCache
    executors.py  SerialExecutor, RayExecutor
    results.py    the run's records: PageResult, ProcessingResult, PageEvent, RunResult
    processor.py  IncrementalProcessor
    report.py     change report and summary DataFrames, and their text
    progress.py   progress callbacks: nothing, a text bar (a notebook's is in tore_nb.widgets)

Names load lazily; importing this package imports no pandas, Ray or PDF library.

>>> from tore_nb.incremental import IncrementalProcessor, stage
>>> IncrementalProcessor.__name__
'IncrementalProcessor'
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Document": "documents",
    "DocumentError": "documents",
    "Page": "documents",
    "read_document": "documents",
    "ChangeDetector": "changes",
    "ChangeSet": "changes",
    "Manifest": "changes",
    "PageChange": "changes",
    "Stage": "stages",
    "stage": "stages",
    "Pipeline": "stages",
    "PageContext": "stages",
    "default_stages": "builtin",
    "text_stage": "builtin",
    "ocr_stage": "builtin",
    "tables_stage": "builtin",
    "embedding_stage": "builtin",
    "ParsingCache": "caches",
    "OCRCache": "caches",
    "TableExtractionCache": "caches",
    "EmbeddingCache": "caches",
    "HashingEmbedder": "caches",
    "SerialExecutor": "executors",
    "RayExecutor": "executors",
    "IncrementalProcessor": "processor",
    "ProcessingResult": "results",
    "PageResult": "results",
    "PageEvent": "results",
    "RunResult": "results",
    "TextProgress": "progress",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
