"""Inputs that used to be taken as given: the presence timeout, and a detached session's token."""

from __future__ import annotations

import asyncio

import pytest
import websockets

from rtm2 import ChannelType, ErrorCode, PresenceEventType
from rtm2.protocol.codec import decode_server, encode
from rtm2.protocol.frames import Hello, Login, Reply, Subscribe

from ..conftest import APP_A, APP_OPEN, ServerProcess
from .util import Users, token_for, uid, unique


async def reply(ws: websockets.ClientConnection, timeout: float = 5) -> Reply:
    async with asyncio.timeout(timeout):
        while True:
            data = await ws.recv()
            assert isinstance(data, bytes)
            frame = decode_server(data)
            if isinstance(frame, Reply):
                return frame


@pytest.mark.parametrize("asked", [10**15, 301, 4, 0, -5])
async def test_a_presence_timeout_outside_5_to_300_s_is_refused_and_logs_nobody_in(
    server: ServerProcess, asked: int
) -> None:
    user = unique("pt")
    async with websockets.connect(server.url) as ws:
        await ws.send(encode(Hello(1)))
        assert (await reply(ws)).code == 0
        await ws.send(encode(Login(2, APP_OPEN, user, "", presence_timeout=asked)))
        refused = await reply(ws)
        assert (refused.rid, refused.code) == (2, ErrorCode.INVALID_PARAMETER)
        assert "presence_timeout" in refused.reason
        # Nothing changed: the same connection may still log in with a sane value.
        await ws.send(encode(Login(3, APP_OPEN, user, "", presence_timeout=300)))
        assert (await reply(ws)).code == 0


async def test_the_sdks_default_presence_timeout_and_the_range_ends_are_accepted(
    server: ServerProcess,
) -> None:
    for asked in (5, 300, 30):
        async with websockets.connect(server.url) as ws:
            await ws.send(encode(Hello(1)))
            await ws.send(encode(Login(2, APP_OPEN, unique("pt"), "", presence_timeout=asked)))
            assert [(await reply(ws)).code for _ in range(2)] == [0, 0]


async def test_a_detached_session_ends_when_its_token_expires(
    server: ServerProcess, users: Users
) -> None:
    channel = unique("expiring")
    observer = await users.login("obs")
    await observer.subscribe(channel)
    _, events = await observer.presence.get_presence_events(channel, ChannelType.MESSAGE)
    assert (await events.get(timeout=5)).type == PresenceEventType.SNAPSHOT
    user = unique("gone")
    ws = await websockets.connect(server.url)
    await ws.send(encode(Hello(1)))
    # Present for 300 s after its connection is lost, but its token ends in 3 s.
    await ws.send(encode(Login(2, APP_A, user, token_for(user, expire=3), presence_timeout=300)))
    await ws.send(encode(Subscribe(3, channel)))
    assert [(await reply(ws)).code for _ in range(3)] == [0, 0, 0]
    joined = await events.get(timeout=5)
    assert (joined.type, joined.user_id) == (PresenceEventType.REMOTE_JOIN, user)
    assert ws.transport is not None
    ws.transport.abort()  # gone without a word: the session is kept, detached
    gone = await events.get(timeout=8)
    assert (gone.type, gone.user_id) == (PresenceEventType.REMOTE_TIMEOUT, user)
    listed, _ = await observer.presence.who_now(channel, ChannelType.MESSAGE)
    assert [u.user_id for u in listed] == [uid(observer)]
