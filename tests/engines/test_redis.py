"""The engine contract suites run against the Redis engine: ``contract.py`` on its RedisStore,
``roles.py`` on its stream and presence stores and brokers (each node an engine of its own).

Needs a real Redis (``RTM2_TEST_REDIS_URL``, default redis://127.0.0.1:6379/0); without one
these tests fail rather than skip, since CI starts Redis for them. Each test uses its own key
prefix and deletes its keys afterwards, so tests share the Redis but never see each other's
data. A restart closes the connection and opens a new store on a new one (Redis itself keeps
running: "durable" here means acknowledged by Redis, see ``storage``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from uuid import uuid4

import pytest

from rtm2.errors import ErrorCode
from rtm2.server.engines import base
from rtm2.server.engines.base import (
    BUS_MESSAGE,
    OP_SET,
    BusEvent,
    EngineUnavailable,
    ItemWrite,
    LockInfo,
    Metadata,
)
from rtm2.server.engines.redis.bans import RedisBanStore
from rtm2.server.engines.redis.engine import RedisEngine, RedisStore
from rtm2.server.redisio import Commands, RedisClient, Script, hash_tag, run, unescape_tag

from .bans import BanStoreContract
from .contract import ConcurrencyContract, LockContract, LockQueueContract, MetadataContract
from .roles import (
    BrokerContract,
    CrossNodeContract,
    Node,
    NodesContract,
    PresenceStoreContract,
    StreamStoreContract,
)

REDIS_URL = os.environ.get("RTM2_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

pytestmark = pytest.mark.redis


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
        return RedisBanStore(self.client, self.prefix)

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


@pytest.fixture
async def engine() -> AsyncIterator[RedisHarness]:
    harness = RedisHarness(f"rtm2test:{uuid4().hex}:")
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


class TestRedisStore(MetadataContract, LockContract, LockQueueContract, ConcurrencyContract):
    pass


@pytest.fixture
async def bans(engine: RedisHarness) -> RedisHarness:
    return engine


class TestRedisBans(BanStoreContract):
    pass


# --- Redis-specific ------------------------------------------------------------------------


def redis_hash_tag(key: bytes) -> bytes:
    """What Redis Cluster hashes of ``key`` to pick its slot."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


ODD = "msg:app1:a {b}} %7D *?[x] \\ é"  # braces, escapes and glob characters


async def test_every_key_of_a_set_and_its_locks_shares_one_hash_tag(engine: RedisHarness) -> None:
    for target in (ODD, "msg:app1:room"):
        await engine.locks.set(target, "L", 30, 10)
        await engine.locks.acquire(target, "L", "alice")
        await engine.locks.set(target, "K", 30, 10)
        await engine.locks.remove(target, "K")  # leaves nothing per name behind (one Redis)
        lock = (target, "L", "alice")
        outcome = await engine.metadata.write(
            target, OP_SET, [ItemWrite("a", "1")], -1, "", 0, lock
        )
        assert outcome.code == 0, outcome
    assert engine.client is not None
    app = engine.metadata.app_key("msg:app1:room").encode()  # a tag of the app's own
    keys = [k for k in await keys_of(engine.client, engine.prefix) if b"{" in k and app not in k]
    tags = {redis_hash_tag(key) for key in keys}
    assert len(keys) == 4  # each target's metadata set and locks
    assert tags == {hash_tag(ODD).encode(), b"msg:app1:room"}


async def test_odd_targets_and_scopes_round_trip(engine: RedisHarness) -> None:
    assert unescape_tag(hash_tag(ODD)) == ODD
    assert "{" not in hash_tag(ODD)
    assert "}" not in hash_tag(ODD)
    outcome = await engine.metadata.write(ODD, OP_SET, [ItemWrite("k", "v")], -1, "", 0)
    assert outcome.code == 0
    assert await engine.metadata.read(ODD) == outcome.metadata
    assert await engine.metadata.read("msg:app1:a {b}") == Metadata(0, {})
    await engine.locks.set(ODD, "L", 30, 10)
    await engine.locks.acquire(ODD, "L", "alice")
    await engine.restart()
    assert await engine.locks.held() == [(ODD, LockInfo("L", 30, "alice", 1))]


async def test_held_finds_no_lock_of_another_prefix(engine: RedisHarness) -> None:
    other = RedisHarness(engine.prefix + "other:")
    await other.start()
    try:
        await other.locks.set("msg:app1:room", "L", 30, 10)
        await other.locks.acquire("msg:app1:room", "L", "alice")
        assert await engine.locks.held() == []
    finally:
        await other.close()


def test_a_prefix_with_braces_is_refused() -> None:
    with pytest.raises(ValueError, match="braces"):
        RedisStore(RedisClient(REDIS_URL), "rtm2:{x}:")


