"""Presence end to end: snapshots, every event type, timeouts, interval mode, quiet users,
who_now paging, temporary state (cached before joining) and where_now, in message and stream
channels."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Awaitable
from typing import Any

import pytest

import rtm2
from rtm2 import ChannelInfo, ChannelType, ErrorCode, PresenceEvent, UserState
from rtm2 import PresenceEventType as Kind
from rtm2.tokens import build_stream_token

from ..conftest import APP_A, APP_OPEN, APP_SMALL, CERT_A, ServerProcess
from .util import Users, client_for, token_for, uid, unique

MESSAGE = ChannelType.MESSAGE
STREAM = ChannelType.STREAM


Events = rtm2.EventStream[PresenceEvent]


async def fails(call: Awaitable[object], code: ErrorCode) -> None:
    """``call`` must raise RTMError with ``code``."""
    with pytest.raises(rtm2.RTMError) as info:
        await call
    assert info.value.code == code, f"expected {code.name}, got {info.value!r}"


def event(
    kind: Kind,
    channel: str,
    channel_type: ChannelType = MESSAGE,
    user: str = "",
    state: dict[str, str] | None = None,
    joined: list[str] | None = None,
    left: list[str] | None = None,
    timed_out: list[str] | None = None,
    snapshot: dict[str, dict[str, str]] | None = None,
) -> PresenceEvent:
    return PresenceEvent(
        kind,
        channel,
        channel_type,
        user,
        state or {},
        joined or [],
        left or [],
        timed_out or [],
        snapshot or {},
    )


async def join(client: rtm2.RTMClient, channel: str, **options: bool) -> rtm2.JoinResult:
    """Join the stream channel ``channel`` (with a stream token on APP_A)."""
    token = None
    if client.config.app_id == APP_A:
        token = build_stream_token(APP_A, CERT_A, channel, uid(client))
    return await client.stream_channel(channel).join(token, **options)


async def listen(
    client: rtm2.RTMClient, channel: str, channel_type: ChannelType = MESSAGE, **options: bool
) -> tuple[dict[str, dict[str, str]], Events]:
    """Subscribe (or join) with presence; check the SNAPSHOT event that comes first and return
    the snapshot and the rest of the event stream."""
    if channel_type is MESSAGE:
        await client.subscribe(channel, **options)
    else:
        await join(client, channel, **options)
    snapshot, events = await client.presence.get_presence_events(channel, channel_type)
    first = await events.get(timeout=5)
    assert first == event(Kind.SNAPSHOT, channel, channel_type, snapshot=snapshot)
    return snapshot, events


async def nothing_for(seconds: float, *streams: Events) -> None:
    """No event arrives on any of ``streams`` for ``seconds`` (waited for in parallel)."""

    async def one(stream: Events) -> None:
        try:
            got = await stream.get(timeout=seconds)
        except TimeoutError:
            return
        pytest.fail(f"unexpected presence event {got}")

    await asyncio.gather(*(one(s) for s in streams))


async def ended(stream: rtm2.EventStream[Any]) -> list[Any]:
    """What is left in a stream that must be ending: iteration has to stop by itself."""
    async with asyncio.timeout(5):
        return [item async for item in stream]


async def who(client: rtm2.RTMClient, channel: str, channel_type: ChannelType = MESSAGE) -> list:
    """who_now's single page, as [(user, state)] with states."""
    listed, next_page = await client.presence.who_now(channel, channel_type, include_state=True)
    assert next_page is None
    assert listed.total == len(listed)
    return [(u.user_id, u.state) for u in listed]


def kill(client: rtm2.RTMClient) -> None:
    """End the client's connection without a word, for good: the server keeps its session
    detached, and the client does not come back."""
    client.config = dataclasses.replace(client.config, auto_reconnect=False)
    assert client._link is not None
    assert client._link._transport is not None
    client._link._transport.disconnect()


# --- snapshot, join, leave, state changes ----------------------------------------------------


