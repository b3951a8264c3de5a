"""CacheConfig from Python, the seed's environment variables and YAML; clear errors; no secrets."""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import socket
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tore_nb.config import _RULES, CacheConfig, redact_url
from tore_nb.errors import ConfigError

YAML = """
caching:
  memory: {enabled: true, size_mb: 1024, ttl_seconds: 3600}
  disk: {enabled: true, path: /tmp/tore-yaml, size_gb: 50, ttl_days: 7}
  redis: {enabled: true, host: localhost, port: 6380, db: 2, ttl_days: 30}
  object_storage: {enabled: false, type: s3, bucket: torematrix-cache, ttl_days: 90}
  incremental_processing: {enabled: true, change_threshold: 0.3}
"""


def test_defaults_are_embedded() -> None:
    cfg = CacheConfig.from_env({})
    assert cfg.enabled_tiers() == ("memory", "disk")
    assert cfg.memory_cache_size_mb == 512
    assert cfg.environment == "local"


def test_seed_environment_variables() -> None:
    cfg = CacheConfig.from_env(
        {
            "REDIS_HOST": "cache.local",
            "REDIS_PORT": "6380",
            "REDIS_DB": "3",
            "REDIS_PASSWORD": "pw",
            "MEMORY_CACHE_SIZE_MB": "64",
            "DISK_CACHE_SIZE_GB": "2.5",
            "DISK_CACHE_PATH": "/tmp/x",
            "S3_CACHE_BUCKET": "b",
            "S3_CACHE_REGION": "eu-west-1",
        }
    )
    assert cfg.enabled_tiers() == ("memory", "disk", "redis", "s3")
    assert (cfg.redis_host, cfg.redis_port, cfg.redis_db) == ("cache.local", 6380, 3)
    assert cfg.memory_cache_size_mb == 64 and cfg.disk_cache_size_gb == 2.5
    assert cfg.s3_storage_class == "STANDARD_IA"


def test_celery_and_batch_detection() -> None:
    w = CacheConfig.from_env({"CELERY_WORKER_ID": "worker-001"})
    assert (w.environment, w.memory_cache_size_mb) == ("celery", 128)
    assert Path(w.disk_cache_path) == Path("./cache/worker-001")
    b = CacheConfig.from_env({"AWS_BATCH_JOB_ID": "job-123", "S3_CACHE_BUCKET": "my-cache"})
    assert (b.environment, b.memory_cache_size_mb) == ("batch", 128)
    assert b.s3_prefix == "ocr-cache/job-123/"
    assert Path(b.disk_cache_path) == Path("./cache/job-123")


@pytest.mark.parametrize(
    "var,value",
    [
        ("REDIS_PORT", "sixty"),
        ("REDIS_PORT", "70000"),
        ("REDIS_DB", "-1"),
        ("MEMORY_CACHE_SIZE_MB", "0"),
        ("DISK_CACHE_SIZE_GB", "nan"),
        ("REDIS_URL", "http://x"),
        ("CELERY_WORKER_ID", "../../etc"),
        ("TORE_NB_ENABLED", "maybe"),
        ("TORE_NB_TIERS", "ram"),
    ],
)
def test_invalid_env_names_the_variable(var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=var):
        CacheConfig.from_env({var: value})


def test_secrets_never_shown() -> None:
    canary = "CANARY-pw-4242"
    cfg = CacheConfig.from_env(
        {"REDIS_URL": f"redis://:{canary}@localhost:6379/0", "REDIS_PASSWORD": canary}
    )
    assert canary not in repr(cfg) and canary not in str(cfg)
    with pytest.raises(ConfigError) as err:
        CacheConfig.from_env({"REDIS_URL": f"http://:{canary}@host/0"})
    assert canary not in str(err.value)
    with pytest.raises(ConfigError) as err2:
        CacheConfig.from_env({"REDIS_PASSWORD": canary, "REDIS_PORT": "bad"})
    assert canary not in str(err2.value)


