"""``async with`` for the client and for stream channels: what is entered is left again, also
when an exception escapes the block."""

from __future__ import annotations

import asyncio
import socket

import psutil
import pytest

import rtm2
from rtm2 import ChannelType, ErrorCode
from rtm2 import ConnectionChangeReason as Reason
from rtm2 import ConnectionState as State
from rtm2 import PresenceEventType as Kind
from rtm2 import TopicEventType as TopicKind

from ..conftest import APP_A, APP_OPEN, CERT_A, ServerProcess, free_port
from .util import Users, client_for, token_for, uid, unique

MESSAGE, STREAM = ChannelType.MESSAGE, ChannelType.STREAM


class Boom(Exception):
    """The application's own error, escaping an ``async with`` block."""


async def watch(
    observer: rtm2.RTMClient, channel: str, ctype: ChannelType
) -> rtm2.EventStream[rtm2.PresenceEvent]:
    """Put ``observer`` in the channel and return its presence events."""
    if ctype is MESSAGE:
        await observer.subscribe(channel)
    else:
        await observer.stream_channel(channel).join()
    _, events = await observer.presence.get_presence_events(channel, ctype)
    return events


async def next_presence(
    events: rtm2.EventStream[rtm2.PresenceEvent], user: str
) -> rtm2.PresenceEventType:
    """The type of the next presence event about ``user``."""
    while True:
        event = await events.get(timeout=5)
        if event.user_id == user:
            return event.type


async def ended(
    stream: rtm2.EventStream[rtm2.ConnectionEvent],
) -> list[tuple[State, Reason]]:
    """What is left in a stream that must be ending: iteration has to stop by itself."""
    async with asyncio.timeout(5):
        return [(e.state, e.reason) async for e in stream if not e.channel]


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def gone(pid: int, port: int) -> bool:
    """The process ``pid`` has ended and nothing listens on ``port`` any more."""
    for _ in range(100):
        dead = not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
        if dead and not listening(port):
            return True
        await asyncio.sleep(0.05)
    return False


# --- the client ----------------------------------------------------------------------------------


async def test_leaving_the_client_block_logs_out_and_the_server_sees_the_user_leave(
    server: ServerProcess, users: Users
) -> None:
    channel = unique("cm")
    events = await watch(await users.login("watcher"), channel, MESSAGE)
    async with client_for(server, unique("ann")) as client:
        streams = await client.login(token_for(uid(client)))
        await client.subscribe(channel)
        assert await next_presence(events, uid(client)) is Kind.REMOTE_JOIN
    assert not client.logged_in
    assert await next_presence(events, uid(client)) is Kind.REMOTE_LEAVE
    assert (await ended(streams.conn_events))[-1] == (State.DISCONNECTED, Reason.LOGOUT)


async def test_an_exception_escaping_the_client_block_still_logs_out_and_is_raised_as_it_was(
    server: ServerProcess, users: Users
) -> None:
    channel = unique("cm")
    events = await watch(await users.login("watcher"), channel, MESSAGE)
    client = client_for(server, unique("ann"))
    streams: list[rtm2.LoginStreams] = []

    async def block() -> None:
        async with client:
            streams.append(await client.login(token_for(uid(client))))
            await client.subscribe(channel)
            assert await next_presence(events, uid(client)) is Kind.REMOTE_JOIN
            raise Boom

    with pytest.raises(Boom):
        await block()
    assert not client.logged_in
    # A leave, not a lost connection (that would be a REMOTE_TIMEOUT, minutes later).
    assert await next_presence(events, uid(client)) is Kind.REMOTE_LEAVE
    assert (await ended(streams[0].conn_events))[-1] == (State.DISCONNECTED, Reason.LOGOUT)


async def test_a_client_block_left_without_logging_in_ends_quietly(server: ServerProcess) -> None:
    async with client_for(server, unique("ann")) as client:
        assert not client.logged_in
    assert not client.logged_in