async def test_subscribing_with_presence_starts_with_a_snapshot_of_everyone_then_remote_joins(
    users: Users,
) -> None:
    channel = unique("snap")
    alice, bob, carol = [await users.login(n) for n in ("alice", "bob", "carol")]
    await alice.presence.set_state(channel, MESSAGE, {"mood": "happy"})  # cached until joined
    a_snapshot, a_events = await listen(alice, channel)
    assert a_snapshot == {uid(alice): {"mood": "happy"}}
    assert await alice.presence.get_state(channel, MESSAGE, uid(alice)) == {"mood": "happy"}

    await bob.presence.set_state(channel, MESSAGE, {"role": "guest", "lang": "fr"})
    b_snapshot, b_events = await listen(bob, channel)
    assert b_snapshot == {
        uid(alice): {"mood": "happy"},
        uid(bob): {"role": "guest", "lang": "fr"},
    }
    assert await a_events.get(timeout=5) == event(
        Kind.REMOTE_JOIN, channel, user=uid(bob), state={"role": "guest", "lang": "fr"}
    )

    await carol.subscribe(channel, with_presence=False)  # present, but not listening
    for events in (a_events, b_events):
        assert await events.get(timeout=5) == event(Kind.REMOTE_JOIN, channel, user=uid(carol))
    # Alice's view follows the events.
    snapshot, same = await alice.presence.get_presence_events(channel, MESSAGE)
    assert same is a_events
    assert snapshot == {
        uid(alice): {"mood": "happy"},
        uid(bob): {"role": "guest", "lang": "fr"},
        uid(carol): {},
    }
    assert await who(carol, channel) == sorted(snapshot.items())
    # Nobody was told about themselves.
    assert len(a_events) == len(b_events) == 0


async def test_a_user_who_unsubscribes_is_announced_as_leaving_after_the_debounce_time(
    users: Users,
) -> None:
    channel = unique("leave")
    alice, bob = await users.login("alice"), await users.login("bob")
    _, a_events = await listen(alice, channel)
    _, b_events = await listen(bob, channel)
    assert (await a_events.get(timeout=5)).type is Kind.REMOTE_JOIN

    loop = asyncio.get_running_loop()
    start = loop.time()
    await bob.unsubscribe(channel)
    assert await ended(b_events) == []
    await fails(
        bob.presence.get_presence_events(channel, MESSAGE), ErrorCode.CHANNEL_NOT_SUBSCRIBED
    )
    assert await a_events.get(timeout=5) == event(Kind.REMOTE_LEAVE, channel, user=uid(bob))
    assert loop.time() - start >= 0.4  # presence_debounce is 0.5 s
    assert await who(alice, channel) == [(uid(alice), {})]
    snapshot, _ = await alice.presence.get_presence_events(channel, MESSAGE)
    assert snapshot == {uid(alice): {}}
    await fails(
        alice.presence.get_state(channel, MESSAGE, uid(bob)), ErrorCode.PRESENCE_USER_NOT_EXIST
    )


async def test_set_state_and_remove_state_tell_the_others_the_full_new_state(
    users: Users,
) -> None:
    channel = unique("state")
    alice, bob = await users.login("alice"), await users.login("bob")
    _, a_events = await listen(alice, channel)
    _, b_events = await listen(bob, channel)
    await a_events.get(timeout=5)  # bob's REMOTE_JOIN

    changed = Kind.REMOTE_STATE_CHANGED
    await alice.presence.set_state(channel, MESSAGE, {"a": "1", "b": "2"})
    assert await b_events.get(timeout=5) == event(
        changed, channel, user=uid(alice), state={"a": "1", "b": "2"}
    )
    await alice.presence.set_state(channel, MESSAGE, {"b": "3", "c": "4"})
    assert await b_events.get(timeout=5) == event(
        changed, channel, user=uid(alice), state={"a": "1", "b": "3", "c": "4"}
    )
    await alice.presence.remove_state(channel, MESSAGE, ["a", "c", "never-set"])
    assert await b_events.get(timeout=5) == event(
        changed, channel, user=uid(alice), state={"b": "3"}
    )

    assert await bob.presence.get_state(channel, MESSAGE, uid(alice)) == {"b": "3"}
    snapshot, _ = await bob.presence.get_presence_events(channel, MESSAGE)
    assert snapshot[uid(alice)] == {"b": "3"}
    assert await who(bob, channel) == sorted([(uid(alice), {"b": "3"}), (uid(bob), {})])

    # Alice was told nothing about her own changes: bob's change is the next thing she gets.
    await bob.presence.set_state(channel, MESSAGE, {"x": "y"})
    assert await a_events.get(timeout=5) == event(changed, channel, user=uid(bob), state={"x": "y"})


