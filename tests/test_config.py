"""CacheConfig from Python, the seed's environment variables and YAML; clear errors; no secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from tore_nb.config import CacheConfig
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


def test_frozen_and_validated() -> None:
    cfg = CacheConfig()
    with pytest.raises(AttributeError):
        cfg.namespace = "x"  # type: ignore[misc]
    with pytest.raises(ConfigError, match="namespace"):
        CacheConfig(namespace="bad ns")
    with pytest.raises(ConfigError, match="small_item_mb"):
        CacheConfig(small_item_mb=200, large_item_mb=100)
