"""What a running cell does outside the kernel, which a replay of its outputs would not redo.

A hit restores variables and replays outputs; it does not start the processes the cell
started, stop those it stopped, or read and write the cache the cell used itself (a
`@cached` call, `cache.get`, its figures). `observe` records these through the audit events
below and, while it observes, through `MultiLevelCache`'s public methods; `describe` puts them
in words. `%tcache auto` (and so `tore-nb run`) runs such a cell every time, saying why.

>>> describe(("tesseract",), (), True)
'it starts a process (tesseract) and uses a tore_nb cache itself'
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any, Protocol

__all__ = ["HANDLERS", "cache_methods", "describe", "from_event_hook", "noting", "program"]


class _Recorder(Protocol):
    started: dict[str, None]
    signalled: dict[int, None]


Handler = Callable[[list[Any], tuple[Any, ...]], None]


def program(command: Any) -> str:
    """The name of the program a path, command line or argument list runs.

    >>> program("/usr/bin/tesseract"), program(["git", "log"]), program("ls -l")
    ('tesseract', 'git', 'ls')
    """
    if isinstance(command, list | tuple):
        command = command[0] if command else ""
    try:
        words = os.fsdecode(command).split()
    except TypeError:
        return "?"
    return os.path.basename(words[0]) if words else "?"


def _started(where: int | None) -> Handler:
    """A handler of an audit event that starts a process whose program is the event's
    argument number `where` (None: a fork, a copy of the kernel, named "")."""

    def handler(stack: list[_Recorder], args: tuple[Any, ...]) -> None:
        if where is None:
            name = ""  # `!ls` forks through a pty, then runs the shell
        elif where == 0 and len(args) > 1 and not args[0]:  # Popen(executable=None, args)
            name = program(args[1])
        else:
            name = program(args[where] if len(args) > where else "")
        for rec in stack:
            rec.started.setdefault(name, None)

    return handler


def _on_kill(stack: list[_Recorder], args: tuple[Any, ...]) -> None:
    if len(args) < 2 or args[1] == 0:  # signal 0 only asks whether a process is alive
        return
    for rec in stack:
        rec.signalled.setdefault(int(args[0]), None)


#: audit event -> its handler, for `observe`'s audit hook
HANDLERS: dict[str, Handler] = {
    "subprocess.Popen": _started(0),  # (executable, args, cwd, env)
    "os.system": _started(0),  # (command,)
    "os.posix_spawn": _started(0),  # (path, argv, env)
    "os.spawn": _started(1),  # (mode, path, args, env)
    "os.fork": _started(None),
    "os.forkpty": _started(None),
    "os.kill": _on_kill,  # (pid, signal)
    "os.killpg": _on_kill,
}

_EVENTS_FILE = os.path.join("IPython", "core", "events.py")


def from_event_hook() -> bool:
    """Whether an IPython event hook (`post_run_cell`: a live dashboard refreshing) is running
    up this thread's stack: it runs after a cell whether the cell ran or was served."""
    frame: Any = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_name == "trigger" and code.co_filename.endswith(_EVENTS_FILE):
            return True
        frame = frame.f_back
    return False


def cache_methods() -> list[tuple[type, str, Callable[..., Any]]]:
    """The public methods of `MultiLevelCache` (none while it is not imported)."""
    tiered = sys.modules.get("tore_nb.tiered")
    cls = getattr(tiered, "MultiLevelCache", None)
    if not isinstance(cls, type):
        return []
    return [
        (cls, name, value)
        for name, value in vars(cls).items()
        if not name.startswith("_") and inspect.isfunction(value)
    ]


def noting(method: Callable[..., Any], note: Callable[[], None]) -> Callable[..., Any]:
    """`method`, calling `note()` first."""

    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        note()
        return method(self, *args, **kwargs)

    wrapper.__name__ = method.__name__
    wrapper.__qualname__ = method.__qualname__
    wrapper.__doc__ = method.__doc__
    return wrapper


def describe(started: Iterable[str], signalled: Iterable[int], used_cache: bool) -> str | None:
    """Why a replay would differ, in words; None when the run did nothing outside the kernel.

    >>> describe(("raylet", "gcs_server"), (4711, 4712), False)
    'it starts processes (raylet, gcs_server) and signals 2 other processes'
    >>> describe(("",), (), False), describe((), (), False) is None
    ('it starts a process', True)
    """
    parts = []
    started = list(dict.fromkeys(started))
    names = [n for n in started if n]
    if started:
        what = "a process" if len(started) == 1 else "processes"
        shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
        parts.append(f"starts {what}" + (f" ({shown})" if shown else ""))
    pids = set(signalled)
    if pids:
        parts.append(
            "signals another process" if len(pids) == 1 else f"signals {len(pids)} other processes"
        )
    if used_cache:
        parts.append("uses a tore_nb cache itself")
    return "it " + " and ".join(parts) if parts else None