async def test_a_script_unknown_to_redis_is_sent_whole(engine: RedisHarness) -> None:
    assert engine.client is not None
    script = Script("probe", f"-- {uuid4().hex}\nreturn ARGV[1]")
    assert await engine.client.call("SCRIPT", "EXISTS", script.sha) == [0]
    assert await run(engine.client, script, [], ["hi"]) == b"hi"
    assert await engine.client.call("SCRIPT", "EXISTS", script.sha) == [1]


async def test_without_redis_changes_answer_not_available(engine: RedisHarness) -> None:
    assert engine.client is not None
    await engine.client.close()
    outcome = await engine.metadata.write("msg:app1:room", OP_SET, [ItemWrite("a")], -1, "", 0)
    assert outcome.code == ErrorCode.STORAGE_NOT_AVAILABLE
    assert (await engine.locks.set("msg:app1:room", "L", 30, 10)).code == (
        ErrorCode.LOCK_NOT_AVAILABLE
    )
    assert (await engine.locks.acquire("msg:app1:room", "L", "a")).code == (
        ErrorCode.LOCK_NOT_AVAILABLE
    )


async def test_without_redis_every_store_and_the_broker_raise_engine_unavailable(
    engine: RedisHarness,
) -> None:
    redis = RedisEngine(f"{REDIS_URL}?prefix={engine.prefix}")
    broker = redis.make_broker(lambda subject, event: None, lambda subject: None)
    await redis.start()
    await redis.close()
    event = BusEvent(BUS_MESSAGE, "", "u", b"\x00" * 8)
    with pytest.raises(EngineUnavailable):
        broker.publish_message("msg:app1:c", event, 10, 60)
    with pytest.raises(EngineUnavailable):
        broker.publish("msg:app1:c", event)
    with pytest.raises(EngineUnavailable):
        await broker.publish_counted("msg:app1:c", event)
    with pytest.raises(EngineUnavailable):
        await redis.stream_store.join("app1", "c", "u", "n-1", 10)
    with pytest.raises(EngineUnavailable):
        await redis.presence_store.members("msg:app1:c")
    with pytest.raises(EngineUnavailable):
        await redis.recovery_store.position("msg:app1:c", "")
    with pytest.raises(EngineUnavailable):
        await redis.metadata_store.read("msg:app1:c")
    with pytest.raises(EngineUnavailable):
        await redis.lock_store.locks("msg:app1:c")


# --- the shared roles: stream, presence, broker (``roles.py``) ------------------------------


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

    async def node(self) -> Node:
        engine = RedisEngine(self.url)
        node = Node(engine)
        await engine.start()
        self.engines.append(engine)
        return node

    async def close(self) -> None:
        for engine in self.engines:
            await engine.close()


@pytest.fixture
async def roles() -> AsyncIterator[RedisRoles]:
    prefix = f"rtm2test:{uuid4().hex}:"
    harness = RedisRoles(f"{REDIS_URL}?prefix={prefix}")
    await harness.base.start()
    try:
        yield harness
    finally:
        await harness.close()
        cleaner = RedisClient(REDIS_URL)
        await cleaner.connect()
        try:
            keys = await keys_of(cleaner, prefix)
            if keys:
                await cleaner.call("DEL", *keys)
        finally:
            await cleaner.close()


class TestRedisRoles(
    StreamStoreContract, PresenceStoreContract, BrokerContract, CrossNodeContract, NodesContract
):
    pass


async def test_removed_locks_keep_a_bounded_number_of_fences_by_name(
    engine: RedisHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "FENCES_KEPT", 3)
    for i in range(10):  # each L starts at the floor (0, rising to 2 as fences are forgotten)
        scope = f"msg:app1:room{i}"
        assert (await engine.locks.set(scope, "L", 30, 10)).code == 0
        assert (await engine.locks.acquire(scope, "L", "alice")).code == 0
        assert (await engine.locks.remove(scope, "L")).code == 0
    assert engine.client is not None
    app = engine.metadata.app_key("msg:app1:room0")
    assert sorted(await keys_of(engine.client, engine.prefix)) == [
        k.encode() for k in (app, f"{app}:fences", f"{app}:removed")
    ]
    assert await engine.client.call("HLEN", f"{app}:fences") == 3
    for i, fence in ((0, 3), (9, 4)):  # forgotten (starts at the floor); kept (goes on)
        assert (await engine.locks.set(f"msg:app1:room{i}", "L", 30, 10)).code == 0
        acquired = await engine.locks.acquire(f"msg:app1:room{i}", "L", "bob")
        assert acquired.lock == LockInfo("L", 30, "bob", fence)
    assert await engine.client.call("HLEN", f"{app}:fences") == 2
