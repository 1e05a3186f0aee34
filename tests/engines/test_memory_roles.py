"""The role contract suite (``roles.py``) run against the embedded engine (one node)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rtm2.server.engines.memory import MemoryEngine

from .roles import (
    BrokerContract,
    Node,
    NodesContract,
    PresenceStoreContract,
    StreamStoreContract,
)


class MemoryRoles:
    """A ``RolesHarness`` on one embedded engine: every node is this one."""

    def __init__(self, path: Path) -> None:
        self.engine = MemoryEngine(path)
        self.stream = self.engine.stream_store
        self.presence = self.engine.presence_store
        self.recovery = self.engine.recovery_store

    async def node(self) -> Node:
        return Node(self.engine)


@pytest.fixture
async def roles(tmp_path: Path) -> AsyncIterator[MemoryRoles]:
    harness = MemoryRoles(tmp_path)
    await harness.engine.start()
    try:
        yield harness
    finally:
        await harness.engine.close()


class TestMemoryRoles(StreamStoreContract, PresenceStoreContract, BrokerContract, NodesContract):
    pass
