"""L4: S3 object storage through boto3, one object per entry under a bucket prefix.

Timeouts and retries are botocore's own (`Config(connect_timeout, read_timeout,
retries={"mode": "standard", "total_max_attempts": n})`). A TTL is stored as object metadata and
checked on read (S3 lifecycle rules do the bulk expiry). `get_many` and `set_many` run requests
in parallel on a small thread pool. Every client error becomes `TierUnavailable`, except a
missing key, which is a miss.

>>> S3Tier(bucket="b", prefix="cache/").name
's3'
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import TierUnavailable, require
from .base import TierCapabilities, TierUsage, glob_match

__all__ = ["S3Tier"]

_EXPIRES = "tore-expires"
# errors that retrying cannot fix: the tier is disabled with one warning
_PERMANENT = {
    "AccessDenied",
    "403",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "NoSuchBucket",
    "AllAccessDisabled",
    "AccountProblem",
    "InvalidBucketName",
}


class S3Tier:
    """An S3 bucket prefix used as a cache tier."""

    name = "s3"
    # object names are limited (see key_fits); the only home of entries over large_item_mb
    capabilities = TierCapabilities(
        shared=True, limited_keys=True, sizes=frozenset({"large", "huge"})
    )

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "tore-cache/",
        region: str | None = None,
        endpoint_url: str | None = None,
        storage_class: str = "STANDARD_IA",
        connect_timeout: float = 1.0,
        read_timeout: float = 2.0,
        max_attempts: int = 2,
        max_item_bytes: int = 5_000_000_000,
        workers: int = 8,
        usage_scan_limit: int = 10_000,
    ) -> None:
        require("boto3", "s3")
        self.bucket = bucket
        self.prefix = prefix
        self.region = region
        self.endpoint_url = endpoint_url
        self.storage_class = storage_class
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_attempts = max_attempts
        self.max_item_bytes = max_item_bytes
        # S3 refuses object names over 1024 bytes, and with an error, not a miss: such keys are
        # never sent (a read misses, a write is refused before it is planned; see key_fits)
        self.max_key_bytes = 1024 - len(prefix.encode())
        self.workers = workers
        self.usage_scan_limit = usage_scan_limit
        self._client: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Tier(s3://{self.bucket}/{self.prefix})"

    @property
    def client(self) -> Any:
        if self._client is not None and self._pid == os.getpid():
            return self._client
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                import boto3
                from botocore.config import Config

                cfg = Config(
                    connect_timeout=self.connect_timeout,
                    read_timeout=self.read_timeout,
                    retries={"mode": "standard", "total_max_attempts": self.max_attempts},
                    max_pool_connections=max(10, self.workers),
                    tcp_keepalive=True,
                )
                self._client = boto3.session.Session().client(
                    "s3", region_name=self.region, endpoint_url=self.endpoint_url, config=cfg
                )
                self._pool = None
                self._pid = os.getpid()
            return self._client

    def _map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        if len(items) <= 1:
            return [fn(i) for i in items]
        _ = self.client  # make sure the pool belongs to this process
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="tore-s3")
            pool = self._pool
        return list(pool.map(fn, items))

    def _run(self, fn: Callable[[], Any]) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn()
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = err.get("Code", "?")
            if code in ("NoSuchKey", "404", "NotFound"):
                return None
            raise TierUnavailable(
                f"s3: {code}: {err.get('Message', '')}".rstrip(": "), permanent=code in _PERMANENT
            ) from None
        except BotoCoreError as exc:
            raise TierUnavailable(f"s3: {type(exc).__name__}: {exc}") from None

    def _k(self, key: str) -> str:
        return self.prefix + key

    def key_fits(self, key: str) -> bool:
        """Whether S3 can name an object for `key` (1024 bytes with the prefix)."""
        return len(key) * 4 <= self.max_key_bytes or len(key.encode()) <= self.max_key_bytes

    # -- Tier protocol -------------------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        if not self.key_fits(key):
            return None

        def do() -> bytes | None:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._k(key))
            expires = obj.get("Metadata", {}).get(_EXPIRES)
            body: bytes = obj["Body"].read()
            if expires is not None and float(expires) < time.time():
                return None
            return body

        return self._run(do)  # type: ignore[no-any-return]

    def set(self, key: str, value: bytes, ttl: float | None, created: float | None = None) -> None:
        # `created` is not kept: S3 ages objects by LastModified, and nothing is promoted into
        # S3, the slowest tier
        if ttl is not None and math.isnan(ttl):  # "nan" metadata would never expire
            raise ValueError("ttl is NaN")
        if not self.key_fits(key):
            raise ValueError(f"s3: a key of {len(key.encode())} bytes is over S3's limit")
        meta = {} if ttl is None or ttl == math.inf else {_EXPIRES: f"{time.time() + ttl:.3f}"}
        self._run(
            lambda: self.client.put_object(
                Bucket=self.bucket,
                Key=self._k(key),
                Body=value,
                StorageClass=self.storage_class,
                Metadata=meta,
            )
        )

    def delete(self, key: str) -> bool:
        if not self.key_fits(key):
            return False
        # S3's DELETE does not say whether the object existed: HEAD first (a 404 is None)
        if self._run(lambda: self.client.head_object(Bucket=self.bucket, Key=self._k(key))) is None:
            return False
        self._run(lambda: self.client.delete_object(Bucket=self.bucket, Key=self._k(key)))
        return True

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return self._map(self.get, list(keys))

    def set_many(
        self, items: Mapping[str, bytes], ttl: float | None, created: float | None = None
    ) -> None:
        self._map(lambda kv: self.set(kv[0], kv[1], ttl), list(items.items()))

    def _list(self, limit: int | None = None, sub: str = "") -> Iterator[dict[str, Any]]:
        def do() -> list[dict[str, Any]]:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + sub
            )
            found: list[dict[str, Any]] = []
            for page in pages:
                found += page.get("Contents", [])
                if limit is not None and len(found) > limit:
                    break
            return found

        return iter(self._run(do) or [])

    def iter_keys(self, pattern: str = "*") -> Iterator[str]:
        match = glob_match(pattern)
        n = len(self.prefix)
        # list only under the pattern's literal start (fnmatch has no escapes: it ends at *?[)
        sub = pattern[: next((i for i, c in enumerate(pattern) if c in "*?["), len(pattern))]
        return iter([o["Key"][n:] for o in self._list(sub=sub) if match(o["Key"][n:])])

    def _delete_objects(self, names: list[str]) -> int:
        for i in range(0, len(names), 1000):
            chunk = [{"Key": k} for k in names[i : i + 1000]]
            self._run(
                lambda c=chunk: self.client.delete_objects(  # type: ignore[misc]
                    Bucket=self.bucket, Delete={"Objects": c, "Quiet": True}
                )
            )
        return len(names)

    def expire_older_than(self, cutoff: float) -> int:
        # LastModified is truncated to whole seconds: only what is surely older goes
        return self._delete_objects(
            [o["Key"] for o in self._list() if o["LastModified"].timestamp() + 1 <= cutoff]
        )

    def clear(self) -> int:
        return self._delete_objects([o["Key"] for o in self._list()])

    def usage(self) -> TierUsage:
        """Entries and bytes under the prefix, or unknown (None) past `usage_scan_limit`
        objects: statistics must not list a large bucket on every call."""
        objs = list(self._list(self.usage_scan_limit))
        if len(objs) > self.usage_scan_limit:
            return TierUsage(None, None)
        return TierUsage(len(objs), sum(int(o.get("Size", 0)) for o in objs))

    def close(self) -> None:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.shutdown(wait=False)
            self._pool = None
            self._client = None
