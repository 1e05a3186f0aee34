"""The sidecar as a process: a Go client that stops reading, the parent process dying, the
upstream connection lost and back, and ``rtm2 sidecar`` itself (not the wrapper)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil

import rtm2
from rtm2 import ChannelType
from rtm2.sidecar.proto import gosdk_pb2 as pb

from ..conftest import APP_OPEN, APP_SMALL, CERT_SMALL, ServerProcess, free_port
from .gowire import WRAPPER, GoWire, SidecarProcess, eventually
from .proxy import TcpProxy
from .util import Users, token_for, unique

MESSAGE, STREAM = 1, 2
RECONNECTING, CONNECTED = 4, 3
BIG = b"x" * 30_000  # a message-channel message near the 32 KB limit


async def small_app_login(port: int, user: str) -> GoWire:
    """A Go client on the app without a message rate limit worth the name."""
    go = await GoWire.connect(port)
    token = token_for(user, app_id=APP_SMALL, cert=CERT_SMALL)
    await go.ok(100, pb.LoginReq(appId=APP_SMALL, userId=user, token=token))
    return go


async def flood(py: rtm2.RTMClient, channel: str, count: int) -> None:
    for _ in range(count):
        await py.publish(channel, BIG)


async def test_replies_overtake_events_the_go_client_has_not_read_yet(
    server: ServerProcess, users: Users
) -> None:
    sidecar = SidecarProcess.command(server.url)
    go_user = unique("go")
    go = await small_app_login(sidecar.port, go_user)
    py = await users.login("py", app_id=APP_SMALL)
    channel = unique("flood")
    try:
        await go.ok(0, pb.MessageSubReq(channel=channel, message=True))
        await go.pause()
        await flood(py, channel, 200)  # 6 MB: far more than the socket buffers hold
        await asyncio.sleep(0.5)
        seq = go.send(36, pb.PresenceWhereNowReq(userId=go_user))
        await asyncio.sleep(0.5)
        go.resume()
        await eventually(lambda: len(go.of(pb.MessageEvent)) >= 200, 20)
        assert len(go.of(pb.MessageEvent)) == 200  # all delivered, none lost
        assert go.replies[seq] == 1
        assert go.events_before[seq] < 150, "the reply waited behind the queued events"
    finally:
        await go.close()
        sidecar.stop()


async def test_a_go_client_that_stops_reading_is_disconnected_and_logged_out(
    server: ServerProcess, users: Users
) -> None:
    sidecar = SidecarProcess.command(server.url, "--max-queued-events", "20")
    go_user = unique("go")
    go = await small_app_login(sidecar.port, go_user)
    py = await users.login("py", app_id=APP_SMALL)
    channel = unique("flood")
    try:
        await go.ok(0, pb.MessageSubReq(channel=channel, message=True, presence=True))
        await go.pause()
        await flood(py, channel, 200)
        await eventually(lambda: "event queue overflow" in sidecar.text(), 10)
        go.resume()
        await asyncio.wait_for(go.closed.wait(), 5)
        # Its rtm2 session is gone too, and the sidecar serves the next Go client.

        async def go_user_gone() -> bool:
            who = await py.presence.who_now(channel, ChannelType.MESSAGE)
            return go_user not in [u.user_id for u in who.users]

        await eventually(go_user_gone, 10)
        again = await small_app_login(sidecar.port, go_user)
        await again.ok(36, pb.PresenceWhereNowReq(userId=go_user))
        await again.close()
    finally:
        await go.close()
        sidecar.stop()


def test_the_wrapper_stops_when_the_process_that_started_it_dies(tmp_path: Path) -> None:
    log = tmp_path / "wrapper.log"
    port = free_port()
    script = (
        "import subprocess, sys, time\n"
        f"err = open({str(log)!r}, 'w')\n"
        f"p = subprocess.Popen([{str(WRAPPER)!r}, '--port={port}', '--mode=1'], stderr=err)\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    child = psutil.Process(pid)
    deadline = time.monotonic() + 15
    while f"listening on 127.0.0.1:{port}" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    parent.kill()  # no chance to stop its child
    parent.wait()
    try:
        deadline = time.monotonic() + 10
        while child.is_running() and child.status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the sidecar outlived its parent"
            time.sleep(0.05)
    finally:
        if child.is_running():
            child.kill()
    assert "the parent process is gone" in log.read_text()


async def test_an_upstream_reconnection_shows_as_reconnecting_then_rejoin_success(
    server: ServerProcess, users: Users
) -> None:
    async with TcpProxy(urlsplit(server.url).port or 0) as proxy:
        sidecar = SidecarProcess.command(proxy.url)
        go_user = unique("go")
        go = await GoWire.connect(sidecar.port)
        py = await users.login("py", app_id=APP_OPEN)
        py_user = py.config.user_id
        channel = unique("rc")
        try:
            await go.ok(100, pb.LoginReq(appId=APP_OPEN, userId=go_user, presenceTimeout=30))
            await go.ok(4, pb.StreamJoinReq(channel=channel))
            await go.ok(6, pb.StreamJoinTopicReq(channel=channel, topic="t"))
            py_channel = py.stream_channel(channel)
            await py_channel.join()
            await py_channel.join_topic("t")
            await go.ok(11, pb.StreamSubTopicReq(channel=channel, topic="t", userIds=[py_user]))
            stream = await py_channel.subscribe_topic("t", [go_user])

            assert proxy.cut() >= 1
            lost = await go.wait_event(
                pb.ConnectionStateChangeEvent, lambda e: e.state == RECONNECTING
            )
            back = await go.wait_event(
                pb.ConnectionStateChangeEvent, lambda e: e.state == CONNECTED and e.reason == 15
            )
            assert (lost.channel, back.channel) == ("", "")

            # The channel, the topic role and the subscription came back with the session.
            await go.ok(8, pb.StreamMessageReq(channel=channel, topic="t", message=b"after"))
            got = await stream.get(timeout=5)
            assert (got.user_id, got.message) == (go_user, b"after")
            await py_channel.publish_topic("t", b"to go after")
            event = await go.wait_event(pb.StreamMessageEvent)
            assert (event.publisher, event.message) == (py_user, b"to go after")
        finally:
            await go.close()
            sidecar.stop()
        assert sidecar.proc.returncode == 0  # SIGTERM: a clean stop
