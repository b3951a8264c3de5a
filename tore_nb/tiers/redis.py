"""L3: a shared Redis, or Redis Cluster, through redis-py, with explicit deadlines and redis-py's
own Retry.

Every key is stored under a prefix (the namespace) so namespaces sharing one database never
see each other's entries. A write is the entry's SET (or one MSET for a batch without TTL) and
nothing else: no index is kept, so writers on many machines contend on no shared key. What
`iter_keys`, `clear`, `usage` and `expire_older_than` need is found by SCAN over the prefix,
in batches of `_BATCH` names a round trip. `expire_older_than` reads each entry's creation
time with a pipelined GETRANGE of its first 16 bytes: a tore_nb entry carries it, signed, at
offset 8 (see tore_nb.codec); any other value is stored behind a 16-byte header of its own
(`TNBr`, 4 zero bytes, the write time) which reads strip, so both answer the same GETRANGE.
The index keys of earlier versions (`tore_nb#created|<prefix>`, `tore_nb#expires|<prefix>`,
a zset `<prefix>__created__`) are never written nor read, never an entry, and go on clear().
Locks live under `tore_nb#lock|`, outside every `<namespace>|` key space (a namespace has no
'#'), so no user key can overwrite one. The client is created lazily in each process (safe
across fork), and every client error becomes `TierUnavailable`.

On a Redis Cluster (a `redis+cluster://` or `rediss+cluster://` URL, or `cluster=True`) a
key's name carries a hash tag, `<prefix>{<tag>}<key>`: one of `hash_tags` short tags, picked
by a CRC32 of the key and chosen so that their slots lie evenly over the 16384 (so over every
master), never one slot for a whole namespace. A batch of any size then touches at most
`hash_tags` slots: get_many sends one MGET per slot and set_many one MSET (no TTL) or the
SETs per slot, all in one ClusterPipeline, one round trip per node.

`get_many` on a single Redis sends one MGET through redis-py's pool and retry, but reads the
reply itself (`redis_reply.read_bulk_array`) when the connection uses redis-py's pure-Python RESP2
parser: redis-py spends ~3 us a key packing the command and parsing the reply, more than a
batched hit of a small entry spends on everything else; the code here spends ~0.4 us. With
hiredis installed, redis-py's own (C) parsing is kept.

>>> RedisTier(url="redis://127.0.0.1:1/0").name
'redis'
>>> RedisTier(url="redis+cluster://127.0.0.1:1").cluster
True
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import struct
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import clock
from ..codec import MAGIC
from ..errors import TierUnavailable, TierWriteError, require
from ..redaction import redact_url
from .base import TierCapabilities, TierUsage, glob_match
from .redis_reply import plain_resp2, read_bulk_array

if TYPE_CHECKING:
    import redis as redis_mod

__all__ = ["LOCK_LEASE", "RedisTier", "cluster_url"]

log = logging.getLogger("tore_nb.cache")

#: Seconds a single-flight lock outlives its holder's last renewal (renewed every third).
LOCK_LEASE = 12.0

# bookkeeping keys begin here: namespaces are [A-Za-z0-9_.-]+, so no "<namespace>|..." can
_META = "tore_nb#"
_BATCH = 1000  # names a SCAN asks for, and read or deleted, per round trip
_FOREVER = 1e15  # seconds; a longer TTL overflows Redis's expiry clock: keep such entries
_SLOTS = 16384  # Redis Cluster's hash slots
# a value that is no tore_nb entry is stored behind this: its write time at the entry's offset
_PLAIN = b"TNBr"
_HEAD = struct.Struct("<4s4xd")
_CREATED = struct.Struct("<d")
_CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


def cluster_url(url: str | None) -> bool:
    """Whether `url` names a Redis Cluster (`redis+cluster://`, `rediss+cluster://`).

    >>> cluster_url("redis+cluster://10.0.0.5:7000"), cluster_url("redis://h:6379/0")
    (True, False)
    """
    return bool(url) and str(url).lower().startswith(_CLUSTER_SCHEMES)


class RedisTier:
    """A Redis database, or a Redis Cluster, used as a cache tier.

    `cluster`: None reads it from the URL's scheme (`redis+cluster://host:port`: any one
    node; the others are discovered). `hash_tags`: how many hash tags (so slots) a cluster
    tier spreads a namespace over; more balances masters finer, fewer means fewer commands
    per batch. Every client of a namespace must use the same number.

    >>> RedisTier(host="10.0.0.5", port=7000, cluster=True, hash_tags=16).hash_tags
    16
    """

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
        cluster: bool | None = None,
        hash_tags: int = 64,
    ) -> None:
        self.cluster = cluster_url(url) if cluster is None else cluster
        if url and cluster_url(url):  # redis-py reads the URL without "+cluster"
            url = url.replace("+cluster", "", 1)
        if not 1 <= hash_tags <= _SLOTS:
            raise ValueError(f"hash_tags must be from 1 to {_SLOTS}, got {hash_tags}")
        if self.cluster and ("{" in prefix or "}" in prefix):
            raise ValueError(f"a cluster tier's prefix cannot hold braces, got {prefix!r}")
        self._url = url
        self._kw: dict[str, Any] = {"host": host, "port": port, "db": db, "password": password}
        self.connect_timeout = connect_timeout
        self.socket_timeout = socket_timeout
        self.retries = retries
        self.max_item_bytes = max_item_bytes
        self.prefix = prefix
        self.hash_tags = hash_tags
        self._tags = _hash_tags(hash_tags) if self.cluster else None
        # where earlier versions kept their indexes: deleted on clear(), never read
        self.index_key = f"{_META}created|{prefix}"
        self.expiry_key = f"{_META}expires|{prefix}"
        self._legacy_index = f"{prefix}__created__".encode()
        self.lock_prefix = f"{_META}lock|{prefix}"
        #: names usage() may scan before it answers "unknown" (entries None)
        self.usage_scan_limit = 1_000_000
        self._client: Any = None  # redis.Redis or redis.cluster.RedisCluster
        self._pid = 0
        self._own_reader: bool | None = None  # whether get_many reads MGET replies itself
        self._lock = threading.Lock()
        self.lock_lease = lock_lease
        require("redis", "redis")

    def __repr__(self) -> str:
        where = redact_url(self._url) or f"{self._kw['host']}:{self._kw['port']}/{self._kw['db']}"
        return f"RedisTier({where}{', cluster' if self.cluster else ''})"

    @property
    def client(self) -> redis_mod.Redis:
        client = self._client
        if client is not None and self._pid == os.getpid():
            return client  # type: ignore[no-any-return]
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                self._client = self._connect()
                self._pid = os.getpid()
            return self._client  # type: ignore[no-any-return]

    def _connect(self) -> Any:
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
        cls: Any = redis.Redis
        if self.cluster:
            from redis.cluster import RedisCluster

            cls = RedisCluster
        if self._url:
            try:
                return cls.from_url(self._url, **opts)
            except ValueError:  # its message may quote a piece of the password
                raise TierUnavailable(
                    f"the Redis URL {redact_url(self._url)} cannot be parsed (percent-encode "
                    "'/', '?', '#', '@' and ':' in a password)",
                    permanent=True,
                ) from None
        if self.cluster:  # a cluster has database 0 only
            kw = {k: v for k, v in self._kw.items() if k != "db"}
            return cls(**kw, **opts)
        return cls(**self._kw, **opts)

    def command(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` (which talks to `client`) with the tier's error mapping: a Redis failure
        is a `TierUnavailable` (or `TierWriteError`) that quotes no password."""
        return self._run(fn)

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
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
            # the message can quote the URL: never let a password through
            raise TierUnavailable(f"redis: {type(exc).__name__}: {redact_url(str(exc))}") from None
        except OSError as exc:
            raise TierUnavailable(f"redis: {type(exc).__name__}") from None

    # -- names ---------------------------------------------------------------------------------
    def _tag(self, key: str) -> int:
        """The index of `key`'s hash tag (cluster only): stable across processes."""
        assert self._tags is not None
        return zlib.crc32(key.encode("utf-8", "surrogatepass")) % len(self._tags)

    def _name(self, key: str) -> str:
        tags = self._tags
        if tags is None:
            return self.prefix + key
        return f"{self.prefix}{{{tags[self._tag(key)]}}}{key}"

    def _key_of(self, name: bytes) -> str | None:
        """The key a stored name holds; None for a name no key of this tier makes."""
        try:
            text = name.decode()
        except UnicodeDecodeError:  # not written by a tier: no str key can name it
            return None
        rest = text[len(self.prefix) :]
        if self._tags is None:
            return rest
        key = rest.partition("}")[2]
        return key if self._name(key) == text else None

    def _match(self, pattern: str) -> str:
        """A SCAN MATCH for the names of keys `pattern` may match (the caller filters)."""
        return _escape(self.prefix) + ("{*}" if self.cluster else "") + _scan_glob(pattern)

    def _pipe(self) -> Any:
        return self.client.pipeline(transaction=False)

    def _scan(self, match: str) -> Iterator[list[bytes]]:
        """The names that SCAN MATCH `match` finds, a batch per round trip (every master of a
        cluster in turn); a batch may be empty."""
        client: Any = self.client
        for node in client.get_primaries() if self.cluster else [None]:
            cursor = 0
            while True:
                if node is None:
                    cursor, names = client.scan(cursor, match=match, count=_BATCH)
                else:
                    cursors, names = client.scan(
                        cursor, match=match, count=_BATCH, target_nodes=node
                    )
                    cursor = int(cursors[node.name])
                yield names
                if not cursor:
                    break

    # -- Tier protocol -------------------------------------------------------------------------
    def get(self, key: str) -> bytes | bytearray | memoryview | None:
        name = self.prefix + key if self._tags is None else self._name(key)  # the hot path
        return self._run(self._get, name)  # type: ignore[no-any-return]

    def _get(self, name: str) -> bytes | None:
        try:
            return _unwrap(self.client.get(name))  # type: ignore[no-any-return]
        except Exception as exc:
            # a key of another type (an old version's index) is no entry: a miss, not an outage
            if _wrong_type(exc):
                return None
            raise

    def set(self, key: str, value: bytes, ttl: float | None, created: float | None = None) -> None:
        self.set_many({key: value}, ttl, created)

    def delete(self, key: str) -> bool:
        return bool(self._run(self.client.delete, self._name(key)))

    def get_many(self, keys: Sequence[str]) -> list[bytes | bytearray | memoryview | None]:
        if not keys:
            return []
        if self.cluster:
            return self._run(self._mget_slots, keys)  # type: ignore[no-any-return]
        p = self.prefix
        got = self._run(self._mget, [p + k for k in keys])
        for i, v in enumerate(got):
            if v is not None and v[:4] == _PLAIN:
                got[i] = v[_HEAD.size :]
        return got  # type: ignore[no-any-return]

    def _mget_slots(self, keys: Sequence[str]) -> list[bytes | bytearray | memoryview | None]:
        """One MGET per hash slot the keys fall in, in one pipeline (a round trip per node)."""
        groups: dict[int, list[int]] = {}
        for i, k in enumerate(keys):
            groups.setdefault(self._tag(k), []).append(i)
        out: list[bytes | bytearray | memoryview | None] = [None] * len(keys)
        pipe = self._pipe()
        for where in groups.values():
            pipe.execute_command("MGET", *[self._name(keys[i]) for i in where])
        for where, values in zip(groups.values(), pipe.execute(), strict=True):
            for i, v in zip(where, values, strict=True):
                out[i] = _unwrap(v)
        return out

    def _mget(self, names: list[str]) -> list[bytes | bytearray | memoryview | None]:
        client: Any = self.client
        if self._own_reader is False:
            return client.mget(names)  # type: ignore[no-any-return]
        pool = client.connection_pool
        conn: Any = pool.get_connection()
        try:
            if self._own_reader is None:
                self._own_reader = plain_resp2(conn)
                if not self._own_reader:
                    return client.mget(names)  # type: ignore[no-any-return]
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
            return read_bulk_array(
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
        born = clock.now() if created is None else created
        named = {self._name(k): _stored(v, born) for k, v in items.items()}

        def do() -> None:
            client: Any = self.client
            if len(named) == 1:
                ((name, value),) = named.items()
                client.set(name, value, px=px)
            elif px is None and not self.cluster:
                client.mset(named)  # the whole batch in one command
            else:
                pipe = self._pipe()
                if px is not None:
                    for name, value in named.items():
                        pipe.set(name, value, px=px)
                else:  # one MSET per slot: a cluster refuses one across slots
                    groups: dict[int, list[Any]] = {}
                    for k, (name, value) in zip(items, named.items(), strict=True):
                        groups.setdefault(self._tag(k), []).extend((name, value))
                    for flat in groups.values():
                        pipe.execute_command("MSET", *flat)
                pipe.execute()

        self._run(do)

    def iter_keys(self, pattern: str = "*") -> Iterator[str]:
        match = glob_match(pattern)  # the exact filter: SCAN MATCH only narrows (see _scan_glob)

        def do() -> list[str]:
            client: Any = self.client
            found = []
            for names in self._scan(self._match(pattern)):
                for name in names:
                    key = self._key_of(name)
                    if key is not None and match(key) and not self._is_legacy_index(client, name):
                        found.append(key)
            return found

        return iter(self._run(do))

    def _is_legacy_index(self, client: Any, name: bytes) -> bool:
        return name == self._legacy_index and client.type(name) == b"zset"

    def expire_older_than(self, cutoff: float) -> int:
        """Delete the entries created before `cutoff` (Unix time); how many.

        A SCAN batch at a time: a pipelined GETRANGE of each entry's first 16 bytes tells its
        creation time. A value with neither header (written raw by an earlier version) is old
        when even its last access (OBJECT IDLETIME) came before `cutoff`. An entry rewritten
        between the read and the UNLINK goes too: a miss, never a wrong value.
        """

        def do() -> int:
            client: Any = self.client
            n = 0
            for batch in self._scan(self._match("*")):
                names = [nm for nm in batch if self._key_of(nm) is not None]
                if not names:
                    continue
                pipe = self._pipe()
                for name in names:
                    pipe.getrange(name, 0, _HEAD.size - 1)
                old, unknown = [], []
                for name, head in zip(names, pipe.execute(raise_on_error=False), strict=True):
                    if isinstance(head, Exception):  # not a string (an old index): no entry
                        continue
                    born = _created(head)
                    if born is None:
                        unknown.append(name)
                    elif born < cutoff:
                        old.append(name)
                if unknown:
                    pipe, now = self._pipe(), clock.now()
                    for name in unknown:
                        pipe.object("idletime", name)
                    idle = pipe.execute(raise_on_error=False)  # an LFU policy refuses: kept
                    old += [
                        nm
                        for nm, s in zip(unknown, idle, strict=True)
                        if isinstance(s, int) and now - s < cutoff
                    ]
                if old:
                    n += int(client.unlink(*old))
            return n

        return int(self._run(do))

    def clear(self) -> int:
        def do() -> int:
            client: Any = self.client
            n = 0
            for names in self._scan(_escape(self.prefix) + "*"):
                mine = [nm for nm in names if not self._is_legacy_index(client, nm)]
                if len(mine) < len(names):
                    client.unlink(self._legacy_index)
                if mine:
                    n += int(client.unlink(*mine))
            client.unlink(self.index_key, self.expiry_key)
            return n

        return int(self._run(do))

    def usage(self) -> TierUsage:
        """Entries counted by SCAN (None past `usage_scan_limit` names scanned) and the
        bytes Redis uses (every master of a cluster)."""

        def do() -> TierUsage:
            client: Any = self.client
            entries: int | None = 0
            trips = max(1, self.usage_scan_limit // _BATCH)
            for names in self._scan(self._match("*")):
                trips -= 1
                if trips < 0:
                    entries = None
                    break
                entries = (entries or 0) + sum(
                    1
                    for nm in names
                    if self._key_of(nm) is not None and not self._is_legacy_index(client, nm)
                )
            if self.cluster:
                info = client.info("memory", target_nodes=client.PRIMARIES)
            else:
                info = client.info("memory")
            if "used_memory" in info:
                size = int(info["used_memory"])
            else:  # one dict per node
                size = sum(int(v.get("used_memory", 0)) for v in info.values())
            return TierUsage(entries, size)

        return self._run(do)  # type: ignore[no-any-return]

    @contextlib.contextmanager
    def lock(self, key: str, wait: float = 120.0) -> Iterator[bool]:
        """A lock shared by every process on this Redis (single flight); yields whether it was
        acquired within `wait` seconds.

        It is held on a lease of `lock_lease` seconds that a thread of the holder renews every
        third of it while the holder runs: a holder that dies (SIGKILL, a kernel killed out of
        memory) gives the key up within one lease, while a live one computing for longer keeps
        it. A caller that has to wait says so once, as a warning. On a cluster the lock is one
        key, so one slot: it works the same.
        """
        import redis

        lease = self.lock_lease
        lk: Any = None
        try:
            # thread_local=False: the renewing thread must see the token the holder's thread got
            lk = self.client.lock(
                self.lock_prefix + key, timeout=lease, sleep=0.05, thread_local=False
            )
            got = bool(lk.acquire(blocking=False))
            if not got:
                log.warning(
                    "tcache: waiting for another process computing %s (lock held on Redis, "
                    "lease %.0f s renewed while it runs; taken over if it lapses)",
                    key[:80],
                    lease,
                )
                got = bool(lk.acquire(blocking_timeout=wait))
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException):
            got = False  # a cluster that cannot be reached raises the latter
        renewer = _Renewer(lk, lease / 3) if got else None
        try:
            yield got
        finally:
            if renewer is not None:
                renewer.stop()
                with contextlib.suppress(redis.exceptions.RedisError):
                    lk.release()  # a lease lost meanwhile (LockNotOwnedError) is no error

    def ping(self) -> bool:
        return bool(self._run(lambda: self.client.ping()))

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


def _stored(value: bytes, created: float) -> bytes:
    """What is stored for `value`: a tore_nb entry as it is (its creation time is in it, signed),
    anything else behind a header that carries `created` at the same offset."""
    if value[:4] == MAGIC and len(value) >= _HEAD.size:
        return value
    return _HEAD.pack(_PLAIN, created) + value


def _unwrap(value: Any) -> Any:
    """A stored value as it was given (the header of a value that is no entry cut off)."""
    if value is not None and value[:4] == _PLAIN:
        return value[_HEAD.size :]
    return value


def _created(head: bytes) -> float | None:
    """The creation time in a stored value's first 16 bytes; None when it has neither header.

    >>> _created(_HEAD.pack(_PLAIN, 123.5)), _created(b"raw")
    (123.5, None)
    """
    if len(head) < _HEAD.size or head[:4] not in (MAGIC, _PLAIN):
        return None
    return float(_CREATED.unpack_from(head, 8)[0])


@functools.cache
def _hash_tags(count: int) -> tuple[str, ...]:
    """`count` short hash tags whose slots fall one into each of `count` equal ranges of the
    16384: the same for every client, and spread over every master of a cluster whose slots
    are split evenly (as `redis-cli --cluster create` splits them).

    >>> tags = _hash_tags(4); len(set(tags)), tags == _hash_tags(4)
    (4, True)
    """
    from redis.crc import key_slot

    tags: list[str | None] = [None] * count
    left, i = count, 0
    while left:
        tag = format(i, "x")
        i += 1
        bucket = key_slot(tag.encode()) * count // _SLOTS
        if tags[bucket] is None:
            tags[bucket] = tag
            left -= 1
    return tuple(t for t in tags if t is not None)
