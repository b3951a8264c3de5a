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

__version__ = "0.1.0"

_LAZY = {
    "CacheConfig": "config",
    "ConfigError": "errors",
    "IntegrityError": "errors",
    "SerializationError": "errors",
    "TierUnavailable": "errors",
    "ToreError": "errors",
    "UnpicklableError": "errors",
    "generate_key": "keys",
    "hash_value": "keys",
    "MultiLevelCache": "tiered",
    "CacheManager": "tiered",
    "Hit": "tiered",
    "CacheMetrics": "stats",
    "cached": "memo",
    "ChangeDetector": "incremental",
    "IncrementalProcessor": "incremental",
    "ParsingCache": "incremental",
    "OCRCache": "incremental",
    "TableExtractionCache": "incremental",
    "EmbeddingCache": "incremental",
    "CacheWarmer": "maintenance",
    "CacheInvalidator": "maintenance",
}

__all__ = [*sorted(_LAZY), "get_cache", "load_ipython_extension", "unload_ipython_extension"]

if TYPE_CHECKING:
    from .config import CacheConfig
    from .tiered import MultiLevelCache


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tore_nb' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


_default: MultiLevelCache | None = None


def get_cache(config: CacheConfig | None = None) -> MultiLevelCache:
    """The process-wide default cache (built from the environment on first use).

    Passing a config replaces it.
    """
    global _default
    from .tiered import MultiLevelCache

    if config is not None or _default is None:
        _default = MultiLevelCache(config)
    return _default


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext tore_nb`: register the %%tcache and %tcache magics."""
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .magics import unload_ipython_extension as unload

    unload(ipython)
