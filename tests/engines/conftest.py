"""The Redis and Redis Cluster fixtures of the engine suites, shared by every module here: a
harness per contract (``contract.py`` and ``bans.py``: ``RedisHarness``; ``roles.py``:
``RedisRoles``; ``history.py``: ``RedisHistory``), each on a key prefix of the test's own.

On the Redis of ``RTM2_TEST_REDIS_URL`` (default redis://127.0.0.1:6379/0), shared with other
test runs, ``redis_prefix`` deletes the test's keys afterwards; the Redis Cluster is the
session's throwaway one (``cluster`` in tests/conftest.py), so nothing is deleted there.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Protocol, TypeVar
from uuid import uuid4

import pytest

from rtm2.server.engines.redis.bans import RedisBanStore
from rtm2.server.engines.redis.engine import RedisEngine, RedisStore
from rtm2.server.engines.redis.history import RedisHistoryStore
from rtm2.server.redisio import Commands, RedisClient, RedisClusterClient

from ..redis_cluster import LocalCluster
from .roles import Node

__all__ = [
    "REDIS_URL",
    "RedisHarness",
    "RedisHistory",
    "RedisRoles",
    "delete_keys",
    "keys_of",
    "new_prefix",
]

REDIS_URL = os.environ.get("RTM2_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class RedisHarness:
    """An ``EngineHarness`` over one key prefix of a real Redis (or, given ``make_client``
    making a cluster client, of a Redis Cluster)."""

    def __init__(
        self, prefix: str, make_client: Callable[[], Commands] | None = None, cluster: bool = False
    ) -> None:
        self.prefix = prefix
        self.make_client = make_client or (lambda: RedisClient(REDIS_URL))
        self.cluster = cluster
        self.client: Commands | None = None
        self.store: RedisStore | None = None

    @property
    def metadata(self) -> RedisStore:
        assert self.store is not None
        return self.store

    @property
    def locks(self) -> RedisStore:
        return self.metadata

    @property
    def bans(self) -> RedisBanStore:
        """A ``BanHarness`` too: a restart is a new connection, as a node started later."""
        assert self.client is not None
        return RedisBanStore(self.client, self.prefix, cluster=self.cluster)

    async def start(self) -> None:
        self.client = self.make_client()
        await self.client.connect()
        self.store = RedisStore(self.client, self.prefix, self.cluster)
        await self.store.open()

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
        self.client = self.store = None

    async def restart(self) -> None:
        await self.close()
        await self.start()


async def keys_of(client: RedisClient, prefix: str) -> list[bytes]:
    """Every key under ``prefix`` (which must hold no glob characters)."""
    keys: list[bytes] = []
    cursor: bytes | int = 0
    while True:
        cursor, found = await client.call("SCAN", cursor, "MATCH", f"{prefix}*", "COUNT", 1000)
        keys += found
        if cursor in (b"0", 0):
            return keys


class RedisRoles:
    """A ``RolesHarness`` over one key prefix: each ``node()`` is an engine of its own, as
    each server node has."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.base = RedisEngine(url)
        self.stream = self.base.stream_store
        self.presence = self.base.presence_store
        self.recovery = self.base.recovery_store
        self.engines = [self.base]

    async def start(self) -> None:
        await self.base.start()

    async def node(self) -> Node:
        engine = RedisEngine(self.url)
        node = Node(engine)
        await engine.start()
        self.engines.append(engine)
        return node

    async def close(self) -> None:
        for engine in self.engines:
            await engine.close()


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


def new_prefix() -> str:
    """A key prefix no other test uses."""
    return f"rtm2test:{uuid4().hex}:"


async def delete_keys(prefix: str) -> None:
    """Delete every key under ``prefix`` on the shared Redis."""
    cleaner = RedisClient(REDIS_URL)
    await cleaner.connect()
    try:
        keys = await keys_of(cleaner, prefix)
        if keys:
            await cleaner.call("DEL", *keys)
    finally:
        await cleaner.close()


class _Harness(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...


H = TypeVar("H", bound=_Harness)


@asynccontextmanager
async def started(harness: H) -> AsyncIterator[H]:
    await harness.start()
    try:
        yield harness
    finally:
        await harness.close()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of the test's own on the shared Redis, emptied when the test ends."""
    prefix = new_prefix()
    try:
        yield prefix
    finally:
        await delete_keys(prefix)


@pytest.fixture
async def redis_engine(redis_prefix: str) -> AsyncIterator[RedisHarness]:
    async with started(RedisHarness(redis_prefix)) as harness:
        yield harness


@pytest.fixture
async def cluster_engine(cluster: LocalCluster) -> AsyncIterator[RedisHarness]:
    harness = RedisHarness(new_prefix(), lambda: RedisClusterClient(cluster.url), cluster=True)
    async with started(harness):
        yield harness


@pytest.fixture
async def redis_roles(redis_prefix: str) -> AsyncIterator[RedisRoles]:
    async with started(RedisRoles(f"{REDIS_URL}?prefix={redis_prefix}")) as harness:
        yield harness


@pytest.fixture
async def cluster_roles(cluster: LocalCluster) -> AsyncIterator[RedisRoles]:
    async with started(RedisRoles(f"{cluster.url}?prefix={new_prefix()}")) as harness:
        yield harness


@pytest.fixture
async def redis_history(redis_prefix: str) -> AsyncIterator[RedisHistory]:
    async with started(RedisHistory(redis_prefix, None, REDIS_URL)) as harness:
        yield harness


@pytest.fixture
async def cluster_history(cluster: LocalCluster) -> AsyncIterator[RedisHistory]:
    async with started(RedisHistory(new_prefix(), RedisClusterClient, cluster.url)) as harness:
        yield harness
