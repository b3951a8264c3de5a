"""Model-based test: MultiLevelCache against a dict while tiers fail and entries are corrupted.

Invariant: a get returns the model's value or a miss, never a wrong value or an exception.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tore_nb import CacheConfig, MultiLevelCache
from tore_nb.testing import FlakyTier, RedisServer
from tore_nb.tiers import DiskTier, MemoryTier

from .conftest import SECRET

KEYS = st.sampled_from([f"k{i}" for i in range(6)])
VALUES = st.one_of(
    st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=5), st.binary(max_size=64)
)
EXAMPLES = int(os.environ.get("TORE_NB_STATEFUL_EXAMPLES", "200"))


class CacheModel(RuleBasedStateMachine):
    redis_url: str = ""

    @initialize()
    def setup(self) -> None:
        from tore_nb.tiers.redis import RedisTier

        self.dir = Path(tempfile.mkdtemp(prefix="tore-sm-"))
        self.prefix = f"sm{id(self)}|"
        self.memory = MemoryTier(10**7, 3600)
        self.disk = FlakyTier(DiskTier(self.dir, size_limit=10**8))
        self.redis = FlakyTier(RedisTier(url=self.redis_url, prefix=self.prefix))
        self.redis.inner.clear()
        cfg = CacheConfig.embedded(self.dir, breaker_failures=1, breaker_reset_seconds=0.0)
        self.cache = MultiLevelCache(cfg, tiers=[self.memory, self.disk, self.redis], secret=SECRET)
        self.model: dict[str, object] = {}

    def teardown(self) -> None:
        if hasattr(self, "cache"):
            self.redis.inner.clear()
            self.cache.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    @rule(key=KEYS, value=VALUES)
    def set(self, key: str, value: object) -> None:
        stored = self.cache.set(key, value)
        assert stored  # memory never fails
        self.model[key] = value

    @rule(keys=st.lists(KEYS, min_size=1, max_size=4, unique=True), value=VALUES)
    def set_many(self, keys: list[str], value: object) -> None:
        self.cache.set_many(dict.fromkeys(keys, value))
        self.model.update(dict.fromkeys(keys, value))

    @rule(key=KEYS)
    def get(self, key: str) -> None:
        got = self.cache.get(key, default=MISS)
        assert got is MISS or got == self.model.get(key, MISS), (key, got, self.model.get(key))

    @rule(keys=st.lists(KEYS, min_size=1, max_size=6, unique=True))
    def get_many(self, keys: list[str]) -> None:
        for k, v in self.cache.get_many(keys).items():
            assert k in self.model and v == self.model[k]

    @rule(key=KEYS)
    def delete(self, key: str) -> None:
        self.cache.delete(key)
        self.model.pop(key, None)

    @rule(which=st.sampled_from(["disk", "redis"]))
    def toggle(self, which: str) -> None:
        tier = self.disk if which == "disk" else self.redis
        tier.down = not tier.down

    @rule()
    def evict_memory(self) -> None:
        self.memory.clear()

    @precondition(lambda self: bool(self.model))
    @rule(
        key=KEYS,
        which=st.sampled_from(["disk", "redis"]),
        mode=st.sampled_from(["flip", "truncate", "swap"]),
    )
    def corrupt(self, key: str, which: str, mode: str) -> None:
        inner = (self.disk if which == "disk" else self.redis).inner
        raw = inner.get(key)
        if raw is None:
            return
        if mode == "flip":
            bad = bytearray(raw)
            bad[len(bad) // 2] ^= 0xFF
            inner.set(key, bytes(bad), None)
        elif mode == "truncate":
            inner.set(key, raw[:-3], None)
        else:  # a valid entry of another key moved here
            other = next((k for k in self.model if k != key and inner.get(k)), None)
            if other is not None:
                inner.set(key, inner.get(other) or b"", None)

    @invariant()
    def never_raises_stats(self) -> None:
        assert self.cache.get_stats()["total_requests"] >= 0


MISS = object()


@pytest.mark.redis
def test_cache_matches_dict_model(redis_server: RedisServer) -> None:
    CacheModel.redis_url = redis_server.url
    runner = CacheModel.TestCase
    runner.settings = settings(
        max_examples=EXAMPLES,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    runner().runTest()
