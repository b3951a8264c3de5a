"""Progress of a run: a callback object whose default does nothing; bars are views over it.

`TextProgress` draws a bar in a terminal. A notebook's bar is a view, built on the widgets side
from this `Progress` protocol (`tore_nb.widgets.RunProgress`): nothing here imports widgets.

>>> p = NullProgress(); p.start(3, "pages"); p.advance(3); p.close()
"""

from __future__ import annotations

import sys
import time
from typing import IO, Protocol, runtime_checkable

__all__ = ["NullProgress", "Progress", "TextProgress"]


@runtime_checkable
class Progress(Protocol):
    """Told how much work a run has and how much is done."""

    def start(self, total: int, description: str = "") -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def close(self) -> None: ...


class NullProgress:
    """Shows nothing: the default."""

    def start(self, total: int, description: str = "") -> None:
        return None

    def advance(self, n: int = 1) -> None:
        return None

    def close(self) -> None:
        return None


class TextProgress:
    """A text bar: redrawn in place on a terminal, a line at a time in a log or CI output.

    On a terminal it is redrawn at most every `interval` seconds (0.1 by default); anywhere
    else it writes a whole line at the start, at most every 10 s and at the end, so that a log
    holds a few readable lines rather than one line of carriage returns.

    >>> import io; out = io.StringIO(); p = TextProgress(out, interval=0)
    >>> p.start(4, "pages"); p.advance(4); p.close(); out.getvalue().splitlines()[-1]
    'pages [##############################] 4/4   0.0s'
    """

    def __init__(
        self, stream: IO[str] | None = None, *, width: int = 30, interval: float | None = None
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self._tty = bool(isatty()) if callable(isatty) else False
        self.width = width
        self.interval = interval if interval is not None else (0.1 if self._tty else 10.0)
        self.total, self.done, self.description = 0, 0, ""
        self._t0 = self._last = 0.0
        self._shown = -1

    def start(self, total: int, description: str = "") -> None:
        self.total, self.done, self.description = total, 0, description
        self._t0 = self._last = time.perf_counter()
        self._shown = -1
        self._draw(force=True)

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._draw()

    def close(self) -> None:
        self._draw(force=True)
        if self._tty:
            self.stream.write("\n")
        self.stream.flush()

    def _draw(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last < self.interval and self.done < self.total:
            return
        if not self._tty and self.done == self._shown:
            return  # a log line says something new or nothing
        self._last, self._shown = now, self.done
        frac = self.done / self.total if self.total else 1.0
        filled = int(frac * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        label = f"{self.description} " if self.description else ""
        line = f"{label}[{bar}] {self.done}/{self.total} {now - self._t0:5.1f}s"
        self.stream.write(f"\r{line}" if self._tty else f"{line}\n")
        self.stream.flush()
