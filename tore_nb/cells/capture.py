"""Recorded outputs: what a cell prints and displays, recorded in order and replayed on a hit.

`OutputRecorder` tees stdout and stderr and, given an IPython shell, wraps its display
publisher and display hook, so `display()` calls, `clear_output()` and the value of the last
expression are recorded too, while still being shown live. `replay` shows them again, and puts
the last expression's value back in `Out` and `_`. Only capture utilities of IPython are
touched, through the shell object handed in: this module imports no IPython.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["NO_RESULT", "OutputEvent", "OutputRecorder", "replay"]

log = logging.getLogger("tore_nb.cells")

_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


class _NoResult:
    def __repr__(self) -> str:
        return "NO_RESULT"


NO_RESULT: Any = _NoResult()
"""The cell had no last-expression value for `Out` (or it could not be kept)."""

# The display hook's own output (the Out[n] prompt, the text form of the value): recorded as the
# 'result' event, so not as stdout too. What runs between them (formatters, `_ipython_display_`,
# which displays through the publisher) is recorded as usual.
_HOOK_WRITERS = ("start_displayhook", "write_output_prompt", "finish_displayhook")


@dataclass(frozen=True)
class OutputEvent:
    """One thing a cell showed: 'stdout'/'stderr' text, 'display' data, a 'result' (the value
    of its last expression) or a 'clear'."""

    kind: Literal["stdout", "stderr", "display", "result", "clear"]
    text: str = ""
    data: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] | None = None
    transient: Mapping[str, Any] | None = None
    update: bool = False


# Pickled into cell entries: keep the class path it has always had, tore_nb.cells.OutputEvent,
# so that stored entries stay readable by older and newer versions alike.
OutputEvent.__module__ = "tore_nb.cells"


class _Tee:
    """A stream that records what is written and passes it on."""

    def __init__(
        self, stream: Any, kind: Literal["stdout", "stderr"], recorder: OutputRecorder
    ) -> None:
        self._stream = stream
        self._kind: Literal["stdout", "stderr"] = kind
        self._recorder = recorder

    def write(self, text: str) -> int:
        rec = self._recorder
        if text and rec.active and not rec.muted:  # a tee kept past its cell records nothing
            rec._events.append(OutputEvent(self._kind, text))
        return self._stream.write(text)  # type: ignore[no-any-return]

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class OutputRecorder:
    """Records, in order, what a cell prints and displays, while still showing it live.

    Without a shell only stdout and stderr are recorded; with an IPython shell also display()
    calls, clear_output() and the value of the last expression.

    >>> with OutputRecorder() as rec:
    ...     print("hi")
    hi
    >>> [(e.kind, e.text) for e in rec.events()]
    [('stdout', 'hi\\n')]
    """

    def __init__(self, shell: Any = None) -> None:
        self.shell = shell
        self._events: list[OutputEvent] = []
        self._undo: list[Callable[[], None]] = []
        # inside a display call or the display hook's own writing: what is printed there is the
        # text form of a display or result event, not output of its own
        self.muted = 0
        self.result: Any = NO_RESULT  # the value the display hook put in Out[] last
        self.widgets = False  # it showed a live widget, which a replay cannot bring back
        self.active = False  # between __enter__ and __exit__

    def __enter__(self) -> OutputRecorder:
        out, err = sys.stdout, sys.stderr
        sys.stdout = _Tee(out, "stdout", self)  # type: ignore[assignment]
        sys.stderr = _Tee(err, "stderr", self)  # type: ignore[assignment]

        self.active = True

        def restore_streams() -> None:
            sys.stdout, sys.stderr = out, err
            self.muted = 0
            self.active = False

        self._undo.append(restore_streams)
        self._tee_logging(out, err)
        shell = self.shell
        if shell is not None:
            pub = getattr(shell, "display_pub", None)
            if pub is not None:
                self._patch(pub, "publish", self._publish_wrapper(pub.publish))
                self._patch(pub, "clear_output", self._clear_wrapper(pub.clear_output))
            hook = getattr(shell, "displayhook", None)
            if hook is not None and hasattr(hook, "write_format_data"):
                wrapped = self._muting(self._result_wrapper(hook.write_format_data))
                self._patch(hook, "write_format_data", wrapped)
                for name in _HOOK_WRITERS:
                    if hasattr(hook, name):
                        self._patch(hook, name, self._muting(getattr(hook, name)))
                if hasattr(hook, "update_user_ns"):
                    self._patch(hook, "update_user_ns", self._value_wrapper(hook.update_user_ns))
        return self

    def __exit__(self, *exc: object) -> None:
        while self._undo:
            self._undo.pop()()

    def _tee_logging(self, out: Any, err: Any) -> None:
        """Handlers made before the cell (`logging.basicConfig(stream=sys.stdout)`) hold the
        streams themselves, not `sys.stdout`: point them at the tees too while recording."""
        logging_module = sys.modules.get("logging")
        if logging_module is None:
            return
        tees = {id(out): sys.stdout, id(err): sys.stderr}
        loggers = [logging_module.getLogger()]
        loggers += [
            lg
            for lg in logging_module.Logger.manager.loggerDict.values()
            if isinstance(lg, logging_module.Logger)
        ]
        for logger in loggers:
            for handler in logger.handlers:
                stream = getattr(handler, "stream", None)
                if type(handler) is not logging_module.StreamHandler:
                    continue
                if isinstance(stream, _Tee):  # made while an earlier cell was recorded
                    stream = handler.stream = stream._stream
                if id(stream) in tees:
                    self._patch(handler, "stream", tees[id(stream)])

    def _patch(self, obj: Any, name: str, replacement: Any) -> None:
        had = name in vars(obj)
        old = vars(obj).get(name)
        setattr(obj, name, replacement)

        def undo() -> None:
            if had:
                setattr(obj, name, old)
            else:
                delattr(obj, name)

        self._undo.append(undo)

    def _muting(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.muted += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self.muted -= 1

        return wrapper

    def _publish_wrapper(self, publish: Callable[..., Any]) -> Callable[..., Any]:
        publish = self._muting(publish)

        def wrapper(
            data: Mapping[str, Any],
            metadata: Mapping[str, Any] | None = None,
            *args: Any,
            **kwargs: Any,
        ) -> Any:
            _flush()
            if _WIDGET_MIME in data:
                self.widgets = True
            if not self.muted:
                self._events.append(
                    OutputEvent(
                        "display",
                        data=dict(data),
                        metadata=dict(metadata or {}),
                        transient=kwargs.get("transient"),
                        update=bool(kwargs.get("update", False)),
                    )
                )
            return publish(data, metadata, *args, **kwargs)

        return wrapper

    def _clear_wrapper(self, clear: Callable[..., Any]) -> Callable[..., Any]:
        clear = self._muting(clear)

        def wrapper(wait: bool = False) -> Any:
            _flush()
            self._events.append(OutputEvent("clear", update=wait))
            return clear(wait)

        return wrapper

    def _result_wrapper(self, write: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(
            format_dict: Mapping[str, Any], md_dict: Mapping[str, Any] | None = None
        ) -> Any:
            if _WIDGET_MIME in format_dict:
                self.widgets = True
            self._events.append(
                OutputEvent("result", data=dict(format_dict), metadata=dict(md_dict or {}))
            )
            return write(format_dict, md_dict)

        return wrapper

    def _value_wrapper(self, update: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(result: Any) -> Any:
            self.result = result
            return update(result)

        return wrapper

    def events(self) -> tuple[OutputEvent, ...]:
        """What was recorded: adjacent writes to one stream merged, progress bars collapsed,
        widget views (which cannot outlive their kernel) left out."""
        merged: list[OutputEvent] = []
        for ev in self._events:
            if ev.kind in ("stdout", "stderr"):
                if merged and merged[-1].kind == ev.kind:
                    merged[-1] = OutputEvent(ev.kind, merged[-1].text + ev.text)
                else:
                    merged.append(ev)
                continue
            if ev.data is not None and _WIDGET_MIME in ev.data:
                data = {k: v for k, v in ev.data.items() if k != _WIDGET_MIME}
                if not data:
                    continue
                ev = OutputEvent(
                    ev.kind,
                    data=data,
                    metadata=ev.metadata,
                    transient=ev.transient,
                    update=ev.update,
                )
            merged.append(ev)
        return tuple(
            OutputEvent(ev.kind, _collapse_cr(ev.text)) if ev.kind in ("stdout", "stderr") else ev
            for ev in merged
        )


_CR = re.compile(r"[^\n]*\r(?!\n)")


def _collapse_cr(text: str) -> str:
    """Keep what a terminal would show of carriage-return progress updates."""
    return _CR.sub("", text) if "\r" in text else text


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or odd stream
            stream.flush()


def replay(events: Iterable[OutputEvent], shell: Any = None, *, result: Any = NO_RESULT) -> None:
    """Show recorded outputs again, in order (rich data through the shell when there is one);
    then, given the cell's last-expression `result`, put it in `Out` and `_` as a run would."""
    pub = getattr(shell, "display_pub", None) if shell is not None else None
    for ev in events:
        if ev.kind == "stdout":
            sys.stdout.write(ev.text)
        elif ev.kind == "stderr":
            sys.stderr.write(ev.text)
        elif ev.kind == "clear":
            _flush()
            if pub is not None:
                pub.clear_output(ev.update)
        elif ev.data is not None:
            _flush()
            if ev.kind == "result" and shell is not None and _replay_result(shell, ev):
                continue
            if pub is not None:
                kwargs: dict[str, Any] = {}
                if ev.transient:
                    kwargs["transient"] = dict(ev.transient)
                if ev.update:
                    kwargs["update"] = True
                pub.publish(dict(ev.data), dict(ev.metadata or {}), **kwargs)
            else:
                sys.stdout.write(str(ev.data.get("text/plain", "")) + "\n")
    _flush()
    if result is not NO_RESULT and shell is not None:
        _update_out(shell, result)


