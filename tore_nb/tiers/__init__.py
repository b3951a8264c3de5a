"""Cache tiers, fastest first: memory, disk, redis, s3; `build_tiers(config)` makes the enabled.

Redis and S3 import their client lazily; a missing extra raises `ExtraMissing` with the
`pip install 'tore_nb[...]'` line that fixes it.

>>> from tore_nb.config import CacheConfig
>>> import tempfile
>>> [t.name for t in build_tiers(CacheConfig.embedded(tempfile.mkdtemp()))]
['memory', 'disk']
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import NullTier, Tier, TierUsage
from .disk import DiskTier
from .memory import MemoryTier

if TYPE_CHECKING:
    from ..config import CacheConfig

__all__ = ["DiskTier", "MemoryTier", "NullTier", "Tier", "TierUsage", "build_tier", "build_tiers"]

MB = 1_000_000


def build_tier(name: str, config: CacheConfig) -> Tier:
    """One tier by name, configured from `config`."""
    if name == "memory":
        return MemoryTier(
            max_bytes=int(config.memory_cache_size_mb * MB),
            ttl=config.memory_ttl,
            max_item_bytes=int(config.memory_max_item_mb * MB),
        )
    if name == "disk":
        return DiskTier(
            config.disk_cache_path,
            size_limit=int(config.disk_cache_size_gb * 1000 * MB),
            max_item_bytes=int(config.disk_max_item_mb * MB),
            prefix=f"{config.namespace}|",
        )
    if name == "redis":
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
    if name == "s3":
        from .s3 import S3Tier

        return S3Tier(
            bucket=config.s3_cache_bucket or "",
            prefix=f"{config.s3_prefix}{config.namespace}/",
            region=config.s3_cache_region,
            endpoint_url=config.s3_endpoint_url,
            storage_class=config.s3_storage_class,
            connect_timeout=config.s3_connect_timeout,
            read_timeout=config.s3_read_timeout,
            max_attempts=config.s3_max_attempts,
            max_item_bytes=int(config.s3_max_item_mb * MB),
        )
    raise ValueError(f"unknown tier {name!r}; expected memory, disk, redis or s3")


def build_tiers(config: CacheConfig) -> list[Tier]:
    """The tiers `config` enables, fastest first."""
    return [build_tier(n, config) for n in config.enabled_tiers()]
