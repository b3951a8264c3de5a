"""Stage caches with the seed's names: parsing, OCR, tables and embeddings, each with its key
recipe and a default TTL. They sit on a `MultiLevelCache` and never raise for cache failures.

* `ParsingCache`: parser name + file content hash (7 days)
* `OCRCache`: image content hash + preprocessing + engine and its version (7 days)
* `TableExtractionCache`: page identity + method + settings (24 hours)
* `EmbeddingCache`: model + text hash, in memory and disk only (30 days)

>>> import tempfile, numpy as np
>>> from tore_nb.config import CacheConfig
>>> from tore_nb.tiered import MultiLevelCache
>>> emb = EmbeddingCache(MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp())))
>>> v = emb.get_or_embed("hello world", HashingEmbedder(dim=8))
>>> v.shape, emb.get_or_embed("hello world", HashingEmbedder(dim=8)) is not None
((8,), True)
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..keys import hash_bytes, hash_value
from .documents import fingerprint_file

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from ..tiered import MultiLevelCache

__all__ = [
    "DAY",
    "EmbeddingCache",
    "Embedder",
    "HashingEmbedder",
    "OCRCache",
    "ParsingCache",
    "SentenceTransformerEmbedder",
    "TableExtractionCache",
    "refreshing",
]

# set while a forced run computes a page: stage caches recompute and overwrite their entries
_REFRESH: ContextVar[bool] = ContextVar("tore_nb_stage_cache_refresh", default=False)


@contextmanager
def refreshing(on: bool = True) -> Iterator[None]:
    """Within the block (when `on`), stage caches ignore what they hold and store anew.

    >>> with refreshing():
    ...     _REFRESH.get()
    True
    """
    token = _REFRESH.set(on or _REFRESH.get())
    try:
        yield
    finally:
        _REFRESH.reset(token)


DAY = 86400.0
T = TypeVar("T")
_TOKEN = re.compile(r"\w+", re.UNICODE)


class _StageCache:
    prefix = "stage"
    default_ttl: float | None = DAY
    tiers: tuple[str, ...] | None = None

    def __init__(self, cache: MultiLevelCache, *, ttl: float | None = None) -> None:
        self.cache = cache
        self.ttl = self.default_ttl if ttl is None else ttl

    def _get_or(self, key: str, compute: Callable[[], T]) -> T:
        hit = None if _REFRESH.get() else self.cache.fetch(key, tiers=self.tiers)
        if hit is not None:
            return hit.value  # type: ignore[no-any-return]
        value = compute()
        self.cache.set(key, value, ttl=self.ttl, tiers=self.tiers)
        return value

    def invalidate(self) -> int:
        """Drop every entry of this cache."""
        return self.cache.invalidate(f"{self.prefix}:*")


class ParsingCache(_StageCache):
    """Whole-document parse results per parser, keyed by the file's content (not its name).

    >>> import tempfile
    >>> from tore_nb.config import CacheConfig
    >>> from tore_nb.tiered import MultiLevelCache
    >>> pc = ParsingCache(MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp())))
    >>> pc.key("doc.pdf", "pypdfium2", content_hash="ab")
    'parse:pypdfium2:doc.pdf:ab'
    """

    prefix = "parse"
    default_ttl = 7 * DAY

    def key(
        self, path: str | os.PathLike[str], parser_name: str, *, content_hash: str | None = None
    ) -> str:
        if content_hash is None:
            content_hash = fingerprint_file(path)[0].content_hash
        return f"parse:{parser_name}:{Path(path).name}:{content_hash}"

    def get_or_parse(
        self, path: str | os.PathLike[str], parser_name: str, parse: Callable[[Path], T]
    ) -> T:
        """The cached result of `parse(path)` for this file content and parser."""
        return self._get_or(self.key(path, parser_name), lambda: parse(Path(path)))


class OCRCache(_StageCache):
    """OCR results keyed by the image's pixels, the preprocessing steps and the engine."""

    prefix = "ocr"
    default_ttl = 7 * DAY

    def key(
        self, image: Image.Image | np.ndarray, engine: str, preprocessing: Sequence[str] = ()
    ) -> str:
        return f"ocr:{engine}:{image_digest(image)}:{hash_value(list(preprocessing))[:16]}"

    def get_or_ocr(
        self,
        image: Image.Image | np.ndarray,
        engine: str,
        preprocessing: Sequence[str],
        run: Callable[[], T],
    ) -> T:
        """The cached result of `run()` for this image, preprocessing and engine."""
        return self._get_or(self.key(image, engine, preprocessing), run)


