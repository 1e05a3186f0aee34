"""Stream channels end to end: join, topics, publish, subscriptions, topic events, leave."""

from __future__ import annotations

import asyncio
import time

import pytest

import rtm2
from rtm2 import ChannelType, ErrorCode, Message, MessageType, TopicEvent
from rtm2 import ConnectionChangeReason as Reason
from rtm2 import ConnectionState as State
from rtm2 import TopicEventType as Kind
from rtm2.tokens import build_stream_token

from ..conftest import APP_A, CERT_A, ServerProcess
from .util import Users, token_for, uid, unique


async def join(client: rtm2.RTMClient, channel: str, **options: bool) -> rtm2.JoinResult:
    """Join ``channel``, with a stream token where the app's policy asks for one."""
    token = None
    if client.config.app_id == APP_A:
        token = build_stream_token(APP_A, CERT_A, channel, client.config.user_id)
    return await client.stream_channel(channel).join(token, **options)


async def texts(stream: rtm2.EventStream[Message], n: int) -> list[tuple[str, bytes | str]]:
    """The next ``n`` messages as (publisher, payload)."""
    return [(m.user_id, m.message) for m in [await stream.get(timeout=5) for _ in range(n)]]


async def ended(stream: rtm2.EventStream[object]) -> list[object]:
    """What is left in a stream that must be ending: iteration has to stop by itself."""
    async with asyncio.timeout(5):
        return [item async for item in stream]


# --- the channel object ------------------------------------------------------------------------


async def test_stream_channel_gives_one_object_per_name_that_starts_not_joined(
    users: Users,
) -> None:
    alice = await users.login("alice")
    ch = alice.stream_channel("lobby")
    assert alice.stream_channel("lobby") is ch
    assert alice.stream_channel("lobby2") is not ch
    assert ch.channel_name == "lobby"
    assert ch.topics == {}
    assert not ch.joined


async def test_join_returns_the_topics_and_publishers_of_the_moment_and_a_snapshot_event_first(
    users: Users,
) -> None:
    channel = unique("snap")
    alice, bob, carol = [await users.login(name) for name in ("alice", "bob", "carol")]
    a, b, c = (u.stream_channel(channel) for u in (alice, bob, carol))
    snapshot, _, _ = await join(alice, channel)
    assert snapshot == {}
    await a.join_topic("news")
    await a.join_topic("sport", meta="scores")
    await join(bob, channel)
    await b.join_topic("news")

    snapshot, topic_events, token_events = await join(carol, channel)
    assert c.joined
    assert {t: sorted(p) for t, p in snapshot.items()} == {
        "news": sorted([uid(alice), uid(bob)]),
        "sport": [uid(alice)],
    }
    assert c.topics == snapshot
    first = await topic_events.get(timeout=5)
    assert first == TopicEvent(Kind.SNAPSHOT, channel, "", "", snapshot)
    assert len(topic_events) == 0
    assert len(token_events) == 0


async def test_join_applies_every_option(users: Users) -> None:
    alice, bob = await users.login("alice"), await users.login("bob")
    channel = unique("opts")
    snapshot, topic_events, _ = await join(
        alice, channel, with_presence=False, with_metadata=True, with_lock=True, be_quiet=True
    )
    assert snapshot == {}
    assert (await topic_events.get(timeout=5)).type is Kind.SNAPSHOT
    assert alice.stream_channel(channel).joined
    # with_metadata, with_lock: their event streams exist, each starting with a snapshot.
    metadata, metadata_events = await alice.storage.get_channel_metadata_events(
        channel, ChannelType.STREAM
    )
    assert metadata == rtm2.Metadata(0, {})
    assert (await metadata_events.get(timeout=5)).type is rtm2.StorageEventType.SNAPSHOT
    locks, lock_events = await alice.lock.get_lock_events(channel, ChannelType.STREAM)
    assert locks == {}
    assert (await lock_events.get(timeout=5)).type is rtm2.LockEventType.SNAPSHOT
    # with_presence=False: no presence events.
    with pytest.raises(rtm2.RTMError) as info:
        await alice.presence.get_presence_events(channel, ChannelType.STREAM)
    assert info.value.code == ErrorCode.CHANNEL_NOT_JOINED
    # be_quiet: nobody sees alice present; bob, who joined with the defaults, is seen.
    await join(bob, channel)
    listed, _ = await bob.presence.who_now(channel, ChannelType.STREAM)
    assert [u.user_id for u in listed] == [uid(bob)]


