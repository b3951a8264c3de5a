"""One fork server for the whole test session (started on first use)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .harness import ForkServer


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForkServer]:
    root = tmp_path_factory.mktemp("differential")
    server = ForkServer(root).start()
    try:
        yield server
    finally:
        server.close()