async def test_the_presence_snapshot_of_get_presence_events_shows_ones_own_current_state(
    users: Users,
) -> None:
    channel = unique("ownstate")
    alice = await users.login("alice")
    await alice.presence.set_state(channel, MESSAGE, {"mood": "calm"})
    await listen(alice, channel)
    await alice.presence.set_state(channel, MESSAGE, {"mood": "busy", "at": "desk"})
    await alice.presence.remove_state(channel, MESSAGE, ["at"])
    assert await alice.presence.get_state(channel, MESSAGE, uid(alice)) == {"mood": "busy"}
    snapshot, _ = await alice.presence.get_presence_events(channel, MESSAGE)
    # "The channel's presence now (user id -> state, self included)".
    assert snapshot == {uid(alice): {"mood": "busy"}}


async def test_too_many_state_pairs_are_refused_and_the_state_stays_as_it_was(
    users: Users,
) -> None:
    channel = unique("pairs")
    alice, bob = await users.login("alice"), await users.login("bob")
    many = {f"k{i}": str(i) for i in range(33)}
    # Cached before joining: the SDK checks.
    await alice.presence.set_state(channel, MESSAGE, {"keep": "me"})
    await fails(
        alice.presence.set_state(channel, MESSAGE, many), ErrorCode.PRESENCE_STATE_COUNT_OVERFLOW
    )
    await fails(  # 1 cached + 32 new
        alice.presence.set_state(channel, MESSAGE, dict(list(many.items())[:32])),
        ErrorCode.PRESENCE_STATE_COUNT_OVERFLOW,
    )
    snapshot, _ = await listen(alice, channel)
    assert snapshot == {uid(alice): {"keep": "me"}}

    # In the channel: the server checks, on the merged state too.
    _, b_events = await listen(bob, channel)
    await fails(
        alice.presence.set_state(channel, MESSAGE, many), ErrorCode.PRESENCE_STATE_COUNT_OVERFLOW
    )
    await fails(
        alice.presence.set_state(channel, MESSAGE, dict(list(many.items())[:32])),
        ErrorCode.PRESENCE_STATE_COUNT_OVERFLOW,
    )
    assert await alice.presence.get_state(channel, MESSAGE, uid(alice)) == {"keep": "me"}
    thirty_two = {"keep": "me"} | dict(list(many.items())[:31])
    await alice.presence.set_state(channel, MESSAGE, thirty_two)
    assert await b_events.get(timeout=5) == event(
        Kind.REMOTE_STATE_CHANGED, channel, user=uid(alice), state=thirty_two
    )
    assert len(b_events) == 0  # the refused changes told nobody anything


async def test_state_can_be_cached_for_a_hundred_channels_not_yet_joined_and_no_more(
    users: Users,
) -> None:
    alice, bob = await users.login("alice"), await users.login("bob")
    prefix = unique("cache")
    names = [f"{prefix}-{i}" for i in range(101)]
    for i, name in enumerate(names[:100]):
        await alice.presence.set_state(name, MESSAGE if i % 2 else STREAM, {"i": str(i)})
    await fails(
        alice.presence.set_state(names[100], MESSAGE, {"i": "100"}),
        ErrorCode.PRESENCE_CACHED_TOO_MANY_STATES,
    )
    # Channels already cached can still change; the same name of the other type cannot.
    await alice.presence.set_state(names[1], MESSAGE, {"more": "yes"})
    await alice.presence.remove_state(names[1], MESSAGE, ["i"])
    await fails(
        alice.presence.set_state(names[1], STREAM, {"i": "x"}),
        ErrorCode.PRESENCE_CACHED_TOO_MANY_STATES,
    )

    # Joining one of them applies its cached state and frees a place in the cache.
    _, b_events = await listen(bob, names[1])
    snapshot, _ = await listen(alice, names[1])
    assert snapshot[uid(alice)] == {"more": "yes"}
    assert await b_events.get(timeout=5) == event(
        Kind.REMOTE_JOIN, names[1], user=uid(alice), state={"more": "yes"}
    )
    await alice.presence.set_state(names[100], MESSAGE, {"i": "100"})
    await alice.subscribe(names[100])
    assert await bob.presence.get_state(names[100], MESSAGE, uid(alice)) == {"i": "100"}
    _, stream_events = await listen(alice, names[0], STREAM)
    assert await alice.presence.get_state(names[0], STREAM, uid(alice)) == {"i": "0"}
    assert len(stream_events) == 0


