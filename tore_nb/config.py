"""CacheConfig: one frozen record of every cache setting, from Python, environment or YAML.

The environment variables are the seed's (REDIS_URL, REDIS_HOST, REDIS_PORT, REDIS_DB,
REDIS_PASSWORD, MEMORY_CACHE_SIZE_MB, DISK_CACHE_SIZE_GB, DISK_CACHE_PATH, S3_CACHE_BUCKET,
S3_CACHE_REGION, CELERY_WORKER_ID, AWS_BATCH_JOB_ID) plus a few TORE_NB_* ones. Environment
detection follows the seed: a Celery worker or an AWS Batch job gets a 128 MB memory tier, a disk
tier under ./cache/{worker_id}/ and the S3 prefix ocr-cache/{job_id}/.

Every field is checked however the record is made (constructor, `replace`, `from_env`,
`from_yaml`): a wrong type or range raises `ConfigError` naming the field, the environment
variable or the YAML key, and showing the value unless it is a secret.

>>> cfg = CacheConfig(memory_cache_size_mb=64, redis_url=None)
>>> cfg.memory_cache_size_mb
64
>>> "password" in repr(CacheConfig(redis_url="redis://:password@localhost:6379/0"))
False
>>> CacheConfig(redis_port=0)
Traceback (most recent call last):
...
tore_nb.errors.ConfigError: redis_port must be an integer from 1 to 65535, got 0
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
import numbers
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from .errors import ConfigError
from .redaction import is_secret, redact_url, redact_value, url_problem

__all__ = ["TIER_NAMES", "CacheConfig", "redact_url"]

TIER_NAMES: tuple[str, ...] = ("memory", "disk", "redis", "s3")
Environment = Literal["local", "celery", "batch"]
MB = 1_000_000
T = TypeVar("T")


def _default_disk_path() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "tore_nb")


def _field_error(name: str, message: str) -> ConfigError:
    """A ConfigError about one field, tagged so that from_env and from_yaml can name its source."""
    err = ConfigError(message)
    err.field = name  # type: ignore[attr-defined]
    return err


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
    s3_storage_class: str = "STANDARD_IA"  # for large, long-lived objects only:
    s3_ia_min_bytes: int = 131_072  # smaller objects are STANDARD (IA bills each as 128 KiB)
    s3_ia_min_ttl_days: float = 30.0  # and so are shorter-lived ones (IA bills 30 days at least)
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
        if isinstance(self.disk_cache_path, os.PathLike):
            object.__setattr__(self, "disk_cache_path", os.fspath(self.disk_cache_path))
        for f in dataclasses.fields(self):
            what, ok = _RULES[f.name]
            value = getattr(self, f.name)
            if not ok(value):
                raise _field_error(f.name, f"{f.name} must be {what}, got {_show(f.name, value)}")
        if self.small_item_mb > self.large_item_mb:
            raise _field_error(
                "small_item_mb",
                f"small_item_mb must not exceed large_item_mb "
                f"({self.small_item_mb!r} > {self.large_item_mb!r})",
            )

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
        _known_fields(changes)
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
        source: dict[str, str] = {}  # field -> the variable it was read from

        def read(var: str, conv: Callable[[str], T], dest: str) -> None:
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                return
            try:
                kw[dest] = conv(raw.strip())
            except (TypeError, ValueError, OverflowError):
                shown = "***" if "PASSWORD" in var or "SECRET" in var else _show(dest, raw)
                raise ConfigError(
                    f"environment variable {var}={shown} is not a valid "
                    f"{getattr(conv, '__name__', 'value')}"
                ) from None
            source[dest] = var

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
        tiers: tuple[str, ...] | None = kw.pop("_tiers", None)
        if tiers is not None:
            for t in TIER_NAMES[:2]:
                kw[f"{t}_enabled"] = t in tiers
                source[f"{t}_enabled"] = "TORE_NB_TIERS"

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
        cfg = _build(cls, kw, overrides, source, "environment variable ")
        if tiers is not None:
            # TORE_NB_TIERS picks the local tiers; a remote tier it names must be configured
            wanted = {"redis": "REDIS_URL or REDIS_HOST", "s3": "S3_CACHE_BUCKET"}
            on = {"redis": cfg.redis_enabled, "s3": cfg.s3_enabled}
            for t in tiers:
                if t in on and not on[t]:
                    raise ConfigError(
                        f"environment variable TORE_NB_TIERS={','.join(tiers)!r} names {t}, "
                        f"but {wanted[t]} is not set"
                    )
        return cfg

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
                # only the problem and where: the snippet PyYAML quotes may hold a password
                mark = getattr(exc, "problem_mark", None)
                where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
                problem = getattr(exc, "problem", None) or type(exc).__name__
                raise ConfigError(f"invalid YAML cache configuration{where}: {problem}") from None
        block = doc.get("caching", doc) if isinstance(doc, Mapping) else None
        if not isinstance(block, Mapping):
            raise ConfigError("the YAML configuration must be a mapping with a 'caching:' block")
        _warn_unknown_yaml_keys(block)
        kw: dict[str, Any] = {}
        keys: dict[str, str] = {}  # field -> the YAML key it was read from

        def section(name: str) -> Mapping[str, Any]:
            sec = block.get(name)
            if sec is None:
                return {}
            if not isinstance(sec, Mapping):
                raise ConfigError(f"caching.{name} must be a mapping, got {_show(name, sec)}")
            return sec

        def value(sec: str, key: str, conv: Callable[[Any], Any]) -> Any:
            raw = section(sec).get(key)
            if raw is None:
                return None
            try:
                return conv(raw)
            except (TypeError, ValueError, OverflowError):
                raise ConfigError(
                    f"caching.{sec}.{key}: invalid value {_show(key, raw)}, expected a "
                    f"{getattr(conv, '__name__', 'value')}"
                ) from None

        def take(sec: str, key: str, dest: str, conv: Callable[[Any], Any]) -> None:
            v = value(sec, key, conv)
            if v is not None:
                kw[dest], keys[dest] = v, f"caching.{sec}.{key}"

        take("memory", "enabled", "memory_enabled", _bool)
        take("memory", "size_mb", "memory_cache_size_mb", _positive)
        take("memory", "ttl_seconds", "memory_ttl", _positive)
        take("disk", "enabled", "disk_enabled", _bool)
        take("disk", "path", "disk_cache_path", _text)
        take("disk", "size_gb", "disk_cache_size_gb", _positive)
        take("disk", "ttl_days", "cache_ttl", _days)
        if value("redis", "enabled", _bool):
            take("redis", "url", "redis_url", _url)
            take("redis", "host", "redis_host", _text)
            take("redis", "port", "redis_port", _port)
            take("redis", "db", "redis_db", _nonneg_int)
            if "redis_url" not in kw:
                kw.setdefault("redis_host", "localhost")
        if value("object_storage", "enabled", _bool):
            take("object_storage", "bucket", "s3_cache_bucket", _text)
            take("object_storage", "region", "s3_cache_region", _text)
            take("object_storage", "prefix", "s3_prefix", _text)
            take("object_storage", "storage_class", "s3_storage_class", _text)
            take("object_storage", "endpoint_url", "s3_endpoint_url", _text)
        return _build(cls, kw, overrides, keys, "")

    @classmethod
    def embedded(cls, path: str | Path | None = None, **overrides: Any) -> CacheConfig:
        """Memory + disk only, no servers: the embedded default."""
        _known_fields(overrides)
        if path is not None:
            overrides["disk_cache_path"] = str(path)
        return cls(redis_url=None, redis_host=None, s3_cache_bucket=None, **overrides)


# the seed's `caching:` block, read or deliberately not (ttl_days of remote tiers: entries
# keep the TTL they were written with; incremental_processing and metrics: other components)
_YAML_KEYS: dict[str, frozenset[str]] = {
    "memory": frozenset({"enabled", "size_mb", "ttl_seconds"}),
    "disk": frozenset({"enabled", "path", "size_gb", "ttl_days"}),
    "redis": frozenset({"enabled", "url", "host", "port", "db", "ttl_days"}),
    "object_storage": frozenset(
        {
            "enabled",
            "type",
            "bucket",
            "region",
            "prefix",
            "storage_class",
            "endpoint_url",
            "ttl_days",
        }
    ),
    "incremental_processing": frozenset({"enabled", "change_threshold", "page_cache_ttl"}),
    "metrics": frozenset({"enabled", "report_interval"}),
}


def _warn_unknown_yaml_keys(block: Mapping[str, Any]) -> None:
    """A misspelt key (`size_md`) would be ignored without a word: name it in a warning."""
    unknown = [f"caching.{k}" for k in block if k not in _YAML_KEYS]
    for name, keys in _YAML_KEYS.items():
        sec = block.get(name)
        if isinstance(sec, Mapping):
            unknown += [f"caching.{name}.{k}" for k in sec if k not in keys]
    if unknown:
        logging.getLogger("tore_nb").warning(
            "unknown cache setting(s) ignored: %s", ", ".join(map(str, unknown))
        )


def _build(
    cls: type[CacheConfig],
    kw: dict[str, Any],
    overrides: dict[str, Any],
    source: dict[str, str],
    prefix: str,
) -> CacheConfig:
    """cls(**kw, **overrides); a bad field read from `source` is reported under its name there."""
    _known_fields(overrides)
    kw.update(overrides)
    try:
        return cls(**kw)
    except ConfigError as exc:
        name = getattr(exc, "field", None)
        where = None if name is None or name in overrides else source.get(name)
        if where is None:
            raise
        raise ConfigError(f"{prefix}{where}: {exc}") from None


def _known_fields(changes: Mapping[str, Any]) -> None:
    unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(CacheConfig)})
    if unknown:
        raise ConfigError(f"unknown CacheConfig field(s): {', '.join(unknown)}")


# -- field rules: (what the field must be, test) ---------------------------------------------
_Rule = tuple[str, Callable[[Any], bool]]


def _real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _integer(lo: int, hi: int | None = None) -> _Rule:
    what = f"an integer from {lo} to {hi}" if hi is not None else f"an integer >= {lo}"
    return (
        what,
        lambda v: (
            isinstance(v, numbers.Integral)
            and not isinstance(v, bool)
            and lo <= int(v)
            and (hi is None or int(v) <= hi)
        ),
    )


def _string(what: str, pattern: str = r"(?s).*", optional: bool = False) -> _Rule:
    return (
        ("None or " if optional else "") + what,
        lambda v: (
            (optional and v is None)
            or (isinstance(v, str) and re.fullmatch(pattern, v) is not None)
        ),
    )


_BOOL: _Rule = ("True or False", lambda v: isinstance(v, bool))
_POSITIVE: _Rule = ("a positive finite number", lambda v: _real(v) and v > 0)
_NONNEG: _Rule = ("a finite number >= 0", lambda v: _real(v) and v >= 0)
_TTL: _Rule = ("None or a positive finite number", lambda v: v is None or _POSITIVE[1](v))
_TEXT = _string("a non-empty string", r"(?s).+")
_OPT_TEXT = _string("a string", optional=True)

_RULES: dict[str, _Rule] = {
    "enable_cache": _BOOL,
    "namespace": _string("letters, digits, '_', '.', '-'", r"[A-Za-z0-9_.\-]+"),
    "cache_ttl": _TTL,
    "environment": _string("'local', 'celery' or 'batch'", r"local|celery|batch"),
    "worker_id": _OPT_TEXT,
    "memory_enabled": _BOOL,
    "memory_cache_size_mb": _POSITIVE,
    "memory_ttl": _POSITIVE,
    "memory_max_item_mb": _POSITIVE,
    "disk_enabled": _BOOL,
    "disk_cache_path": _TEXT,
    "disk_cache_size_gb": _POSITIVE,
    "disk_max_item_mb": _POSITIVE,
    "redis_url": (
        "None or a redis://, rediss://, redis+cluster://, rediss+cluster:// or unix:// URL with "
        "'/', '?', '#', '[' and ']' of its password percent-encoded",
        lambda v: v is None or (isinstance(v, str) and _url_ok(v)),
    ),
    # a host, never a URL: a password typed here would reach connection errors unredacted
    "redis_host": ("None or a host name or address", lambda v: v is None or _host_ok(v)),
    "redis_port": _integer(1, 65535),
    "redis_db": _integer(0),
    "redis_password": _OPT_TEXT,
    "redis_connect_timeout": _POSITIVE,
    "redis_socket_timeout": _POSITIVE,
    "redis_retries": _integer(0),
    "redis_max_item_mb": _POSITIVE,
    "s3_cache_bucket": _OPT_TEXT,
    "s3_cache_region": _OPT_TEXT,
    "s3_prefix": _string("a string"),
    "s3_storage_class": _TEXT,
    "s3_ia_min_bytes": _integer(0),  # 0 and 0.0: s3_storage_class for every object
    "s3_ia_min_ttl_days": _NONNEG,
    "s3_endpoint_url": _OPT_TEXT,
    "s3_connect_timeout": _POSITIVE,
    "s3_read_timeout": _POSITIVE,
    "s3_max_attempts": _integer(1),
    "s3_max_item_mb": _POSITIVE,
    "small_item_mb": _NONNEG,  # 0: nothing is routed to memory by size
    "large_item_mb": _NONNEG,  # 0: everything is routed to s3 only
    "compression": _BOOL,
    "compression_min_bytes": _integer(0),
    "breaker_failures": _integer(1),
    "breaker_reset_seconds": _NONNEG,  # 0: probe again at the next call
}


def _host_ok(v: Any) -> bool:
    """A host name, an IPv4 or an IPv6 address (bracketed or not): no '@', '/', space, nor a
    ':' outside an IPv6 address."""
    if not isinstance(v, str) or not v:
        return False
    if re.fullmatch(r"[^@/\s:\[\]]+", v):
        return True
    try:
        return ipaddress.ip_address(v.removeprefix("[").removesuffix("]")).version == 6
    except ValueError:
        return False


def _url_ok(v: str) -> bool:
    # redis+cluster:// and rediss+cluster:// name a Redis Cluster (see tiers.redis.cluster_url)
    return re.match(r"(rediss?(\+cluster)?|unix)://", v) is not None and url_problem(v) is None


def _show(name: str, value: Any) -> str:
    """A value for an error message: secrets hidden, URLs redacted whatever their shape (a
    mistyped one may land in any field), long values cut."""
    if is_secret(name):
        return "***"
    if isinstance(value, str):
        text = repr(redact_value(value))
    elif isinstance(value, bool | numbers.Number) or value is None:
        text = repr(value)
    else:
        text = f"a {type(value).__name__}"
    return text if len(text) <= 80 else text[:77] + "..."


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
    if isinstance(v, bool):
        raise TypeError(v)
    f = float(v)
    if not (math.isfinite(f) and f > 0):
        raise ValueError(v)
    return f


_positive.__name__ = "positive number"


def _days(v: Any) -> float:
    return _positive(v) * 86400.0


_days.__name__ = "positive number of days"


def _int(v: Any) -> int:
    if isinstance(v, str):
        return int(v)
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        return int(v)
    raise TypeError(v)


def _nonneg_int(v: Any) -> int:
    i = _int(v)
    if i < 0:
        raise ValueError(v)
    return i


_nonneg_int.__name__ = "non-negative integer"


def _port(v: Any) -> int:
    i = _int(v)
    if not 0 < i < 65536:
        raise ValueError(v)
    return i


_port.__name__ = "port number (1-65535)"


def _url(v: Any) -> str:
    if not isinstance(v, str) or not _url_ok(v):
        raise ValueError(v)
    return v


_url.__name__ = "redis:// URL (with '/', '?' and '#' of its password percent-encoded)"


def _text(v: Any) -> str:
    """A YAML string; a bare integer (bucket: 123) is taken as its digits, nothing else."""
    if isinstance(v, str):
        return v
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    raise TypeError(v)


_text.__name__ = "string"


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