def test_yaml_block(tmp_path: Path) -> None:
    cfg = CacheConfig.from_yaml(YAML)
    assert cfg.memory_cache_size_mb == 1024
    assert cfg.disk_cache_path == "/tmp/tore-yaml"
    assert cfg.cache_ttl == 7 * 86400
    assert (cfg.redis_host, cfg.redis_port, cfg.redis_db) == ("localhost", 6380, 2)
    assert not cfg.s3_enabled
    path = tmp_path / "c.yaml"
    path.write_text(YAML)
    assert CacheConfig.from_yaml(path) == cfg


def test_yaml_errors() -> None:
    with pytest.raises(ConfigError, match=r"caching\.memory\.size_mb"):
        CacheConfig.from_yaml("caching:\n  memory: {size_mb: lots}\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        CacheConfig.from_yaml("caching: [unclosed\n")
    with pytest.raises(ConfigError, match="mapping"):
        CacheConfig.from_yaml("- a list\n")


# the seed design's own `caching:` block, as its users have it in their YAML files
SEED_YAML = """
caching:
  memory:
    enabled: true
    size_mb: 1024
    ttl_seconds: 3600
  disk:
    enabled: true
    path: "/var/cache/torematrix"
    size_gb: 50
    ttl_days: 7
  redis:
    enabled: true
    host: "localhost"
    port: 6379
    db: 0
    ttl_days: 30
  object_storage:
    enabled: false
    type: "s3"
    bucket: "torematrix-cache"
    ttl_days: 90
  incremental_processing:
    enabled: true
    change_threshold: 0.3  # Reprocess if >30% changed
    page_cache_ttl: 86400  # 24 hours
  metrics:
    enabled: true
    report_interval: 300  # 5 minutes
"""


def test_yaml_misspelt_keys_are_named_in_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="tore_nb"):
        CacheConfig.from_yaml(YAML)
        CacheConfig.from_yaml(SEED_YAML)  # the seed's own block: every key known
        assert caplog.records == []
        cfg = CacheConfig.from_yaml("caching:\n  memory: {size_md: 64}\n  memroy: {}\n")
    assert cfg.memory_cache_size_mb == 512  # ignored, but said so:
    assert "caching.memory.size_md" in caplog.text and "caching.memroy" in caplog.text


def test_frozen_and_validated() -> None:
    cfg = CacheConfig()
    with pytest.raises(AttributeError):
        cfg.namespace = "x"  # type: ignore[misc]
    with pytest.raises(ConfigError, match="namespace"):
        CacheConfig(namespace="bad ns")
    with pytest.raises(ConfigError, match="small_item_mb"):
        CacheConfig(small_item_mb=200, large_item_mb=100)


# -- secrets: redact_url reads passwords as redis-py does ------------------------------------
CANARY = "CANARY-pw-7f3e"
LEAKY_URLS = [
    f"redis://user:p@ss{CANARY}@host:6379/0",  # redis-py splits at the last '@'
    f"redis://:{CANARY}@host:6379/0",
    f"redis://host:6379/0?password={CANARY}",  # redis-py honours ?password=
    f"redis://host:6379/0?db=1&Password={CANARY}&x=1",
    f"rediss://user:{CANARY}:x@host/0",
    f"unix://:{CANARY}@/tmp/redis.sock?db=0",
    f"redis://:{CANARY}/x@host/0",  # unencoded '/', '?', '#' or space in the password
    f"redis://:a?{CANARY}@host/0",
    f"redis://:12/{CANARY}@host/0",
    f"redis://:a#{CANARY}@host/0",
    f"redis://:{CANARY} x@host/0",
    f"redis://[::1:{CANARY}",
]


@pytest.mark.parametrize("url", LEAKY_URLS)
def test_redact_url_hides_every_password(url: str) -> None:
    shown = redact_url(url)
    assert shown is not None and CANARY not in shown and shown.startswith(url[:8])
    quoted = redact_url(f"Error connecting to {url}. Connection refused.")
    assert quoted is not None and CANARY not in quoted and quoted.startswith("Error connecting")


def test_redact_url_keeps_what_is_not_secret() -> None:
    assert redact_url("redis://user:p@ss@host:6379/0") == "redis://user:***@host:6379/0"
    assert redact_url("redis://h/0?password=p@w&db=2") == "redis://h/0?password=***&db=2"
    assert redact_url("a redis://:x@h/0 b") == "a redis://:***@h/0 b"
    for plain in ("redis://localhost:6379/0", "unix:///tmp/a@b.sock?db=1", "rediss://[::1]:6380/2"):
        assert redact_url(plain) == plain
    assert redact_url("no url at all: a@b") == "no url at all: a@b"
    assert redact_url(None) is None


def test_canary_never_in_repr_errors_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    for url in LEAKY_URLS[:6]:
        cfg = CacheConfig(redis_url=url, redis_password=CANARY)
        seen += [repr(cfg), str(cfg), repr(cfg.replace(namespace="other"))]
    bad: list[Callable[[], object]] = [
        lambda: CacheConfig.from_env({"REDIS_URL": f"http://user:p@ss{CANARY}@host/0"}),
        lambda: CacheConfig.from_env({"REDIS_URL": f"https://h/0?password={CANARY}"}),
        lambda: CacheConfig.from_env({"REDIS_PASSWORD": CANARY, "TORE_NB_TIERS": "s3"}),
        lambda: CacheConfig(redis_url=f"http://:{CANARY}@h/0"),
        lambda: CacheConfig(redis_password=[CANARY]),  # type: ignore[arg-type]
        lambda: CacheConfig().replace(redis_url=f"tcp://h/0?password={CANARY}"),
        lambda: CacheConfig.from_yaml(
            f"caching:\n  redis: {{enabled: true, url: 'http://u:p@{CANARY}@h/0'}}\n"
        ),
        lambda: CacheConfig.from_yaml(
            f"caching:\n  redis: {{enabled: true, url: 'redis://:{CANARY}@h/0'\n"
        ),  # invalid YAML: PyYAML's message quotes the line
    ]
    for make_config in bad:
        with pytest.raises(ConfigError) as err:
            make_config()
        seen += [str(err.value), "".join(traceback.format_exception(err.value))]
    pytest.importorskip("redis")
    from tests.support import SECRET
    from tore_nb import MultiLevelCache

    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for url in (
        f"redis://user:p@ss{CANARY}@127.0.0.1:{port}/0",
        f"redis://127.0.0.1:{port}/0?password={CANARY}",
    ):
        cfg = CacheConfig(
            redis_url=url,
            memory_enabled=False,
            disk_cache_path=str(tmp_path / "d"),
            redis_connect_timeout=0.05,
            redis_socket_timeout=0.05,
            breaker_reset_seconds=0,
        )
        cache = MultiLevelCache(cfg, secret=SECRET)
        cache.set("k", 1, tiers=["redis"])
        cache.get("missing")
        seen += [repr(cache), repr(cache.tier("redis"))]
    seen += [caplog.text, *(str(r.args) for r in caplog.records)]
    assert [s for s in seen if CANARY in s] == []


# -- every field is checked, however the record is made --------------------------------------
def test_every_field_has_a_rule() -> None:
    assert set(_RULES) == {f.name for f in dataclasses.fields(CacheConfig)}


@pytest.mark.parametrize(
    "name,value",
    [
        ("enable_cache", "false"),
        ("memory_enabled", 0),
        ("compression", None),
        ("namespace", "ok\n"),
        ("namespace", 5),
        ("environment", "prod"),
        ("cache_ttl", "3600"),
        ("cache_ttl", 0),
        ("cache_ttl", -5),
        ("cache_ttl", math.inf),
        ("memory_ttl", math.nan),
        ("memory_cache_size_mb", "64"),
        ("memory_cache_size_mb", math.inf),
        ("memory_cache_size_mb", True),
        ("memory_max_item_mb", -1),
        ("disk_cache_size_gb", math.nan),
        ("disk_cache_path", ""),
        ("disk_cache_path", ["a", "b"]),
        ("redis_port", -1),
        ("redis_port", 65536),
        ("redis_port", "x"),
        ("redis_port", 6379.0),
        ("redis_db", -1),
        ("redis_retries", -1),
        ("redis_connect_timeout", 0),
        ("redis_socket_timeout", math.inf),
        ("redis_host", 127),
        ("s3_max_attempts", 0),
        ("s3_read_timeout", -1.0),
        ("s3_storage_class", ""),
        ("s3_cache_bucket", 123),
        ("small_item_mb", -1),
        ("large_item_mb", math.inf),
        ("compression_min_bytes", -1),
        ("breaker_failures", 0),
        ("breaker_failures", 1.5),
        ("breaker_reset_seconds", -1),
        ("worker_id", 7),
    ],
)
def test_invalid_field_names_the_field_and_value(name: str, value: object) -> None:
    shown = "a list" if isinstance(value, list) else re.escape(repr(value))
    with pytest.raises(ConfigError, match=rf"^{name} must be .*, got {shown}"):
        CacheConfig(**{name: value})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=rf"^{name} must be"):
        CacheConfig().replace(**{name: value})
    with pytest.raises(ConfigError, match=rf"^{name} must be"):
        CacheConfig.from_env({}, **{name: value})
    with pytest.raises(ConfigError, match=rf"^{name} must be"):
        CacheConfig.from_yaml({"caching": {}}, **{name: value})


