"""The disk tier's SQLite index when it cannot be used as diskcache expects: read-only (a
directory of another user, a read-only mount), or corrupt.

A cache this process cannot write is still read: `ReadOnlyIndex` opens its database read-only
and refuses writes with `TierWriteError`, so the breaker stops writes with one warning while
reads go on. Only a database that SQLite finds corrupt (not locked, not read-only, not
unopenable) is set aside, and only under an exclusive lock on a file beside the directory: a
second process that noticed the same damage finds, once it holds the lock, that the database is
no longer the one it saw (or no longer corrupt) and leaves the rebuilt directory alone.

>>> is_corrupt(sqlite3.DatabaseError("file is not a database"))
True
>>> is_corrupt(sqlite3.OperationalError("attempt to write a readonly database"))
False
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

from ..errors import TierWriteError

__all__ = [
    "DB_NAME",
    "DENIED_ERRNOS",
    "ReadOnlyIndex",
    "aside_lock",
    "db_inode",
    "is_corrupt",
    "is_denied",
    "still_corrupt",
]

DB_NAME = "cache.db"  # diskcache.core.DBNAME
# SQLite's primary result codes (the low byte of an extended code)
_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_DENIED_CODES = {3, 8, 14, 23}  # SQLITE_PERM, SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_AUTH
DENIED_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}


def _code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def is_corrupt(exc: sqlite3.Error) -> bool:
    """Whether SQLite says the database itself is damaged (not busy, read-only or unopenable)."""
    code = _code(exc)
    if code is None:  # raised by Python, not SQLite: go by the class, as sqlite3 maps codes
        return isinstance(exc, sqlite3.DatabaseError) and not isinstance(
            exc, sqlite3.OperationalError
        )
    return code in _CORRUPT_CODES


def is_denied(exc: BaseException) -> bool:
    """Whether `exc` says this process may not write (or create) the cache's files."""
    if isinstance(exc, sqlite3.Error):
        code = _code(exc)
        return code in _DENIED_CODES if code is not None else "readonly" in str(exc)
    return isinstance(exc, OSError) and exc.errno in DENIED_ERRNOS


def db_inode(directory: Path) -> int | None:
    """The inode of the directory's database, None when there is none."""
    try:
        return os.stat(directory / DB_NAME).st_ino
    except OSError:
        return None


def _connect_ro(db: Path) -> sqlite3.Connection:
    """A read-only connection; `immutable` where the database cannot be opened otherwise
    (a WAL database whose directory does not let SQLite create its -shm file)."""
    uri = "file:" + quote(str(db))
    try:
        con = sqlite3.connect(uri + "?mode=ro", uri=True, isolation_level=None)
        con.execute("SELECT 1 FROM Settings LIMIT 1").fetchall()
    except sqlite3.OperationalError as exc:
        if not is_denied(exc):
            raise
        con = sqlite3.connect(uri + "?mode=ro&immutable=1", uri=True, isolation_level=None)
    con.execute("PRAGMA mmap_size = 0")  # see SafeCache: a truncated file must not SIGBUS
    return con


def still_corrupt(directory: Path) -> bool:
    """Whether the directory's database is (still) damaged, checked afresh."""
    try:
        con = _connect_ro(directory / DB_NAME)
    except sqlite3.Error as exc:
        return is_corrupt(exc)
    try:
        row = con.execute("PRAGMA quick_check(1)").fetchone()
        con.execute("SELECT COUNT(*) FROM Cache").fetchone()
    except sqlite3.Error as exc:
        return is_corrupt(exc)
    finally:
        con.close()
    return row is None or row[0] != "ok"


@contextlib.contextmanager
def aside_lock(directory: Path, wait: float = 30.0) -> Iterator[None]:
    """An exclusive lock, across processes, on deciding whether to set `directory` aside.

    It is a file beside the directory (inside, it would move with it). Raises OSError when the
    lock file cannot be made (then neither could the directory be renamed) or is held too long.
    """
    import fcntl

    path = directory.with_name(f".{directory.name}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise OSError(errno.ETIMEDOUT, "lock held too long", str(path)) from None
                time.sleep(0.02)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class ReadOnlyIndex:
    """diskcache's table of a directory this process may read but not write: the parts of
    `diskcache.Cache` the disk tier uses, with every write refused as `TierWriteError`."""

    def __init__(self, directory: Path, reason: BaseException) -> None:
        self.directory = str(directory)
        self.reason = reason
        self.since = time.monotonic()
        self._db = directory / DB_NAME
        self._local = threading.local()
        self._con.execute("SELECT 1 FROM Cache LIMIT 1").fetchall()  # readable at all?

    @property
    def _con(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():  # a connection must not cross a fork
            local.con, local.pid = _connect_ro(self._db), os.getpid()
        return local.con  # type: ignore[no-any-return]

    def _sql(self, sql: str, args: tuple[object, ...] = ()) -> sqlite3.Cursor:
        return self._con.execute(sql, args)

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TierWriteError(f"disk cache at {self.directory} is read-only: {self.reason}")

    set = delete = clear = expire = transact = _refuse

    def _setting(self, key: str) -> int:
        row = self._sql("SELECT value FROM Settings WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row and isinstance(row[0], int) else 0

    def __len__(self) -> int:
        return self._setting("count")

    def volume(self) -> int:
        return self._setting("size")

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None
            self._local.pid = None
