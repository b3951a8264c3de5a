"""The same contract tests against every tier: memory, disk, a real Redis, S3 on moto."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tore_nb.testing import MotoS3, TierContract
from tore_nb.tiers import DiskTier, MemoryTier, Tier


class TestMemoryTier(TierContract):
    @pytest.fixture
    def tier(self) -> Iterator[Tier]:
        yield MemoryTier(max_bytes=50_000_000, ttl=3600)


class TestDiskTier(TierContract):
    @pytest.fixture
    def tier(self, tmp_path: Path) -> Iterator[Tier]:
        t = DiskTier(tmp_path / "disk", size_limit=10**9, prefix="contract|")
        yield t
        t.close()

    def test_namespaces_do_not_see_each_other(self, tier: Tier, tmp_path: Path) -> None:
        other = DiskTier(tmp_path / "disk", size_limit=10**9, prefix="other|")
        other.set("k", b"theirs", None)
        tier.set("k", b"ours", None)
        assert other.get("k") == b"theirs"
        assert list(tier.iter_keys()) == ["k"] and tier.usage().entries == 1
        assert tier.clear() == 1
        assert other.get("k") == b"theirs"
        other.close()


@pytest.mark.redis
class TestRedisTier(TierContract):
    @pytest.fixture
    def tier(self, redis_url: str) -> Iterator[Tier]:
        from tore_nb.tiers.redis import RedisTier

        t = RedisTier(url=redis_url, prefix="contract|")
        yield t
        t.close()

    def test_namespaces_do_not_see_each_other(self, tier: Tier, redis_url: str) -> None:
        from tore_nb.tiers.redis import RedisTier

        other = RedisTier(url=redis_url, prefix="other|")
        other.set("k", b"theirs", None)
        tier.set("k", b"ours", None)
        assert other.get("k") == b"theirs"
        assert tier.clear() == 1
        assert other.get("k") == b"theirs"


@pytest.mark.s3
class TestS3Tier(TierContract):
    time_resolution = 1.1
    short_ttl = 2.0

    @pytest.fixture
    def tier(self, s3_bucket: str, moto_server: MotoS3) -> Iterator[Tier]:
        from tore_nb.tiers.s3 import S3Tier

        t = S3Tier(
            bucket=s3_bucket,
            prefix="cache/ns/",
            endpoint_url=moto_server.endpoint_url,
            region="us-east-1",
        )
        yield t
        t.close()

    def test_storage_class_is_configurable(
        self, tier: Tier, moto_server: MotoS3, s3_bucket: str
    ) -> None:
        """STANDARD_IA (billed as 128 KB for 30 days) only for large entries kept long."""
        tier.set("small", b"v", None)
        tier.set("large", bytes(131_072), None)
        tier.set("brief", bytes(131_072), 3600)
        head = moto_server.client().head_object
        classes = [
            head(Bucket=s3_bucket, Key=f"cache/ns/{k}").get("StorageClass", "STANDARD")
            for k in ("small", "large", "brief")
        ]
        assert classes == ["STANDARD", "STANDARD_IA", "STANDARD"]

    def test_usage_of_a_large_prefix_is_unknown_not_listed(self, tier: Tier) -> None:
        tier.set_many({f"k{i}": b"v" for i in range(5)}, None)
        tier.usage_scan_limit = 3  # type: ignore[attr-defined]
        assert (tier.usage().entries, tier.usage().size_bytes) == (None, None)
        tier.usage_scan_limit = 5  # type: ignore[attr-defined]
        assert tier.usage().entries == 5
