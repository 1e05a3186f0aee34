"""Message channels and peer-to-peer messages end to end: publish, subscribe, limits, peers."""

from __future__ import annotations

import asyncio
import itertools
import struct
import time
from collections.abc import Awaitable
from typing import Any

import pytest

import rtm2
from rtm2 import ChannelType, ErrorCode, Message, MessageType

from ..conftest import APP_SMALL, ServerProcess
from .util import Users, client_for, token_for, uid, unique

BATCH = 500  # publish requests in flight at once


async def fails(call: Awaitable[object], code: ErrorCode) -> None:
    """``call`` must raise RTMError with ``code``."""
    with pytest.raises(rtm2.RTMError) as info:
        await call
    assert info.value.code == code, f"expected {code.name}, got {info.value!r}"


async def texts(stream: rtm2.EventStream[Message], n: int) -> list[tuple[str, bytes | str]]:
    """The next ``n`` messages as (publisher, payload)."""
    return [(m.user_id, m.message) for m in [await stream.get(timeout=5) for _ in range(n)]]


async def ended(stream: rtm2.EventStream[Any]) -> list[Any]:
    """What is left in a stream that must be ending: iteration has to stop by itself."""
    async with asyncio.timeout(5):
        return [item async for item in stream]


async def publish_seq(
    client: rtm2.RTMClient, channel: str, count: int, channel_type: ChannelType
) -> None:
    """Publish messages 0..count-1 (the number in the payload), in order, BATCH in flight."""
    for start in range(0, count, BATCH):
        await asyncio.gather(
            *(
                client.publish(
                    channel, struct.pack(">I", i), channel_type=channel_type, custom_type="seq"
                )
                for i in range(start, min(start + BATCH, count))
            )
        )


async def receive_seq(
    stream: rtm2.EventStream[Message], count: int, arrivals: list[str] | None = None
) -> dict[str, list[int]]:
    """The next ``count`` sequence numbers, by publisher (and, in ``arrivals``, who sent each)."""
    got: dict[str, list[int]] = {}
    for _ in range(count):
        m = await stream.get(timeout=10)
        assert isinstance(m.message, bytes)
        assert (m.custom_type, m.message_type) == ("seq", MessageType.BINARY)
        got.setdefault(m.user_id, []).append(struct.unpack(">I", m.message)[0])
        if arrivals is not None:
            arrivals.append(m.user_id)
    return got


# --- publish and subscribe -----------------------------------------------------------------------


async def test_every_subscriber_gets_every_message_and_the_publisher_too_when_subscribed(
    users: Users,
) -> None:
    channel = unique("fanout")
    alice, bob, carol, dave = [await users.login(n) for n in ("alice", "bob", "carol", "dave")]
    streams = [await u.subscribe(channel) for u in (alice, bob, carol)]

    before = int(time.time() * 1000)
    await alice.publish(channel, b"\x00\xffbin", custom_type="blob")
    await alice.publish(channel, "héllo ✓")
    await dave.publish(channel, bytearray(b"from outside"))  # dave publishes unsubscribed
    await bob.publish(channel, b"")
    after = int(time.time() * 1000)

    expected = [
        (uid(alice), b"\x00\xffbin", MessageType.BINARY, "blob"),
        (uid(alice), "héllo ✓", MessageType.STRING, ""),
        (uid(dave), b"from outside", MessageType.BINARY, ""),
        (uid(bob), b"", MessageType.BINARY, ""),
    ]
    for stream in streams:
        got = [await stream.get(timeout=5) for _ in range(4)]
        assert got == [
            Message(user, channel, ChannelType.MESSAGE, "", payload, kind, ct, m.timestamp, 0)
            for m, (user, payload, kind, ct) in zip(got, expected, strict=True)
        ]
        assert [type(m.message) for m in got] == [bytes, str, bytes, bytes]
        for m in got:
            assert before - 1000 <= m.timestamp <= after + 1000
        assert len(stream) == 0
    assert len(dave.peer_messages) == 0


