"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ..conftest import ServerProcess
from .nodes import redis_nodes
from .util import Users


@pytest.fixture
async def users(server: ServerProcess) -> AsyncIterator[Users]:
    """Clients of the module's shared server, all logged out when the test ends."""
    logged = Users(server)
    yield logged
    await logged.logout_all()


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two nodes sharing a Redis: a serves the HTTP API, b only WebSockets."""
    with redis_nodes(tmp_path) as started:
        yield started.start("a", http=True), started.start("b")
