"""The fault-injection suite: each scenario records its figures, printed as one table at the end.

python -m pytest tests/reliability -q        # the figures table closes the run
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tore_nb import MultiLevelCache

FIGURES: list[Figures] = []


@dataclass
class Figures:
    """What one scenario did and saw."""

    scenario: str
    operations: int = 0
    faults: int = 0
    corrupt_reads: int = 0
    exceptions: int = 0
    longest_call_s: float = 0.0
    rejected: int = 0
    warnings: int = 0
    notes: list[str] = field(default_factory=list)

    def timed(self, fn: Callable[[], Any]) -> Any:
        """Run one cache call, counting it, its duration and any exception."""
        t0 = time.monotonic()
        try:
            return fn()
        except Exception:
            self.exceptions += 1
            raise
        finally:
            self.operations += 1
            self.longest_call_s = max(self.longest_call_s, time.monotonic() - t0)


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    f = Figures(request.node.name.removeprefix("test_"))
    yield f
    FIGURES.append(f)


@pytest.fixture
def outage_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="tore_nb")
    return caplog


def outage_warnings(caplog: pytest.LogCaptureFixture) -> int:
    return sum(
        1
        for r in caplog.records
        if r.levelno >= logging.WARNING
        and any(w in r.getMessage() for w in ("unavailable", "refuses writes", "disabled"))
    )


def expected(i: int) -> dict[str, Any]:
    """The value a workload computes for item i (the ground truth a cache must reproduce)."""
    return {"i": i, "square": i * i, "text": f"item-{i}" * 3}


def workload(
    cache: MultiLevelCache,
    figures: Figures,
    n: int,
    offset: int = 0,
    between: Callable[[int], None] | None = None,
) -> int:
    """Read-through computation of n items; returns how many were cache hits. Every result is
    checked against the ground truth, so a wrong value fails the scenario."""
    hits = 0
    for i in range(offset, offset + n):
        if between is not None:
            between(i)
        key = f"item:{i % 50}"
        got = figures.timed(lambda k=key: cache.get(k))
        if got is not None:
            if got != expected(i % 50):
                figures.corrupt_reads += 1
            hits += 1
            continue
        figures.timed(lambda k=key, j=i: cache.set(k, expected(j % 50)))
    return hits


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    tr = terminalreporter
    tr.write_sep("=", "tore_nb reliability figures")
    head = (
        f"{'scenario':46} {'ops':>7} {'faults':>6} {'corrupt':>7} {'exc':>4} "
        f"{'longest s':>9} {'rejected':>8} {'warn':>4}"
    )
    tr.write_line(head)
    for f in FIGURES:
        tr.write_line(
            f"{f.scenario[:46]:46} {f.operations:7d} {f.faults:6d} {f.corrupt_reads:7d} "
            f"{f.exceptions:4d} {f.longest_call_s:9.3f} {f.rejected:8d} {f.warnings:4d}"
        )
        for note in f.notes:
            tr.write_line(f"    {note}")
    tot = sum(f.operations for f in FIGURES)
    tr.write_line(
        f"total: {tot} operations, {sum(f.faults for f in FIGURES)} faults injected, "
        f"{sum(f.corrupt_reads for f in FIGURES)} corrupt reads, "
        f"{sum(f.exceptions for f in FIGURES)} exceptions, longest call "
        f"{max(f.longest_call_s for f in FIGURES):.3f} s, "
        f"{sum(f.rejected for f in FIGURES)} tampered entries rejected"
    )