async def test_a_subscriber_that_asked_for_no_messages_gets_none_but_is_present(
    users: Users,
) -> None:
    channel = unique("nomsg")
    alice, bob = await users.login("alice"), await users.login("bob")
    silent = await bob.subscribe(channel, with_message=False)
    loud = await alice.subscribe(channel)
    await alice.publish(channel, "one")
    await bob.publish(channel, "two")
    assert await texts(loud, 2) == [(uid(alice), "one"), (uid(bob), "two")]

    # A reply to bob leaves after anything the server sent him for the publishes above.
    users_now, _ = await bob.presence.who_now(channel, ChannelType.MESSAGE)
    assert [u.user_id for u in users_now] == sorted([uid(alice), uid(bob)])
    assert len(silent) == 0
    assert not silent.closed


async def test_messages_of_each_of_two_interleaving_publishers_arrive_in_publish_order(
    users: Users,
) -> None:
    channel = unique("order")
    alice, bob, carol = [await users.login(n, APP_SMALL) for n in ("alice", "bob", "carol")]
    streams = [await u.subscribe(channel) for u in (alice, bob, carol)]

    count = 2000
    arrivals: list[str] = []
    receivers = [
        asyncio.create_task(receive_seq(s, 2 * count, arrivals if s is streams[2] else None))
        for s in streams
    ]
    await asyncio.gather(
        publish_seq(alice, channel, count, ChannelType.MESSAGE),
        publish_seq(bob, channel, count, ChannelType.MESSAGE),
    )
    async with asyncio.timeout(30):
        results = await asyncio.gather(*receivers)
    for got in results:
        assert got == {uid(alice): list(range(count)), uid(bob): list(range(count))}
    for stream in streams:
        assert len(stream) == 0
        assert stream.dropped == 0
    switches = sum(1 for x, y in itertools.pairwise(arrivals) if x != y)
    assert switches > 2, "the two publishers did not interleave"


async def test_unsubscribe_ends_the_message_stream_and_stops_delivery(users: Users) -> None:
    channel = unique("unsub")
    alice, bob = await users.login("alice"), await users.login("bob")
    at_alice = await alice.subscribe(channel)
    at_bob = await bob.subscribe(channel)
    await alice.publish(channel, "before")
    assert await texts(at_bob, 1) == [(uid(alice), "before")]
    await alice.publish(channel, "pending")

    await bob.unsubscribe(channel)
    assert at_bob.closed
    # What arrived before the unsubscribe can still be read; then iteration stops.
    assert [(m.user_id, m.message) for m in await ended(at_bob)] == [(uid(alice), "pending")]
    with pytest.raises(rtm2.RTMError) as info:
        await at_bob.get(timeout=1)
    assert info.value.code == ErrorCode.CHANNEL_NOT_SUBSCRIBED

    await alice.publish(channel, "while away")
    assert await texts(at_alice, 3) == [
        (uid(alice), "before"),
        (uid(alice), "pending"),
        (uid(alice), "while away"),
    ]
    await fails(bob.unsubscribe(channel), ErrorCode.CHANNEL_NOT_SUBSCRIBED)

    again = await bob.subscribe(channel)
    assert again is not at_bob
    await alice.publish(channel, "back")
    assert await texts(again, 1) == [(uid(alice), "back")]


async def test_a_second_subscribe_to_the_same_channel_fails_and_keeps_the_first(
    users: Users,
) -> None:
    channel = unique("twice")
    alice = await users.login("alice")
    messages = await alice.subscribe(channel)
    await fails(alice.subscribe(channel), ErrorCode.CHANNEL_SUBSCRIBE_FAILED)
    await fails(alice.subscribe(channel, with_message=False), ErrorCode.CHANNEL_SUBSCRIBE_FAILED)
    await alice.publish(channel, "still here")
    assert await texts(messages, 1) == [(uid(alice), "still here")]
    assert not messages.closed


