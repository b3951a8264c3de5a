"""What Ray workers share with the driver: the tiers page results are read from, and the
secret every entry is signed with, which a worker proves it holds before any work.

>>> import tempfile
>>> from tore_nb.config import CacheConfig
>>> from tore_nb.tiered import MultiLevelCache
>>> c = MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp()), secret=b"s" * 32)
>>> result_tiers(c), prove_secret(c, make_probe(c))
(('memory', 'disk'), None)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, SerializationError

if TYPE_CHECKING:
    from ..tiered import MultiLevelCache

__all__ = [
    "PROBE_KEY",
    "WorkerSecretError",
    "env_of",
    "make_probe",
    "prove_secret",
    "result_tiers",
]


def result_tiers(cache: MultiLevelCache, tiers: Sequence[str] | None = None) -> tuple[str, ...]:
    """The tiers to read page results and document records (manifests, results) from,
    fastest first: all of `tiers` (default: the cache's), but a tier that takes no small
    entries (S3) only while no faster shared tier that takes large ones (Redis) answers. Entries
    are routed by size, so Redis holds every entry S3 holds but the huge ones (over
    `large_item_mb`): asking S3 after Redis missed would be a billed request that almost always
    misses too.

    >>> import tempfile
    >>> from tore_nb.config import CacheConfig
    >>> from tore_nb.tiered import MultiLevelCache
    >>> result_tiers(MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp())))
    ('memory', 'disk')
    """
    from ..tiers import capabilities_of

    names = tuple(tiers) if tiers is not None else cache.tier_names
    out: list[str] = []
    covered = False  # a faster shared tier that takes large entries is up
    for name in names:
        caps = capabilities_of(cache.tier(name))
        if "small" not in caps.sizes and covered:
            continue
        out.append(name)
        if caps.shared and "large" in caps.sizes and cache.breaker_state(name) == "closed":
            covered = True
    return tuple(out)


class WorkerSecretError(ConfigError):
    """A Ray worker signs and verifies with another secret than the driver: every result it
    stored would be rejected by everyone else, and recomputed."""


PROBE_KEY = "tore_nb:worker-probe"


def make_probe(cache: MultiLevelCache) -> bytes:
    """An entry the driver signs, which a worker must verify before it does any work.

    >>> import tempfile
    >>> from tore_nb.config import CacheConfig
    >>> from tore_nb.tiered import MultiLevelCache
    >>> c = MultiLevelCache(CacheConfig.embedded(tempfile.mkdtemp()), secret=b"s" * 32)
    >>> prove_secret(c, make_probe(c)) is None
    True
    """
    return cache.codec.encode(PROBE_KEY, os.urandom(8).hex())


def prove_secret(cache: MultiLevelCache, probe: bytes) -> None:
    """Raise `WorkerSecretError`, naming this node and the fix, unless this process verifies
    the driver's probe (so it holds the driver's secret)."""
    try:
        cache.codec.decode(PROBE_KEY, probe)
    except SerializationError:
        import socket

        node = socket.gethostname()
        with contextlib.suppress(Exception):
            import ray

            node = f"{ray.util.get_node_ip_address()} ({node})"  # type: ignore[no-untyped-call]
        raise WorkerSecretError(
            f"Ray node {node} holds another tore_nb secret than the driver: its results would "
            "be rejected as unsigned and computed again. Start every node with the driver's "
            "TORE_NB_SECRET (ray.init(runtime_env={'env_vars': {'TORE_NB_SECRET': ...}})), "
            "or pass RayExecutor(share_secret=True)"
        ) from None


def env_of(env: dict[str, Any] | None) -> dict[str, Any]:
    """Ray task options for a runtime environment (none: the job's)."""
    return {} if env is None else {"runtime_env": env}
