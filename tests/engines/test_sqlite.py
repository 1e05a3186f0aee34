"""The engine contract suite (``contract.py``) run against the embedded engine's SQLiteStore.

One ``SQLiteStore`` implements both ``MetadataStore`` and ``LockStore``; a restart closes it
and opens a new one on the same database file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rtm2.server.engines import base
from rtm2.server.engines.bans import SQLiteBanStore
from rtm2.server.engines.base import LockInfo
from rtm2.server.engines.sqlite import SQLiteStore

from .bans import BanStoreContract
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


async def test_removed_locks_keep_a_bounded_number_of_fences_by_name(
    engine: SQLiteHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "FENCES_KEPT", 3)
    for i in range(10):  # each L starts at the floor (0, rising to 2 as fences are forgotten)
        scope = f"msg:app1:room{i}"
        assert (await engine.locks.set(scope, "L", 30, 10)).code == 0
        assert (await engine.locks.acquire(scope, "L", "alice")).code == 0
        assert (await engine.locks.remove(scope, "L")).code == 0
    await engine.restart()
    assert engine.store is not None
    with sqlite3.connect(engine.path) as db:
        assert db.execute("SELECT COUNT(*) FROM lock_fences").fetchone() == (3,)
    for i in (0, 9):  # forgotten (starts at the floor), and kept (goes on from its own)
        assert (await engine.locks.set(f"msg:app1:room{i}", "L", 30, 10)).code == 0
        acquired = await engine.locks.acquire(f"msg:app1:room{i}", "L", "bob")
        assert acquired.lock is not None
        assert acquired.lock.fence == (3 if i == 0 else 4)  # room0 had 1, room9 3
    assert (await engine.locks.set("msg:app2:room", "L", 30, 10)).code == 0
    assert (await engine.locks.acquire("msg:app2:room", "L", "bob")).lock == LockInfo(
        "L", 30, "bob", 1
    )


async def test_fences_of_an_older_database_beyond_the_bound_fold_into_the_apps_floor(
    engine: SQLiteHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "FENCES_KEPT", 1)
    await engine.close()
    with sqlite3.connect(engine.path) as db:
        db.executemany(
            "INSERT INTO lock_fences VALUES (?, ?, ?)",
            [("msg:app1:a", "L", 7), ("msg:app1:b", "L", 3), ("msg:app2:a", "L", 2)],
        )
    await engine.start()
    with sqlite3.connect(engine.path) as db:
        assert db.execute("SELECT COUNT(*) FROM lock_fences").fetchone() == (2,)
    for scope, fence in (("msg:app1:b", 4), ("msg:app1:c", 8), ("msg:app2:a", 3)):
        assert (await engine.locks.set(scope, "L", 30, 10)).code == 0
        acquired = await engine.locks.acquire(scope, "L", "alice")
        assert acquired.lock is not None
        assert acquired.lock.fence == fence


# --- bans ----------------------------------------------------------------------------------


class SQLiteBans:
    """A ``BanHarness``: the ban store beside a SQLiteStore, on one database file."""

    def __init__(self, path: Path) -> None:
        self.store = SQLiteHarness(path)
        self.bans: SQLiteBanStore = SQLiteBanStore(SQLiteStore(path))

    async def start(self) -> None:
        await self.store.start()
        assert self.store.store is not None
        self.bans = SQLiteBanStore(self.store.store)
        await self.bans.open()

    async def restart(self) -> None:
        await self.store.close()
        await self.start()


@pytest.fixture
async def bans(tmp_path: Path) -> AsyncIterator[SQLiteBans]:
    harness = SQLiteBans(tmp_path / "rtm2.db")
    await harness.start()
    yield harness
    await harness.store.close()


class TestSQLiteBans(BanStoreContract):
    pass