async def test_unsubscribing_a_channel_not_subscribed_fails(users: Users) -> None:
    alice = await users.login("alice")
    await fails(alice.unsubscribe(unique("never")), ErrorCode.CHANNEL_NOT_SUBSCRIBED)


@pytest.mark.parametrize("name", ["", "a.b", "a*b", "a/b", "a\\b", "_lead", "x" * 65, "é"])
async def test_an_invalid_channel_name_is_refused_for_subscribe_and_publish(
    users: Users, name: str
) -> None:
    alice = await users.login("alice")
    await fails(alice.subscribe(name), ErrorCode.INVALID_CHANNEL_NAME)
    await fails(alice.publish(name, "x"), ErrorCode.INVALID_CHANNEL_NAME)
    await fails(alice.unsubscribe(name), ErrorCode.CHANNEL_NOT_SUBSCRIBED)
    # The failed subscribe left nothing behind.
    assert await alice.presence.where_now(uid(alice)) == []


async def test_a_message_may_be_32_kb_with_its_custom_type_and_not_one_byte_more(
    users: Users,
) -> None:
    channel = unique("size")
    alice, bob = await users.login("alice"), await users.login("bob")
    messages = await bob.subscribe(channel)
    ct = "t" * 32

    await alice.publish(channel, b"a" * 32768)
    await alice.publish(channel, b"b" * (32768 - 32), custom_type=ct)
    await alice.publish(channel, "c" * 32768)
    await fails(
        alice.publish(channel, b"x" * 32769), ErrorCode.CHANNEL_MESSAGE_LENGTH_EXCEED_LIMITATION
    )
    await fails(
        alice.publish(channel, b"x" * (32768 - 31), custom_type=ct),
        ErrorCode.CHANNEL_MESSAGE_LENGTH_EXCEED_LIMITATION,
    )
    await fails(
        alice.publish(channel, "é" * 16385),  # 32770 bytes of UTF-8 in 16385 characters
        ErrorCode.CHANNEL_MESSAGE_LENGTH_EXCEED_LIMITATION,
    )
    await fails(
        alice.publish(channel, b"x", custom_type="t" * 33),
        ErrorCode.CHANNEL_CUSTOM_TYPE_LENGTH_OVERFLOW,
    )
    await fails(
        alice.publish(
            bob.config.user_id, b"x", channel_type=ChannelType.USER, custom_type="t" * 33
        ),
        ErrorCode.CHANNEL_CUSTOM_TYPE_LENGTH_OVERFLOW,
    )
    await alice.publish(channel, "last")

    got = [await messages.get(timeout=5) for _ in range(4)]
    assert [(len(m.message), m.custom_type) for m in got] == [
        (32768, ""),
        (32768 - 32, ct),
        (32768, ""),
        (4, ""),
    ]
    assert got[3].message == "last"  # none of the refused ones came in between
    assert len(bob.peer_messages) == 0


async def test_the_fifty_first_subscribed_channel_is_refused_and_changes_nothing(
    users: Users,
) -> None:
    alice = await users.login("alice")
    prefix = unique("many")
    names = [f"{prefix}-{i}" for i in range(51)]
    for name in names[:50]:
        await alice.subscribe(name)
    await fails(alice.subscribe(names[50]), ErrorCode.CHANNEL_INSTANCE_EXCEED_LIMITATION)

    await fails(alice.unsubscribe(names[50]), ErrorCode.CHANNEL_NOT_SUBSCRIBED)
    await fails(
        alice.presence.get_presence_events(names[50], ChannelType.MESSAGE),
        ErrorCode.CHANNEL_NOT_SUBSCRIBED,
    )
    listed, _ = await alice.presence.who_now(names[50], ChannelType.MESSAGE)
    assert (list(listed), listed.total) == ([], 0)
    where = await alice.presence.where_now(uid(alice))
    assert sorted(c.channel for c in where) == sorted(names[:50])

    await alice.unsubscribe(names[0])
    messages = await alice.subscribe(names[50])
    await alice.publish(names[50], "fits now")
    assert await texts(messages, 1) == [(uid(alice), "fits now")]


