"""An incremental run as one row per page: its change status and how each stage was served.

`page_rows` folds a `RunResult`'s report events (one per page and stage) into `PageRow`s, the
plain data that the change report and the run progress both draw from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..incremental.processor import RunResult


@dataclass(frozen=True)
class PageRow:
    """One page of one document in a run: its change status and how each stage was served."""

    document: str
    path: str
    page: int | None
    status: str
    old_position: int | None
    new_position: int | None
    identity: str
    served: Mapping[str, str]
    seconds: float
    error: str | None


def page_rows(run: RunResult) -> list[PageRow]:
    """The run's report events folded to one row per page (stages as columns)."""
    rows: dict[tuple[str, int | None, int | None], dict[str, Any]] = {}
    for e in run.events:
        key = (e.path, e.new_position, e.old_position)
        row = rows.setdefault(
            key,
            {
                "document": e.document,
                "path": e.path,
                "page": e.page,
                "status": e.status,
                "old_position": e.old_position,
                "new_position": e.new_position,
                "identity": e.identity,
                "served": {},
                "seconds": 0.0,
                "error": None,
            },
        )
        if e.stage is not None:
            row["served"][e.stage] = e.served_by
        row["seconds"] += e.seconds
        if e.error and not row["error"]:
            row["error"] = f"{e.stage}: {e.error}"
    return [PageRow(**r) for r in rows.values()]
