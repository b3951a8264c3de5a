"""L2: local disk through diskcache (SQLite index, large values as files), with a size limit.

Entries are stored as raw bytes with their creation time as the diskcache tag. diskcache does
the writing, eviction and size accounting; reads issue SELECTs on diskcache's own connection
instead of `Cache.get`, for two reasons: `Cache.get` unpickles rows stored in pickle mode (a
planted row would run code before any signature check), and its Python wrapper costs more
than the query. A hit on a small entry is one SELECT of its value alone (each further column
costs ~0.1 us, a sixth of a hit's overhead); only when that finds nothing does a second
SELECT look for an entry kept as a file. Those are read into fresh writable memory, which the
codec then hands to unpickled arrays without a second copy. A database SQLite finds corrupt
is set aside (renamed, once, see disk_index) and rebuilt, so a corrupt cache costs its
contents, never the user's run; one this process may not write is read, its writes refused.
Entry files are opened only as regular files inside the directory (see disk_files). Keys are
stored under `prefix` (the namespace), so namespaces sharing a directory neither see nor
clear each other's entries.

>>> import tempfile
>>> d = DiskTier(tempfile.mkdtemp(), size_limit=10**7)
>>> d.set("k", b"v", None); d.get("k")
b'v'
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import diskcache

from .. import clock
from ..errors import TierUnavailable, TierWriteError
from .base import TierCapabilities, TierUsage, glob_match
from .disk_files import SafeCache, UnsafeEntry, open_entry, shared_with_others
from .disk_index import (
    DB_NAME,
    DENIED_ERRNOS,
    ReadOnlyIndex,
    aside_lock,
    db_inode,
    is_corrupt,
    is_denied,
    still_corrupt,
)

__all__ = ["DiskTier"]

log = logging.getLogger("tore_nb.tiers.disk")
# diskcache's Cache table: mode 1 is bytes kept in the row, 2 bytes kept in a file; rows of
# other modes (pickle, text) are never read
_LIVE = " WHERE key = ? AND raw = 1 AND (expire_time IS NULL OR expire_time > ?)"
_SELECT_ROW = "SELECT value FROM Cache" + _LIVE + " AND mode = 1"
_SELECT_FILE = "SELECT filename, size FROM Cache" + _LIVE + " AND mode = 2"
_forks = 0  # bumped in a forked child: a connection cached per thread must not cross a fork


def _after_fork() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_after_fork)
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


class DiskTier:
    """A diskcache.Cache in one directory, created lazily and per process."""

    name = "disk"
    # local to this machine; its file locks are shared by the processes using the directory
    capabilities = TierCapabilities(lock=True, sizes=frozenset({"small", "large"}))

    def __init__(
        self,
        directory: str | os.PathLike[str],
        size_limit: int,
        max_item_bytes: int | None = None,
        prefix: str = "tore_nb|",  # the default namespace's, as RedisTier's
    ) -> None:
        self.directory = Path(directory)
        self.prefix = prefix
        self._where, self._span = _under(prefix)
        self.size_limit = size_limit
        self.max_item_bytes = max_item_bytes if max_item_bytes is not None else size_limit
        self._cache: diskcache.Cache | ReadOnlyIndex | None = None
        self._inode: int | None = None
        self._warned_unsafe = False
        self._lock = threading.Lock()
        self._dir = str(self.directory)
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"DiskTier({str(self.directory)!r}, prefix={self.prefix!r})"

    # -- lifecycle ---------------------------------------------------------------------------------
    def _open(self) -> diskcache.Cache | ReadOnlyIndex:
        cache = self._cache
        if cache is not None:
            return cache
        with self._lock:
            if self._cache is None:
                self._cache = self._open_or_rebuild()
            return self._cache

    def _open_or_rebuild(self) -> diskcache.Cache | ReadOnlyIndex:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            return self._make()
        except sqlite3.DatabaseError as exc:
            if is_corrupt(exc):
                return self._rebuild_at_open(exc)
            if is_denied(exc):
                return self._read_only(exc)
            raise TierUnavailable(f"disk cache at {self.directory}: {exc}") from exc
        except OSError as exc:
            if exc.errno in DENIED_ERRNOS and (self.directory / DB_NAME).exists():
                return self._read_only(exc)
            raise TierUnavailable(f"disk cache at {self.directory}: {exc}") from exc

    def _make(self) -> diskcache.Cache:
        cache = SafeCache(
            str(self.directory),
            size_limit=self.size_limit,
            # reads go around Cache.get (see _read): this policy needs no bookkeeping on reads
            eviction_policy="least-recently-stored",
            timeout=1.0,
            disk_min_file_size=64 * 1024,
        )
        self._inode = db_inode(self.directory)  # the database a later corruption is about
        why = shared_with_others(self.directory)
        if why:  # the one hostile state no reader survives: say so once, at open
            log.warning(
                "disk cache %s is shared: %s. Anyone who can write it can crash this process "
                "(SQLite maps cache.db-shm into memory); share it only with users you trust",
                self.directory,
                why,
            )
        return cache

    def _read_only(self, exc: BaseException) -> ReadOnlyIndex:
        """Read a cache this process may not write; writes are refused (one warning, by the
        breaker's write circuit). Not a corrupt cache: nothing is set aside."""
        try:
            index = ReadOnlyIndex(self.directory, exc)
        except (sqlite3.Error, OSError) as error:
            raise TierUnavailable(f"disk cache at {self.directory}: {exc}; {error}") from error
        log.info("disk cache at %s is read-only for this process (%s)", self.directory, exc)
        self._inode = None  # nothing to write, so nothing to check before writing
        return index

    def _rebuild_at_open(self, exc: sqlite3.DatabaseError) -> diskcache.Cache:
        """Set aside a database found corrupt on opening, unless another process did so
        meanwhile (then its rebuilt one opens)."""
        try:
            with aside_lock(self.directory):
                try:
                    return self._make()  # rebuilt by another process while we waited?
                except sqlite3.DatabaseError as again:
                    if not is_corrupt(again):
                        raise
                self._set_aside(exc)
                return self._make()
        except (OSError, sqlite3.Error) as error:
            raise TierUnavailable(f"disk cache at {self.directory}: {error}") from error

    def _set_aside(self, exc: BaseException) -> None:
        """Rename the damaged directory and make a new one; call holding `aside_lock`."""
        aside = self.directory.with_name(f"{self.directory.name}.corrupt-{int(time.time())}")
        try:
            os.rename(self.directory, aside)  # fails (not overwrites) if one was set aside now
        except OSError as error:
            log.warning(
                "disk cache at %s is corrupt (%s) but could not be set aside (%s); "
                "the disk tier is unavailable until it is removed",
                self.directory,
                exc,
                error.strerror,
            )
            raise
        log.warning(
            "disk cache at %s is corrupt (%s); set aside as %s and rebuilt",
            self.directory,
            exc,
            aside,
        )
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _call(self, fn: Callable[[Any], Any], write: bool = False) -> Any:
        if write and self._inode is not None and db_inode(self.directory) != self._inode:
            self._reopen()  # set aside by another process: a write there would be lost
        try:
            return fn(self._open())
        except TierUnavailable:  # a read-only index refusing a write (an OSError too)
            if write:
                self._retry_writable()
            raise
        except sqlite3.DatabaseError as exc:
            text = str(exc)
            if write and ("full" in text or "readonly" in text):
                raise TierWriteError(f"disk cache refuses writes: {exc}") from exc
            if not is_corrupt(exc) or isinstance(self._cache, ReadOnlyIndex):
                # locked, unable to open, I/O errors: the database itself may be fine; and a
                # cache this process cannot write is never set aside by it
                raise TierUnavailable(f"disk cache: {exc}") from exc
            self._rebuild(exc)
            raise TierUnavailable(f"disk cache database is corrupt: {exc}") from exc
        except diskcache.Timeout as exc:
            raise TierUnavailable(f"disk cache busy: {exc}") from exc
        except OSError as exc:
            if write and exc.errno in _WRITE_ERRNOS:
                raise TierWriteError(f"disk cache refuses writes: {exc.strerror}") from exc
            raise TierUnavailable(f"disk cache I/O error: {exc}") from exc

    def _reopen(self) -> None:
        with self._lock:
            if self._cache is not None:
                self._cache.close()
                self._cache = None

    def _retry_writable(self) -> None:
        """After a while read-only, the next write attempt (the breaker's probe) opens the
        cache afresh: its permissions may have been fixed."""
        with self._lock:
            cache = self._cache
            if isinstance(cache, ReadOnlyIndex) and time.monotonic() - cache.since > 30:
                cache.close()
                self._cache = None

    def _rebuild(self, exc: BaseException) -> None:
        """Set aside the database this process found corrupt while using it, unless another
        process has already replaced it (or it reads fine again); reopened on the next call."""
        with self._lock:
            if self._cache is not None:
                self._cache.close()
                self._cache = None
            try:
                with aside_lock(self.directory):
                    if db_inode(self.directory) != self._inode:
                        log.info("disk cache at %s was rebuilt by another process", self._dir)
                    elif still_corrupt(self.directory):
                        self._set_aside(exc)
            except OSError as error:
                raise TierUnavailable(f"disk cache at {self.directory}: {error}") from error

    # -- Tier protocol -------------------------------------------------------------------------
    def get(self, key: str) -> bytes | memoryview | None:
        cache = self._cache
        if cache is not None:
            try:  # the hot path, without the closure of _call
                return self._read(cache, key)
            except Exception:  # let _call translate it (and rebuild a corrupt database)
                pass
        return self._call(lambda c: self._read(c, key))  # type: ignore[no-any-return]

    def _read(self, cache: diskcache.Cache, key: str) -> bytes | memoryview | None:
        try:  # a cursor on diskcache's connection for this thread, without its per-call getpid()
            owner, forks, cursor = self._local.cursor
            if owner is not cache or forks != _forks:
                raise AttributeError
        except AttributeError:
            cursor = cache._con.cursor()
            self._local.cursor = (cache, _forks, cursor)
        args = (self.prefix + key, time.time())
        row = cursor.execute(_SELECT_ROW, args).fetchone()
        if row is not None:
            return row[0] if type(row[0]) is bytes else None
        row = cursor.execute(_SELECT_FILE, args).fetchone()
        if row is None:
            return None
        filename, size = row
        if filename and isinstance(size, int):
            # the size comes from the table: bound it before allocating that much
            return self._read_file(filename, size) if 0 < size <= self.max_item_bytes else None
        return None  # a file row without a name or a size: not diskcache's, not ours

    def _read_file(self, filename: str, size: int) -> bytes | memoryview | None:
        import numpy as np  # uninitialised memory: a bytearray would be zeroed first

        try:
            fd = open_entry(self._dir, filename)
        except UnsafeEntry as exc:
            # one planted entry, not a failing tier: empty bytes are rejected (counted, the
            # row removed) by the codec, and the tier goes on serving the others
            if not self._warned_unsafe:
                self._warned_unsafe = True
                log.warning("disk cache at %s: entry rejected: %s", self._dir, exc)
            return b""
        if fd is None:  # evicted or replaced between the query and the open
            return None
        buf = np.empty(size, np.uint8).data
        try:
            n = os.readv(fd, [buf])
            while 0 < n < size:  # a regular file gives all at once, but a read may stop short
                got = os.preadv(fd, [buf[n:]], n)
                if not got:
                    break
                n += got
        finally:
            os.close(fd)
        return buf[:n]  # a short file is a truncated entry: the codec rejects and counts it

    def set(self, key: str, value: bytes, ttl: float | None, created: float | None = None) -> None:
        name, expire = self.prefix + key, _expire(ttl)
        tag = clock.now() if created is None else created
        ok = self._call(lambda c: c.set(name, value, expire=expire, tag=tag), write=True)
        if not ok:
            raise TierUnavailable("disk cache refused the write")

    def delete(self, key: str) -> bool:
        return bool(self._call(lambda c: c.delete(self.prefix + key)))

    def get_many(self, keys: Sequence[str]) -> list[bytes | memoryview | None]:
        return [self.get(k) for k in keys]

    def set_many(
        self, items: Mapping[str, bytes], ttl: float | None, created: float | None = None
    ) -> None:
        expire = _expire(ttl)

        def write(c: diskcache.Cache) -> None:
            now, p = (clock.now() if created is None else created), self.prefix
            with c.transact():
                for k, v in items.items():
                    c.set(p + k, v, expire=expire, tag=now)

        self._call(write, write=True)

    def _names(
        self, c: diskcache.Cache, where: str = "", args: tuple[object, ...] = ()
    ) -> list[str]:
        """The stored names (prefix included) of this namespace's raw str keys."""
        sql = f"SELECT key FROM Cache WHERE raw = 1 AND {self._where}{where}"
        return [k for (k,) in c._sql(sql, self._span + args).fetchall() if isinstance(k, str)]

    def iter_keys(self, pattern: str = "*") -> Iterator[str]:
        match, n = glob_match(pattern), len(self.prefix)
        live = " AND (expire_time IS NULL OR expire_time > ?)"
        names = self._call(lambda c: self._names(c, live, (time.time(),)))
        return iter([k[n:] for k in names if match(k[n:])])

    def expire_older_than(self, cutoff: float) -> int:
        def sweep(c: diskcache.Cache) -> int:
            c.expire()
            # tags hold write times; reading them from the table never loads (or unpickles) values
            return sum(1 for k in self._names(c, " AND tag < ?", (cutoff,)) if c.delete(k))

        return int(self._call(sweep))

    def clear(self) -> int:
        if not self.prefix:
            return int(self._call(lambda c: c.clear()))

        def drop(c: diskcache.Cache) -> int:
            names, n = self._names(c), 0
            for i in range(0, len(names), 1000):  # short transactions: writers wait on each
                with c.transact():
                    n += sum(1 for k in names[i : i + 1000] if c.delete(k))
            return n

        return int(self._call(drop))

    def usage(self) -> TierUsage:
        if not self.prefix:
            return self._call(lambda c: TierUsage(len(c), int(c.volume())))  # type: ignore[no-any-return]

        def count(c: diskcache.Cache) -> TierUsage:
            # small values sit in the row (size 0), larger ones in files (size is theirs)
            sql = (
                "SELECT COUNT(*), SUM(CASE WHEN mode = 2 THEN size ELSE length(value) END)"
                f" FROM Cache WHERE raw = 1 AND {self._where}"
            )
            entries, size = c._sql(sql, self._span).fetchone()
            return TierUsage(int(entries), int(size or 0))

        return self._call(count)  # type: ignore[no-any-return]

    @contextlib.contextmanager
    def lock(self, key: str, wait: float = 120.0) -> Iterator[bool]:
        """An advisory file lock shared by the processes using this directory (single flight);
        yields whether it was acquired within `wait` seconds. The OS drops it if the holder dies.
        """
        import fcntl

        from ..keys import hash_bytes

        folder = self.directory / "locks"
        name = hash_bytes((self.prefix + key).encode())
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(folder / f"{name}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            if exc.errno not in DENIED_ERRNOS:
                raise
            yield False  # a cache this process may only read: it computes without the lock
            return
        got = False
        deadline = time.monotonic() + wait
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    got = True
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        break
                    time.sleep(0.02)
            yield got
        finally:
            if got:
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            if self._cache is not None:
                self._cache.close()
                self._cache = None


def _under(prefix: str) -> tuple[str, tuple[object, ...]]:
    """SQL (and its arguments) selecting the keys that start with `prefix`: a range of the key
    index, so a namespace costs what it holds, not what the directory holds."""
    if not prefix:
        return "typeof(key) = 'text'", ()
    last = ord(prefix[-1])
    if last in (0xD7FF, 0x10FFFF):  # no next character to bound the range with
        return "typeof(key) = 'text' AND substr(key, 1, ?) = ?", (len(prefix), prefix)
    # TEXT sorts by its UTF-8 bytes, which sort as the characters do
    return "key >= ? AND key < ?", (prefix, prefix[:-1] + chr(last + 1))


def _expire(ttl: float | None) -> float | None:
    """diskcache's `expire` for a TTL: None (kept) for inf; NaN is refused (SQLite stores NULL)."""
    if ttl is None or ttl == math.inf:
        return None
    if math.isnan(ttl):
        raise ValueError("ttl is NaN")
    return ttl
