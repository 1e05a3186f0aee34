"""The server as a raw WebSocket peer sees it: handshake, bad input, keepalive, shutdown."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

import rtm2
from rtm2 import ConnectionChangeReason as Reason
from rtm2 import ConnectionState as State
from rtm2 import ErrorCode
from rtm2.protocol.codec import decode_result, decode_server, encode
from rtm2.protocol.frames import (
    Hello,
    Kick,
    Login,
    LoginResult,
    Logout,
    Ping,
    Pong,
    RenewToken,
    Reply,
    ServerFrame,
    Welcome,
)

from ..conftest import APP_A, APP_OPEN, ServerProcess
from .util import client_for, closed_with, next_event, token_for, unique


async def recv(ws: ClientConnection, timeout: float = 5) -> ServerFrame:
    data = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(data, bytes)
    return decode_server(data)


async def logged_in(server: ServerProcess, user: str) -> ClientConnection:
    ws = await websockets.connect(server.url)
    await ws.send(encode(Hello(1)))
    await ws.send(encode(Login(2, APP_OPEN, user, "")))
    welcome = await recv(ws)
    assert isinstance(welcome, Reply)
    assert welcome.code == 0
    reply = await recv(ws)
    assert isinstance(reply, Reply)
    assert reply.code == 0
    return ws


async def test_hello_returns_the_servers_keepalive_and_frame_limits(server: ServerProcess) -> None:
    async with websockets.connect(server.url) as ws:
        await ws.send(encode(Hello(7)))
        reply = await recv(ws)
        assert isinstance(reply, Reply)
        assert (reply.rid, reply.code) == (7, 0)
        welcome = decode_result(reply.result, Welcome)
        assert welcome.version == 1
        assert welcome.server.startswith("rtm2/")
        assert welcome.heartbeat_interval == 0.5
        assert welcome.max_frame_size == 64 * 1024
        await ws.send(encode(Ping(1.25)))
        assert await recv(ws) == Pong(1.25)


async def test_a_request_before_hello_is_refused_and_the_connection_closed(
    server: ServerProcess,
) -> None:
    async with websockets.connect(server.url) as ws:
        await ws.send(encode(Login(1, APP_OPEN, "tom", "")))
        reply = await recv(ws)
        assert isinstance(reply, Reply)
        assert reply.code == ErrorCode.INVALID_PARAMETER
        assert await closed_with(ws) == 1002


async def test_an_unsupported_protocol_version_is_refused_clearly(server: ServerProcess) -> None:
    async with websockets.connect(server.url) as ws:
        await ws.send(encode(Hello(1, version=99)))
        reply = await recv(ws)
        assert isinstance(reply, Reply)
        assert reply.code == ErrorCode.SERVICE_NOT_SUPPORTED
        assert "99" in reply.reason
        assert await closed_with(ws) == 1002


async def test_every_request_gets_exactly_one_reply_with_its_id(server: ServerProcess) -> None:
    user = unique("uma")
    ws = await logged_in(server, user)
    await ws.send(encode(Hello(10)))
    await ws.send(encode(Login(11, APP_OPEN, user, "")))
    await ws.send(encode(RenewToken(12, "", channel="nope")))
    await ws.send(encode(RenewToken(13, "")))
    replies = [await recv(ws) for _ in range(4)]
    assert [(r.rid, r.code) for r in replies if isinstance(r, Reply)] == [
        (10, ErrorCode.DUPLICATE_OPERATION),
        (11, ErrorCode.DUPLICATE_OPERATION),
        (12, ErrorCode.CHANNEL_NOT_JOINED),
        (13, 0),
    ]
    assert decode_result(replies[3].result, LoginResult).expires_at == 0  # type: ignore[union-attr]
    await ws.send(encode(Logout(14)))
    reply = await recv(ws)
    assert isinstance(reply, Reply)
    assert (reply.rid, reply.code) == (14, 0)
    assert await closed_with(ws) == 1000


@pytest.mark.parametrize(
    "payload",
    [b"", b"\xc1", b"\x93\x63\x01\x02", b"\x81\xa1a\x01", b"\x92\x02\x01", b"\x00" * 100],
    ids=["empty", "invalid-byte", "unknown-tag", "map", "missing-fields", "zeros"],
)
async def test_a_malformed_frame_closes_only_that_connection(
    server: ServerProcess, payload: bytes
) -> None:
    bystander = await logged_in(server, unique("vic"))
    async with websockets.connect(server.url) as ws:
        await ws.send(payload)
        assert await closed_with(ws) == 1002
    await bystander.send(encode(Ping(2.0)))
    assert await recv(bystander) == Pong(2.0)
    await bystander.close()


async def test_a_text_frame_is_refused(server: ServerProcess) -> None:
    async with websockets.connect(server.url) as ws:
        await ws.send("hello")
        assert await closed_with(ws) == 1002


async def test_a_frame_larger_than_the_limit_closes_the_connection(server: ServerProcess) -> None:
    async with websockets.connect(server.url, max_size=None) as ws:
        await ws.send(encode(Hello(1)))
        await recv(ws)
        await ws.send(b"\x00" * (64 * 1024 + 1))
        assert await closed_with(ws) == 1009


async def test_a_silent_connection_is_dropped_after_heartbeat_plus_grace(
    server: ServerProcess,
) -> None:
    user = unique("walt")
    ws = await logged_in(server, user)
    started = time.monotonic()
    code = await closed_with(ws, timeout=10)
    elapsed = time.monotonic() - started
    assert code == 1008
    assert 1.0 < elapsed < 5.0  # heartbeat 0.5 s + grace 1.0 s, swept every 0.1 s
    # The user is free to log in again.
    ws2 = await logged_in(server, user)
    await ws2.close()


async def test_a_connection_that_never_logs_in_is_closed(server: ServerProcess) -> None:
    async with websockets.connect(server.url) as ws:
        await ws.send(encode(Hello(1)))
        await recv(ws)
        for _ in range(10):  # keep it alive, but never log in (login_timeout = 3 s)
            await asyncio.sleep(0.4)
            try:
                await ws.send(encode(Ping()))
            except websockets.ConnectionClosed:
                break
        assert await closed_with(ws, timeout=5) == 1008


async def test_a_server_that_stops_answering_gives_the_timeout_code(
    own_server: ServerProcess,
) -> None:
    user = unique("xena")
    client = client_for(own_server, user, request_timeout=0.5)
    await client.login(token_for(user))
    own_server.signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(rtm2.RTMError) as info:
            await client.renew_token(token_for(user))
        assert info.value.code == ErrorCode.RENEW_TOKEN_TIMEOUT
        assert time.monotonic() - started < 2.0

        other = client_for(own_server, unique("yuri"), request_timeout=0.5)
        with pytest.raises(rtm2.RTMError) as info:
            await other.login(token_for(other.config.user_id))
        assert info.value.code == ErrorCode.LOGIN_TIMEOUT
        assert not other.logged_in
    finally:
        own_server.signal(signal.SIGCONT)
    await client.logout()


async def test_the_sdk_notices_a_dead_server_by_its_heartbeat_and_resumes_when_it_is_back(
    own_server: ServerProcess,
) -> None:
    user = unique("zoe")
    client = client_for(own_server, user, reconnect_min_delay=0.1, reconnect_max_delay=0.5)
    conn_events, _ = await client.login(token_for(user))
    session = client.session_id
    own_server.signal(signal.SIGSTOP)
    try:
        events = [await next_event(conn_events, timeout=6) for _ in range(3)]
        assert events[-1] == (State.RECONNECTING, Reason.KEEP_ALIVE_TIMEOUT)
        assert not client.logged_in
    finally:
        own_server.signal(signal.SIGCONT)
    assert await next_event(conn_events, timeout=10) == (State.CONNECTED, Reason.REJOIN_SUCCESS)
    assert client.session_id == session  # resumed, not a new login
    await client.renew_token(token_for(user))
    assert len(client.errors) == 0
    await client.logout()


async def test_without_auto_reconnect_a_dead_server_ends_the_session(
    own_server: ServerProcess,
) -> None:
    user = unique("zed")
    client = client_for(own_server, user, auto_reconnect=False)
    conn_events, _ = await client.login(token_for(user))
    own_server.signal(signal.SIGSTOP)
    try:
        events = [await next_event(conn_events, timeout=6) for _ in range(3)]
    finally:
        own_server.signal(signal.SIGCONT)
    assert events[-1] == (State.FAILED, Reason.KEEP_ALIVE_TIMEOUT)
    assert (await client.errors.get(timeout=1)).code == ErrorCode.NOT_CONNECTED
    await client.logout()


async def test_sigterm_closes_connections_with_a_reason_and_exits_cleanly(
    own_server: ServerProcess,
) -> None:
    user = unique("abe")
    client = client_for(own_server, user)
    conn_events, _ = await client.login(token_for(user))
    raw = await websockets.connect(own_server.url)
    await raw.send(encode(Hello(1)))
    await recv(raw)
    own_server.signal(signal.SIGTERM)
    events = [await next_event(conn_events) for _ in range(3)]
    assert events[-1] == (State.RECONNECTING, Reason.INTERRUPTED)  # the SDK will try again
    kick = await recv(raw)
    assert isinstance(kick, Kick)
    assert kick.reason == Reason.INTERRUPTED
    assert "shutting down" in kick.message
    assert await closed_with(raw) == 1001
    assert own_server.wait(10) == 0
    assert "shutting down" in own_server.log()
    await client.logout()


async def test_the_server_log_tells_an_operator_who_did_what(server: ServerProcess) -> None:
    user = unique("bea")
    client = client_for(server, user)
    await client.login(token_for(user))
    await client.logout()
    await asyncio.sleep(0.2)
    log = server.log()
    assert f"{user}@{APP_A[:8]}" in log
    assert "logged in" in log
    assert "logged out" in log
