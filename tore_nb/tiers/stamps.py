"""Write stamps: so that a read racing a write never promotes what it read before the write.

Writes mark their keys busy (`begin`) and, once they have left every tier, stamp them with a new
tick (`finish`). A read notes `tick` before it looks, and promotes only keys that are neither
busy nor stamped since (`fresh`). Stamps of keys written long ago fold into one floor stamp, so
memory stays bounded: a key whose stamp folded reads as written at the floor, and a read that
began before the floor promotes nothing, which is always safe (a miss is, a stale hit is not).

>>> s = WriteStamps()
>>> tick = s.tick
>>> s.begin(["k"]); s.finish(["k"])
>>> with s.lock:
...     s.fresh("k", tick), s.fresh("other", tick)
(False, True)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

__all__ = ["RECENT_WRITES", "WriteStamps"]

#: per-key stamps kept; older writes fold into the floor stamp
RECENT_WRITES = 4096


class WriteStamps:
    """The write stamps of one cache; `lock` guards them (and what a promotion checks under it)."""

    __slots__ = ("_busy", "_busy_all", "_floor", "_written", "lock", "tick")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tick = 0  # read without the lock: an int read is atomic, and an old one is safe
        self._floor = 0
        self._written: OrderedDict[str, int] = OrderedDict()  # key -> stamp, oldest first
        self._busy: dict[str, int] = {}  # key -> writes under way
        self._busy_all = 0  # clears and expiries under way: every key is busy

    def __len__(self) -> int:
        """How many per-key stamps are kept (at most `RECENT_WRITES`)."""
        return len(self._written)

    def fresh(self, key: str, tick: int) -> bool:
        """Whether no write of `key` is under way or finished since `tick` (hold `lock`)."""
        return (
            not self._busy_all
            and key not in self._busy
            and self._written.get(key, self._floor) <= tick
        )

    def begin(self, keys: Sequence[str] | None) -> None:
        """Mark keys (None: all) busy before a write touches any tier."""
        with self.lock:
            if keys is None:
                self._busy_all += 1
                return
            busy = self._busy
            for k in keys:
                busy[k] = busy.get(k, 0) + 1

    def finish(self, keys: Sequence[str] | None) -> None:
        """Stamp keys (None: all) written, once the write has left every tier."""
        with self.lock:
            self.tick += 1
            tick = self.tick
            if keys is None:
                self._busy_all -= 1
                self._floor = tick
                self._written.clear()
                return
            busy, written = self._busy, self._written
            for k in keys:
                n = busy.pop(k, 1) - 1
                if n:
                    busy[k] = n
                written[k] = tick
                written.move_to_end(k)  # so that the oldest stamp is always first
            while len(written) > RECENT_WRITES:
                self._floor = written.popitem(last=False)[1]
