"""The janitor: one background thread per process for clean-up off the caller's path (stale
copies deleted, missed clears applied). Made lazily, and anew in a forked child.

>>> j = Janitor()
>>> done = []
>>> j.submit(lambda: done.append(1)); j.flush(); done
[1]
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

__all__ = ["Janitor"]


class Janitor:
    """Runs jobs in order on one worker thread of this process."""

    __slots__ = ("_lock", "_pid", "_pool")

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], object]) -> None:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="tore-janitor")
                self._pid = os.getpid()
            pool = self._pool
        pool.submit(job)

    def flush(self) -> None:
        """Wait for the jobs submitted so far to finish."""
        with self._lock:
            pool = self._pool if self._pid == os.getpid() else None
        if pool is not None:
            pool.submit(lambda: None).result()