# --- publishing and messages ---------------------------------------------------------------------


async def test_a_subscriber_gets_every_field_of_binary_and_text_messages(users: Users) -> None:
    channel = unique("fields")
    alice, bob = await users.login("alice"), await users.login("bob")
    a, b = alice.stream_channel(channel), bob.stream_channel(channel)
    await join(alice, channel)
    await a.join_topic("t1", rtm2.StreamQos.ORDERED, rtm2.StreamPriority.HIGH, "meta", True)
    await join(bob, channel)
    messages = await b.subscribe_topic("t1", [uid(alice)])

    before = int(time.time() * 1000)
    await a.publish_topic("t1", b"\x00\xffbin", custom_type="blob", send_ts=12345)
    await a.publish_topic("t1", "héllo ✓")
    await a.publish_topic("t1", bytearray(b"array"), send_ts=1)
    await a.publish_topic("t1", memoryview(b"view"))
    await a.publish_topic("t1", b"")
    after = int(time.time() * 1000)

    got = [await messages.get(timeout=5) for _ in range(5)]
    for m in got:
        assert before - 1000 <= m.timestamp <= after + 1000
    expected = [
        (b"\x00\xffbin", MessageType.BINARY, "blob", 12345),
        ("héllo ✓", MessageType.STRING, "", 0),
        (b"array", MessageType.BINARY, "", 1),
        (b"view", MessageType.BINARY, "", 0),
        (b"", MessageType.BINARY, "", 0),
    ]
    assert got == [
        Message(uid(alice), channel, ChannelType.STREAM, "t1", payload, kind, ct, m.timestamp, ts)
        for m, (payload, kind, ct, ts) in zip(got, expected, strict=True)
    ]
    assert [type(m.message) for m in got] == [bytes, str, bytes, bytes, bytes]
    assert len(messages) == 0


async def test_a_publisher_does_not_receive_its_own_messages_unless_it_picks_itself(
    users: Users,
) -> None:
    channel = unique("self")
    alice = await users.login("alice")
    a = alice.stream_channel(channel)
    await join(alice, channel)
    await a.join_topic("t")
    mine = await a.subscribe_topic("t")  # an empty list leaves oneself out
    assert await a.get_subscribed_users("t") == []
    await a.publish_topic("t", "not for me")
    await a.subscribe_topic("t", [uid(alice)])
    await a.publish_topic("t", "for me")
    assert await texts(mine, 1) == [(uid(alice), "for me")]


# --- topic events --------------------------------------------------------------------------------


async def test_topic_events_tell_members_who_joins_and_leaves_a_topic_but_not_about_themselves(
    users: Users,
) -> None:
    channel = unique("events")
    alice, bob = await users.login("alice"), await users.login("bob")
    a, b = alice.stream_channel(channel), bob.stream_channel(channel)
    _, a_events, _ = await join(alice, channel)
    _, b_events, _ = await join(bob, channel)
    assert (await a_events.get(timeout=5)).type is Kind.SNAPSHOT
    assert (await b_events.get(timeout=5)).type is Kind.SNAPSHOT

    await b.join_topic("t", meta="hello")
    assert await a_events.get(timeout=5) == TopicEvent(
        Kind.REMOTE_JOIN, channel, uid(bob), "t", {"t": [uid(bob)]}
    )
    assert a.topics == {"t": [uid(bob)]}

    await a.join_topic("t")
    await a.join_topic("u")
    event = await b_events.get(timeout=5)
    assert (event.type, event.channel, event.user_id, event.topic) == (
        Kind.REMOTE_JOIN,
        channel,
        uid(alice),
        "t",
    )
    assert uid(alice) in event.snapshot["t"]
    event = await b_events.get(timeout=5)
    assert (event.type, event.user_id, event.topic) == (Kind.REMOTE_JOIN, uid(alice), "u")
    assert event.snapshot["u"] == [uid(alice)]
    assert b.topics["u"] == [uid(alice)]

    await b.leave_topic("t")
    event = await a_events.get(timeout=5)
    assert (event.type, event.channel, event.user_id, event.topic) == (
        Kind.REMOTE_LEAVE,
        channel,
        uid(bob),
        "t",
    )
    assert uid(bob) not in event.snapshot.get("t", [])
    assert uid(bob) not in a.topics.get("t", [])

    # Each member's own actions were answered before this point: none produced an event for it.
    assert len(a_events) == 0
    assert len(b_events) == 0