async def test_state_goes_with_leaving_so_subscribing_again_starts_without_it(
    users: Users,
) -> None:
    channel = unique("forget")
    alice, bob = await users.login("alice"), await users.login("bob")
    await bob.subscribe(channel)
    await alice.presence.set_state(channel, MESSAGE, {"x": "1"})
    await alice.subscribe(channel)
    assert await bob.presence.get_state(channel, MESSAGE, uid(alice)) == {"x": "1"}

    await alice.unsubscribe(channel)
    await alice.subscribe(channel)  # back within the debounce time
    assert await alice.presence.get_state(channel, MESSAGE, uid(alice)) == {}
    assert await bob.presence.get_state(channel, MESSAGE, uid(alice)) == {}

    await alice.presence.set_state(channel, MESSAGE, {"y": "2"})
    await alice.unsubscribe(channel)
    await asyncio.sleep(0.8)  # past the debounce time: alice really left
    await fails(
        bob.presence.get_state(channel, MESSAGE, uid(alice)), ErrorCode.PRESENCE_USER_NOT_EXIST
    )
    snapshot, _ = await listen(alice, channel)
    assert snapshot == {uid(alice): {}, uid(bob): {}}


# --- timeouts and quick returns ----------------------------------------------------------------


async def test_a_killed_connection_stays_present_for_its_presence_timeout_then_times_out(
    users: Users,
) -> None:
    channel = unique("timeout")
    alice = await users.login("alice", presence_timeout=5)
    carol = await users.login("carol", presence_timeout=1)  # the SDK makes that 5
    bob = await users.login("bob")
    await alice.presence.set_state(channel, MESSAGE, {"k": "v"})
    await alice.presence.set_state(channel, STREAM, {"s": "t"})
    await alice.subscribe(channel)
    await join(alice, channel)
    await carol.subscribe(channel)
    _, msg_events = await listen(bob, channel)
    _, stream_events = await listen(bob, channel, STREAM)

    loop = asyncio.get_running_loop()
    start = loop.time()
    kill(alice)
    kill(carol)
    # Still present, with their state, well past the debounce time.
    await nothing_for(2.0, msg_events, stream_events)
    assert await who(bob, channel) == sorted(
        [(uid(alice), {"k": "v"}), (uid(bob), {}), (uid(carol), {})]
    )
    assert await who(bob, channel, STREAM) == sorted([(uid(alice), {"s": "t"}), (uid(bob), {})])
    assert sorted(await bob.presence.where_now(uid(alice))) == [
        ChannelInfo(channel, MESSAGE),
        ChannelInfo(channel, STREAM),
    ]

    timed_out = await asyncio.gather(
        msg_events.get(timeout=8), msg_events.get(timeout=8), stream_events.get(timeout=8)
    )
    assert loop.time() - start >= 4.5  # presence_timeout=5
    assert sorted(timed_out[:2]) == sorted(
        [
            event(Kind.REMOTE_TIMEOUT, channel, MESSAGE, uid(alice)),
            event(Kind.REMOTE_TIMEOUT, channel, MESSAGE, uid(carol)),
        ]
    )
    assert timed_out[2] == event(Kind.REMOTE_TIMEOUT, channel, STREAM, uid(alice))
    assert await who(bob, channel) == [(uid(bob), {})]
    assert await who(bob, channel, STREAM) == [(uid(bob), {})]
    assert await bob.presence.where_now(uid(alice)) == []
    for channel_type in (MESSAGE, STREAM):
        await fails(
            bob.presence.get_state(channel, channel_type, uid(alice)),
            ErrorCode.PRESENCE_USER_NOT_EXIST,
        )
        snapshot, _ = await bob.presence.get_presence_events(channel, channel_type)
        assert snapshot == {uid(bob): {}}


async def test_leaving_and_coming_back_within_the_debounce_time_tells_nobody_anything(
    users: Users,
) -> None:
    channel = unique("blink")
    alice, bob = await users.login("alice"), await users.login("bob")
    await alice.subscribe(channel)
    await join(alice, channel)
    _, msg_events = await listen(bob, channel)
    _, stream_events = await listen(bob, channel, STREAM)

    await alice.unsubscribe(channel)
    await alice.subscribe(channel)
    await alice.stream_channel(channel).leave()
    await join(alice, channel)
    await nothing_for(1.5, msg_events, stream_events)
    assert await who(bob, channel) == sorted([(uid(alice), {}), (uid(bob), {})])
    assert await who(bob, channel, STREAM) == sorted([(uid(alice), {}), (uid(bob), {})])

    # Bob still hears a real leave.
    await alice.unsubscribe(channel)
    await alice.stream_channel(channel).leave()
    assert await asyncio.gather(msg_events.get(timeout=5), stream_events.get(timeout=5)) == [
        event(Kind.REMOTE_LEAVE, channel, MESSAGE, uid(alice)),
        event(Kind.REMOTE_LEAVE, channel, STREAM, uid(alice)),
    ]


