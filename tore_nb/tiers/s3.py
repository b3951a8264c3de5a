"""L4: S3 object storage through boto3, one object per entry under a bucket prefix.

Timeouts and retries are botocore's own (`Config(connect_timeout, read_timeout,
retries={"mode": "standard", "total_max_attempts": n})`). `get_many` and `set_many` run requests
in parallel on a small thread pool. Every client error becomes `TierUnavailable`, except a
missing key, which is a miss.

Expiry. The exact expiry of an entry is object metadata, checked on every read. S3 itself
deletes what has expired through lifecycle rules: each PUT tags the object with its lifetime
class (`tore_nb-expires=1d|7d|30d|365d`, the TTL rounded *up*, so S3 never deletes an entry
before its TTL), and `install_lifecycle` adds one rule per class to the bucket (filter: that tag
and this tier's prefix; expiration: the class's days). Entries without a TTL, or with one over a
year, carry no tag and are never expired by S3. Why tags rather than one prefix per class: the
object name must follow from the key alone, so that a read stays ONE GET; with a prefix per class
a reader that does not know the TTL a writer chose would try every class (up to five GETs for a
miss), and a rewrite under another TTL would leave the old object behind. Tags cost a little
(S3 bills stored tags; PUT with a tag needs `s3:PutObjectTagging`: when only that is denied, the
tier writes untagged and says so once).

Storage class: `storage_class` (STANDARD_IA by default) only for objects of at least
`ia_min_bytes` whose TTL is at least `ia_min_ttl` seconds; STANDARD for the others, since
STANDARD_IA bills every object as 128 KB for at least 30 days (`CacheConfig` sets 128 KiB and
30 days; a tier made directly keeps the configured class for every object unless told).

>>> S3Tier(bucket="b", prefix="cache/").name
's3'
>>> lifetime_class(3600), lifetime_class(86_401), lifetime_class(None)
('1d', '7d', 'never')
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import TierUnavailable, require
from .base import TierCapabilities, TierUsage, glob_match

__all__ = [
    "EXPIRY_TAG",
    "LIFETIME_CLASSES",
    "S3Tier",
    "lifecycle_rules",
    "lifetime_class",
    "merge_lifecycle_rules",
]

log = logging.getLogger("tore_nb.cache")

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

#: The object tag naming an entry's lifetime class; the lifecycle rules expire by it.
EXPIRY_TAG = "tore_nb-expires"
#: Lifetime classes, shortest first: (tag value, days). Few classes keep the rules few (S3 allows
#: 1,000 per bucket, shared by every namespace); past the last one an entry is never expired.
LIFETIME_CLASSES: tuple[tuple[str, int], ...] = (("1d", 1), ("7d", 7), ("30d", 30), ("365d", 365))
NEVER = "never"
DAY = 86_400
_RULE_ID = "tore_nb-expires:"  # + prefix (or its hash) + ":" + class: this tier's own rules


def lifetime_class(ttl: float | None) -> str:
    """The shortest lifetime class that outlives `ttl` seconds: S3 deletes the object no earlier
    than the class's days after the PUT, never before its TTL ("never": no TTL, or over a year).

    >>> [lifetime_class(t) for t in (1, 86_400, 86_401, 40 * 86_400, math.inf)]
    ['1d', '1d', '7d', '365d', 'never']
    """
    if ttl is None or math.isnan(ttl):
        return NEVER
    return next((name for name, days in LIFETIME_CLASSES if ttl <= days * DAY), NEVER)


def _rule_id_stem(prefix: str) -> str:
    # a rule ID is at most 255 characters: a long prefix is named by its hash
    stem = f"{_RULE_ID}{prefix}:"
    if len(stem) + 4 > 255:
        stem = f"{_RULE_ID}sha256={hashlib.sha256(prefix.encode()).hexdigest()[:32]}:"
    return stem


def _is_mine(rule_id: str, stem: str) -> bool:
    return rule_id.startswith(stem) and ":" not in rule_id[len(stem) :]


def lifecycle_rules(prefix: str) -> list[dict[str, Any]]:
    """S3 lifecycle rules that expire the tagged objects under `prefix`, one per class.

    >>> r = lifecycle_rules("tore-cache/tore_nb/")[1]
    >>> r["ID"], r["Expiration"], r["Filter"]["And"]["Tags"][0]["Value"]
    ('tore_nb-expires:tore-cache/tore_nb/:7d', {'Days': 7}, '7d')
    """
    rules = []
    for name, days in LIFETIME_CLASSES:
        tag = {"Key": EXPIRY_TAG, "Value": name}
        # filter by tag AND prefix: other namespaces may use other lifetimes for the same class
        flt = {"And": {"Prefix": prefix, "Tags": [tag]}} if prefix else {"Tag": tag}
        rules.append(
            {
                "ID": _rule_id_stem(prefix) + name,
                "Filter": flt,
                "Status": "Enabled",
                "Expiration": {"Days": days},
            }
        )
    return rules


def _holds(ours: Any, theirs: Any) -> bool:
    """Whether `theirs` says all `ours` says (a store may add fields of its own)."""
    if isinstance(ours, dict):
        return isinstance(theirs, dict) and all(_holds(v, theirs.get(k)) for k, v in ours.items())
    if isinstance(ours, list):
        return (
            isinstance(theirs, list)
            and len(ours) == len(theirs)
            and all(_holds(a, b) for a, b in zip(ours, theirs, strict=True))
        )
    return bool(ours == theirs)


def merge_lifecycle_rules(
    existing: Sequence[Mapping[str, Any]], prefix: str
) -> list[dict[str, Any]] | None:
    """`existing` rules with this prefix's expiry rules put in (other rules kept, in order), or
    None when they are all there already.

    >>> other = {"ID": "logs", "Filter": {"Prefix": "logs/"}, "Status": "Enabled"}
    >>> merged = merge_lifecycle_rules([other], "p/")
    >>> [r["ID"] for r in merged][:2], merge_lifecycle_rules(merged, "p/")
    (['logs', 'tore_nb-expires:p/:1d'], None)
    """
    wanted = lifecycle_rules(prefix)
    stem = _rule_id_stem(prefix)
    # rest without ':': the rules of prefix "a" are not those of prefix "a:b"
    ids = [str(r.get("ID", "")) for r in existing]
    mine = [r for r, i in zip(existing, ids, strict=True) if _is_mine(i, stem)]
    if len(mine) == len(wanted) and all(any(_holds(w, r) for r in mine) for w in wanted):
        return None
    # rules of ours that differ (an older class set) are replaced, not kept beside the new ones
    return [dict(r) for r in existing if r not in mine] + wanted


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
        ia_min_bytes: int = 131_072,
        ia_min_ttl: float = 30 * 86_400.0,
        expiry_tags: bool = True,
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
        self.ia_min_bytes = ia_min_bytes
        self.ia_min_ttl = ia_min_ttl
        self.expiry_tags = expiry_tags
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

    def storage_class_for(self, size: int, ttl: float | None) -> str:
        """The storage class of an object of `size` bytes living `ttl` seconds: `storage_class`
        if it is large and long-lived, else STANDARD (IA classes bill small objects as 128 KB
        and short-lived ones for 30 days).

        >>> t = S3Tier(bucket="b", ia_min_bytes=131_072, ia_min_ttl=30 * 86_400)
        >>> t.storage_class_for(330, None), t.storage_class_for(10**6, None)
        ('STANDARD', 'STANDARD_IA')
        """
        short = ttl is not None and ttl < self.ia_min_ttl
        return "STANDARD" if size < self.ia_min_bytes or short else self.storage_class

    def set(self, key: str, value: bytes, ttl: float | None, created: float | None = None) -> None:
        # `created` is not kept: S3 ages objects by LastModified, and nothing is promoted into
        # S3, the slowest tier
        if ttl is not None and math.isnan(ttl):  # "nan" metadata would never expire
            raise ValueError("ttl is NaN")
        if not self.key_fits(key):
            raise ValueError(f"s3: a key of {len(key.encode())} bytes is over S3's limit")
        meta = {} if ttl is None or ttl == math.inf else {_EXPIRES: f"{time.time() + ttl:.3f}"}
        put: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self._k(key),
            "Body": value,
            "StorageClass": self.storage_class_for(len(value), ttl),
            "Metadata": meta,
        }
        life = lifetime_class(ttl)
        if life == NEVER or not self.expiry_tags:  # no rule acts on it: no tag to pay for
            self._run(lambda: self.client.put_object(**put))
            return
        try:
            self._run(lambda: self.client.put_object(**put, Tagging=f"{EXPIRY_TAG}={life}"))
        except TierUnavailable as exc:
            # a tagged PUT also needs s3:PutObjectTagging, which a policy written for the
            # untagged PUTs of earlier versions lacks: write untagged rather than not at all
            if not str(exc).startswith("s3: AccessDenied"):
                raise
            self._run(lambda: self.client.put_object(**put))  # denied again: not the tag
            with self._lock:  # parallel writes of set_many: one warning
                said, self.expiry_tags = not self.expiry_tags, False
            if not said:
                log.warning(
                    "s3: s3://%s/%s: a PUT with an object tag was denied (s3:PutObjectTagging "
                    "missing?): entries are written untagged and S3 will not expire them",
                    self.bucket,
                    self.prefix,
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

    # -- S3 expiry --------------------------------------------------------------------------------
    def lifecycle_rules(self) -> list[dict[str, Any]]:
        """The lifecycle rules that make S3 expire this tier's tagged objects (see module doc).

        >>> S3Tier(bucket="b", prefix="c/").lifecycle_rules()[0]["Expiration"]
        {'Days': 1}
        """
        return lifecycle_rules(self.prefix)

    def install_lifecycle(self) -> bool:
        """Merge `lifecycle_rules()` into the bucket's lifecycle configuration, keeping its other
        rules; True when it was changed, False when the rules were there already.

        Needs s3:GetLifecycleConfiguration and s3:PutLifecycleConfiguration (an admin can apply
        the rules instead: `tore-nb s3-lifecycle --print`). S3 replaces a configuration whole:
        a change made by someone else between the read and the write here would be lost.

        >>> S3Tier(bucket="b").install_lifecycle()  # doctest: +SKIP
        True
        """
        from botocore.exceptions import ClientError

        def read() -> dict[str, Any]:
            try:
                got: dict[str, Any] = self.client.get_bucket_lifecycle_configuration(
                    Bucket=self.bucket
                )
                return got
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration":
                    return {}
                raise

        current = self._run(read)
        merged = merge_lifecycle_rules(current.get("Rules", []), self.prefix)
        if merged is None:
            return False
        extra = {}
        if "TransitionDefaultMinimumObjectSize" in current:  # keep the bucket's own choice
            extra["TransitionDefaultMinimumObjectSize"] = current[
                "TransitionDefaultMinimumObjectSize"
            ]
        self._run(
            lambda: self.client.put_bucket_lifecycle_configuration(
                Bucket=self.bucket, LifecycleConfiguration={"Rules": merged}, **extra
            )
        )
        return True

    def close(self) -> None:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.shutdown(wait=False)
            self._pool = None
            self._client = None
