"""Message numbering and recovery buffers, the same contract on every engine.

``Broker.publish_message`` numbers the messages of each (subject, topic) with offsets that only
grow, delivers them in order, and ``RecoveryStore`` tells where a topic is and what came after
an offset (or that it cannot tell). The Redis engine also keeps the messages, for clients that
come back on another node; the embedded engine leaves keeping to the node.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from rtm2.protocol.codec import encode
from rtm2.protocol.frames import StreamMessage
from rtm2.server.engines.base import (
    BUS_MESSAGE,
    UNNUMBERED,
    Broker,
    BusEvent,
    Engine,
    frame_offset,
    numbered,
)
from rtm2.server.engines.memory import MemoryEngine
from rtm2.server.engines.redis.engine import RedisEngine

from .conftest import REDIS_URL, delete_keys, keys_of, new_prefix

SUBJECT = "stream:app1:room {x}"  # braces: the channel's hash tag must survive them
TOPIC = "t"


class Rig:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.received: list[tuple[str, BusEvent]] = []
        self.gaps = 0
        self.broker: Broker = engine.make_broker(self._on, self._gap)

    def _on(self, subject: str, event: BusEvent) -> None:
        self.received.append((subject, event))

    def _gap(self) -> None:
        self.gaps += 1

    def publish(self, payload: str, keep: int = 100, seconds: float = 30.0) -> None:
        frame = encode(StreamMessage("room", TOPIC, "alice", payload.encode(), offset=UNNUMBERED))
        event = BusEvent(BUS_MESSAGE, TOPIC, "alice", frame)
        self.broker.publish_message(SUBJECT, event, keep, seconds)

    async def until(self, count: int) -> list[BusEvent]:
        async with asyncio.timeout(5):
            while len(self.received) < count:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        return [event for _, event in self.received]


@contextlib.asynccontextmanager
async def running(kind: str, tmp_path: Path) -> AsyncIterator[Rig]:
    """A started engine ("memory" or "redis", in a key prefix of its own) subscribed to
    SUBJECT; closed and its Redis keys deleted afterwards."""
    prefix = new_prefix()
    engine: Engine
    if kind == "memory":
        engine = MemoryEngine(tmp_path)
    else:
        engine = RedisEngine(f"{REDIS_URL}?prefix={prefix}")
    rig = Rig(engine)
    await engine.start()
    rig.broker.subscribe(SUBJECT)
    await rig.broker.ready(SUBJECT)
    try:
        yield rig
    finally:
        await engine.close()
        if kind == "redis":
            await delete_keys(prefix)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    async with running(request.param, tmp_path) as started:
        yield started


def decoded(event: BusEvent) -> StreamMessage:
    return msgspec.msgpack.decode(event.frame, type=StreamMessage)


def test_numbering_overwrites_only_the_offset_of_a_frame() -> None:
    frame = encode(StreamMessage("c", "t", "u", b"p", 0, "", 7, 8, UNNUMBERED))
    again = msgspec.msgpack.decode(numbered(frame, 42), type=StreamMessage)
    assert again == StreamMessage("c", "t", "u", b"p", 0, "", 7, 8, 42)
    assert frame_offset(numbered(frame, 42)) == 42


async def test_messages_arrive_in_order_numbered_one_after_another(rig: Rig) -> None:
    for i in range(20):
        rig.publish(f"m{i}")
    events = await rig.until(20)
    messages = [decoded(e) for e in events]
    assert [m.payload for m in messages] == [f"m{i}".encode() for i in range(20)]
    offsets = [m.offset for m in messages]
    assert offsets == list(range(offsets[0], offsets[0] + 20))
    assert 0 < offsets[0] < UNNUMBERED
    assert await rig.engine.recovery_store.position(SUBJECT, TOPIC) == offsets[-1]
    assert await rig.engine.recovery_store.position(SUBJECT, "other") == 0


async def test_nothing_is_missed_after_the_newest_offset(rig: Rig) -> None:
    rig.publish("m")
    last = decoded((await rig.until(1))[0]).offset
    store = rig.engine.recovery_store
    assert await store.since(SUBJECT, TOPIC, last, 1000, 30) == []
    assert await store.since(SUBJECT, "never used", 0, 1000, 30) == []


async def test_what_came_after_an_offset_is_either_all_there_in_order_or_refused(
    rig: Rig,
) -> None:
    for i in range(10):
        rig.publish(f"m{i}")
    events = await rig.until(10)
    first = decoded(events[0]).offset
    after = await rig.engine.recovery_store.since(SUBJECT, TOPIC, first + 4, 1000, 30)
    if after is not None:  # an engine may leave keeping messages to the node
        assert [decoded(e).payload for e in after] == [f"m{i}".encode() for i in range(5, 10)]
        assert [e.frame for e in after] == [e.frame for e in events[5:]]
    # Before anything kept: never a partial answer.
    assert await rig.engine.recovery_store.since(SUBJECT, TOPIC, first - 2, 1000, 30) is None


# --- what the Redis engine keeps ---------------------------------------------------------------


@pytest.fixture
async def redis_rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with running("redis", tmp_path) as started:
        yield started


@pytest.mark.redis
async def test_redis_keeps_the_newest_messages_up_to_the_apps_limit(redis_rig: Rig) -> None:
    for i in range(300):
        redis_rig.publish(f"m{i}", keep=50)
    events = await redis_rig.until(300)
    first = decoded(events[0]).offset
    store = redis_rig.engine.recovery_store
    recent = await store.since(SUBJECT, TOPIC, first + 289, 50, 30)
    assert recent is not None
    assert [e.frame for e in recent] == [e.frame for e in events[290:]]
    newest_50 = await store.since(SUBJECT, TOPIC, first + 249, 50, 30)
    assert newest_50 is not None
    assert [e.frame for e in newest_50] == [e.frame for e in events[250:]]
    # Exactly the limit counts, though Redis may hold a few more (approximate trimming).
    assert await store.since(SUBJECT, TOPIC, first + 248, 50, 30) is None
    assert await store.since(SUBJECT, TOPIC, first, 50, 30) is None


@pytest.mark.redis
async def test_redis_keeps_nothing_when_the_app_keeps_nothing(redis_rig: Rig) -> None:
    redis_rig.publish("a", keep=0)
    redis_rig.publish("b", keep=0)
    first = decoded((await redis_rig.until(2))[0]).offset
    assert await redis_rig.engine.recovery_store.since(SUBJECT, TOPIC, first, 1000, 30) is None


@pytest.mark.redis
async def test_redis_drops_messages_older_than_the_apps_seconds(redis_rig: Rig) -> None:
    redis_rig.publish("old")
    first = decoded((await redis_rig.until(1))[0]).offset
    await asyncio.sleep(0.3)
    redis_rig.publish("new")
    await redis_rig.until(2)
    store = redis_rig.engine.recovery_store
    assert await store.since(SUBJECT, TOPIC, first - 1, 1000, 0.2) is None  # "old" is too old
    fresh = await store.since(SUBJECT, TOPIC, first, 1000, 0.2)
    assert fresh is not None
    assert [decoded(e).payload for e in fresh] == [b"new"]


@pytest.mark.redis
async def test_a_redis_counter_that_expired_starts_above_every_earlier_offset(
    redis_rig: Rig,
) -> None:
    redis_rig.publish("before")
    before = decoded((await redis_rig.until(1))[0]).offset
    engine = redis_rig.engine
    assert isinstance(engine, RedisEngine)
    await engine._client.call("DEL", *(await keys_of(engine._client, engine.prefix)))  # type: ignore[arg-type]
    redis_rig.publish("after")
    after = decoded((await redis_rig.until(2))[1]).offset
    assert after > before + 1
    # The old position is not mistaken for one in the new sequence: its successor is gone.
    assert await engine.recovery_store.since(SUBJECT, TOPIC, before, 1000, 30) is None
