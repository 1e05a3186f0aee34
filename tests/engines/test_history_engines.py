"""The ``HistoryStore`` contract (``history.py``) on every engine: the embedded engine's SQLite
store, Redis, and a local 3-master Redis Cluster; and what each engine adds to it."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rtm2.server.engines.base import HistoryEntry
from rtm2.server.engines.sqlite import SQLiteStore
from rtm2.server.engines.sqlite_history import SQLiteHistoryStore

from .conftest import RedisHistory
from .history import HistoryContract


class SQLiteHistory:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.store: SQLiteStore | None = None
        self.sqlite: SQLiteHistoryStore | None = None

    @property
    def history(self) -> SQLiteHistoryStore:
        assert self.sqlite is not None
        return self.sqlite

    async def start(self) -> None:
        self.store = SQLiteStore(self.path)
        await self.store.open()
        self.sqlite = SQLiteHistoryStore(self.store)
        await self.sqlite.open()

    async def close(self) -> None:
        if self.sqlite is not None:
            await self.sqlite.close()
        if self.store is not None:
            await self.store.close()
        self.store = self.sqlite = None

    async def restart(self) -> None:
        await self.close()
        await self.start()


@pytest.fixture
async def sqlite_history(tmp_path: Path) -> AsyncIterator[SQLiteHistory]:
    harness = SQLiteHistory(tmp_path / "rtm2.db")
    await harness.start()
    yield harness
    await harness.close()


class TestSQLiteHistory(HistoryContract):
    @pytest.fixture
    def history(self, sqlite_history: SQLiteHistory) -> SQLiteHistory:
        return sqlite_history


def rows(path: Path, key: str) -> int:
    with sqlite3.connect(path) as db:
        count: int = db.execute("SELECT COUNT(*) FROM history WHERE key = ?", (key,)).fetchone()[0]
    return count


async def test_the_sqlite_sweep_deletes_expired_rows_within_its_budget(
    sqlite_history: SQLiteHistory,
) -> None:
    store = sqlite_history.history
    old = int(time.time() * 1000) - 60_000
    await asyncio.gather(
        *(store.append("msg:app1:room", HistoryEntry("u", b"x"), old, 0, 1000) for _ in range(250))
    )
    assert rows(sqlite_history.path, "msg:app1:room") == 250
    assert await store.sweep(lambda key: (0, 1000), 100) == 100
    assert rows(sqlite_history.path, "msg:app1:room") == 150
    assert await store.sweep(lambda key: (0, 1000), 1000) == 150
    assert rows(sqlite_history.path, "msg:app1:room") == 0
    assert await store.sweep(lambda key: (0, 1000), 1000) == 0


# --- Redis ---------------------------------------------------------------------------------


@pytest.mark.redis
class TestRedisHistory(HistoryContract):
    @pytest.fixture
    def history(self, redis_history: RedisHistory) -> RedisHistory:
        return redis_history


@pytest.mark.redis
async def test_a_redis_history_is_a_stream_in_the_channels_slot_that_expires_with_retention(
    redis_history: RedisHistory,
) -> None:
    store = redis_history.history
    now = int(time.time() * 1000)
    await store.append("msg:app1:room", HistoryEntry("u", b"x"), now, 5, 60_000)
    key = store.key("msg:app1:room")
    assert key == f"{redis_history.prefix}{{msg:app1:room}}:history"
    client = redis_history.client
    assert client is not None
    assert await client.call("TYPE", key) in (b"stream", "stream")
    assert 0 < await client.call("PTTL", key) <= 61_000 + 1000
    for _ in range(10):
        await store.append("msg:app1:room", HistoryEntry("u", b"x"), now, 5, 60_000)
    assert await client.call("XLEN", key) == 5  # MAXLEN on append
    await store.append("msg:app1:room", HistoryEntry("u", b"x"), now, 5, 0)
    assert await client.call("PTTL", key) == -1  # kept forever: no expiry


# --- Redis Cluster -------------------------------------------------------------------------


class TestRedisClusterHistory(HistoryContract):
    @pytest.fixture
    def history(self, cluster_history: RedisHistory) -> RedisHistory:
        return cluster_history
