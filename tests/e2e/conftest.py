"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ..conftest import ServerProcess
from .util import Users


@pytest.fixture
async def users(server: ServerProcess) -> AsyncIterator[Users]:
    """Clients of the module's shared server, all logged out when the test ends."""
    logged = Users(server)
    yield logged
    await logged.logout_all()