async def test_publishing_faster_than_sixty_a_second_is_refused_and_refused_messages_are_lost(
    users: Users,
) -> None:
    channel = unique("rate")
    alice, bob = await users.login("alice"), await users.login("bob")
    messages = await bob.subscribe(channel)

    start = time.monotonic()
    results = await asyncio.gather(
        *(alice.publish(channel, str(i)) for i in range(80)), return_exceptions=True
    )
    elapsed = time.monotonic() - start
    accepted = [i for i, r in enumerate(results) if r is None]
    refused = [r for r in results if r is not None]
    assert refused, "80 messages at once were all accepted"
    for r in refused:
        assert isinstance(r, rtm2.RTMError)
        assert r.code == ErrorCode.CHANNEL_PUBLISH_MESSAGE_TOO_FREQUENT
    assert 60 <= len(accepted) <= 60 + 60 * elapsed + 1

    got = await texts(messages, len(accepted))
    assert got == [(uid(alice), str(i)) for i in accepted]

    await asyncio.sleep(0.2)  # the bucket refills at 60 a second
    await alice.publish(channel, "after")
    assert await texts(messages, 1) == [(uid(alice), "after")]


async def test_peer_messages_and_channel_messages_share_one_rate_limit(users: Users) -> None:
    channel = unique("shared")
    alice, bob = await users.login("alice"), await users.login("bob")
    messages = await bob.subscribe(channel)

    calls = []
    for i in range(40):
        calls.append(alice.publish(channel, f"c{i}"))
        calls.append(alice.publish(uid(bob), f"p{i}", channel_type=ChannelType.USER))
    start = time.monotonic()
    results = await asyncio.gather(*calls, return_exceptions=True)
    elapsed = time.monotonic() - start
    accepted = [i for i, r in enumerate(results) if r is None]
    assert all(
        isinstance(r, rtm2.RTMError) and r.code == ErrorCode.CHANNEL_PUBLISH_MESSAGE_TOO_FREQUENT
        for r in results
        if r is not None
    )
    assert 60 <= len(accepted) <= 60 + 60 * elapsed + 1

    channel_ok = [f"c{i // 2}" for i in accepted if i % 2 == 0]
    peer_ok = [f"p{i // 2}" for i in accepted if i % 2 == 1]
    assert await texts(messages, len(channel_ok)) == [(uid(alice), t) for t in channel_ok]
    assert await texts(bob.peer_messages, len(peer_ok)) == [(uid(alice), t) for t in peer_ok]


async def test_calls_before_login_and_after_logout_raise_not_login(server: ServerProcess) -> None:
    alice = client_for(server, unique("alice"))
    channel = unique("nologin")
    for _ in range(2):
        await fails(alice.subscribe(channel), ErrorCode.NOT_LOGIN)
        await fails(alice.unsubscribe(channel), ErrorCode.NOT_LOGIN)
        await fails(alice.publish(channel, "x"), ErrorCode.NOT_LOGIN)
        await fails(alice.publish("bob", "x", channel_type=ChannelType.USER), ErrorCode.NOT_LOGIN)
        await alice.login(token_for(uid(alice)))
        await alice.subscribe(channel)
        await alice.logout()


# --- peer-to-peer messages ---------------------------------------------------------------------