def test_boundary_values_are_valid(tmp_path: Path) -> None:
    cfg = CacheConfig(
        small_item_mb=0,
        large_item_mb=0,
        redis_retries=0,
        redis_db=0,
        redis_port=65535,
        compression_min_bytes=0,
        breaker_reset_seconds=0.0,
        cache_ttl=None,
        memory_cache_size_mb=np.float64(0.5),  # type: ignore[arg-type]
        redis_max_item_mb=np.int64(3),  # type: ignore[arg-type]
        s3_prefix="",
        disk_cache_path=tmp_path,  # type: ignore[arg-type]
    )
    assert cfg.disk_cache_path == str(tmp_path)
    assert cfg.replace(redis_port=1).redis_port == 1


def test_secret_field_value_never_shown() -> None:
    with pytest.raises(ConfigError, match=r"redis_password .*got \*\*\*$"):
        CacheConfig(redis_password=12345)  # type: ignore[arg-type]


def test_unknown_field_is_a_config_error() -> None:
    for make_config in (
        lambda: CacheConfig().replace(memory_size=1),
        lambda: CacheConfig.from_env({}, memory_size=1),
        lambda: CacheConfig.from_yaml({"caching": {}}, memory_size=1),
        lambda: CacheConfig.embedded(memory_size=1),
    ):
        with pytest.raises(ConfigError, match="memory_size"):
            make_config()