async def test_leaving_the_channel_takes_the_leaver_out_of_every_topic_it_published_in(
    users: Users,
) -> None:
    channel = unique("leaver")
    alice, bob = await users.login("alice"), await users.login("bob")
    a, b = alice.stream_channel(channel), bob.stream_channel(channel)
    await join(alice, channel)
    for topic in ("t1", "t2", "t3"):
        await a.join_topic(topic)
    _, b_events, _ = await join(bob, channel)
    assert (await b_events.get(timeout=5)).type is Kind.SNAPSHOT
    messages = await b.subscribe_topic("t1", [uid(alice)])

    await a.leave()
    events = [await b_events.get(timeout=5) for _ in range(3)]
    assert sorted((e.type, e.user_id, e.topic) for e in events) == [
        (Kind.REMOTE_LEAVE, uid(alice), topic) for topic in ("t1", "t2", "t3")
    ]
    assert b.topics == {}
    assert events[-1].snapshot == {}

    # Bob's pick of alice outlives her absence: when she is back, her messages flow again.
    snapshot, _, _ = await join(alice, channel)
    assert snapshot == {}
    await a.join_topic("t1")
    event = await b_events.get(timeout=5)
    assert (event.type, event.user_id, event.topic) == (Kind.REMOTE_JOIN, uid(alice), "t1")
    await a.publish_topic("t1", "back")
    assert await texts(messages, 1) == [(uid(alice), "back")]


@pytest.mark.parametrize("how", ["logout", "same-uid-login", "connection-killed"])
async def test_a_publisher_that_drops_off_is_reported_as_leaving_each_of_its_topics(
    users: Users, how: str
) -> None:
    channel = unique("drop")
    alice = await users.login("alice", presence_timeout=5, auto_reconnect=False)
    bob = await users.login("bob")
    a, b = alice.stream_channel(channel), bob.stream_channel(channel)
    await join(alice, channel)
    await a.join_topic("t1")
    await a.join_topic("t2")
    _, b_events, _ = await join(bob, channel)
    assert (await b_events.get(timeout=5)).type is Kind.SNAPSHOT

    if how == "logout":
        await alice.logout()  # without leaving the channel first
    elif how == "same-uid-login":
        await users.login(user=uid(alice))  # evicts the first login of alice
    else:
        assert alice._link is not None
        assert alice._link._transport is not None
        alice._link._transport.disconnect()
        # A lost connection keeps alice present, topics included, for her presence timeout.
        with pytest.raises(TimeoutError):
            await b_events.get(timeout=2)

    events = [await b_events.get(timeout=10) for _ in range(2)]
    assert sorted((e.type, e.user_id, e.topic) for e in events) == [
        (Kind.REMOTE_LEAVE, uid(alice), "t1"),
        (Kind.REMOTE_LEAVE, uid(alice), "t2"),
    ]
    assert b.topics == {}
    if how != "logout":
        conn = users.conn_events(alice)
        states = [(e.state, e.reason) for e in [await conn.get(timeout=5) for _ in range(4)]]
        expected = Reason.SAME_UID_LOGIN if how == "same-uid-login" else Reason.LOST
        assert states[-1] == (State.FAILED, expected)
        assert not alice.logged_in


# --- subscriptions -------------------------------------------------------------------------------


async def test_subscriptions_add_up_and_only_the_picked_publishers_are_delivered(
    users: Users,
) -> None:
    channel = unique("union")
    alice, bob, carol, dave = [await users.login(n) for n in ("alice", "bob", "carol", "dave")]
    pubs = {u: u.stream_channel(channel) for u in (alice, bob, carol)}
    for user, ch in pubs.items():
        await join(user, channel)
        await ch.join_topic("t")
        await ch.join_topic("u")
    a, b, c = pubs.values()
    d = dave.stream_channel(channel)
    await join(dave, channel)

    messages = await d.subscribe_topic("t", [uid(alice)])
    assert await d.subscribe_topic("t", [uid(bob)]) is messages
    assert await d.get_subscribed_users("t") == sorted([uid(alice), uid(bob)])
    assert await d.subscribe_topic("t", [uid(alice)]) is messages  # picking again changes nothing
    assert await d.get_subscribed_users("t") == sorted([uid(alice), uid(bob)])

    # What the server answered before the picked messages below was written to dave first, so
    # anything of carol's (not picked) or of topic u (not subscribed) would come out first.
    await c.publish_topic("t", "carol-1")
    await a.publish_topic("u", "alice-in-u")
    await a.publish_topic("t", "alice-1")
    await b.publish_topic("t", "bob-1")
    await c.publish_topic("t", "carol-2")
    await a.publish_topic("t", "alice-2")
    assert await texts(messages, 3) == [
        (uid(alice), "alice-1"),
        (uid(bob), "bob-1"),
        (uid(alice), "alice-2"),
    ]
    assert len(messages) == 0


