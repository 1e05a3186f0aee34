"""The engine contract suite (``contract.py``) run against the embedded engine's SQLiteStore.

One ``SQLiteStore`` implements both ``MetadataStore`` and ``LockStore``; a restart closes it
and opens a new one on the same database file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rtm2.server.engines.sqlite import SQLiteStore

from .contract import ConcurrencyContract, LockContract, LockQueueContract, MetadataContract


class SQLiteHarness:
    """An ``EngineHarness`` over one SQLite database file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store: SQLiteStore | None = None

    @property
    def metadata(self) -> SQLiteStore:
        assert self.store is not None
        return self.store

    @property
    def locks(self) -> SQLiteStore:
        return self.metadata

    async def start(self) -> None:
        self.store = SQLiteStore(self.path)
        await self.store.open()

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()
            self.store = None

    async def restart(self) -> None:
        await self.close()
        await self.start()


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[SQLiteHarness]:
    harness = SQLiteHarness(tmp_path / "rtm2.db")
    await harness.start()
    yield harness
    await harness.close()


class TestSQLiteStore(MetadataContract, LockContract, LockQueueContract, ConcurrencyContract):
    pass