def test_errors_name_their_source() -> None:
    with pytest.raises(ConfigError, match=r"TORE_NB_NAMESPACE.*namespace"):
        CacheConfig.from_env({"TORE_NB_NAMESPACE": "bad ns"})
    with pytest.raises(ConfigError, match=r"TORE_NB_TTL"):
        CacheConfig.from_env({"TORE_NB_TTL": "inf"})
    with pytest.raises(ConfigError, match=r"caching\.disk\.ttl_days"):
        CacheConfig.from_yaml("caching:\n  disk: {ttl_days: 1e308}\n")  # inf seconds
    # an explicit override is reported under its field name, not the variable's
    with pytest.raises(ConfigError, match=r"^namespace must be"):
        CacheConfig.from_env({"TORE_NB_NAMESPACE": "ok"}, namespace="bad ns")


# -- YAML: every key checked, errors name the key --------------------------------------------
@pytest.mark.parametrize(
    "yaml_text,key",
    [
        ("disk: {ttl_days: -1}", "disk.ttl_days"),
        ("disk: {ttl_days: 0}", "disk.ttl_days"),
        ("disk: {ttl_days: .nan}", "disk.ttl_days"),
        ("disk: {ttl_days: .inf}", "disk.ttl_days"),
        ("disk: {ttl_days: true}", "disk.ttl_days"),
        ("memory: {size_mb: true}", "memory.size_mb"),
        ("memory: {ttl_seconds: .inf}", "memory.ttl_seconds"),
        ("redis: {enabled: maybe, url: 'redis://h:1/0'}", "redis.enabled"),
        ("redis: {enabled: [1], url: 'redis://h:1/0'}", "redis.enabled"),
        ("object_storage: {enabled: perhaps, bucket: b}", "object_storage.enabled"),
        ("redis: {enabled: true, port: 6379.5}", "redis.port"),
        ("redis: {enabled: true, db: true}", "redis.db"),
        ("redis: {enabled: true, host: [a]}", "redis.host"),
        ("disk: {path: [a, b]}", "disk.path"),
        ("disk: {path: {a: 1}}", "disk.path"),
        ("object_storage: {enabled: true, bucket: [b]}", "object_storage.bucket"),
        ("memory: false", "memory"),
    ],
)
def test_yaml_invalid_values_name_the_key(yaml_text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"caching.{key}")):
        CacheConfig.from_yaml(f"caching:\n  {yaml_text}\n")


