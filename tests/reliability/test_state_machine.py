"""Model-based: MultiLevelCache against a dict while time jumps, tiers die and come back, and
entries are corrupted. Invariant: a get returns the model's value or a miss, never a wrong value
(an expired, deleted, overwritten or damaged one) and never an exception."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from tests.support import SECRET
from tore_nb import CacheConfig, MultiLevelCache, clock
from tore_nb.testing import FlakyTier, RedisServer
from tore_nb.tiers import DiskTier, MemoryTier

from .conftest import FIGURES, Figures

NAMES = [f"k{i}" for i in range(4)]
KEYS = st.sampled_from(NAMES)
VALUES = st.one_of(
    st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=5), st.binary(max_size=64)
)
TTLS = st.sampled_from([None, None, 5.0, 60.0])
EXAMPLES = int(os.environ.get("TORE_NB_STATEFUL_EXAMPLES", "200"))
MISS = object()
STATS = Figures("state_machine")


class CacheModel(RuleBasedStateMachine):
    server: RedisServer

    @initialize()
    def setup(self) -> None:
        from tore_nb.tiers.redis import RedisTier

        clock.reset()
        self.dir = Path(tempfile.mkdtemp(prefix="tore-sm-"))
        self.memory = MemoryTier(10**7, 3600)
        self.disk = FlakyTier(DiskTier(self.dir, size_limit=10**8))
        self.redis = RedisTier(
            url=self.server.url,
            prefix=f"sm{id(self)}|",
            connect_timeout=0.1,
            socket_timeout=0.2,
            retries=0,
        )
        if self.server.proc is None:
            self.server.start()
        self.redis.clear()
        cfg = CacheConfig.embedded(self.dir, breaker_failures=1, breaker_reset_seconds=0.0)
        self.cache = MultiLevelCache(cfg, tiers=[self.memory, self.disk, self.redis], secret=SECRET)
        self.model: dict[str, tuple[object, float]] = {}  # key -> (value, expires or inf)

    def teardown(self) -> None:
        if hasattr(self, "cache"):
            self.cache.close()
            shutil.rmtree(self.dir, ignore_errors=True)
        clock.reset()

    def _live(self, key: str) -> object:
        value, expires = self.model.get(key, (MISS, 0.0))
        return value if clock.now() < expires else MISS

    def _check(self, key: str, got: object) -> None:
        STATS.operations += 1
        if got is MISS:
            return
        want = self._live(key)
        if want is MISS or got != want:
            STATS.corrupt_reads += 1
        assert want is not MISS and got == want, (key, got, want)

    @rule(key=KEYS, value=VALUES, ttl=TTLS)
    def set(self, key: str, value: object, ttl: float | None) -> None:
        STATS.operations += 1
        assert self.cache.set(key, value, ttl=ttl)  # memory never fails
        # the model's expiry is taken after the cache's, so it is never the earlier one
        self.model[key] = (value, float("inf") if ttl is None else clock.now() + ttl)

    @rule(keys=st.lists(KEYS, min_size=1, max_size=4, unique=True), value=VALUES)
    def set_many(self, keys: list[str], value: object) -> None:
        STATS.operations += 1
        self.cache.set_many(dict.fromkeys(keys, value))
        self.model.update(dict.fromkeys(keys, (value, float("inf"))))

    @rule(key=KEYS)
    def get(self, key: str) -> None:
        self._check(key, self.cache.get(key, default=MISS))

    @rule(keys=st.lists(KEYS, min_size=1, max_size=6, unique=True))
    def get_many(self, keys: list[str]) -> None:
        for k, v in self.cache.get_many(keys).items():
            self._check(k, v)

    @invariant()
    def every_key_agrees(self) -> None:
        # after every step: a read of every key, single and batched, must agree with the model
        if not hasattr(self, "cache"):
            return
        for k in NAMES:
            self._check(k, self.cache.get(k, default=MISS))
        for k, v in self.cache.get_many(NAMES).items():
            self._check(k, v)

    @rule(key=KEYS)
    def delete(self, key: str) -> None:
        STATS.operations += 1
        self.cache.delete(key)
        self.model.pop(key, None)

    @rule(seconds=st.sampled_from([1.0, 4.0, 30.0, 120.0]))
    def advance_time(self, seconds: float) -> None:
        clock.advance(seconds)

    @rule()
    def toggle_disk(self) -> None:
        self.disk.down = not self.disk.down
        STATS.faults += 1

    @precondition(lambda self: self.server.proc is not None)
    @rule()
    def kill_redis(self) -> None:
        self.server.kill()
        STATS.faults += 1

    @precondition(lambda self: self.server.proc is None)
    @rule()
    def restore_redis(self) -> None:
        self.server.start()  # empty, as after a crash

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
        inner = self.disk.inner if which == "disk" else self.redis
        try:
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
            STATS.faults += 1
        except Exception:  # the tier is down right now: nothing to corrupt
            return


@pytest.mark.redis
def test_cache_matches_dict_model(private_redis: RedisServer) -> None:
    CacheModel.server = private_redis
    runner = CacheModel.TestCase
    runner.settings = settings(
        max_examples=EXAMPLES,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    try:
        runner().runTest()
    finally:
        STATS.notes.append(
            f"{EXAMPLES} examples x 30 steps: set, get, delete, advance time, "
            "kill/restore Redis, disk down/up, corrupt entries"
        )
        FIGURES.append(STATS)
    assert STATS.corrupt_reads == 0