# --- interval mode -------------------------------------------------------------------------------


async def test_above_the_interval_threshold_changes_come_aggregated_about_once_a_second(
    users: Users,
) -> None:
    """APP_SMALL's threshold is 8 users: with 9 or more, INTERVAL events replace the others."""
    channel = unique("interval")
    loop = asyncio.get_running_loop()
    observer = await users.login("obs", APP_SMALL)
    _, events = await listen(observer, channel)
    u = dict(enumerate(await users.login_many(10, "u", APP_SMALL, presence_timeout=5), 1))
    for i in range(1, 8):
        await u[i].subscribe(channel, with_presence=False)
    got = [await events.get(timeout=5) for _ in range(7)]
    assert got == [event(Kind.REMOTE_JOIN, channel, user=uid(u[i])) for i in range(1, 8)]

    # The 9th user: interval mode from here on.
    await u[9].presence.set_state(channel, MESSAGE, {"n": "9"})
    start = loop.time()
    await u[8].subscribe(channel, with_presence=False)
    kill(u[4])
    await u[9].subscribe(channel, with_presence=False)
    await u[10].subscribe(channel, with_presence=False)
    await u[2].presence.set_state(channel, MESSAGE, {"mood": "x"})
    await u[3].unsubscribe(channel)

    joined: list[str] = []
    left: list[str] = []
    timed_out: list[str] = []
    states: dict[str, dict[str, str]] = {}
    times: list[float] = []
    async with asyncio.timeout(12):
        while not timed_out:  # u4's timeout comes last, after its presence timeout of 5 s
            e = await events.get()
            times.append(loop.time())
            assert (e.type, e.channel, e.channel_type, e.user_id, e.state) == (
                Kind.INTERVAL,
                channel,
                MESSAGE,
                "",
                {},
            ), e
            joined += e.joined
            left += e.left
            timed_out += e.timed_out
            states |= e.snapshot
    assert joined == [uid(u[8]), uid(u[9]), uid(u[10])]
    assert left == [uid(u[3])]
    assert timed_out == [uid(u[4])]
    assert states == {
        uid(u[8]): {},
        uid(u[9]): {"n": "9"},
        uid(u[10]): {},
        uid(u[2]): {"mood": "x"},
    }
    assert 0.7 <= times[0] - start <= 3.0  # the first interval, not at once
    for earlier, later in itertools.pairwise(times):
        assert later - earlier >= 0.7
    snapshot, _ = await observer.presence.get_presence_events(channel, MESSAGE)
    present = [uid(observer)] + [uid(u[i]) for i in (1, 2, 5, 6, 7, 8, 9, 10)]
    assert sorted(snapshot) == sorted(present)
    assert snapshot[uid(u[2])] == {"mood": "x"}
    assert snapshot[uid(u[9])] == {"n": "9"}

    # 9 users; one leaves: what is pending is reported at once, then events are instant again.
    await u[5].unsubscribe(channel)
    await u[6].presence.set_state(channel, MESSAGE, {"pending": "1"})
    left, states = [], {}
    async with asyncio.timeout(5):
        while not left:
            e = await events.get()
            assert e.type is Kind.INTERVAL, e
            assert (e.joined, e.timed_out) == ([], [])
            left += e.left
            states |= e.snapshot
    assert left == [uid(u[5])]
    assert states == {uid(u[6]): {"pending": "1"}}

    await u[7].presence.set_state(channel, MESSAGE, {"now": "instant"})
    asked = loop.time()
    assert await events.get(timeout=5) == event(
        Kind.REMOTE_STATE_CHANGED, channel, user=uid(u[7]), state={"now": "instant"}
    )
    assert loop.time() - asked < 0.5
    await u[1].unsubscribe(channel)
    assert await events.get(timeout=5) == event(Kind.REMOTE_LEAVE, channel, user=uid(u[1]))


# --- quiet users ---------------------------------------------------------------------------------


