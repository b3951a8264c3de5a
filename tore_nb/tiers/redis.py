"""L3: a shared Redis through redis-py, with explicit deadlines and redis-py's own Retry.

Every key is stored under a prefix (the namespace) so namespaces sharing one database never
see each other's entries; a sorted set `<prefix>__created__` records write times so
`expire_older_than` needs no scan of the values. The client is created lazily in each process
(safe across fork), and every client error becomes `TierUnavailable`.

>>> RedisTier(url="redis://127.0.0.1:1/0").name
'redis'
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..config import redact_url
from ..errors import TierUnavailable, TierWriteError, require
from .base import TierUsage

if TYPE_CHECKING:
    import redis as redis_mod

__all__ = ["RedisTier"]


class RedisTier:
    """A Redis database used as a cache tier."""

    name = "redis"

    def __init__(
        self,
        *,
        url: str | None = None,
        host: str = "localhost",
        port: int = 6379,
        db: int = 0,
        password: str | None = None,
        connect_timeout: float = 0.25,
        socket_timeout: float = 0.5,
        retries: int = 1,
        max_item_bytes: int = 100_000_000,
        prefix: str = "tore_nb|",
    ) -> None:
        self._url = url
        self._kw: dict[str, Any] = {"host": host, "port": port, "db": db, "password": password}
        self.connect_timeout = connect_timeout
        self.socket_timeout = socket_timeout
        self.retries = retries
        self.max_item_bytes = max_item_bytes
        self.prefix = prefix
        self.index_key = f"{prefix}__created__"
        self._client: redis_mod.Redis | None = None
        self._pid = 0
        self._lock = threading.Lock()
        require("redis", "redis")

    def __repr__(self) -> str:
        where = redact_url(self._url) or f"{self._kw['host']}:{self._kw['port']}/{self._kw['db']}"
        return f"RedisTier({where})"

    @property
    def client(self) -> redis_mod.Redis:
        client = self._client
        if client is not None and self._pid == os.getpid():
            return client
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                self._client = self._connect()
                self._pid = os.getpid()
            return self._client

    def _connect(self) -> redis_mod.Redis:
        import redis
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        opts: dict[str, Any] = {
            "socket_connect_timeout": self.connect_timeout,
            "socket_timeout": self.socket_timeout,
            "retry": Retry(ExponentialBackoff(cap=0.05, base=0.01), self.retries),
            "retry_on_timeout": False,
            "health_check_interval": 0,
            "decode_responses": False,
        }
        if self._url:
            return redis.Redis.from_url(self._url, **opts)
        return redis.Redis(**self._kw, **opts)

    def _run(self, fn: Any, *args: Any) -> Any:
        import redis

        try:
            return fn(*args)
        except (redis.exceptions.AuthenticationError, redis.exceptions.NoPermissionError) as exc:
            raise TierUnavailable(f"redis: {type(exc).__name__}", permanent=True) from None
        except redis.exceptions.ResponseError as exc:
            # a pipeline's error quotes the whole command, payload included: keep only the cause
            text = (str(exc).split("caused error:", 1)[-1].strip().splitlines() or [""])[0][:160]
            if any(w in text for w in ("OOM", "maxmemory", "READONLY", "MISCONF")):
                raise TierWriteError(f"redis refuses writes: {text}") from None
            raise TierUnavailable(f"redis: ResponseError: {redact_url(text)}") from None
        except redis.exceptions.RedisError as exc:
            # the message can quote the URL: never let a password through
            raise TierUnavailable(f"redis: {type(exc).__name__}: {redact_url(str(exc))}") from None
        except OSError as exc:
            raise TierUnavailable(f"redis: {type(exc).__name__}") from None

    # -- Tier protocol -------------------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        return self._run(self.client.get, self.prefix + key)  # type: ignore[no-any-return]

    def set(self, key: str, value: bytes, ttl: float | None) -> None:
        self.set_many({key: value}, ttl)

    def delete(self, key: str) -> bool:
        def do() -> int:
            pipe = self.client.pipeline(transaction=False)
            pipe.delete(self.prefix + key)
            pipe.zrem(self.index_key, self.prefix + key)
            return int(pipe.execute()[0])

        return bool(self._run(do))

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        p = self.prefix
        return self._run(self.client.mget, [p + k for k in keys])  # type: ignore[no-any-return]

    def set_many(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        if not items:
            return
        px = None if ttl is None else max(1, int(ttl * 1000))

        def do() -> None:
            p = self.prefix
            pipe = self.client.pipeline(transaction=False)
            for k, v in items.items():
                pipe.set(p + k, v, px=px)
            pipe.zadd(self.index_key, {p + k: time.time() for k in items})
            pipe.execute()

        self._run(do)

    def iter_keys(self, pattern: str = "*") -> Iterator[str]:
        n = len(self.prefix)
        index = self.index_key.encode()

        def do() -> list[str]:
            found = self.client.scan_iter(match=_escape(self.prefix) + pattern, count=1000)
            return [k.decode()[n:] for k in found if k != index]

        return iter(self._run(do))

    def expire_older_than(self, cutoff: float) -> int:
        def do() -> int:
            old = self.client.zrangebyscore(self.index_key, "-inf", f"({cutoff}")
            if not old:
                return 0
            pipe = self.client.pipeline(transaction=False)
            pipe.delete(*old)
            pipe.zrem(self.index_key, *old)
            return int(pipe.execute()[0])

        return int(self._run(do))

    def clear(self) -> int:
        index = self.index_key.encode()

        def do() -> int:
            n = 0
            batch: list[bytes] = []
            for k in self.client.scan_iter(match=_escape(self.prefix) + "*", count=1000):
                if k == index:
                    continue
                batch.append(k)
                if len(batch) >= 500:
                    n += self.client.unlink(*batch)
                    batch.clear()
            if batch:
                n += self.client.unlink(*batch)
            self.client.unlink(index)
            return n

        return int(self._run(do))

    def usage(self) -> TierUsage:
        def do() -> TierUsage:
            # entries and bytes of this namespace are a scan away; the index holds the count
            info = self.client.info("memory")
            return TierUsage(
                int(self.client.zcard(self.index_key)), int(info.get("used_memory", 0))
            )

        return self._run(do)  # type: ignore[no-any-return]

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float = 300.0, wait: float = 120.0) -> Iterator[bool]:
        """A lock shared by every process on this Redis (single flight); yields whether it was
        acquired. It expires after `timeout` so a crashed holder cannot block others forever.
        """
        import redis

        lk = self.client.lock(
            f"{self.prefix}__lock__:{key}", timeout=timeout, sleep=0.05, blocking_timeout=wait
        )
        try:
            got = bool(lk.acquire())
        except redis.exceptions.RedisError:
            got = False
        try:
            yield got
        finally:
            if got:
                with contextlib.suppress(redis.exceptions.RedisError):
                    lk.release()

    def ping(self) -> bool:
        return bool(self._run(self.client.ping))

    def close(self) -> None:
        with self._lock:
            if self._client is not None and self._pid == os.getpid():
                self._client.close()
            self._client = None


def _escape(prefix: str) -> str:
    """Escape glob metacharacters in a literal key prefix for SCAN MATCH."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in prefix)
