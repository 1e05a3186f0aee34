"""The Redis ban store's notices (one Redis): a login of a user never banned costs no GET once
the store follows the notices, a ban set through another node is known here as its notice
arrives, and a ban lifted through another node lets the user in here at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from rtm2.server.engines.redis import bans as redis_bans
from rtm2.server.engines.redis.bans import RedisBanStore
from rtm2.server.redisio import RedisClient

from .conftest import REDIS_URL

pytestmark = pytest.mark.redis

APP = "ab" * 16
Start = Callable[[], Awaitable[RedisBanStore]]


@pytest.fixture
async def node(redis_prefix: str) -> AsyncIterator[Start]:
    """Starts a node's ban store (a client of its own) on the test's key prefix."""
    started: list[tuple[RedisClient, RedisBanStore]] = []

    async def start() -> RedisBanStore:
        client = RedisClient(REDIS_URL)
        await client.connect()
        store = RedisBanStore(client, redis_prefix, REDIS_URL)
        started.append((client, store))
        await store.start()
        return store

    yield start
    for client, store in started:
        await store.close()
        await client.close()


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "not within the deadline"
        await asyncio.sleep(0.01)


async def trusted(store: RedisBanStore) -> None:
    async def check() -> bool:
        return store.trusted

    await until(check)


async def test_a_login_of_a_user_never_banned_asks_redis_nothing_once_notices_are_followed(
    node: Start,
) -> None:
    a = await node()
    await trusted(a)
    reads = a.reads
    assert [await a.banned_until(APP, f"user{i}") for i in range(100)] == [None] * 100
    assert a.reads == reads


async def test_a_ban_through_another_node_is_known_here_and_its_lift_at_once(
    node: Start,
) -> None:
    a, b = await node(), await node()
    await trusted(a)
    await b.ban(APP, "troll", int(time.time() * 1000) + 60_000, "spam")

    async def banned() -> bool:
        return await a.banned_until(APP, "troll") is not None

    await until(banned)  # its notice arrived
    assert await b.unban(APP, "troll")
    assert await a.banned_until(APP, "troll") is None  # at once: a suspect's login asks Redis

    async def no_suspect() -> bool:
        reads = a.reads
        assert await a.banned_until(APP, "troll") is None
        return a.reads == reads

    await until(no_suspect)  # once the lift's notice is in too, its logins ask nothing


async def test_a_ban_set_before_the_store_started_is_found_by_its_scan(node: Start) -> None:
    b = await node()
    await b.ban(APP, "old: {troll}*", int(time.time() * 1000) + 60_000, "spam")
    a = await node()
    await trusted(a)
    ban = await a.banned_until(APP, "old: {troll}*")
    assert ban is not None
    assert ban.reason == "spam"


async def test_a_store_that_hears_nothing_for_too_long_asks_redis_at_every_login(
    node: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await node()
    await trusted(a)
    monkeypatch.setattr(redis_bans, "TRUST_SECONDS", 0.0)
    reads = a.reads
    assert await a.banned_until(APP, "someone") is None
    assert a.reads == reads + 1