async def test_a_quiet_subscriber_hears_the_others_but_nobody_hears_of_it(users: Users) -> None:
    channel = unique("quiet")
    observer, quiet, rob = [await users.login(n) for n in ("obs", "quiet", "rob")]
    _, o_events = await listen(observer, channel)

    await quiet.presence.set_state(channel, MESSAGE, {"hidden": "yes"})
    q_snapshot, q_events = await listen(quiet, channel, be_quiet=True)
    assert q_snapshot == {uid(observer): {}, uid(quiet): {"hidden": "yes"}}
    await join(quiet, channel, be_quiet=True)  # quiet in a stream channel of the same name too

    r_snapshot, r_events = await listen(rob, channel)
    assert r_snapshot == {uid(observer): {}, uid(rob): {}}
    # The observer's next event is rob's join: there was none for the quiet user before it.
    assert await o_events.get(timeout=5) == event(Kind.REMOTE_JOIN, channel, user=uid(rob))
    assert await q_events.get(timeout=5) == event(Kind.REMOTE_JOIN, channel, user=uid(rob))

    listed, _ = await observer.presence.who_now(channel, MESSAGE)
    assert (list(listed), listed.total) == (
        sorted([UserState(uid(observer), {}), UserState(uid(rob), {})]),
        2,
    )
    stream_listed, _ = await observer.presence.who_now(channel, STREAM)
    assert (list(stream_listed), stream_listed.total) == ([], 0)
    assert await observer.presence.where_now(uid(quiet)) == []
    assert await quiet.presence.where_now(uid(quiet)) == []
    await fails(
        observer.presence.get_state(channel, MESSAGE, uid(quiet)),
        ErrorCode.PRESENCE_USER_NOT_EXIST,
    )
    assert await quiet.presence.get_state(channel, MESSAGE, uid(quiet)) == {"hidden": "yes"}

    # Its state changes and its leave are not announced either.
    await quiet.presence.set_state(channel, MESSAGE, {"more": "1"})
    await rob.presence.set_state(channel, MESSAGE, {"r": "1"})
    changed = event(Kind.REMOTE_STATE_CHANGED, channel, user=uid(rob), state={"r": "1"})
    assert await o_events.get(timeout=5) == changed
    assert await q_events.get(timeout=5) == changed
    await quiet.unsubscribe(channel)
    await rob.unsubscribe(channel)
    assert await o_events.get(timeout=5) == event(Kind.REMOTE_LEAVE, channel, user=uid(rob))
    await nothing_for(0.5, o_events)
    assert len(r_events) == 0


async def test_a_user_who_comes_back_quiet_within_the_debounce_time_is_announced_as_leaving(
    users: Users,
) -> None:
    """Visible, then quiet: to the others the user is gone, as who_now already says."""
    channel = unique("requiet")
    alice, bob = await users.login("alice"), await users.login("bob")
    _, b_events = await listen(bob, channel)
    await alice.subscribe(channel)
    assert await b_events.get(timeout=5) == event(Kind.REMOTE_JOIN, channel, user=uid(alice))

    await alice.unsubscribe(channel)
    await alice.subscribe(channel, be_quiet=True)
    listed, _ = await bob.presence.who_now(channel, MESSAGE)
    assert [u.user_id for u in listed] == [uid(bob)]
    assert await b_events.get(timeout=3) == event(Kind.REMOTE_LEAVE, channel, user=uid(alice))
    snapshot, _ = await bob.presence.get_presence_events(channel, MESSAGE)
    assert snapshot == {uid(bob): {}}


# --- who_now and where_now -----------------------------------------------------------------------


async def test_who_now_pages_230_users_100_at_a_time_sorted_with_a_total(users: Users) -> None:
    channel = unique("paging")
    clients = await users.login_many(230, "p", APP_OPEN)
    ids = sorted(uid(c) for c in clients)
    for start in range(0, 230, 50):
        batch = clients[start : start + 50]
        for c in batch:
            await c.presence.set_state(channel, MESSAGE, {"me": uid(c)})
        await asyncio.gather(*(c.subscribe(channel, with_presence=False) for c in batch))
    viewer = clients[0]

    for include_state in (False, True):
        pages: list[list[UserState]] = []
        bookmark: str | None = None
        for expected_size in (100, 100, 30):
            listed, bookmark = await viewer.presence.who_now(
                channel, MESSAGE, include_state=include_state, page=bookmark
            )
            assert len(listed) == expected_size
            assert listed.total == 230
            assert (bookmark is None) == (expected_size == 30)
            pages.append(list(listed))
        everyone = [user for page in pages for user in page]
        assert [user.user_id for user in everyone] == ids
        expected_states = [{"me": i} if include_state else {} for i in ids]
        assert [user.state for user in everyone] == expected_states

    listed, _ = await viewer.presence.who_now(channel, MESSAGE, include_user_id=False)
    assert (list(listed), listed.total) == ([], 230)
    await fails(
        viewer.presence.who_now(channel, MESSAGE, include_user_id=False, include_state=True),
        ErrorCode.PRESENCE_INVALID_ARGUMENT,
    )
    listed, bookmark = await viewer.presence.who_now(unique("empty"), MESSAGE)
    assert (list(listed), listed.total, bookmark) == ([], 0, None)


