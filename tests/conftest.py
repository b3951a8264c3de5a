"""Shared fixtures: real servers on loopback (redis-server, moto's S3), data paths, isolation.

With CI=true a missing server is a failure, never a skip.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tore_nb.config import CacheConfig
from tore_nb.testing import MotoS3, RedisServer

from .support import CI, DATA, REPO, missing


@pytest.fixture
def local_modules(tmp_path: Path) -> Iterator[Path]:
    """A folder on sys.path for modules written by the test (local, not site-packages)."""
    folder = tmp_path / "src"
    folder.mkdir()
    sys.path.insert(0, str(folder))
    before = set(sys.modules)
    try:
        yield folder
    finally:
        sys.path.remove(str(folder))
        for name in set(sys.modules) - before:
            del sys.modules[name]


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep every test away from the user's real cache directory and key file."""
    home = tmp_path_factory.getbasetemp() / "home"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    for var in (
        "REDIS_URL",
        "REDIS_HOST",
        "S3_CACHE_BUCKET",
        "CELERY_WORKER_ID",
        "AWS_BATCH_JOB_ID",
        "DISK_CACHE_PATH",
        "TORE_NB_SECRET",
    ):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="session")
def sample_data() -> Path:
    if not DATA.is_dir():
        missing(f"the sample data at {DATA}")
    return DATA


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port for the whole session."""
    if not RedisServer.available():
        missing("redis-server")
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The session server's URL, flushed before each test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own, which it may kill, pause and restart."""
    if not RedisServer.available():
        missing("redis-server")
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoS3]:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        missing("moto[server]")
    server = MotoS3().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(moto_server: MotoS3) -> str:
    """A fresh, empty bucket on the moto server."""
    moto_server.reset()
    return moto_server.make_bucket("tore-test")


@pytest.fixture
def embedded_config(tmp_path: Path) -> CacheConfig:
    return CacheConfig.embedded(tmp_path / "cache")


@pytest.fixture
def full_config(tmp_path: Path, redis_url: str, s3_bucket: str, moto_server: MotoS3) -> CacheConfig:
    """All four tiers: memory, disk, a real Redis and S3 on moto."""
    return CacheConfig(
        disk_cache_path=str(tmp_path / "cache"),
        redis_url=redis_url,
        s3_cache_bucket=s3_bucket,
        s3_endpoint_url=moto_server.endpoint_url,
        s3_cache_region="us-east-1",
    )


# -- an IPython shell for the notebook-layer tests -----------------------------------------------
@pytest.fixture(scope="module")
def shell(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One InteractiveShell for the module; IPython's globals are put back afterwards (it
    installs its user module as __main__, which multiprocessing's spawn cannot use)."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    main, hook = sys.modules["__main__"], sys.displayhook
    cfg = Config()
    cfg.HistoryManager.hist_file = ":memory:"
    cfg.InteractiveShell.colors = "NoColor"
    ipdir = tmp_path_factory.mktemp("ipython")
    cls: Any = InteractiveShell
    shell = cls.instance(config=cfg, ipython_dir=str(ipdir))
    try:
        yield shell
    finally:
        if "tore_nb" in shell.extension_manager.loaded:
            shell.run_line_magic("unload_ext", "tore_nb")
        cls.clear_instance()
        sys.modules["__main__"], sys.displayhook = main, hook


@pytest.fixture
def ip(shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The module's shell with tore_nb loaded over a fresh embedded cache."""
    import tore_nb.magics
    import tore_nb.tiered

    # the process-wide cache is put back after
    monkeypatch.setattr(tore_nb.tiered, "_default", None)
    tore_nb.get_cache(CacheConfig.embedded(tmp_path / "cache"))
    shell.reset(new_session=False)
    if "tore_nb" not in shell.extension_manager.loaded:
        shell.run_line_magic("load_ext", "tore_nb")
    magics = tore_nb.magics._loaded[id(shell)]
    magics.history.clear()
    magics.last_label = None
    magics.verbose = True  # the tests tell a hit by its line; the quiet default has its own
    yield shell
    for trait in ("enabled", "ttl", "tiers", "verbose", "auto", "min_seconds"):
        magics.set_trait(trait, magics.trait_defaults(trait))


# -- a local Ray cluster for the modules that fan out ------------------------------------------
@pytest.fixture(scope="module")
def ray_session() -> Iterator[Any]:
    """ray.init of a local cluster (2 CPUs, 2 fake GPUs) for one module, shut down after it."""
    try:
        import ray
    except ImportError:
        if CI:
            pytest.fail("ray is required with CI=true", pytrace=False)
        pytest.skip("ray not installed")
    ray.init(
        address="local",  # never join a `ray start` cluster that another test left running
        num_cpus=2,
        num_gpus=2,
        include_dashboard=False,
        object_store_memory=200_000_000,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
        configure_logging=False,
        log_to_driver=False,
    )
    try:
        yield ray
    finally:
        ray.shutdown()


# -- a Redis Cluster of three private masters ----------------------------------------------------
@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Any]:
    """A real 3-master Redis Cluster on loopback (`tore_nb.testing.RedisClusterServers`) for
    the session; only its own processes are stopped after."""
    from tore_nb.testing import RedisClusterServers

    if not RedisClusterServers.available():
        missing("redis-server and redis-cli")
    cluster = RedisClusterServers().start()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def redis_cluster_url(redis_cluster: Any) -> str:
    """The session cluster's `redis+cluster://` URL, every master flushed before each test."""
    redis_cluster.flush()
    return str(redis_cluster.url)