def _update_out(shell: Any, value: Any) -> None:
    """What the display hook does with a value besides showing it: Out[n], _, __, ___, and the
    ExecutionResult of the running cell."""
    hook = getattr(shell, "displayhook", None)
    if hook is None or not hasattr(hook, "update_user_ns"):
        return
    try:
        if hasattr(hook, "check_for_underscore"):
            hook.check_for_underscore()
        hook.update_user_ns(value)
        if hasattr(hook, "fill_exec_result"):
            hook.fill_exec_result(value)
    except Exception:
        log.debug("could not put a replayed result in Out", exc_info=True)


def _replay_result(shell: Any, ev: OutputEvent) -> bool:
    """Show a recorded last-expression value as an Out[] result through the display hook."""
    hook = getattr(shell, "displayhook", None)
    needed = ("start_displayhook", "write_output_prompt", "write_format_data", "finish_displayhook")
    if hook is None or not all(hasattr(hook, n) for n in needed):
        return False
    try:
        hook.start_displayhook()
        hook.write_output_prompt()
        hook.write_format_data(dict(ev.data or {}), dict(ev.metadata or {}))
        if hasattr(hook, "log_output"):  # the output history, as a run records it
            hook.log_output(dict(ev.data or {}))
        hook.finish_displayhook()
    except Exception:
        log.debug("could not replay a result through the display hook", exc_info=True)
        return False
    return True
