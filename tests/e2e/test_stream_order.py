"""Per-publisher order under load: every message arrives once, in its publisher's order.

APP_SMALL has no rate limit to speak of (and 3 users per channel), so a publisher can go as
fast as the connection lets it.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from collections.abc import AsyncIterator

import pytest

import rtm2
from rtm2 import ChannelType, MessageType, StreamPriority, StreamQos

from ..conftest import APP_SMALL, CERT_SMALL, ServerProcess
from .util import client_for, token_for, unique

BATCH = 500  # publish requests in flight at once


@pytest.fixture
async def users(server: ServerProcess) -> AsyncIterator[list[rtm2.RTMClient]]:
    """Three logged-in users of APP_SMALL."""
    clients = []
    for name in ("alice", "bob", "carol"):
        user = unique(name)
        client = client_for(server, user, app_id=APP_SMALL)
        await client.login(token_for(user, app_id=APP_SMALL, cert=CERT_SMALL))
        clients.append(client)
    yield clients
    for client in clients:
        await client.logout()


async def publish(ch: rtm2.StreamChannel, topic: str, count: int) -> None:
    """Publish messages 0..count-1 (the number in the payload and in send_ts), in order."""
    for start in range(0, count, BATCH):
        await asyncio.gather(
            *(
                ch.publish_topic(topic, struct.pack(">I", i), custom_type="seq", send_ts=i)
                for i in range(start, min(start + BATCH, count))
            )
        )


async def receive(
    messages: rtm2.EventStream[rtm2.Message], count: int, arrivals: list[str] | None = None
) -> dict[str, list[int]]:
    """The next ``count`` messages' sequence numbers, by publisher (and who sent each)."""
    got: dict[str, list[int]] = {}
    for _ in range(count):
        m = await messages.get(timeout=10)
        assert isinstance(m.message, bytes)
        (seq,) = struct.unpack(">I", m.message)
        assert (m.send_ts, m.custom_type, m.message_type, m.channel_type) == (
            seq,
            "seq",
            MessageType.BINARY,
            ChannelType.STREAM,
        )
        got.setdefault(m.user_id, []).append(seq)
        if arrivals is not None:
            arrivals.append(m.user_id)
    return got


async def test_ten_thousand_messages_of_one_publisher_reach_two_subscribers_in_order(
    users: list[rtm2.RTMClient],
) -> None:
    channel = unique("order")
    alice = users[0]
    a, b, c = (u.stream_channel(channel) for u in users)
    for ch in (a, b, c):
        await ch.join()
    await a.join_topic("t", StreamQos.ORDERED, StreamPriority.HIGH)
    at_bob = await b.subscribe_topic("t", [alice.config.user_id])
    at_carol = await c.subscribe_topic("t", [alice.config.user_id])

    count = 10_000
    receivers = [asyncio.create_task(receive(s, count)) for s in (at_bob, at_carol)]
    await publish(a, "t", count)
    async with asyncio.timeout(30):
        results = await asyncio.gather(*receivers)
    for got in results:
        assert got == {alice.config.user_id: list(range(count))}
    assert len(at_bob) == len(at_carol) == 0
    assert at_bob.dropped == at_carol.dropped == 0


async def test_two_interleaving_publishers_each_keep_their_order(
    users: list[rtm2.RTMClient],
) -> None:
    channel = unique("interleave")
    alice, bob, _ = users
    a, b, c = (u.stream_channel(channel) for u in users)
    for ch in (a, b, c):
        await ch.join()
    await a.join_topic("t")
    await b.join_topic("t")
    messages = await c.subscribe_topic("t")
    assert await c.get_subscribed_users("t") == sorted([alice.config.user_id, bob.config.user_id])

    count = 6_000
    arrivals: list[str] = []
    receiver = asyncio.create_task(receive(messages, 2 * count, arrivals))
    await asyncio.gather(publish(a, "t", count), publish(b, "t", count))
    async with asyncio.timeout(30):
        got = await receiver
    assert got == {alice.config.user_id: list(range(count)), bob.config.user_id: list(range(count))}
    assert len(messages) == 0
    assert messages.dropped == 0
    switches = sum(1 for x, y in itertools.pairwise(arrivals) if x != y)
    assert switches > 2, "the two publishers did not interleave"