def test_yaml_numeric_bucket_is_its_digits() -> None:
    cfg = CacheConfig.from_yaml("caching:\n  object_storage: {enabled: true, bucket: 123}\n")
    assert cfg.s3_cache_bucket == "123"


# -- TORE_NB_TIERS ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "env",
    [
        {"TORE_NB_TIERS": "redis"},
        {"TORE_NB_TIERS": "memory,s3"},
        {"TORE_NB_TIERS": "s3", "REDIS_URL": "redis://h:6379/0"},
        {"TORE_NB_TIERS": "memory,ram"},
        {"TORE_NB_TIERS": ",,"},
    ],
)
def test_tier_list_naming_an_unconfigured_or_unknown_tier_is_an_error(
    env: dict[str, str],
) -> None:
    with pytest.raises(ConfigError, match="TORE_NB_TIERS"):
        CacheConfig.from_env(env)


def test_tier_list_picks_local_tiers() -> None:
    assert CacheConfig.from_env({"TORE_NB_TIERS": "memory"}).enabled_tiers() == ("memory",)
    redis_only = {"TORE_NB_TIERS": "redis", "REDIS_URL": "redis://h:6379/0"}
    assert CacheConfig.from_env(redis_only).enabled_tiers() == ("redis",)
    both = {"TORE_NB_TIERS": "disk,s3", "S3_CACHE_BUCKET": "b", "REDIS_HOST": "h"}
    assert CacheConfig.from_env(both).enabled_tiers() == ("disk", "redis", "s3")


# -- secrets in mistyped URLs, whatever their shape (issue 14) ----------------------------------
MARK = "SeKrEt"
# shapes a user may type: the scheme mistyped or missing, the password with unencoded '/'
# '?' '#', a password and no user, a user and no host...; {pw} is where the password goes
MISTYPED = [
    "redis//:{pw}@host:6379/0",
    ":{pw}@host",
    ":{pw}@host:6379/0",
    "redis:/:{pw}@host/0",
    "redis:{pw}@host",
    "redis ://:{pw}@host",
    "redis: //:{pw}@host",
    "//:{pw}@host:1",
    "redis//user:{pw}@host",
    "rediss//u:{pw}@h/1",
    "{pw}@host",
    "redis//{pw}@host",
    "redis:\\\\:{pw}@h",
    "http://:{pw}@host/0",
    "tcp://u:{pw}@h",
    "REDIS_URL=redis://:{pw}@h",
    "redis://:{pw}/x@host/0",
    "redis://:a?{pw}@host/0",
    "redis://:12/{pw}@host/0",
    "redis://:a#{pw}@host/0",
    "redis://u:{pw}[x@host/0",
]
# shapes without an '@' after the password: one typed in the password would read as a host
NO_AT = ["redis//:{pw}", ":{pw}", "redis://:{pw}"]
PW_CHARS = "abcXYZ019/?#:!$%&'()*+,;=-._~ "


