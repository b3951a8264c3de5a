"""The circuit breaker: a backoff that starts short, write refusals that spare reads, and one
outage counted (and logged) once."""

from __future__ import annotations

import errno
import logging
import sqlite3

import pytest

from tore_nb import breaker
from tore_nb.breaker import FIRST_PROBE, Breaker, refuses_writes
from tore_nb.errors import TierUnavailable, TierWriteError


def test_the_first_probe_comes_soon_and_the_pause_doubles_while_probes_fail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr(breaker.time, "monotonic", lambda: clock[0])
    b = Breaker("redis", threshold=1, reset=15)
    pauses = []
    for _ in range(8):
        b.failure(TierUnavailable("down"))
        t0 = clock[0]
        while not b.allow():  # the probe is handed out once its pause is over
            clock[0] += 0.125
        pauses.append(clock[0] - t0)
    assert pauses == [FIRST_PROBE, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]
    b.success()  # back: the next outage starts with a short pause again
    b.failure(TierUnavailable("down again"))
    assert b.state == "open"
    clock[0] += FIRST_PROBE
    assert b.allow() and b.state == "half-open"


def test_a_zero_reset_probes_at_the_next_call() -> None:
    b = Breaker("disk", threshold=1, reset=0)
    b.failure(TierUnavailable("down"))
    assert b.allow()


@pytest.mark.parametrize(
    "exc",
    [
        TierWriteError("redis refuses writes: OOM command not allowed"),
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EROFS, "Read-only file system"),
        sqlite3.OperationalError("database or disk is full"),
        sqlite3.OperationalError("attempt to write a readonly database"),
    ],
)
def test_a_write_refused_for_room_or_permission_stops_writes_not_reads(exc: Exception) -> None:
    """A full disk used to open the whole tier at the first failing delete."""
    try:  # as a tier raises it: its own error, caused by the system's
        raise TierUnavailable(f"disk cache: {exc}") from exc
    except TierUnavailable as wrapped:
        assert refuses_writes(wrapped)
        b = Breaker("disk", threshold=1, reset=60)
        b.failure(wrapped, write=True)
    assert b.state == "read-only" and b.allow() and not b.allow(write=True)


@pytest.mark.parametrize(
    "exc", [TierUnavailable("redis: ConnectionError"), TimeoutError(), sqlite3.DatabaseError()]
)
def test_an_unreachable_tier_stops_reads_even_when_a_write_found_it(exc: Exception) -> None:
    assert not refuses_writes(exc)
    b = Breaker("redis", threshold=1, reset=60)
    b.failure(exc, write=True)
    assert b.state == "open" and not b.allow()


def test_a_read_failure_is_never_a_write_refusal() -> None:
    b = Breaker("disk", threshold=1, reset=60)
    b.failure(TierUnavailable("disk cache: database or disk is full"))  # from a read
    assert b.state == "open"


def test_an_outage_is_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    b = Breaker("redis", threshold=1, reset=0)
    with caplog.at_level(logging.WARNING, logger="tore_nb"):
        for _ in range(5):  # probes fail: the same outage
            assert b.allow()
            b.failure(TierUnavailable("down"))
        assert b.outages == 1
        b.success()
        b.failure(TierUnavailable("down again"))
    assert b.outages == 2
    assert sum("unavailable" in r.message for r in caplog.records) == 2
