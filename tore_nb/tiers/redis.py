"""L3: a shared Redis through redis-py, with explicit deadlines and redis-py's own Retry.

Every key is stored under a prefix (the namespace) so namespaces sharing one database never
see each other's entries; a sorted set `<prefix>__created__` records write times so
`expire_older_than` needs no scan of the values. The client is created lazily in each process
(safe across fork), and every client error becomes `TierUnavailable`.

`get_many` sends one MGET through redis-py's pool and retry, but reads the reply itself
(`_read_bulk_array`) when the connection uses redis-py's pure-Python RESP2 parser: redis-py
spends ~3 us a key packing the command and parsing the reply, more than a batched hit of a
small entry spends on everything else; the code here spends ~0.4 us. With hiredis installed,
redis-py's own (C) parsing is kept.

>>> RedisTier(url="redis://127.0.0.1:1/0").name
'redis'
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
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
        self._own_reader: bool | None = None  # whether get_many reads MGET replies itself
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
            # RESP2, as redis-py before 8 spoke by default: no RESP3 push messages can arrive
            # between a command and its reply, which lets get_many read MGET replies itself
            "protocol": 2,
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

    def get_many(self, keys: Sequence[str]) -> list[bytes | bytearray | memoryview | None]:
        if not keys:
            return []
        p = self.prefix
        return self._run(self._mget, [p + k for k in keys])  # type: ignore[no-any-return]

    def _mget(self, names: list[str]) -> list[bytes | bytearray | memoryview | None]:
        client = self.client
        if self._own_reader is False:
            return client.mget(names)  # type: ignore[return-value]
        pool = client.connection_pool
        conn: Any = pool.get_connection()
        try:
            if self._own_reader is None:
                self._own_reader = _plain_resp2(conn)
                if not self._own_reader:
                    return client.mget(names)  # type: ignore[return-value]
            try:
                return conn.retry.call_with_retry(  # type: ignore[no-any-return]
                    lambda: self._mget_on(conn, names), lambda _error: conn.disconnect()
                )
            except BaseException:
                conn.disconnect()  # whatever is left of the reply must not reach the next command
                raise
        finally:
            pool.release(conn)

    def _mget_on(self, conn: Any, names: list[str]) -> list[bytes | bytearray | memoryview | None]:
        import redis

        # packed here: redis-py's generic packing costs ~0.5 us a key, this ~0.15
        keys = [n.encode() for n in names]
        head = b"*%d\r\n$4\r\nMGET\r\n" % (len(keys) + 1)
        conn.send_packed_command([head + b"".join([b"$%d\r\n%b\r\n" % (len(k), k) for k in keys])])
        try:
            return _read_bulk_array(
                conn._sock, len(names), self.max_item_bytes, conn._parser.parse_error
            )
        except ValueError as exc:  # a length that is not a number
            raise redis.exceptions.InvalidResponse(f"Protocol error in MGET reply: {exc}") from None
        except TimeoutError:  # socket.timeout: the names redis-py uses, so its Retry applies
            raise redis.exceptions.TimeoutError("Timeout reading from socket") from None
        except OSError as exc:
            raise redis.exceptions.ConnectionError(f"Error reading from socket: {exc}") from None

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


def _plain_resp2(conn: Any) -> bool:
    """Whether `conn` parses with redis-py's pure-Python RESP2 parser over a plain socket."""
    try:
        from redis._parsers import _RESP2Parser
    except ImportError:  # a redis-py that moved it: keep its own reading
        return False
    return type(getattr(conn, "_parser", None)) is _RESP2Parser and isinstance(
        getattr(conn, "_sock", None), socket.socket
    )


_CHUNK = 1 << 16  # bytes a recv asks for, as redis-py does
_OWN = 1 << 16  # values from this size up are received into memory of their own


def _read_bulk_array(
    sock: socket.socket, count: int, limit: int, error: Callable[[str], Exception]
) -> list[bytes | bytearray | memoryview | None]:
    """Read a RESP2 array of `count` bulk strings (an MGET reply) from `sock`.

    Missing keys give None. Small values come back as `bytearray` slices; from 64 KiB up a
    value is received straight into fresh memory (a writable `memoryview`) that the codec can
    hand over to restored arrays. A value over `limit` bytes is read past and returned empty,
    which the codec rejects and counts. An error reply raises `error(text)`; anything out of
    protocol raises `InvalidResponse`, and the caller drops the connection.
    """
    import redis

    buf = bytearray()
    recv = sock.recv

    def more() -> None:
        chunk = recv(_CHUNK)
        if not chunk:
            raise redis.exceptions.ConnectionError("Connection closed by server.")
        buf.extend(chunk)

    def bad(what: str) -> Exception:
        return redis.exceptions.InvalidResponse(f"Protocol error in MGET reply: {what}")

    end = buf.find(b"\r\n")
    while end < 0:
        more()
        end = buf.find(b"\r\n")
    if buf[:1] == b"-":
        raise error(buf[1:end].decode("utf-8", "replace"))
    if buf[:1] != b"*" or int(buf[1:end]) != count:
        raise bad(f"expected an array of {count}, got {bytes(buf[: min(end, 32)])!r}")
    pos = end + 2
    out: list[bytes | bytearray | memoryview | None] = []
    append = out.append
    find, startswith = buf.find, buf.startswith
    for _ in range(count):
        end = find(b"\r\n", pos)
        while end < 0:
            more()
            end = find(b"\r\n", pos)
        if buf[pos] != 36:  # "$"
            raise bad(f"expected a bulk string, got {bytes(buf[pos : min(end, pos + 32)])!r}")
        size = int(buf[pos + 1 : end])
        pos = end + 2
        if size < 0:
            append(None)
            continue
        end = pos + size
        if size > limit or (size >= _OWN and end + 2 > len(buf)):
            append(_receive(sock, buf, pos, size, keep=size <= limit))
            end = 0  # buf now holds only what followed the value
        else:
            while end + 2 > len(buf):
                more()
            append(buf[pos:end])
        if not startswith(b"\r\n", end):
            while len(buf) < end + 2:
                more()
            if not startswith(b"\r\n", end):
                raise bad("a bulk string does not end in CRLF")
        pos = end + 2
    if pos != len(buf):
        raise bad("data after the reply")
    return out


def _receive(sock: socket.socket, buf: bytearray, pos: int, size: int, keep: bool) -> Any:
    """Receive a value of `size` bytes whose start is buffered at `buf[pos:]`.

    Returns it in fresh memory (uninitialised: a bytearray would be zeroed first), or, when
    not `keep`, reads past it and returns b"". Leaves in `buf` only what followed the value.
    """
    import numpy as np
    import redis

    have = min(len(buf) - pos, size)
    dst = np.empty(size if keep else 0, np.uint8).data
    if keep:
        dst[:have] = buf[pos : pos + have]
    n = have
    while n < size:
        got = sock.recv_into(dst[n:]) if keep else len(sock.recv(min(_CHUNK, size - n)))
        if not got:
            raise redis.exceptions.ConnectionError("Connection closed by server.")
        n += got
    del buf[: pos + have]
    return dst if keep else b""


def _escape(prefix: str) -> str:
    """Escape glob metacharacters in a literal key prefix for SCAN MATCH."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in prefix)