def config_errors(url: str) -> list[str]:
    """What a mistyped REDIS_URL makes tore_nb say, everywhere it reaches: each ConfigError's
    str, repr and traceback, from the constructor, `replace`, the environment (as REDIS_URL
    and as REDIS_HOST) and YAML (as a mapping and as text)."""
    makers: list[Callable[[], object]] = [
        lambda: CacheConfig(redis_url=url),
        lambda: CacheConfig().replace(redis_url=url),
        lambda: CacheConfig.from_env({"REDIS_URL": url}),
        lambda: CacheConfig.from_env({"REDIS_HOST": url}),
        lambda: CacheConfig(redis_host=url),
        lambda: CacheConfig.from_yaml({"caching": {"redis": {"enabled": True, "url": url}}}),
        lambda: CacheConfig.from_yaml({"caching": {"redis": {"enabled": True, "host": url}}}),
        lambda: CacheConfig.from_yaml({"caching": {"redis": {"enabled": True, "port": url}}}),
        lambda: CacheConfig.from_env({"REDIS_PORT": url}),
    ]
    seen: list[str] = []
    for make_config in makers:
        try:
            cfg = make_config()
        except ConfigError as exc:
            seen += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
        else:
            seen += [repr(cfg), str(cfg)]
    return seen


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.sampled_from(MISTYPED),
    before=st.text(PW_CHARS + "@", max_size=6),
    after=st.text(PW_CHARS + "@", max_size=6),
)
def test_mistyped_url_never_shows_its_password(shape: str, before: str, after: str) -> None:
    """Regression: `redis//...` or `:pw@host` put the whole URL, password and all, in the
    ConfigError (constructor, environment, YAML, CLI traceback)."""
    url = shape.format(pw=before + MARK + after)
    assert [s for s in config_errors(url) if MARK in s] == []


@settings(max_examples=40, deadline=None)
@given(shape=st.sampled_from(NO_AT), pw=st.text(PW_CHARS, max_size=6))
def test_mistyped_url_without_a_host_never_shows_its_password(shape: str, pw: str) -> None:
    url = shape.format(pw=pw + MARK)
    assert [s for s in config_errors(url) if MARK in s] == []


def test_unencoded_slash_in_password_is_refused_before_any_connection() -> None:
    """Regression: a password holding an unencoded '/' (or '?', '#') was read by redis-py as a
    port and path, and the outage warning quoted it ("Port could not be cast to integer value
    as 'hun'"). Such a URL is now refused with a ConfigError that says to percent-encode it."""
    for url in (f"redis://:hun/{MARK}@127.0.0.1:1/0", f"redis://:hun?{MARK}@h/0"):
        with pytest.raises(ConfigError, match="percent-encode") as err:
            CacheConfig(redis_url=url)
        assert MARK not in str(err.value)
    ok = CacheConfig(redis_url=f"redis://:hun%2F{MARK}@127.0.0.1:1/0")
    assert MARK not in repr(ok)


@pytest.mark.redis
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pw=st.text("abcXYZ019:@!$&'()*+,;=-._~%", max_size=6))
def test_outage_warnings_never_show_a_password(pw: str) -> None:
    """A URL the config accepts, whatever its password, never shows it in logs once Redis is
    down (the tier's repr, its outage warning, the cache's repr)."""
    pytest.importorskip("redis")
    import tempfile

    from tests.support import SECRET
    from tore_nb import MultiLevelCache
    from tore_nb.testing import free_port

    url = f"redis://u:{pw}{MARK}@127.0.0.1:{free_port()}/0"
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("tore_nb")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        with tempfile.TemporaryDirectory() as d:
            cfg = CacheConfig(
                redis_url=url, disk_cache_path=d, redis_connect_timeout=0.05, memory_enabled=False
            )
            cache = MultiLevelCache(cfg, secret=SECRET)
            cache.set("k", 1, tiers=["redis"])
            cache.get("missing")
            seen = [repr(cache), repr(cache.tier("redis")), repr(cfg)]
            seen += [r.getMessage() for r in records]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    assert any("unavailable" in s for s in seen)
    assert [s for s in seen if MARK in s] == []


def test_cli_with_a_mistyped_url_never_shows_its_password(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "REDIS_URL": f"redis//:pw-{MARK}@host:6379/0",
        "DISK_CACHE_PATH": str(tmp_path),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tore_nb.cli", "stats"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "REDIS_URL" in proc.stderr
    assert MARK not in proc.stdout + proc.stderr
