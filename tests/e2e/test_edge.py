"""The server's edge against clients that misbehave on purpose (issue 13): clients that never
read, sessions that ended, floods of requests, and too many connections.

These clients are raw sockets speaking just enough WebSocket to send frames, never the SDK,
so that nothing reads on their behalf.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import websockets

from rtm2 import ChannelType, ErrorCode
from rtm2.protocol.codec import decode_result, decode_server, encode, encode_batch
from rtm2.protocol.frames import (
    GetLocks,
    Hello,
    Login,
    LoginResult,
    Logout,
    Ping,
    Pong,
    Reply,
    Resume,
    Subscribe,
    Unsubscribe,
    WhoNow,
)

from ..conftest import APP_OPEN, ServerProcess
from .util import closed_with, unique

MIB = 1024 * 1024


class RawClient:
    """A blocking WebSocket client over a plain socket that reads only when told to."""

    def __init__(self, url: str, path: str = "/", headers: dict[str, str] | None = None) -> None:
        host, port = url.removeprefix("ws://").split(":")
        self.sock = socket.socket()
        # A small receive window: the server's answers back up in its own buffers.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(5)
        self.sock.connect((host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n".encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(1)
            if not chunk:
                break
            response += chunk
        self.status = int(response.split(b" ", 2)[1]) if response else 0

    def send(self, payload: bytes) -> None:
        """One masked binary frame (a zero mask: the payload goes as it is)."""
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x82, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x82, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x82, 0x80 | 127, n)
        self.sock.sendall(header + b"\0\0\0\0" + payload)

    def close(self) -> None:
        self.sock.close()


def ping_batch(size: int = 60_000) -> bytes:
    one = encode(Ping(1.5))
    return encode_batch([one] * (size // len(one)))


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def connections_to(pid: int, port: int) -> int:
    """Sockets the server still holds on its listening port (a closing one counts)."""
    return sum(
        1
        for c in psutil.Process(pid).net_connections("tcp")
        if c.laddr and c.laddr.port == port and c.status != psutil.CONN_LISTEN
    )


def flood(client: RawClient, megabytes: int) -> None:
    """Send batches of pings until ``megabytes`` went out or the server cut the client off."""
    batch = ping_batch()
    client.sock.settimeout(2)
    try:
        for _ in range(megabytes * MIB // len(batch)):
            client.send(batch)
    except OSError:  # reset, broken pipe, or a server that stopped reading
        pass


def wait_until(check: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


async def _flood_and_measure(srv: ServerProcess, log_in: bool) -> None:
    port = int(srv.url.rsplit(":", 1)[1])
    warm = RawClient(srv.url)  # the first connection's imports and caches are not the leak
    warm.send(encode(Hello(1)))
    warm.close()
    await asyncio.sleep(0.5)
    baseline = rss(srv.pid)
    clients = [RawClient(srv.url) for _ in range(4)]
    for i, client in enumerate(clients):
        client.send(encode(Hello(1)))
        if log_in:
            client.send(encode(Login(2, APP_OPEN, unique(f"sink{i}-"), "")))
    await asyncio.gather(*(asyncio.to_thread(flood, c, 24) for c in clients))
    try:
        # Login timeout (3 s) or the slow-consumer cut-off, plus the abort's grace.
        assert await asyncio.to_thread(wait_until, lambda: connections_to(srv.pid, port) == 0, 8)
        # Freed memory takes a moment to go back to the system.
        near_baseline = await asyncio.to_thread(
            wait_until, lambda: rss(srv.pid) < baseline + 12 * MIB, 5
        )
        assert near_baseline, (baseline // MIB, rss(srv.pid) // MIB)
    finally:
        for client in clients:
            client.close()


async def test_clients_that_send_pings_before_login_and_never_read_are_dropped_and_pin_no_memory(
    own_server: ServerProcess,
) -> None:
    await _flood_and_measure(own_server, log_in=False)


async def test_logged_in_clients_that_never_read_are_cut_off_and_their_memory_freed(
    own_server: ServerProcess,
) -> None:
    await _flood_and_measure(own_server, log_in=True)


async def test_nothing_but_hello_is_answered_before_hello(server: ServerProcess) -> None:
    async with websockets.connect(server.url) as ws:
        await ws.send(encode(Ping(1.0)))
        reply = decode_server(await asyncio.wait_for(ws.recv(), 5))
        assert isinstance(reply, Reply)
        assert reply.code == ErrorCode.INVALID_PARAMETER
        assert await closed_with(ws) == 1002


async def test_pings_in_a_batch_before_login_get_no_answer(server: ServerProcess) -> None:
    async with websockets.connect(server.url) as ws:
        await ws.send(encode(Hello(1)))
        await asyncio.wait_for(ws.recv(), 5)
        ping = encode(Ping(2.0))
        await ws.send(encode_batch([ping, ping, encode(Login(2, APP_OPEN, unique("bp"), ""))]))
        reply = decode_server(await asyncio.wait_for(ws.recv(), 5))
        assert isinstance(reply, Reply)
        assert (reply.rid, reply.code) == (2, 0)
        await ws.send(encode_batch([ping, ping]))  # logged in: answered
        pongs = [decode_server(await asyncio.wait_for(ws.recv(), 5)) for _ in range(2)]
        assert pongs == [Pong(2.0), Pong(2.0)]


async def test_logout_login_subscribe_in_one_batch_leaves_no_zombie_session(
    server: ServerProcess,
) -> None:
    user, channel = unique("zed"), unique("zch")
    async with websockets.connect(server.url) as watcher:
        await watcher.send(encode(Hello(1)))
        await watcher.send(encode(Login(2, APP_OPEN, unique("watch"), "")))
        await watcher.send(encode(Subscribe(3, channel)))
        for _ in range(3):
            await asyncio.wait_for(watcher.recv(), 5)
        async with websockets.connect(server.url) as ws:
            await ws.send(encode(Hello(1)))
            await ws.send(encode(Login(2, APP_OPEN, user, "", presence_timeout=5)))
            for _ in range(2):
                await asyncio.wait_for(ws.recv(), 5)
            await ws.send(
                encode_batch(
                    [
                        encode(Logout(3)),
                        encode(Login(4, APP_OPEN, user, "", presence_timeout=5)),
                        encode(Subscribe(5, channel)),
                    ]
                )
            )
            # Nothing after the Logout is answered: the session ended with it.
            answers = []
            with contextlib.suppress(websockets.ConnectionClosedOK):
                async with asyncio.timeout(5):
                    async for data in ws:
                        answers.append(decode_server(data))
            assert [(r.rid, r.code) for r in answers if isinstance(r, Reply)] == [(3, 0)]
            assert len(answers) == 1
            assert ws.close_code == 1000
        for _ in range(13):  # past presence_timeout (5 s, the least RTM allows) and a sweep
            await asyncio.sleep(0.5)
            await watcher.send(encode(Ping(0.0)))
        # A zombie would still be in the channel, logged in again after its own logout.
        await watcher.send(encode(WhoNow(9, channel, int(ChannelType.MESSAGE))))
        async with asyncio.timeout(5):
            while not (isinstance(r := decode_server(await watcher.recv()), Reply) and r.rid == 9):
                pass
        assert r.code == 0
        assert user.encode() not in bytes(r.result)


# An app whose clients may make only a few requests per second, whatever the request.
APP_FEW = "f0" * 16


class EdgeServer(ServerProcess):
    """A server with the test apps plus APP_FEW."""

    def write_config(self) -> Path:
        path = super().write_config()
        extra = f'[[apps]]\nid = "{APP_FEW}"\n[apps.limits]\nrequest_rate = 20\n'
        path.write_text(path.read_text() + extra)
        return path


@pytest.fixture
def edge_server(tmp_path: Path) -> Iterator[EdgeServer]:
    srv = EdgeServer(tmp_path, server={"max_queued_frames": 100})
    srv.start()
    yield srv
    srv.stop()


async def _logged_in(url: str, app_id: str = APP_OPEN) -> websockets.ClientConnection:
    ws = await websockets.connect(url, max_queue=None)
    await ws.send(encode(Hello(1)))
    await ws.send(encode(Login(2, app_id, unique("edge"), "")))
    for _ in range(2):
        reply = decode_server(await asyncio.wait_for(ws.recv(), 5))
        assert isinstance(reply, Reply)
        assert reply.code == 0, reply
    return ws


async def test_requests_queued_past_the_cap_behind_a_waiting_one_close_the_connection(
    edge_server: EdgeServer,
) -> None:
    ws = await _logged_in(edge_server.url)
    # Each GetLocks waits for the engine, so the ones after it queue up behind it.
    frames = [encode(GetLocks(10 + i, "c", int(ChannelType.MESSAGE))) for i in range(1000)]
    await ws.send(encode_batch(frames))
    assert await closed_with(ws) == 1008
    assert "queued more than 100 requests" in edge_server.log()


async def test_requests_queued_below_the_cap_are_all_answered_in_order(
    edge_server: EdgeServer,
) -> None:
    ws = await _logged_in(edge_server.url)
    for round_ in range(20):
        rids = [1000 * round_ + i for i in range(90)]
        frames = [encode(GetLocks(rid, "c", int(ChannelType.MESSAGE))) for rid in rids]
        await ws.send(encode_batch(frames))
        replies = [decode_server(await asyncio.wait_for(ws.recv(), 5)) for _ in rids]
        assert [r.rid for r in replies if isinstance(r, Reply)] == rids
        await asyncio.sleep(0.05)  # within the request budget of the default app
    await ws.close()


async def test_requests_over_the_apps_request_rate_are_refused_with_the_rate_code(
    edge_server: EdgeServer,
) -> None:
    ws = await _logged_in(edge_server.url, APP_FEW)
    await ws.send(encode_batch([encode(Unsubscribe(10 + i, "c")) for i in range(60)]))
    replies = [decode_server(await asyncio.wait_for(ws.recv(), 5)) for _ in range(60)]
    codes = [r.code for r in replies if isinstance(r, Reply)]
    assert len(codes) == 60
    refused = codes.count(ErrorCode.OPERATION_RATE_EXCEED_LIMITATION)
    assert 30 <= refused <= 41  # a burst of up to one second's worth (20) goes through
    assert ErrorCode.OPERATION_RATE_EXCEED_LIMITATION not in codes[:19]
    await ws.close()


def _edge(tmp_path: Path, **server: object) -> EdgeServer:
    return EdgeServer(tmp_path, server=server).start()  # type: ignore[arg-type,return-value]


async def _hello(ws: websockets.ClientConnection) -> None:
    await ws.send(encode(Hello(1)))
    reply = decode_server(await asyncio.wait_for(ws.recv(), 5))
    assert isinstance(reply, Reply)
    assert reply.code == 0


async def test_connections_over_the_per_address_cap_are_closed_with_1008(tmp_path: Path) -> None:
    srv = _edge(tmp_path, max_connections_per_ip=3)
    try:
        first = [await _logged_in(srv.url) for _ in range(3)]
        async with websockets.connect(srv.url) as extra:
            assert await closed_with(extra) == 1008
            assert extra.close_reason == "too many connections from this address"
        await first[0].close()
        await asyncio.sleep(0.2)
        again = await _logged_in(srv.url)  # a place came free
        for ws in [*first[1:], again]:
            await ws.close()
    finally:
        srv.stop()


async def test_connections_over_the_global_cap_are_closed_with_1008(tmp_path: Path) -> None:
    srv = _edge(tmp_path, max_connections=2)
    try:
        first = [await _logged_in(srv.url) for _ in range(2)]
        async with websockets.connect(srv.url) as extra:
            assert await closed_with(extra) == 1008
            assert extra.close_reason == "too many connections"
        for ws in first:
            await ws.close()
    finally:
        srv.stop()


async def test_connections_not_logged_in_have_a_tighter_cap_than_logged_in_ones(
    tmp_path: Path,
) -> None:
    srv = _edge(tmp_path, max_pending_connections=2)
    try:
        waiting = [await websockets.connect(srv.url) for _ in range(2)]
        for ws in waiting:
            await _hello(ws)
        async with websockets.connect(srv.url) as extra:
            assert await closed_with(extra) == 1008
            assert extra.close_reason == "too many connections logging in"
        # Once one logs in, its place among those logging in is free again.
        await waiting[0].send(encode(Login(2, APP_OPEN, unique("late"), "")))
        reply = decode_server(await asyncio.wait_for(waiting[0].recv(), 5))
        assert isinstance(reply, Reply)
        assert reply.code == 0
        logged = [await _logged_in(srv.url) for _ in range(3)]  # one at a time: never 2 pending
        for ws in [*waiting, *logged]:
            await ws.close()
    finally:
        srv.stop()


async def test_an_origin_outside_the_allow_list_is_refused_at_the_handshake(
    tmp_path: Path,
) -> None:
    srv = _edge(tmp_path, allowed_origins='["https://good.example"]')
    try:
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets.connect(srv.url, origin="https://evil.example")  # type: ignore[arg-type]
        assert info.value.response.status_code == 403
        for origin in ("https://good.example", None):  # a browser of the app, and no browser
            async with websockets.connect(srv.url, origin=origin) as ws:  # type: ignore[arg-type]
                await _hello(ws)
    finally:
        srv.stop()


async def test_websocket_upgrades_are_accepted_on_the_root_path_only(server: ServerProcess) -> None:
    for path in ("/other", "/ws", "//"):
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets.connect(server.url + path)
        assert info.value.response.status_code == 404
    async with websockets.connect(server.url + "/") as ws:
        await _hello(ws)


async def test_requests_batched_after_a_resume_are_handled_by_the_resumed_session(
    server: ServerProcess,
) -> None:
    user = unique("heir")
    async with websockets.connect(server.url) as ws:
        await _hello(ws)
        await ws.send(encode(Login(2, APP_OPEN, user, "")))
        reply = decode_server(await asyncio.wait_for(ws.recv(), 5))
        assert isinstance(reply, Reply)
        login = decode_result(reply.result, LoginResult)
    async with websockets.connect(server.url) as ws:
        await _hello(ws)
        resume = Resume(2, APP_OPEN, user, login.session_id, login.resume_token)
        await ws.send(encode_batch([encode(resume), encode(Subscribe(3, unique("hc")))]))
        replies: list[Reply] = []
        async with asyncio.timeout(5):
            while len(replies) < 2:
                frame = decode_server(await ws.recv())
                if isinstance(frame, Reply):
                    replies.append(frame)
        assert [(r.rid, r.code) for r in replies] == [(2, 0), (3, 0)]
