"""The exception tree of tore_nb.

Each error also subclasses the builtin a caller would naturally catch::

    ToreError (Exception)
    ├── ConfigError (ValueError)          bad configuration or environment variable
    ├── TierUnavailable (ConnectionError) a tier cannot be reached (translated from client errors)
    │   └── TierWriteError                reachable, but refuses writes (disk full, read-only,
    │                                     Redis out of memory): writes stop, reads go on
    ├── SerializationError (ValueError)   a value cannot be encoded, or an entry cannot be decoded
    │   ├── UnpicklableError (TypeError)  the value itself cannot be pickled
    │   └── IntegrityError                the entry's signature does not verify (tampered, moved,
    │                                     replayed from another namespace, truncated)
    └── ExtraMissing (ImportError)        an optional dependency is not installed (names the extra)

    CacheWarning (UserWarning)            a cell or function result tore_nb could not cache

Cache operations never raise these into user code: the tiered cache turns them into counted,
logged misses. They surface only from explicit calls such as `CacheConfig.from_env()` or
`codec.decode()`.

>>> issubclass(ConfigError, ValueError)
True
"""

from __future__ import annotations

__all__ = [
    "CacheWarning",
    "ConfigError",
    "ExtraMissing",
    "IntegrityError",
    "SerializationError",
    "TierUnavailable",
    "TierWriteError",
    "ToreError",
    "UnpicklableError",
]


class ToreError(Exception):
    """Base class of every tore_nb error."""


class ConfigError(ToreError, ValueError):
    """Invalid configuration; the message names the variable or field at fault."""


class TierUnavailable(ToreError, ConnectionError):
    """A cache tier could not be reached in time; `permanent` when retrying cannot help
    (access denied, missing bucket): the tier is then disabled, not probed.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class TierWriteError(TierUnavailable):
    """The tier answers but refuses writes: disk full, read-only, Redis out of memory."""


class SerializationError(ToreError, ValueError):
    """A value could not be encoded or an entry could not be decoded."""


class UnpicklableError(SerializationError, TypeError):
    """The value cannot be pickled."""


class IntegrityError(SerializationError):
    """An entry failed signature verification and was not unpickled."""


class ExtraMissing(ToreError, ImportError):
    """An optional dependency is missing; the message says which extra installs it."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(f"{module} is required for this feature: pip install 'tore_nb[{extra}]'")
        self.module = module
        self.extra = extra


class CacheWarning(UserWarning):
    """A cell or function result that tore_nb could not cache (it still ran)."""


def require(module: str, extra: str) -> object:
    """Import an optional dependency or raise ExtraMissing with an install hint."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ExtraMissing(module, extra) from exc
