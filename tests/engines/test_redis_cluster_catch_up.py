"""A node's catch-up on a channel whose slot moves between Redis Cluster masters.

The Redis engine's broker, the node's ``Recovery`` buffers and ``Replay`` together, on a
local 3-master cluster (the session's): when a master drops the node's subscription
to a channel (its slot moved), the node holds what arrives, reads what it missed from the
recovery buffer once subscribed again, and delivers both in order, none twice, none missing.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator, Callable
from uuid import uuid4

import msgspec
import pytest

from rtm2.server.engines.base import BUS_MESSAGE, UNNUMBERED, BusEvent, frame_offset
from rtm2.server.engines.redis.broker import RedisBroker
from rtm2.server.engines.redis.engine import RedisEngine
from rtm2.server.engines.redis.recovery import publish_numbered, recovery_keys
from rtm2.server.recovery import Recovery
from rtm2.server.redisio import RedisClient, hash_tag, key_slot
from rtm2.server.replay import Replay

from ..redis_cluster import LocalCluster

KEEP, KEEP_SECONDS = 1000, 30.0


def _message(text: str) -> BusEvent:
    return BusEvent(BUS_MESSAGE, "", "publisher", text.encode() + struct.pack(">Q", UNNUMBERED))


class _Node:
    """One node's side of a channel: the engine's broker, its recovery buffers and replay,
    and the offsets its subscribers got, in delivery order."""

    def __init__(self, url: str, prefix: str) -> None:
        self.prefix = prefix
        self.engine = RedisEngine(f"{url}?prefix={prefix}")
        self.recovery = Recovery(lambda subject: (KEEP, KEEP_SECONDS))
        self.got: list[int] = []
        self.broker: RedisBroker = self.engine.make_broker(self._handle, self._gap)
        self.replay = Replay(
            self.recovery, self.engine.recovery_store, self.broker, lambda s: (KEEP, KEEP_SECONDS)
        )

    def _handle(self, subject: str, event: BusEvent) -> None:
        offset = frame_offset(event.frame)
        self.recovery.receive(subject, event.topic, offset, event.user, event.frame)
        self.got.append(offset)

    def _gap(self, subject: str | None) -> None:
        self.replay.on_gap(subject)

    def channel(self, subject: str) -> str:
        return f"{self.prefix}{{{hash_tag(subject)}}}"

    def following(self, subject: str) -> bool:
        """Whether the node is between two subscriptions of ``subject``'s channel."""
        return self.channel(subject) in self.broker._subscriber._moving


async def _until(done: Callable[[], bool], what: Callable[[], object]) -> None:
    deadline = time.monotonic() + 10
    while not done():
        assert time.monotonic() < deadline, what()
        await asyncio.sleep(0.005)


@pytest.fixture
async def node(cluster: LocalCluster) -> AsyncIterator[_Node]:
    node = _Node(cluster.url, f"rtm2test:{uuid4().hex[:12]}:")
    await node.engine.start()
    try:
        yield node
    finally:
        await node.engine.close()


async def test_a_channel_that_moves_again_after_the_catch_up_read_its_buffer_loses_nothing(
    cluster: LocalCluster, node: _Node
) -> None:
    """A master drops a channel's subscribers whenever it is told who owns the slot, even
    itself, as every master is at the end of a resharding: a second drop can follow the new
    subscription the node's catch-up waited for, after that catch-up read the buffer."""
    subject = f"msg:{uuid4().hex}"
    channel = node.channel(subject)
    slot = key_slot(channel)
    owner = RedisClient(f"redis://127.0.0.1:{cluster.owner_of(slot)}/0")
    await owner.connect()
    owner_id = (await owner.call("CLUSTER", "MYID")).decode()
    counter, buffer = recovery_keys(node.prefix, subject, "")
    publishing = publish_numbered(sharded=True)
    node.broker.subscribe(subject)
    await node.broker.ready(subject)
    for i in range(3):
        node.broker.publish_message(subject, _message(f"before {i}"), KEEP, KEEP_SECONDS)
    await _until(lambda: len(node.got) == 3, lambda: node.got)

    store = node.replay.store
    reads: list[int] = []
    moved_again = asyncio.Event()

    class MovesAgainAfterTheFirstRead:
        """The engine's recovery store, with the channel dropped once more right after the
        catch-up's first read, and one message published before the node can subscribe
        again (one pipelined write: the master runs both before the node hears of it)."""

        epoch = store.epoch

        async def since(
            self, subject: str, topic: str, offset: int, limit: int, seconds: float
        ) -> list[BusEvent] | None:
            found = await store.since(subject, topic, offset, limit, seconds)
            reads.append(offset)
            if len(reads) == 1:
                dropped = owner.send("CLUSTER", "SETSLOT", slot, "NODE", owner_id)
                published = owner.send(
                    "EVAL", publishing.source, 2, counter, buffer, channel, KEEP,
                    int(KEEP_SECONDS * 1000), 1, msgspec.msgpack.encode([_message("between")]),
                )  # fmt: skip
                await dropped
                await published
                await _until(lambda: node.following(subject), lambda: "the drop was not seen")
                moved_again.set()
            return found

    node.replay.store = MovesAgainAfterTheFirstRead()
    try:
        await owner.call("CLUSTER", "SETSLOT", slot, "NODE", owner_id)  # the first drop
        await asyncio.wait_for(moved_again.wait(), 10)
        await _until(lambda: not node.following(subject), lambda: "not subscribed again")
        await node.broker.ready(subject)  # subscribed again
        node.broker.publish_message(subject, _message("after"), KEEP, KEEP_SECONDS)
        first = node.got[0]
        await _until(lambda: node.got[-1] >= first + 4, lambda: node.got)
        assert node.got == list(range(first, first + 5))  # "between" too, once, in order
        assert len(reads) == 2  # caught up once more, from what the first catch-up delivered
        assert reads[1] == first + 2
    finally:
        await owner.close()


async def test_a_channel_that_moves_before_any_message_reached_the_node_loses_nothing(
    cluster: LocalCluster, node: _Node
) -> None:
    """A subscriber's node has received nothing of the channel yet when its slot moves: the
    catch-up starts from the position its subscription was given."""
    subject = f"msg:{uuid4().hex}"
    channel = node.channel(subject)
    slot = key_slot(channel)
    owner = RedisClient(f"redis://127.0.0.1:{cluster.owner_of(slot)}/0")
    await owner.connect()
    try:
        owner_id = (await owner.call("CLUSTER", "MYID")).decode()
        counter, buffer = recovery_keys(node.prefix, subject, "")
        node.broker.subscribe(subject)
        await node.broker.ready(subject)
        for i in range(2):  # before the subscription: none of the node's concern
            node.broker.publish_message(subject, _message(f"old {i}"), KEEP, KEEP_SECONDS)
        await _until(lambda: len(node.got) == 2, lambda: node.got)
        node.got.clear()
        node.recovery.forget(subject)  # as on a node whose subscriber came after them
        start = await node.replay.position(subject, "")  # what a subscribe does
        assert start >= 2
        # The drop and a message in one pipelined write: the node cannot be subscribed again
        # before the message is published.
        dropped = owner.send("CLUSTER", "SETSLOT", slot, "NODE", owner_id)
        published = owner.send(
            "EVAL", publish_numbered(sharded=True).source, 2, counter, buffer, channel, KEEP,
            int(KEEP_SECONDS * 1000), 1, msgspec.msgpack.encode([_message("during")]),
        )  # fmt: skip
        await dropped
        await published
        await _until(lambda: node.got == [start + 1], lambda: node.got)
    finally:
        await owner.close()
