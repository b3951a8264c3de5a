"""The disk tier's files, as someone else may have left them: whoever can write the cache
directory can write diskcache's table, so every file name read from it is hostile.

Only regular files inside the cache directory are ever opened, read or deleted. A name must
have diskcache's own shape (`ab/cd/<28 hex>.val`: no `..`, not absolute), and it is resolved one
component at a time from the directory with O_NOFOLLOW, so a symlink anywhere on the way is
refused rather than followed out. Entry files open with O_NONBLOCK (a FIFO cannot block) and are
checked with fstat (a FIFO, a directory or a device is not an entry). `SafeDisk` applies the same
rules to every deletion diskcache performs (rejected entries, replaced values, expired and culled
rows, clears) and removes only the entry's own emptied subdirectories, never the cache directory
or anything above it.

>>> split_name("../x"), split_name("/etc/passwd"), split_name("ab/cd/" + "0" * 28 + ".val")
(None, None, ('ab', 'cd', '0000000000000000000000000000.val'))
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import stat
from typing import Any

import diskcache

__all__ = ["SafeCache", "SafeDisk", "UnsafeEntry", "open_entry", "remove_entry", "split_name"]

log = logging.getLogger("tore_nb.tiers.disk")

# diskcache's Disk.filename(): two levels of 2 hex digits, then 28 hex digits and ".val"
_NAME = re.compile(r"([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{28}\.val)")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# diskcache's Cache table modes (core.MODE_RAW, MODE_BINARY)
_MODE_RAW, _MODE_BINARY = 1, 2


class UnsafeEntry(ValueError):
    """A table row names something that is not a regular file inside the cache directory."""


def split_name(filename: object) -> tuple[str, str, str] | None:
    """The components of a file name as diskcache makes them; None for any other name."""
    if not isinstance(filename, str):
        return None
    m = _NAME.fullmatch(filename)
    return None if m is None else (m[1], m[2], m[3])


def _walk(root: str, dirs: tuple[str, ...]) -> list[int]:
    """File descriptors of `root` and then of each of `dirs` below it, none a symlink.

    The caller closes them. Raises OSError (ELOOP, ENOTDIR for a symlink or a non-directory).
    """
    fds = [os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
    try:
        for d in dirs:
            fds.append(os.open(d, _DIR_FLAGS, dir_fd=fds[-1]))
    except BaseException:
        _close(fds)
        raise
    return fds


def _close(fds: list[int]) -> None:
    for fd in reversed(fds):
        os.close(fd)


def open_entry(root: str, filename: object) -> int | None:
    """A read-only descriptor of the entry file `filename` under `root`; None when it is gone.

    Raises UnsafeEntry when the name or what it leads to is not a regular file inside `root`.
    """
    parts = split_name(filename)
    if parts is None:
        raise UnsafeEntry(f"file name {str(filename)[:80]!r} is not one diskcache makes")
    try:
        fds = _walk(root, parts[:2])
    except FileNotFoundError:
        return None  # evicted (and its directory removed) between the query and the open
    except OSError as exc:
        raise UnsafeEntry(f"{filename}: a directory on the way is not one ({exc})") from exc
    try:
        fd = os.open(parts[2], _FILE_FLAGS, dir_fd=fds[-1])
    except FileNotFoundError:
        return None
    except OSError as exc:  # ELOOP: a symlink; ENXIO: a socket
        raise UnsafeEntry(f"{filename}: {exc.strerror}") from exc
    finally:
        _close(fds)
    try:
        mode = os.fstat(fd).st_mode
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise UnsafeEntry(f"{filename} is not a regular file (mode {stat.filemode(mode)})")
    return fd


def remove_entry(root: str, filename: object) -> bool:
    """Delete the entry file `filename` under `root` if it is a regular file there, then its
    emptied subdirectories (never `root` itself); whether a file was deleted. Never raises
    OSError: another process may be removing the same file.
    """
    parts = split_name(filename)
    if parts is None:
        if filename is not None:
            log.debug("disk cache: not deleting %r: not a name diskcache makes", filename)
        return False
    try:
        fds = _walk(root, parts[:2])
    except OSError:
        return False  # gone, or a symlink or non-directory on the way: nothing of ours to delete
    removed = False
    try:
        with contextlib.suppress(OSError):
            st = os.stat(parts[2], dir_fd=fds[-1], follow_symlinks=False)
            if stat.S_ISREG(st.st_mode):
                os.unlink(parts[2], dir_fd=fds[-1])
                removed = True
            else:  # a symlink, FIFO or directory planted there: not ours to delete
                log.debug("disk cache: not deleting %s: not a regular file", filename)
        for i in (1, 0):  # the entry's own subdirectories, once empty; another may refill them
            try:
                os.rmdir(parts[i], dir_fd=fds[i])
            except OSError:
                break
    finally:
        _close(fds)
    return removed


class SafeDisk(diskcache.Disk):  # type: ignore[misc]  # diskcache ships no type hints
    """diskcache's Disk, confined to regular files inside the cache directory."""

    def remove(self, file_path: str) -> None:
        remove_entry(self._directory, file_path)

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        # tore_nb reads its rows itself (see DiskTier._read); a diskcache read (pop, peek) of
        # any other mode would unpickle or decode what a planter chose
        if mode == _MODE_RAW:
            return bytes(value) if isinstance(value, memoryview) else value
        if mode != _MODE_BINARY:
            raise UnsafeEntry(f"disk cache row of mode {mode} is never loaded")
        fd = open_entry(self._directory, filename)
        if fd is None:
            raise FileNotFoundError(errno.ENOENT, "entry file is gone", filename)
        f = os.fdopen(fd, "rb")
        if read:
            return f
        with f:
            return f.read()

    def filename(self, key: Any = diskcache.UNKNOWN, value: Any = diskcache.UNKNOWN) -> Any:
        # diskcache creates the two subdirectories and the file by path: a planted symlink on
        # the way would put the new file wherever it points, so such a name is drawn again
        for _ in range(8):
            name, full_path = super().filename(key, value)
            if self._clean(name):
                return name, full_path
        raise OSError(errno.EACCES, "cache subdirectories are not directories", self._directory)

    def _clean(self, name: str) -> bool:
        parent = self._directory
        for part in name.split("/")[:2]:
            parent = os.path.join(parent, part)
            try:
                if not stat.S_ISDIR(os.lstat(parent).st_mode):
                    return False
            except FileNotFoundError:
                return True  # diskcache creates it
        return True