async def test_a_client_can_log_in_again_after_its_block_ended(server: ServerProcess) -> None:
    client = client_for(server, unique("ann"))
    for _ in range(2):
        async with client:
            await client.login(token_for(uid(client)))
            assert client.logged_in
    assert not client.logged_in


async def test_an_exception_escaping_the_client_block_stops_the_sidecar_it_started() -> None:
    port = free_port()
    client = rtm2.RTMClient(rtm2.RTMConfig(app_id=APP_OPEN, user_id=unique("side")))
    client.set_parameters({rtm2.PARAM_SIDECAR_PORT: port})
    pids: list[int] = []

    async def block() -> None:
        async with client:
            await client.login()
            assert client._sidecar._proc is not None
            pids.append(client._sidecar._proc.pid)
            assert listening(port)
            raise Boom

    try:
        with pytest.raises(Boom):
            await block()
        assert not client._sidecar.started
        assert await gone(pids[0], port)
    finally:
        await client.logout()  # a failed assertion must not leave a sidecar behind


async def test_a_sidecar_started_for_a_refused_login_stops_when_the_error_leaves_the_block() -> (
    None
):
    port = free_port()
    client = rtm2.RTMClient(rtm2.RTMConfig(app_id=APP_A, user_id=unique("side")))
    client.set_parameters({rtm2.PARAM_SIDECAR_PORT: port, rtm2.PARAM_SIDECAR_CERTIFICATE: CERT_A})
    pids: list[int] = []

    async def block() -> None:
        async with client:
            try:
                await client.login("not a token")
            finally:
                assert client._sidecar._proc is not None
                pids.append(client._sidecar._proc.pid)

    try:
        with pytest.raises(rtm2.RTMError) as info:
            await block()
        assert info.value.code == ErrorCode.INVALID_TOKEN
        assert await gone(pids[0], port)
    finally:
        await client.logout()


# --- stream channels -----------------------------------------------------------------------------


async def test_a_stream_channel_block_joins_then_leaves(users: Users) -> None:
    alice = await users.login("alice", app_id=APP_OPEN)
    name = unique("scm")
    events = await watch(await users.login("watcher", app_id=APP_OPEN), name, STREAM)
    async with alice.stream_channel(name) as channel:
        assert channel.joined
        assert channel is alice.stream_channel(name)
        assert (await channel.topic_events.get(timeout=5)).type is TopicKind.SNAPSHOT
        assert await next_presence(events, uid(alice)) is Kind.REMOTE_JOIN
    assert not channel.joined
    assert channel.topic_events.closed
    assert await next_presence(events, uid(alice)) is Kind.REMOTE_LEAVE


async def test_an_exception_escaping_a_stream_channel_block_still_leaves_the_channel(
    users: Users,
) -> None:
    alice = await users.login("alice", app_id=APP_OPEN)
    name = unique("scm")
    events = await watch(await users.login("watcher", app_id=APP_OPEN), name, STREAM)
    channel = alice.stream_channel(name)

    async def block() -> None:
        async with channel:
            await channel.join_topic("t")
            assert await next_presence(events, uid(alice)) is Kind.REMOTE_JOIN
            raise Boom

    with pytest.raises(Boom):
        await block()
    assert not channel.joined
    assert await next_presence(events, uid(alice)) is Kind.REMOTE_LEAVE
    assert alice.logged_in  # only the channel was left
    async with channel:  # and it can be entered again
        assert channel.joined


async def test_a_stream_channel_block_whose_client_logged_out_inside_ends_quietly(
    users: Users,
) -> None:
    alice = await users.login("alice", app_id=APP_OPEN)
    async with alice.stream_channel(unique("scm")) as channel:
        await alice.logout()
    assert not channel.joined


async def test_a_refused_join_raises_from_the_stream_channel_block_without_entering_it(
    users: Users,
) -> None:
    alice = await users.login("alice")  # an app that needs a stream token to join
    entered = False
    with pytest.raises(rtm2.RTMError):
        async with alice.stream_channel(unique("scm")):
            entered = True
    assert not entered