async def test_a_publisher_can_be_picked_before_it_joins_and_delivery_starts_when_it_does(
    users: Users,
) -> None:
    channel = unique("pre")
    bob = await users.login("bob")
    b = bob.stream_channel(channel)
    await join(bob, channel)
    alice_id = unique("alice")
    messages = await b.subscribe_topic("t", [alice_id])  # alice is not even logged in yet
    assert await b.get_subscribed_users("t") == [alice_id]
    assert b.topics == {}

    alice = await users.login(user=alice_id)
    a = alice.stream_channel(channel)
    await join(alice, channel)
    await a.join_topic("t")
    await a.publish_topic("t", "first")
    assert await texts(messages, 1) == [(alice_id, "first")]


async def test_an_empty_user_list_picks_the_current_publishers_but_not_oneself_or_later_ones(
    users: Users,
) -> None:
    channel = unique("all")
    alice, bob, carol, dave = [await users.login(n) for n in ("alice", "bob", "carol", "dave")]
    a, b, c, d = (u.stream_channel(channel) for u in (alice, bob, carol, dave))
    for user, ch in ((alice, a), (bob, b), (carol, c)):
        await join(user, channel)
        await ch.join_topic("t")
    await join(dave, channel)

    nobody = await c.subscribe_topic("empty")  # a topic without publishers: nobody picked
    assert await c.get_subscribed_users("empty") == []
    assert len(nobody) == 0

    messages = await c.subscribe_topic("t")
    assert await c.get_subscribed_users("t") == sorted([uid(alice), uid(bob)])
    await d.join_topic("t")  # a later publisher is not picked by itself
    await d.publish_topic("t", "dave-1")
    await a.publish_topic("t", "alice-1")
    assert await texts(messages, 1) == [(uid(alice), "alice-1")]
    assert await c.get_subscribed_users("t") == sorted([uid(alice), uid(bob)])

    await c.subscribe_topic("t", [uid(dave)])
    await d.publish_topic("t", "dave-2")
    assert await texts(messages, 1) == [(uid(dave), "dave-2")]


async def test_unsubscribing_some_publishers_keeps_the_others_and_an_empty_list_ends_the_stream(
    users: Users,
) -> None:
    channel = unique("unsub")
    alice, bob, carol = [await users.login(n) for n in ("alice", "bob", "carol")]
    a, b, c = (u.stream_channel(channel) for u in (alice, bob, carol))
    for user, ch in ((alice, a), (bob, b)):
        await join(user, channel)
        await ch.join_topic("t")
    await join(carol, channel)
    messages = await c.subscribe_topic("t", [uid(alice), uid(bob)])

    await c.unsubscribe_topic("t", [uid(alice), "nobody"])
    assert await c.get_subscribed_users("t") == [uid(bob)]
    await a.publish_topic("t", "alice-1")
    await b.publish_topic("t", "bob-1")
    assert await texts(messages, 1) == [(uid(bob), "bob-1")]

    await c.unsubscribe_topic("t")
    assert await ended(messages) == []
    with pytest.raises(rtm2.RTMError) as info:
        await c.get_subscribed_users("t")
    assert info.value.code == ErrorCode.CHANNEL_TOPIC_NOT_SUBSCRIBED

    again = await c.subscribe_topic("t", [uid(alice)])
    assert again is not messages
    await b.publish_topic("t", "bob-2")
    await a.publish_topic("t", "alice-2")
    assert await texts(again, 1) == [(uid(alice), "alice-2")]


# --- leaving and rejoining -----------------------------------------------------------------------


