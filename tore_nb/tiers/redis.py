"""L3: a shared Redis through redis-py, with explicit deadlines and redis-py's own Retry.

Every key is stored under a prefix (the namespace) so namespaces sharing one database never
see each other's entries; a sorted set `tore_nb#created|<prefix>` records write times so
`expire_older_than` needs no scan of the values, and a second, `tore_nb#expires|<prefix>`,
the expiry times of entries with a TTL, so the members of what Redis expired are dropped by
score (every thousand writes, and on usage() and expire_older_than()) and the index stays as
large as what lives. Entries Redis evicts, or others delete, are found by EXISTS in bounded
sweeps on usage() and expire_older_than(). Bookkeeping (indexes, single-flight locks) lives
under `tore_nb#`, outside every `<namespace>|` key space (a namespace has no '#'), so no user
key can overwrite it. The client is created lazily in each process (safe across fork), and
every client error becomes `TierUnavailable`.

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
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from .. import clock
from ..errors import TierUnavailable, TierWriteError, require
from ..redaction import redact_url
from .base import TierCapabilities, TierUsage, glob_match

if TYPE_CHECKING:
    import redis as redis_mod

__all__ = ["LOCK_LEASE", "RedisTier"]

log = logging.getLogger("tore_nb.cache")

#: Seconds a single-flight lock outlives its holder's last renewal (renewed every third).
LOCK_LEASE = 12.0

# bookkeeping keys begin here: namespaces are [A-Za-z0-9_.-]+, so no "<namespace>|..." can
_META = "tore_nb#"
_BATCH = 1000  # index members dropped, deleted or checked (EXISTS) per round trip
_SWEEP = 5 * _BATCH  # index members usage() and expire_older_than() check with EXISTS
_FOREVER = 1e15  # seconds; a longer TTL overflows Redis's expiry clock: keep such entries


class RedisTier:
    """A Redis database used as a cache tier."""

    name = "redis"
    capabilities = TierCapabilities(shared=True, lock=True, sizes=frozenset({"small", "large"}))

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
        lock_lease: float = LOCK_LEASE,
    ) -> None:
        self._url = url
        self._kw: dict[str, Any] = {"host": host, "port": port, "db": db, "password": password}
        self.connect_timeout = connect_timeout
        self.socket_timeout = socket_timeout
        self.retries = retries
        self.max_item_bytes = max_item_bytes
        self.prefix = prefix
        self.index_key = f"{_META}created|{prefix}"  # name -> write time
        self.expiry_key = f"{_META}expires|{prefix}"  # name -> expiry time, for those with a TTL
        self.lock_prefix = f"{_META}lock|{prefix}"
        # where earlier versions kept the index, among the entries: a zset there is no entry
        self._legacy_index = f"{prefix}__created__".encode()
        self._sweep_at = 0  # index rank where the next EXISTS sweep goes on
        self._written = 0  # entries written since expired members were last dropped
        self._client: redis_mod.Redis | None = None
        self._pid = 0
        self._own_reader: bool | None = None  # whether get_many reads MGET replies itself
        self._lock = threading.Lock()
        self.lock_lease = lock_lease
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
            try:
                return redis.Redis.from_url(self._url, **opts)
            except ValueError:  # its message may quote a piece of the password
                raise TierUnavailable(
                    f"the Redis URL {redact_url(self._url)} cannot be parsed (percent-encode "
                    "'/', '?', '#', '@' and ':' in a password)",
                    permanent=True,
                ) from None
        return redis.Redis(**self._kw, **opts)

    def _run(self, fn: Any, *args: Any) -> Any:
        import redis

        try:
            return fn(*args)
        except TierUnavailable:  # said already (a URL that does not parse)
            raise
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
        return self._run(self._get, self.prefix + key)  # type: ignore[no-any-return]

    def _get(self, name: str) -> bytes | None:
        try:
            return self.client.get(name)  # type: ignore[return-value]
        except Exception as exc:
            # a key of another type (an old version's index) is no entry: a miss, not an outage
            if _wrong_type(exc):
                return None
            raise

    def set(self, key: str, value: bytes, ttl: float | None, created: float | None = None) -> None:
        self.set_many({key: value}, ttl, created)

    def delete(self, key: str) -> bool:
        def do() -> int:
            name = self.prefix + key
            pipe = self.client.pipeline(transaction=False)
            pipe.delete(name)
            pipe.zrem(self.index_key, name)
            pipe.zrem(self.expiry_key, name)
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

    def set_many(
        self, items: Mapping[str, bytes], ttl: float | None, created: float | None = None
    ) -> None:
        if not items:
            return
        px = _px(ttl)

        def do() -> None:
            p = self.prefix
            names = [p + k for k in items]
            pipe = self.client.pipeline(transaction=False)
            for name, v in zip(names, items.values(), strict=True):
                pipe.set(name, v, px=px)
            now = time.time()  # Redis expires by its own clock
            born = clock.now() if created is None else created
            pipe.zadd(self.index_key, dict.fromkeys(names, born))
            if px is None:  # kept until deleted: it must not be dropped at an earlier expiry
                pipe.zrem(self.expiry_key, *names)
            else:
                pipe.zadd(self.expiry_key, dict.fromkeys(names, now + px / 1000))
            pipe.execute()

        self._run(do)
        self._written += len(items)
        if self._written >= _BATCH:
            # so the index follows what Redis expires though nobody calls usage()
            self._written = 0
            with contextlib.suppress(TierUnavailable, TierWriteError):  # the write did succeed
                self._run(self._drop_expired)

    def iter_keys(self, pattern: str = "*") -> Iterator[str]:
        n = len(self.prefix)
        match = glob_match(pattern)  # the exact filter: SCAN MATCH only narrows (see _scan_glob)

        def do() -> list[str]:
            client = self.client
            found = []
            scan = _escape(self.prefix) + _scan_glob(pattern)
            for name in client.scan_iter(match=scan, count=1000):
                try:
                    key = name.decode()[n:]
                except UnicodeDecodeError:  # not written by a tier: no str key can name it
                    continue
                if match(key) and not self._is_legacy_index(client, name):
                    found.append(key)
            return found

        return iter(self._run(do))

    def _is_legacy_index(self, client: redis_mod.Redis, name: bytes) -> bool:
        return name == self._legacy_index and client.type(name) == b"zset"

    def expire_older_than(self, cutoff: float) -> int:
        def do() -> int:
            client, n = self.client, 0
            while True:  # in batches: one DEL of a million names would stall Redis
                old = client.zrangebyscore(self.index_key, "-inf", f"({cutoff}", 0, _BATCH)
                if not old:
                    break
                pipe = client.pipeline(transaction=False)
                pipe.delete(*old)  # counts only what still existed
                pipe.zrem(self.index_key, *old)
                pipe.zrem(self.expiry_key, *old)
                n += int(pipe.execute()[0])
                if len(old) < _BATCH:
                    break
            self._drop_expired()
            self._sweep(_SWEEP)
            return n

        return int(self._run(do))

    def clear(self) -> int:
        def do() -> int:
            client, n = self.client, 0
            batch: list[bytes] = []
            for k in client.scan_iter(match=_escape(self.prefix) + "*", count=1000):
                if self._is_legacy_index(client, k):
                    client.unlink(k)
                    continue
                batch.append(k)
                if len(batch) >= 500:
                    n += client.unlink(*batch)
                    batch.clear()
            if batch:
                n += client.unlink(*batch)
            client.unlink(self.index_key, self.expiry_key)
            self._sweep_at = 0
            return n

        return int(self._run(do))

    def usage(self) -> TierUsage:
        def do() -> TierUsage:
            # entries of this namespace are a scan away; the index, pruned, holds the count
            self._drop_expired()
            self._sweep(_SWEEP)
            info = self.client.info("memory")
            return TierUsage(
                int(self.client.zcard(self.index_key)), int(info.get("used_memory", 0))
            )

        return self._run(do)  # type: ignore[no-any-return]

    def _drop_expired(self, budget: int = 100 * _BATCH) -> int:
        """Drop the index members of entries whose TTL has passed (Redis expired them); the count.

        An entry rewritten between the ZRANGEBYSCORE and the ZREM loses its members until its
        next write: it then only escapes expire_older_than and the count.
        """
        client, dropped = self.client, 0
        while dropped < budget:
            gone = client.zrangebyscore(self.expiry_key, "-inf", time.time(), 0, _BATCH)
            if not gone:
                break
            pipe = client.pipeline(transaction=False)
            pipe.zrem(self.index_key, *gone)
            pipe.zrem(self.expiry_key, *gone)
            pipe.execute()
            dropped += len(gone)
        return dropped

    def _sweep(self, budget: int) -> int:
        """Drop index members whose entry is gone for another reason (evicted, deleted by others,
        or written with a TTL by an earlier version), checking up to `budget` members with
        EXISTS, oldest first, from where the previous sweep stopped; the count.
        """
        client, index, dropped = self.client, self.index_key, 0
        size = int(client.zcard(index))
        budget = min(budget, size)  # at most one pass
        while budget > 0:
            start = self._sweep_at if self._sweep_at < size else 0
            end = start + min(budget, _BATCH) - 1
            names = cast("list[bytes]", client.zrange(index, start, end))
            if not names:  # the index shrank meanwhile
                if start == 0:
                    break
                self._sweep_at = 0
                continue
            pipe = client.pipeline(transaction=False)
            for name in names:
                pipe.exists(name)
            gone = [name for name, live in zip(names, pipe.execute(), strict=True) if not live]
            if gone:
                pipe = client.pipeline(transaction=False)
                pipe.zrem(index, *gone)
                pipe.zrem(self.expiry_key, *gone)
                pipe.execute()
            dropped += len(gone)
            size -= len(gone)
            budget -= len(names)
            self._sweep_at = start + len(names) - len(gone)
        return dropped

    @contextlib.contextmanager
    def lock(self, key: str, wait: float = 120.0) -> Iterator[bool]:
        """A lock shared by every process on this Redis (single flight); yields whether it was
        acquired within `wait` seconds.

        It is held on a lease of `lock_lease` seconds that a thread of the holder renews every
        third of it while the holder runs: a holder that dies (SIGKILL, a kernel killed out of
        memory) gives the key up within one lease, while a live one computing for longer keeps
        it. A caller that has to wait says so once, as a warning.
        """
        import redis

        lease = self.lock_lease
        # thread_local=False: the renewing thread must see the token the holder's thread got
        lk = self.client.lock(self.lock_prefix + key, timeout=lease, sleep=0.05, thread_local=False)
        try:
            got = bool(lk.acquire(blocking=False))
            if not got:
                log.warning(
                    "tcache: waiting for another process computing %s (lock held on Redis, "
                    "lease %.0f s renewed while it runs; taken over if it lapses)",
                    key[:80],
                    lease,
                )
                got = bool(lk.acquire(blocking_timeout=wait))
        except redis.exceptions.RedisError:
            got = False
        renewer = _Renewer(lk, lease / 3) if got else None
        try:
            yield got
        finally:
            if renewer is not None:
                renewer.stop()
                with contextlib.suppress(redis.exceptions.RedisError):
                    lk.release()  # a lease lost meanwhile (LockNotOwnedError) is no error

    def ping(self) -> bool:
        return bool(self._run(self.client.ping))

    def close(self) -> None:
        with self._lock:
            if self._client is not None and self._pid == os.getpid():
                self._client.close()
            self._client = None


class _Renewer:
    """A daemon thread that renews a held lock's lease every `every` seconds until stopped."""

    __slots__ = ("_done", "_lock", "_thread")

    def __init__(self, lk: Any, every: float) -> None:
        self._lock = lk
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(every,), name="tore_nb-lock-lease", daemon=True
        )
        self._thread.start()

    def _run(self, every: float) -> None:
        import redis

        while not self._done.wait(every):
            try:
                self._lock.reacquire()  # the lease starts over
            except redis.exceptions.LockNotOwnedError:
                return  # lapsed and taken over (a stalled holder): nothing left to renew
            except redis.exceptions.RedisError:
                continue  # Redis unreachable for now: try again at the next beat

    def stop(self) -> None:
        self._done.set()
        self._thread.join(5.0)


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


