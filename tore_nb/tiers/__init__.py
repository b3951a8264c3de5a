"""Cache tiers, fastest first: memory, disk, redis, s3; `build_tiers(config)` makes the enabled.

Tiers are built by name from `REGISTRY` (name -> `TierSpec`). Redis and S3 import their client
lazily; a missing extra raises `ExtraMissing` with the `pip install 'tore_nb[...]'` line that
fixes it. `register_tier` adds a tier of your own, which `build_tier` then builds by its name.

>>> from tore_nb.config import CacheConfig
>>> import tempfile
>>> [t.name for t in build_tiers(CacheConfig.embedded(tempfile.mkdtemp()))]
['memory', 'disk']
>>> REGISTRY["redis"].install_hint
"pip install 'tore_nb[redis]'"
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import require
from .base import NullTier, Tier, TierCapabilities, TierUsage, capabilities_of
from .disk import DiskTier
from .memory import MemoryTier

if TYPE_CHECKING:
    from ..config import CacheConfig

__all__ = [
    "REGISTRY",
    "DiskTier",
    "MemoryTier",
    "NullTier",
    "Tier",
    "TierCapabilities",
    "TierSpec",
    "TierUsage",
    "build_tier",
    "build_tiers",
    "capabilities_of",
    "register_tier",
]

MB = 1_000_000


@dataclass(frozen=True)
class TierSpec:
    """How to build the tier called `name` from a `CacheConfig`; `requires` is the optional
    (module, pip extra) it needs, checked before `factory` runs."""

    name: str
    factory: Callable[[CacheConfig], Tier]
    requires: tuple[str, str] | None = None

    @property
    def install_hint(self) -> str | None:
        return None if self.requires is None else f"pip install 'tore_nb[{self.requires[1]}]'"


def _memory(config: CacheConfig) -> Tier:
    return MemoryTier(
        max_bytes=int(config.memory_cache_size_mb * MB),
        ttl=config.memory_ttl,
        max_item_bytes=int(config.memory_max_item_mb * MB),
    )


def _disk(config: CacheConfig) -> Tier:
    return DiskTier(
        config.disk_cache_path,
        size_limit=int(config.disk_cache_size_gb * 1000 * MB),
        max_item_bytes=int(config.disk_max_item_mb * MB),
        prefix=f"{config.namespace}|",
    )


def _redis(config: CacheConfig) -> Tier:
    from .redis import RedisTier

    return RedisTier(
        url=config.redis_url,
        host=config.redis_host or "localhost",
        port=config.redis_port,
        db=config.redis_db,
        password=config.redis_password,
        connect_timeout=config.redis_connect_timeout,
        socket_timeout=config.redis_socket_timeout,
        retries=config.redis_retries,
        max_item_bytes=int(config.redis_max_item_mb * MB),
        prefix=f"{config.namespace}|",
    )


def _s3(config: CacheConfig) -> Tier:
    from .s3 import S3Tier

    return S3Tier(
        bucket=config.s3_cache_bucket or "",
        prefix=f"{config.s3_prefix}{config.namespace}/",
        region=config.s3_cache_region,
        endpoint_url=config.s3_endpoint_url,
        storage_class=config.s3_storage_class,
        ia_min_bytes=config.s3_ia_min_bytes,
        ia_min_ttl=config.s3_ia_min_ttl_days * 86_400,
        connect_timeout=config.s3_connect_timeout,
        read_timeout=config.s3_read_timeout,
        max_attempts=config.s3_max_attempts,
        max_item_bytes=int(config.s3_max_item_mb * MB),
    )


#: The tiers `build_tier` knows, by name.
REGISTRY: dict[str, TierSpec] = {}


def register_tier(
    name: str, factory: Callable[[CacheConfig], Tier], requires: tuple[str, str] | None = None
) -> TierSpec:
    """Make `build_tier(name, config)` call `factory(config)`; `requires`: (module, extra)."""
    spec = REGISTRY[name] = TierSpec(name, factory, requires)
    return spec


register_tier("memory", _memory)
register_tier("disk", _disk)
register_tier("redis", _redis, ("redis", "redis"))
register_tier("s3", _s3, ("boto3", "s3"))


def build_tier(name: str, config: CacheConfig) -> Tier:
    """One tier by name, configured from `config`."""
    spec = REGISTRY.get(name)
    if spec is None:
        names = list(REGISTRY)
        known = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names)
        raise ValueError(f"unknown tier {name!r}; expected {known}")
    if spec.requires is not None:
        require(*spec.requires)  # ExtraMissing, with the install hint, before any set-up
    return spec.factory(config)


def build_tiers(config: CacheConfig) -> list[Tier]:
    """The tiers `config` enables, fastest first."""
    return [build_tier(n, config) for n in config.enabled_tiers()]
