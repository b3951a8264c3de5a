"""CacheConfig: one frozen record of every cache setting, from Python, environment or YAML.

The environment variables are the seed's (REDIS_URL, REDIS_HOST, REDIS_PORT, REDIS_DB,
REDIS_PASSWORD, MEMORY_CACHE_SIZE_MB, DISK_CACHE_SIZE_GB, DISK_CACHE_PATH, S3_CACHE_BUCKET,
S3_CACHE_REGION, CELERY_WORKER_ID, AWS_BATCH_JOB_ID) plus a few TORE_NB_* ones. Environment
detection follows the seed: a Celery worker or an AWS Batch job gets a 128 MB memory tier, a disk
tier under ./cache/{worker_id}/ and the S3 prefix ocr-cache/{job_id}/.

>>> cfg = CacheConfig(memory_cache_size_mb=64, redis_url=None)
>>> cfg.memory_cache_size_mb
64
>>> "password" in repr(CacheConfig(redis_url="redis://:password@localhost:6379/0"))
False
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from .errors import ConfigError

__all__ = ["TIER_NAMES", "CacheConfig", "redact_url"]

TIER_NAMES: tuple[str, ...] = ("memory", "disk", "redis", "s3")
Environment = Literal["local", "celery", "batch"]
MB = 1_000_000
T = TypeVar("T")


def redact_url(url: str | None) -> str | None:
    """Hide the password of a URL such as redis://user:secret@host:6379/0.

    >>> redact_url("redis://:hunter2@localhost:6379/0")
    'redis://:***@localhost:6379/0'
    """
    if url is None:
        return None
    return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)


def _default_disk_path() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "tore_nb")


@dataclass(frozen=True)
class CacheConfig:
    """Every cache setting in one immutable record; see the module docstring."""

    enable_cache: bool = True
    namespace: str = "tore_nb"
    cache_ttl: float | None = None
    environment: Environment = "local"
    worker_id: str | None = None
    # L1 memory
    memory_enabled: bool = True
    memory_cache_size_mb: float = 512
    memory_ttl: float = 3600.0
    memory_max_item_mb: float = 64.0  # explicit tiers= and promotions; routing keeps 1 MB
    # L2 disk
    disk_enabled: bool = True
    disk_cache_path: str = field(default_factory=_default_disk_path)
    disk_cache_size_gb: float = 10.0
    disk_max_item_mb: float = 100.0
    # L3 redis (enabled when a URL or host is given)
    redis_url: str | None = field(default=None, repr=False)
    redis_host: str | None = None
    redis_port: int = 6379
    redis_db: int = 0
    redis_password: str | None = field(default=None, repr=False)
    redis_connect_timeout: float = 0.25
    redis_socket_timeout: float = 0.5
    redis_retries: int = 1
    redis_max_item_mb: float = 100.0
    # L4 s3 (enabled when a bucket is given)
    s3_cache_bucket: str | None = None
    s3_cache_region: str | None = None
    s3_prefix: str = "tore-cache/"
    s3_storage_class: str = "STANDARD_IA"
    s3_endpoint_url: str | None = None
    s3_connect_timeout: float = 1.0
    s3_read_timeout: float = 2.0
    s3_max_attempts: int = 2
    s3_max_item_mb: float = 5_000.0
    # routing by encoded size
    small_item_mb: float = 1.0
    large_item_mb: float = 100.0
    # codec
    compression: bool = True
    compression_min_bytes: int = 4096
    # circuit breaker
    breaker_failures: int = 1
    breaker_reset_seconds: float = 15.0

    def __post_init__(self) -> None:
        for name in ("memory_cache_size_mb", "disk_cache_size_gb", "memory_ttl"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.small_item_mb > self.large_item_mb:
            raise ConfigError("small_item_mb must not exceed large_item_mb")
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", self.namespace):
            raise ConfigError(
                f"namespace must be letters, digits, '_', '.', '-': {self.namespace!r}"
            )
        if self.environment not in ("local", "celery", "batch"):
            raise ConfigError(f"environment must be local, celery or batch: {self.environment!r}")
        if self.redis_url is not None and not re.match(r"(rediss?|unix)://", self.redis_url):
            raise ConfigError(f"REDIS_URL must start with redis://: {redact_url(self.redis_url)!r}")

    # -- derived -----------------------------------------------------------------------------
    @property
    def redis_enabled(self) -> bool:
        return bool(self.redis_url or self.redis_host)

    @property
    def s3_enabled(self) -> bool:
        return bool(self.s3_cache_bucket)

    def enabled_tiers(self) -> tuple[str, ...]:
        """Names of the tiers this configuration turns on, fastest first."""
        if not self.enable_cache:
            return ()
        on = {
            "memory": self.memory_enabled,
            "disk": self.disk_enabled,
            "redis": self.redis_enabled,
            "s3": self.s3_enabled,
        }
        return tuple(t for t in TIER_NAMES if on[t])

    def replace(self, **changes: Any) -> CacheConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        parts = [f"tiers={self.enabled_tiers()!r}", f"namespace={self.namespace!r}"]
        if self.redis_enabled:
            parts.append(
                f"redis={redact_url(self.redis_url) or f'{self.redis_host}:{self.redis_port}'}"
            )
        if self.s3_enabled:
            parts.append(f"s3=s3://{self.s3_cache_bucket}/{self.s3_prefix}")
        parts.append(f"disk={self.disk_cache_path!r}")
        return f"CacheConfig({', '.join(parts)})"

    # -- constructors ------------------------------------------------------------------------
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> CacheConfig:
        """Read the seed's environment variables (and TORE_NB_*); explicit overrides win.

        >>> CacheConfig.from_env({"MEMORY_CACHE_SIZE_MB": "64"}).memory_cache_size_mb
        64.0
        >>> CacheConfig.from_env({"CELERY_WORKER_ID": "w1"}).memory_cache_size_mb
        128.0
        """
        env = os.environ if env is None else env
        kw: dict[str, Any] = {}

        def read(var: str, conv: Callable[[str], T], dest: str) -> None:
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                return
            try:
                kw[dest] = conv(raw.strip())
            except (TypeError, ValueError):
                shown = "***" if "PASSWORD" in var or "SECRET" in var else repr(redact_url(raw))
                raise ConfigError(
                    f"environment variable {var}={shown} is not a valid "
                    f"{getattr(conv, '__name__', 'value')}"
                ) from None

        read("REDIS_URL", _url, "redis_url")
        read("REDIS_HOST", str, "redis_host")
        read("REDIS_PORT", _port, "redis_port")
        read("REDIS_DB", _nonneg_int, "redis_db")
        read("REDIS_PASSWORD", str, "redis_password")
        read("MEMORY_CACHE_SIZE_MB", _positive, "memory_cache_size_mb")
        read("DISK_CACHE_SIZE_GB", _positive, "disk_cache_size_gb")
        read("DISK_CACHE_PATH", str, "disk_cache_path")
        read("S3_CACHE_BUCKET", str, "s3_cache_bucket")
        read("S3_CACHE_REGION", str, "s3_cache_region")
        read("S3_ENDPOINT_URL", str, "s3_endpoint_url")
        read("TORE_NB_NAMESPACE", str, "namespace")
        read("TORE_NB_TTL", _positive, "cache_ttl")
        read("TORE_NB_ENABLED", _bool, "enable_cache")
        read("TORE_NB_TIERS", _tier_list, "_tiers")
        tiers = kw.pop("_tiers", None)
        if tiers is not None:
            for t in TIER_NAMES[:2]:
                kw[f"{t}_enabled"] = t in tiers

        worker = env.get("CELERY_WORKER_ID") or None
        job = env.get("AWS_BATCH_JOB_ID") or None
        if worker or job:
            wid = _safe_id(job or worker or "", "AWS_BATCH_JOB_ID" if job else "CELERY_WORKER_ID")
            kw["environment"] = "batch" if job else "celery"
            kw["worker_id"] = wid
            kw.setdefault("memory_cache_size_mb", 128.0)
            base = kw.get("disk_cache_path", "./cache")
            kw["disk_cache_path"] = str(Path(base) / wid)
            if job:
                kw["s3_prefix"] = f"ocr-cache/{wid}/"
        kw.update(overrides)
        return cls(**kw)

    @classmethod
    def from_yaml(cls, source: str | Path | Mapping[str, Any], **overrides: Any) -> CacheConfig:
        """Read the seed's YAML `caching:` block (a path, YAML text, or a parsed mapping).

        >>> CacheConfig.from_yaml("caching:\\n  memory: {size_mb: 256}\\n").memory_cache_size_mb
        256.0
        """
        if isinstance(source, Mapping):
            doc: Any = source
        else:
            import yaml

            text = Path(source).read_text() if _looks_like_path(source) else str(source)
            try:
                doc = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ConfigError(f"invalid YAML cache configuration: {exc}") from None
        block = doc.get("caching", doc) if isinstance(doc, Mapping) else None
        if not isinstance(block, Mapping):
            raise ConfigError("the YAML configuration must be a mapping with a 'caching:' block")
        kw: dict[str, Any] = {}

        def section(name: str) -> Mapping[str, Any]:
            sec = block.get(name) or {}
            if not isinstance(sec, Mapping):
                raise ConfigError(f"caching.{name} must be a mapping")
            return sec

        def take(sec: str, key: str, dest: str, conv: Callable[[Any], Any]) -> None:
            data = section(sec)
            if key in data and data[key] is not None:
                try:
                    kw[dest] = conv(data[key])
                except (TypeError, ValueError):
                    raise ConfigError(f"caching.{sec}.{key}: invalid value {data[key]!r}") from None

        days = lambda v: float(v) * 86400.0  # noqa: E731
        take("memory", "enabled", "memory_enabled", _bool)
        take("memory", "size_mb", "memory_cache_size_mb", _positive)
        take("memory", "ttl_seconds", "memory_ttl", _positive)
        take("disk", "enabled", "disk_enabled", _bool)
        take("disk", "path", "disk_cache_path", str)
        take("disk", "size_gb", "disk_cache_size_gb", _positive)
        take("disk", "ttl_days", "cache_ttl", days)
        redis_on = section("redis").get("enabled", False)
        if _bool(redis_on):
            take("redis", "url", "redis_url", _url)
            take("redis", "host", "redis_host", str)
            take("redis", "port", "redis_port", _port)
            take("redis", "db", "redis_db", _nonneg_int)
            if "redis_url" not in kw:
                kw.setdefault("redis_host", "localhost")
        obj = section("object_storage")
        if _bool(obj.get("enabled", False)):
            take("object_storage", "bucket", "s3_cache_bucket", str)
            take("object_storage", "region", "s3_cache_region", str)
            take("object_storage", "prefix", "s3_prefix", str)
            take("object_storage", "storage_class", "s3_storage_class", str)
            take("object_storage", "endpoint_url", "s3_endpoint_url", str)
        kw.update(overrides)
        return cls(**kw)

    @classmethod
    def embedded(cls, path: str | Path | None = None, **overrides: Any) -> CacheConfig:
        """Memory + disk only, no servers: the embedded default."""
        if path is not None:
            overrides["disk_cache_path"] = str(path)
        return cls(redis_url=None, redis_host=None, s3_cache_bucket=None, **overrides)


# -- converters with readable names for error messages -------------------------------------
def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError(v)


_bool.__name__ = "boolean (true/false)"


def _positive(v: Any) -> float:
    f = float(v)
    if not f > 0 or f != f or f == float("inf"):
        raise ValueError(v)
    return f


_positive.__name__ = "positive number"


def _nonneg_int(v: Any) -> int:
    i = int(v)
    if i < 0:
        raise ValueError(v)
    return i


_nonneg_int.__name__ = "non-negative integer"


def _port(v: Any) -> int:
    i = int(v)
    if not 0 < i < 65536:
        raise ValueError(v)
    return i


_port.__name__ = "port number (1-65535)"


def _url(v: Any) -> str:
    s = str(v)
    if not re.match(r"(rediss?|unix)://", s):
        raise ValueError(v)
    return s


_url.__name__ = "redis:// URL"


def _tier_list(v: str) -> tuple[str, ...]:
    names = tuple(t.strip() for t in v.split(",") if t.strip())
    if not names or any(n not in TIER_NAMES for n in names):
        raise ValueError(v)
    return names


_tier_list.__name__ = "comma-separated list of memory, disk, redis, s3"


def _safe_id(v: str, var: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:@\-]+", v) or v in (".", ".."):
        raise ConfigError(f"environment variable {var}={v!r} must be a simple identifier")
    return v


def _looks_like_path(source: str | Path) -> bool:
    if isinstance(source, Path):
        return True
    return "\n" not in source and source.endswith((".yaml", ".yml"))
