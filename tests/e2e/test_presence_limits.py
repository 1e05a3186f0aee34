"""Presence state cannot be turned into an amplifier: rate, size and coalesced broadcasts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from rtm2 import ChannelType, ErrorCode, PresenceEventType
from rtm2.protocol.codec import decode_server, encode, encode_batch
from rtm2.protocol.frames import Hello, Login, PresenceEvent, Reply, SetState, Subscribe

from ..conftest import APP_OPEN, ServerProcess
from .util import unique

MESSAGE = int(ChannelType.MESSAGE)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Raw sockets here send no Ping: a keepalive long enough for the whole test."""
    timers = {"heartbeat_interval": 30.0, "heartbeat_grace": 30.0}
    srv = ServerProcess(tmp_path_factory.mktemp("server"), timers).start()
    yield srv
    srv.stop()


async def raw_member(server: ServerProcess, user: str, channel: str) -> ClientConnection:
    """A raw WebSocket logged in to the open app and subscribed to ``channel``."""
    ws = await websockets.connect(server.url, max_size=None)
    await ws.send(encode(Hello(1)))
    await ws.send(encode(Login(2, APP_OPEN, user, "")))
    await ws.send(encode(Subscribe(3, channel)))
    for _ in range(3):
        reply = await reply_to(ws)
        assert reply.code == 0, reply
    return ws


async def reply_to(ws: ClientConnection, timeout: float = 5) -> Reply:
    """The next reply on ``ws`` (pushes before it are skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            data = await ws.recv()
            assert isinstance(data, bytes)
            frame = decode_server(data)
            if isinstance(frame, Reply):
                return frame


async def drain(ws: ClientConnection, seconds: float) -> tuple[int, list[bytes]]:
    """Read ``ws`` for ``seconds``: the bytes received and the messages."""
    messages: list[bytes] = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                data = await ws.recv()
                assert isinstance(data, bytes)
                messages.append(data)
    except (TimeoutError, websockets.ConnectionClosed):
        pass
    return sum(len(m) for m in messages), messages


async def test_one_frame_of_state_changes_pushes_kilobytes_not_megabytes_to_a_listener(
    server: ServerProcess,
) -> None:
    channel = unique("amp")
    listener = await raw_member(server, unique("ear"), channel)
    attacker = await raw_member(server, unique("amp"), channel)
    # Grow the state as far as the server allows, one 8000-byte pair at a time (paced
    # under the rate limit), leaving room for one more key: before the fix, 31 pairs (248 KB);
    # now, what the byte cap allows.
    for i in range(31):
        await attacker.send(encode(SetState(100 + i, channel, MESSAGE, {f"k{i}": "v" * 8000})))
        reply = await reply_to(attacker)
        if reply.code:
            assert reply.code == ErrorCode.PRESENCE_STATE_VALUE_SIZE_OVERFLOW
            break
        await asyncio.sleep(0.15)
    await drain(listener, 1.5)
    # 300 tiny changes in one 9.9 KB frame: each used to broadcast the whole state.
    frames = [encode(SetState(1000 + i, channel, MESSAGE, {"a": str(i % 2)})) for i in range(300)]
    batch = encode_batch(frames)
    assert len(batch) < 10_000
    await attacker.send(batch)
    received, _ = await drain(listener, 3)
    assert received < 512 * 1024, f"the listener got {received} bytes from one 9.9 KB frame"
    codes = [(await reply_to(attacker)).code for _ in range(300)]
    assert ErrorCode.OPERATION_RATE_EXCEED_LIMITATION in codes
    await listener.close()
    await attacker.close()


async def test_changes_faster_than_the_sweep_reach_listeners_as_the_latest_full_state(
    server: ServerProcess,
) -> None:
    channel = unique("coalesce")
    listener = await raw_member(server, unique("ear"), channel)
    user = unique("fast")
    changer = await raw_member(server, user, channel)
    await drain(listener, 0.5)
    frames = [encode(SetState(10 + i, channel, MESSAGE, {f"k{i}": str(i)})) for i in range(5)]
    await changer.send(encode_batch(frames))
    assert [(await reply_to(changer)).code for _ in range(5)] == [0] * 5
    _, messages = await drain(listener, 1.5)
    events = [decode_server(m) for m in messages]
    assert all(isinstance(e, PresenceEvent) for e in events)
    changes = [e for e in events if isinstance(e, PresenceEvent)]
    assert all(e.kind == PresenceEventType.REMOTE_STATE_CHANGED for e in changes)
    assert all(e.user == user for e in changes)
    assert 1 <= len(changes) < 5  # coalesced...
    assert changes[-1].state == {f"k{i}": str(i) for i in range(5)}  # ... to the full last state
    await listener.close()
    await changer.close()


async def test_a_state_over_the_byte_cap_is_refused_and_the_state_stays_as_it_was(
    server: ServerProcess,
) -> None:
    channel = unique("cap")
    ws = await raw_member(server, unique("big"), channel)
    await ws.send(encode(SetState(10, channel, MESSAGE, {"a": "x" * 8000, "b": "y" * 8000})))
    assert (await reply_to(ws)).code == 0
    await ws.send(encode(SetState(11, channel, MESSAGE, {"c": "z" * 1000})))
    reply = await reply_to(ws)
    assert reply.code == ErrorCode.PRESENCE_STATE_VALUE_SIZE_OVERFLOW
    assert "16384 bytes" in reply.reason
    await ws.close()