class SafeCache(diskcache.Cache):  # type: ignore[misc]
    """diskcache's Cache with `SafeDisk`, and SQLite's memory map off on every connection.

    With a memory map, a database file truncated under a reader (by anyone who can write the
    directory) kills the process with SIGBUS. diskcache re-applies the `sqlite_*` settings
    stored in the database to each new connection, and the database may be a planter's: so
    the map is turned off again after them, once per connection.
    """

    def __init__(self, directory: str, **settings: Any) -> None:
        super().__init__(directory, disk=SafeDisk, sqlite_mmap_size=0, **settings)

    @property
    def _con(self) -> Any:
        con = super()._con
        local = self._local
        if getattr(local, "unmapped", None) is not con:
            con.execute("PRAGMA mmap_size = 0")
            local.unmapped = con
        return con


def shared_with_others(directory: str | os.PathLike[str]) -> str:
    """Why other users can write the cache `directory` (group- or world-writable, or owned by
    someone else), or "". Such a user can damage what is inside in ways no reader survives
    (SQLite maps its WAL index into memory: a truncated `-shm` kills the process)."""
    try:
        st = os.stat(directory)
    except OSError:
        return ""
    if st.st_uid != os.geteuid():
        return f"it is owned by uid {st.st_uid}"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "other users may write it" if st.st_mode & stat.S_IWOTH else "its group may write it"
    return ""