class TableExtractionCache(_StageCache):
    """Tables of a page keyed by its content identity, the method and its settings."""

    prefix = "tables"
    default_ttl = DAY

    def key(
        self, page_identity: str, method: str, settings: Mapping[str, Any] | None = None
    ) -> str:
        return f"tables:{method}:{page_identity}:{hash_value(dict(settings or {}))[:16]}"

    def get_or_extract(
        self,
        page_identity: str,
        method: str,
        extract: Callable[[], T],
        settings: Mapping[str, Any] | None = None,
    ) -> T:
        return self._get_or(self.key(page_identity, method, settings), extract)


class EmbeddingCache(_StageCache):
    """Text embeddings keyed by model and text hash; small, so memory and disk only."""

    prefix = "embed"
    default_ttl = 30 * DAY

    @property
    def tiers(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.cache.local_tiers

    def key(self, text: str, model_name: str) -> str:
        return f"embed:{model_name}:{hash_bytes(text.encode('utf-8', 'surrogatepass'))}"

    def get_or_embed(self, text: str, embedder: Embedder) -> np.ndarray:
        """The embedding of `text` by `embedder`, computed once."""
        return self._get_or(self.key(text, embedder.name), lambda: embedder.embed(text))


# -- embedders --------------------------------------------------------------------------------
class Embedder:
    """Turns text into a vector; `name` goes into cache keys."""

    name: str = "embedder"

    def embed(self, text: str) -> np.ndarray:
        raise NotImplementedError


class HashingEmbedder(Embedder):
    """A deterministic bag-of-words embedder (feature hashing with xxh3, L2-normalised).

    No model to download: it serves tests and offline runs.

    >>> e = HashingEmbedder(dim=16)
    >>> bool((e.embed("a b") == e.embed("b a")).all()), e.name
    (True, 'hashing-16')
    """

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim
        self.name = f"hashing-{dim}"

    def embed(self, text: str) -> np.ndarray:
        import numpy as np
        import xxhash

        vec = np.zeros(self.dim, dtype=np.float32)
        for token in _TOKEN.findall(text.lower()):
            h = xxhash.xxh3_64_intdigest(token.encode())
            vec[h % self.dim] += 1.0 if (h >> 63) else -1.0
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm else vec


class SentenceTransformerEmbedder(Embedder):
    """A small local sentence-transformers model (optional extra; the model must be on disk
    or in the local Hugging Face cache)."""

    def __init__(
        self, model: str = "sentence-transformers/all-MiniLM-L6-v2", device: str | None = None
    ) -> None:
        self.model_name, self.device = model, device
        self.name = f"st-{model.replace('/', '_').replace(':', '_')}"
        self._model: Any = None

    def embed(self, text: str) -> np.ndarray:
        if self._model is None:
            from ..errors import require

            st: Any = require("sentence_transformers", "embeddings")
            self._model = st.SentenceTransformer(self.model_name, device=self.device)
        import numpy as np

        return np.asarray(self._model.encode(text, normalize_embeddings=True), dtype=np.float32)


def image_digest(image: Image.Image | np.ndarray) -> str:
    """xxh3-128 of an image's mode, size and pixels."""
    import numpy as np

    if isinstance(image, np.ndarray):
        return hash_value(image)
    head = f"{image.mode}|{image.size}".encode()
    return hash_bytes(head + image.tobytes())