def _scan_glob(pattern: str) -> str:
    r"""A SCAN MATCH pattern that matches at least every key the fnmatch `pattern` matches.

    Redis globs are not fnmatch's: '[^' negates where fnmatch has '[!', a backslash escapes,
    '?' and sets match one byte, not one character. So only literal characters (escaped) and
    '*' carry over; each '?' and set widens to '*', and the caller filters with fnmatch.

    >>> _scan_glob("page:[!1]?:*"), _scan_glob("k[]]*"), _scan_glob("a[b\\")
    ('page:*:*', 'k*', 'a\\[b\\\\')
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "[":  # where fnmatch.translate ends a set
            j = i + 1 if i < n and pattern[i] == "!" else i
            j = pattern.find("]", j + 1 if j < n and pattern[j] == "]" else j)
            if j < 0:  # never closed: a literal '['
                out.append("\\[")
                continue
            i, c = j + 1, "*"
        elif c == "?":
            c = "*"
        if c != "*":
            out.append(_escape(c))
        elif not out or out[-1] != "*":
            out.append("*")
    return "".join(out)


def _px(ttl: float | None) -> int | None:
    """SET's PX for a TTL in seconds: None (no expiry) for None, inf and beyond Redis's range."""
    if ttl is None or ttl >= _FOREVER:
        return None
    if math.isnan(ttl):
        raise ValueError("ttl is NaN")
    return max(1, int(ttl * 1000)) if ttl > 0 else 1  # -inf included: gone at once


def _wrong_type(exc: Exception) -> bool:
    import redis

    return isinstance(exc, redis.exceptions.ResponseError) and str(exc).startswith("WRONGTYPE")