async def test_where_now_lists_the_message_and_stream_channels_a_user_is_in(users: Users) -> None:
    alice, bob = await users.login("alice"), await users.login("bob")
    both, msg_only, stream_only = unique("both"), unique("msg"), unique("stream")
    assert await bob.presence.where_now(uid(alice)) == []
    await alice.subscribe(both, with_presence=False)
    await join(alice, both, with_presence=False)
    await alice.subscribe(msg_only)
    await join(alice, stream_only)

    where = await bob.presence.where_now(uid(alice))
    assert sorted(where) == sorted(
        [
            ChannelInfo(both, MESSAGE),
            ChannelInfo(both, STREAM),
            ChannelInfo(msg_only, MESSAGE),
            ChannelInfo(stream_only, STREAM),
        ]
    )
    assert all(type(c.channel_type) is ChannelType for c in where)
    assert await alice.presence.where_now(uid(alice)) == where
    assert await bob.presence.where_now(unique("nobody")) == []
    await fails(bob.presence.where_now("_bad"), ErrorCode.INVALID_USER_ID)

    await alice.unsubscribe(both)
    await alice.stream_channel(stream_only).leave()
    await asyncio.sleep(0.8)  # leaves take effect after the debounce time
    assert sorted(await bob.presence.where_now(uid(alice))) == sorted(
        [ChannelInfo(both, STREAM), ChannelInfo(msg_only, MESSAGE)]
    )


# --- event streams and errors --------------------------------------------------------------------


async def test_presence_events_need_the_channel_with_presence(users: Users) -> None:
    alice = await users.login("alice")
    channel = unique("nopres")
    await fails(
        alice.presence.get_presence_events(channel, MESSAGE), ErrorCode.CHANNEL_NOT_SUBSCRIBED
    )
    await fails(alice.presence.get_presence_events(channel, STREAM), ErrorCode.CHANNEL_NOT_JOINED)
    await alice.subscribe(channel, with_presence=False)
    await join(alice, channel, with_presence=False)
    await fails(
        alice.presence.get_presence_events(channel, MESSAGE), ErrorCode.CHANNEL_NOT_SUBSCRIBED
    )
    await fails(alice.presence.get_presence_events(channel, STREAM), ErrorCode.CHANNEL_NOT_JOINED)
    # Present all the same, with a state of its own.
    await alice.presence.set_state(channel, MESSAGE, {"here": "yes"})
    assert await who(alice, channel) == [(uid(alice), {"here": "yes"})]
    assert await who(alice, channel, STREAM) == [(uid(alice), {})]


async def test_the_presence_stream_ends_on_unsubscribe_leave_and_logout(users: Users) -> None:
    alice, bob = await users.login("alice"), await users.login("bob")
    one, two = unique("one"), unique("two")
    _, one_events = await listen(alice, one)
    _, two_events = await listen(alice, two)
    _, stream_events = await listen(alice, one, STREAM)
    await bob.subscribe(one)
    _, b_two_events = await listen(bob, two)
    assert await two_events.get(timeout=5) == event(Kind.REMOTE_JOIN, two, user=uid(bob))

    await alice.unsubscribe(one)
    assert await ended(one_events) == [event(Kind.REMOTE_JOIN, one, user=uid(bob))]
    assert not two_events.closed
    assert not stream_events.closed  # the stream channel of the same name is another channel
    assert len(stream_events) == 0

    await alice.logout()
    assert await ended(two_events) == []
    assert await ended(stream_events) == []
    # Logging out leaves every channel: the others hear of it after the debounce time.
    assert await b_two_events.get(timeout=5) == event(Kind.REMOTE_LEAVE, two, user=uid(alice))
    for channel, channel_type in ((one, MESSAGE), (two, MESSAGE), (one, STREAM)):
        await fails(alice.presence.get_presence_events(channel, channel_type), ErrorCode.NOT_LOGIN)

    await alice.login(token_for(uid(alice)))
    await fails(alice.presence.get_presence_events(two, MESSAGE), ErrorCode.CHANNEL_NOT_SUBSCRIBED)
    snapshot, _ = await listen(alice, two)
    assert snapshot == {uid(alice): {}, uid(bob): {}}


