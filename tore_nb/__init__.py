"""tore_nb: multi-tier caching for notebooks and incremental document processing.

Public names load lazily, so `import tore_nb` stays light (no IPython, pandas, Ray, boto3 or
redis until a feature needs them).

>>> import tore_nb, tempfile
>>> cache = tore_nb.MultiLevelCache(tore_nb.CacheConfig.embedded(tempfile.mkdtemp()))
>>> cache.set("answer", 42); cache.get("answer")
True
42
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import fingerprint  # noqa: F401  # registers how keys hash code, before any hashing

__version__ = "0.1.0"

# the public API: the cache, its configuration and keys, @cached, documents, maintenance, errors
_LAZY = {
    "CacheConfig": "config",
    "CacheMetrics": "stats",
    "CacheWarning": "errors",
    "ConfigError": "errors",
    "ExtraMissing": "errors",
    "IntegrityError": "errors",
    "SerializationError": "errors",
    "TierUnavailable": "errors",
    "TierWriteError": "errors",
    "ToreError": "errors",
    "UnpicklableError": "errors",
    "generate_key": "keys",
    "hash_value": "keys",
    "MultiLevelCache": "tiered",
    "Hit": "tiered",
    "get_cache": "tiered",
    "cached": "memo",
    "ChangeDetector": "incremental",
    "IncrementalProcessor": "incremental",
    "CacheWarmer": "maintenance",
    "CacheInvalidator": "maintenance",
}
# the seed design's names, kept importable for its users (`from tore_nb import CacheManager`) and
# left out of `__all__`: `CacheManager` is `MultiLevelCache`; the stage caches are in incremental
SEED_NAMES = {
    "CacheManager": "tiered",
    "ParsingCache": "incremental",
    "OCRCache": "incremental",
    "TableExtractionCache": "incremental",
    "EmbeddingCache": "incremental",
}

__all__ = [*sorted(_LAZY), "load_ipython_extension", "unload_ipython_extension"]

if TYPE_CHECKING:
    from .tiered import get_cache as get_cache  # seen by static tools; loaded lazily


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name) or SEED_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'tore_nb' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext tore_nb`: register the %%tcache and %tcache magics."""
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .magics import unload_ipython_extension as unload

    unload(ipython)