async def test_leave_ends_the_channels_streams_and_the_same_object_can_join_again(
    users: Users,
) -> None:
    channel = unique("rejoin")
    alice, bob = await users.login("alice"), await users.login("bob")
    a, b = alice.stream_channel(channel), bob.stream_channel(channel)
    await join(alice, channel)
    await a.join_topic("t")
    conn = users.conn_events(bob)
    assert [(await conn.get(timeout=5)).state for _ in range(2)] == [
        State.CONNECTING,
        State.CONNECTED,
    ]

    _, topic_events, token_events = await join(bob, channel)
    assert await conn.get(timeout=5) == rtm2.ConnectionEvent(
        State.CONNECTED, Reason.JOIN_SUCCESS, channel
    )
    assert (await topic_events.get(timeout=5)).type is Kind.SNAPSHOT
    messages = await b.subscribe_topic("t", [uid(alice)])
    await a.publish_topic("t", "before")
    assert await texts(messages, 1) == [(uid(alice), "before")]

    await b.leave()
    assert not b.joined
    assert b.topics == {}
    assert await conn.get(timeout=5) == rtm2.ConnectionEvent(
        State.DISCONNECTED, Reason.LEAVE_CHANNEL, channel
    )
    assert await ended(messages) == []
    assert await ended(topic_events) == []
    assert await ended(token_events) == []
    await a.publish_topic("t", "while away")

    snapshot, topic_events2, _ = await join(bob, channel)
    assert b.joined
    assert snapshot == {"t": [uid(alice)]}
    assert topic_events2 is not topic_events
    assert (await topic_events2.get(timeout=5)).type is Kind.SNAPSHOT
    with pytest.raises(rtm2.RTMError) as info:  # the old picks went with the old membership
        await b.get_subscribed_users("t")
    assert info.value.code == ErrorCode.CHANNEL_TOPIC_NOT_SUBSCRIBED
    messages2 = await b.subscribe_topic("t", [uid(alice)])
    assert messages2 is not messages
    await a.publish_topic("t", "after")
    assert await texts(messages2, 1) == [(uid(alice), "after")]
    assert await conn.get(timeout=5) == rtm2.ConnectionEvent(
        State.CONNECTED, Reason.JOIN_SUCCESS, channel
    )


async def test_a_publisher_that_leaves_a_topic_stops_there_and_can_join_it_again(
    users: Users,
) -> None:
    channel = unique("topicleave")
    alice, bob = await users.login("alice"), await users.login("bob")
    a, b = alice.stream_channel(channel), bob.stream_channel(channel)
    await join(alice, channel)
    await a.join_topic("t")
    _, b_events, _ = await join(bob, channel)
    assert (await b_events.get(timeout=5)).type is Kind.SNAPSHOT
    messages = await b.subscribe_topic("t", [uid(alice)])

    await a.leave_topic("t")
    event = await b_events.get(timeout=5)
    assert (event.type, event.user_id, event.topic) == (Kind.REMOTE_LEAVE, uid(alice), "t")
    for call in (a.publish_topic("t", "x"), a.leave_topic("t")):
        with pytest.raises(rtm2.RTMError) as info:
            await call
        assert info.value.code == ErrorCode.CHANNEL_TOPIC_NOT_JOINED
    assert await b.get_subscribed_users("t") == [uid(alice)]

    await a.join_topic("t")
    event = await b_events.get(timeout=5)
    assert (event.type, event.user_id, event.topic) == (Kind.REMOTE_JOIN, uid(alice), "t")
    await a.publish_topic("t", "again")
    assert await texts(messages, 1) == [(uid(alice), "again")]


async def test_logout_ends_every_stream_of_the_channel_and_a_new_login_can_join_again(
    users: Users, server: ServerProcess
) -> None:
    channel = unique("logout")
    alice, bob = await users.login("alice"), await users.login("bob")
    a, b = alice.stream_channel(channel), bob.stream_channel(channel)
    await join(alice, channel)
    await a.join_topic("t")
    _, topic_events, token_events = await join(bob, channel)
    messages = await b.subscribe_topic("t", [uid(alice)])

    await bob.logout()
    assert not b.joined
    assert await ended(messages) == []
    assert [e.type for e in await ended(topic_events)] == [Kind.SNAPSHOT]
    assert await ended(token_events) == []

    await bob.login(token_for(uid(bob)))
    snapshot, _, _ = await join(bob, channel)
    assert snapshot == {"t": [uid(alice)]}
    messages = await b.subscribe_topic("t", [uid(alice)])
    await a.publish_topic("t", "welcome back")
    assert await texts(messages, 1) == [(uid(alice), "welcome back")]
