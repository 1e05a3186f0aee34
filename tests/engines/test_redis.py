"""The engine contract suites run against the Redis engine: ``contract.py`` on its RedisStore,
``roles.py`` on its stream and presence stores and brokers (each node an engine of its own);
the harnesses and fixtures are in ``conftest.py``, shared with the Redis Cluster suites.

Needs a real Redis (``RTM2_TEST_REDIS_URL``, default redis://127.0.0.1:6379/0); without one
these tests fail rather than skip, since CI starts Redis for them. Each test uses its own key
prefix and deletes its keys afterwards, so tests share the Redis but never see each other's
data. A restart closes the connection and opens a new store on a new one (Redis itself keeps
running: "durable" here means acknowledged by Redis, see ``storage``).
"""

from __future__ import annotations

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
from rtm2.server.engines.redis.engine import RedisEngine, RedisStore
from rtm2.server.redisio import RedisClient, Script, hash_tag, run, unescape_tag

from .bans import BanStoreContract
from .conftest import REDIS_URL, RedisHarness, RedisRoles, keys_of
from .contract import ConcurrencyContract, LockContract, LockQueueContract, MetadataContract
from .roles import (
    BrokerContract,
    CrossNodeContract,
    NodesContract,
    PresenceStoreContract,
    StreamStoreContract,
)

pytestmark = pytest.mark.redis


@pytest.fixture
def engine(redis_engine: RedisHarness) -> RedisHarness:
    return redis_engine


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


@pytest.fixture
def roles(redis_roles: RedisRoles) -> RedisRoles:
    return redis_roles


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
