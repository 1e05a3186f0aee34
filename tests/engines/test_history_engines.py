"""The ``HistoryStore`` contract (``history.py``) on every engine: the embedded engine's SQLite
store, Redis, and a local 3-master Redis Cluster; and what each engine adds to it."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from rtm2.server.engines.base import HistoryEntry
from rtm2.server.engines.redis.history import RedisHistoryStore
from rtm2.server.engines.sqlite import SQLiteStore
from rtm2.server.engines.sqlite_history import SQLiteHistoryStore
from rtm2.server.redisio import Commands, RedisClient, RedisClusterClient

from ..redis_cluster import LocalCluster, local_cluster
from .history import HistoryContract
from .test_redis import REDIS_URL, keys_of


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


class RedisHistory:
    def __init__(self, prefix: str, make_client: type[Commands] | None, url: str) -> None:
        self.prefix = prefix
        self.url = url
        self.make = make_client or RedisClient
        self.client: Commands | None = None
        self.redis: RedisHistoryStore | None = None

    @property
    def history(self) -> RedisHistoryStore:
        assert self.redis is not None
        return self.redis

    async def start(self) -> None:
        self.client = self.make(self.url)  # type: ignore[call-arg]
        self.redis = RedisHistoryStore(self.client, self.prefix)  # preloads before connecting
        await self.client.connect()

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
        self.client = self.redis = None

    async def restart(self) -> None:
        await self.close()
        await self.start()


@pytest.fixture
async def redis_history() -> AsyncIterator[RedisHistory]:
    harness = RedisHistory(f"rtm2test:{uuid4().hex}:", None, REDIS_URL)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.close()
        cleaner = RedisClient(REDIS_URL)
        await cleaner.connect()
        try:
            keys = await keys_of(cleaner, harness.prefix)
            if keys:
                await cleaner.call("DEL", *keys)
        finally:
            await cleaner.close()


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


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with local_cluster(tmp_path_factory.mktemp("history-cluster")) as running:
        yield running


@pytest.fixture
async def cluster_history(cluster: LocalCluster) -> AsyncIterator[RedisHistory]:
    harness = RedisHistory(f"rtm2test:{uuid4().hex}:", RedisClusterClient, cluster.url)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.close()


class TestRedisClusterHistory(HistoryContract):
    @pytest.fixture
    def history(self, cluster_history: RedisHistory) -> RedisHistory:
        return cluster_history