async def test_presence_queries_check_the_channel_name_type_and_user(users: Users) -> None:
    alice = await users.login("alice")
    channel = unique("checks")
    await alice.subscribe(channel)
    presence = alice.presence
    await fails(presence.who_now("a.b", MESSAGE), ErrorCode.INVALID_CHANNEL_NAME)
    await fails(presence.who_now(channel, ChannelType.USER), ErrorCode.INVALID_CHANNEL_TYPE)
    await fails(presence.get_state("a/b", STREAM, uid(alice)), ErrorCode.INVALID_CHANNEL_NAME)
    await fails(
        presence.get_state(channel, MESSAGE, unique("nobody")), ErrorCode.PRESENCE_USER_NOT_EXIST
    )
    await fails(
        presence.set_state(channel, MESSAGE, {"": "empty key"}),
        ErrorCode.PRESENCE_INVALID_STATE_KEY,
    )
    await fails(
        presence.set_state(channel, MESSAGE, {"k" * 65: "v"}),
        ErrorCode.PRESENCE_STATE_KEY_SIZE_OVERFLOW,
    )
    await fails(
        presence.set_state(channel, MESSAGE, {"k": "v" * (8 * 1024 + 1)}),
        ErrorCode.PRESENCE_STATE_VALUE_SIZE_OVERFLOW,
    )
    await presence.set_state(channel, MESSAGE, {"k" * 64: "v" * 8 * 1024})
    assert await presence.get_state(channel, MESSAGE, uid(alice)) == {"k" * 64: "v" * 8 * 1024}


async def test_presence_calls_before_login_raise_not_login(server: ServerProcess) -> None:
    alice = client_for(server, unique("alice"))
    channel = unique("nologin")
    presence = alice.presence
    calls: list[Awaitable[object]] = [
        presence.who_now(channel, MESSAGE),
        presence.where_now("bob"),
        presence.get_state(channel, MESSAGE, "bob"),
        presence.set_state(channel, MESSAGE, {"a": "b"}),
        presence.remove_state(channel, MESSAGE, ["a"]),
        presence.get_presence_events(channel, MESSAGE),
    ]
    for call in calls:
        await fails(call, ErrorCode.NOT_LOGIN)


# --- stream channels -----------------------------------------------------------------------------


async def test_a_stream_channel_joined_with_presence_reports_joins_state_changes_and_leaves(
    users: Users,
) -> None:
    channel = unique("streampres")
    alice, bob = await users.login("alice"), await users.login("bob")
    await alice.presence.set_state(channel, STREAM, {"cam": "on"})
    a_snapshot, a_events = await listen(alice, channel, STREAM)
    assert a_snapshot == {uid(alice): {"cam": "on"}}

    await bob.presence.set_state(channel, STREAM, {"mic": "off"})
    b_snapshot, b_events = await listen(bob, channel, STREAM)
    assert b_snapshot == {uid(alice): {"cam": "on"}, uid(bob): {"mic": "off"}}
    assert await a_events.get(timeout=5) == event(
        Kind.REMOTE_JOIN, channel, STREAM, uid(bob), {"mic": "off"}
    )
    assert await who(alice, channel, STREAM) == sorted(b_snapshot.items())
    # The message channel of the same name is another channel.
    assert await who(alice, channel, MESSAGE) == []

    await bob.presence.set_state(channel, STREAM, {"mic": "on", "hand": "up"})
    assert await a_events.get(timeout=5) == event(
        Kind.REMOTE_STATE_CHANGED, channel, STREAM, uid(bob), {"mic": "on", "hand": "up"}
    )
    await bob.presence.remove_state(channel, STREAM, ["hand"])
    assert await a_events.get(timeout=5) == event(
        Kind.REMOTE_STATE_CHANGED, channel, STREAM, uid(bob), {"mic": "on"}
    )
    assert await alice.presence.get_state(channel, STREAM, uid(bob)) == {"mic": "on"}

    await bob.stream_channel(channel).leave()
    assert await ended(b_events) == []
    assert await a_events.get(timeout=5) == event(Kind.REMOTE_LEAVE, channel, STREAM, uid(bob))
    assert await who(alice, channel, STREAM) == [(uid(alice), {"cam": "on"})]
    await fails(bob.presence.get_presence_events(channel, STREAM), ErrorCode.CHANNEL_NOT_JOINED)