async def test_a_peer_message_reaches_only_its_recipient_as_a_user_channel_message(
    users: Users,
) -> None:
    alice, bob, carol = [await users.login(n) for n in ("alice", "bob", "carol")]
    # A message channel named like bob gets nothing of what is sent to bob.
    same_name = await carol.subscribe(uid(bob))

    before = int(time.time() * 1000)
    await alice.publish(uid(bob), b"\x01psst", channel_type=ChannelType.USER)
    await alice.publish(uid(bob), "texte ✓", channel_type=ChannelType.USER, custom_type="note")
    await carol.publish(uid(bob), b"", channel_type=ChannelType.USER)
    after = int(time.time() * 1000)

    got = [await bob.peer_messages.get(timeout=5) for _ in range(3)]
    expected = [
        (uid(alice), b"\x01psst", MessageType.BINARY, ""),
        (uid(alice), "texte ✓", MessageType.STRING, "note"),
        (uid(carol), b"", MessageType.BINARY, ""),
    ]
    assert got == [
        Message(sender, sender, ChannelType.USER, "", payload, kind, ct, m.timestamp, 0)
        for m, (sender, payload, kind, ct) in zip(got, expected, strict=True)
    ]
    for m in got:
        assert before - 1000 <= m.timestamp <= after + 1000
    await carol.presence.where_now(uid(carol))  # a round trip: carol has what was sent to her
    assert len(same_name) == 0
    assert len(alice.peer_messages) == len(carol.peer_messages) == 0


async def test_a_peer_message_to_a_user_who_is_not_online_fails_with_receiver_offline(
    users: Users,
) -> None:
    alice = await users.login("alice")
    nobody = unique("nobody")
    await fails(
        alice.publish(nobody, "hello?", channel_type=ChannelType.USER),
        ErrorCode.CHANNEL_RECEIVER_OFFLINE,
    )

    bob = await users.login("bob")
    await alice.publish(uid(bob), "one", channel_type=ChannelType.USER)
    first = bob.peer_messages
    assert await texts(first, 1) == [(uid(alice), "one")]
    await bob.logout()
    await fails(
        alice.publish(uid(bob), "two", channel_type=ChannelType.USER),
        ErrorCode.CHANNEL_RECEIVER_OFFLINE,
    )
    assert await ended(first) == []

    await bob.login(token_for(uid(bob)))
    await alice.publish(uid(bob), "three", channel_type=ChannelType.USER)
    assert await texts(bob.peer_messages, 1) == [(uid(alice), "three")]


async def test_a_peer_message_to_a_user_whose_connection_was_killed_fails_with_receiver_offline(
    users: Users,
) -> None:
    channel = unique("killed")
    alice = await users.login("alice")
    bob = await users.login("bob", presence_timeout=5, auto_reconnect=False)
    await bob.subscribe(channel)
    assert bob._link is not None
    assert bob._link._transport is not None
    bob._link._transport.disconnect()
    failed = await users.streams[bob].conn_events.get(timeout=5)
    while failed.state is not rtm2.ConnectionState.FAILED:
        failed = await users.streams[bob].conn_events.get(timeout=5)

    # The server keeps bob's session (he is still present), but nobody can deliver to it.
    listed, _ = await alice.presence.who_now(channel, ChannelType.MESSAGE)
    assert [u.user_id for u in listed] == [uid(bob)]
    await fails(
        alice.publish(uid(bob), "lost", channel_type=ChannelType.USER),
        ErrorCode.CHANNEL_RECEIVER_OFFLINE,
    )


async def test_peer_messages_to_an_invalid_user_id_or_channel_type_are_refused(
    users: Users,
) -> None:
    alice = await users.login("alice")
    await fails(
        alice.publish("_bad", "x", channel_type=ChannelType.USER), ErrorCode.INVALID_USER_ID
    )
    await fails(
        alice.publish(unique("ch"), "x", channel_type=ChannelType.STREAM),
        ErrorCode.INVALID_CHANNEL_TYPE,
    )


async def test_five_hundred_peer_messages_arrive_in_order(users: Users) -> None:
    alice, bob = await users.login("alice", APP_SMALL), await users.login("bob", APP_SMALL)
    count = 500
    receiver = asyncio.create_task(receive_seq(bob.peer_messages, count))
    await publish_seq(alice, uid(bob), count, ChannelType.USER)
    async with asyncio.timeout(20):
        got = await receiver
    assert got == {uid(alice): list(range(count))}
    assert len(bob.peer_messages) == 0
    assert bob.peer_messages.dropped == 0
