"""Fault tests with real processes and real sockets: automatic reconnection, session resume,
gap-free recovery, restore after a server restart, terminal failures, endpoint failover, sidecar
mode and slow consumers.

Connections are cut by a TCP proxy (``proxy.TcpProxy``) that resets both sides at once, servers
are SIGKILLed and started again on the same port and data directory. Every test prints what it
tried (cuts, messages, restarts): run with ``-s`` to see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import psutil
import pytest
import websockets

import rtm2
from rtm2 import ChannelType, ErrorCode, MetadataItem, RecoveryEvent
from rtm2 import ConnectionChangeReason as Reason
from rtm2 import ConnectionState as State
from rtm2 import LockEventType as LockKind
from rtm2.protocol.codec import encode, encode_batch
from rtm2.protocol.frames import Hello, Login, Publish
from rtm2.tokens import build_stream_token

from ..conftest import (
    APP_A,
    APP_OPEN,
    APP_SMALL,
    APP_TINY,
    CERT_A,
    CERT_SMALL,
    ServerProcess,
    free_port,
)
from .proxy import TcpProxy
from .util import closed_with, token_for, unique

MESSAGE, STREAM = ChannelType.MESSAGE, ChannelType.STREAM
LOST_REASONS = {Reason.LOST, Reason.INTERRUPTED, Reason.KEEP_ALIVE_TIMEOUT}
# Clients that must come back quickly after a cut.
FAST_RECONNECT: dict[str, Any] = {"reconnect_min_delay": 0.05, "reconnect_max_delay": 0.2}


# --- servers, clients, events --------------------------------------------------------------------


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def token(app_id: str, user: str, expire: int = 3600) -> str:
    if app_id == APP_A:
        return token_for(user, expire)
    if app_id == APP_SMALL:
        return token_for(user, expire, app_id=APP_SMALL, cert=CERT_SMALL)
    return ""


def stream_token(client: rtm2.RTMClient, channel: str) -> str | None:
    """A stream token where the app asks for one (APP_A); the login token does elsewhere."""
    if client.config.app_id == APP_A:
        return build_stream_token(APP_A, CERT_A, channel, client.config.user_id)
    return None


def uid(client: rtm2.RTMClient) -> str:
    return client.config.user_id


def drain(stream: rtm2.EventStream[Any]) -> list[Any]:
    items = []
    while (item := stream.get_nowait()) is not None:
        items.append(item)
    return items


class Rig:
    """Clients, proxies and servers of one test; all logged out, closed and stopped at its end.

    ``history[client]`` keeps every connection event read so far (``wait_for`` appends).
    """

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.clients: list[rtm2.RTMClient] = []
        self.events: dict[rtm2.RTMClient, rtm2.EventStream[rtm2.ConnectionEvent]] = {}
        self.history: dict[rtm2.RTMClient, list[rtm2.ConnectionEvent]] = {}
        self.proxies: list[TcpProxy] = []
        self.servers: list[ServerProcess] = []

    def server(self, name: str, port: int = 0, **kw: Any) -> ServerProcess:
        workdir = self.tmp_path / name
        workdir.mkdir(exist_ok=True)
        srv = ServerProcess(workdir, port=port, **kw)
        self.servers.append(srv)
        return srv.start()

    async def proxy(self, url: str) -> TcpProxy:
        proxy = await TcpProxy(port_of(url)).start()
        self.proxies.append(proxy)
        return proxy

    def client(
        self,
        endpoint: str | list[str] | None,
        prefix: str,
        app_id: str = APP_A,
        user: str | None = None,
        **config: Any,
    ) -> rtm2.RTMClient:
        user = user or unique(prefix)
        client = rtm2.RTMClient(rtm2.RTMConfig(app_id=app_id, user_id=user, **config))
        if endpoint is not None:
            client.set_parameters({rtm2.PARAM_ENDPOINT: endpoint})
        self.clients.append(client)
        return client

    async def login(
        self,
        endpoint: str | list[str] | None,
        prefix: str,
        app_id: str = APP_A,
        expire: int = 3600,
        **config: Any,
    ) -> rtm2.RTMClient:
        client = self.client(endpoint, prefix, app_id, **config)
        await self.login_client(client, expire)
        return client

    async def login_client(self, client: rtm2.RTMClient, expire: int = 3600) -> None:
        streams = await client.login(token(client.config.app_id, uid(client), expire))
        self.events[client] = streams.conn_events
        self.history[client] = []

    def seen(self, client: rtm2.RTMClient) -> list[tuple[State, Reason]]:
        """Every connection-wide event so far (channel events left out)."""
        self.history[client] += drain(self.events[client])
        return [(e.state, e.reason) for e in self.history[client] if not e.channel]

    async def wait_for(
        self,
        client: rtm2.RTMClient,
        match: Callable[[rtm2.ConnectionEvent], bool],
        timeout: float = 10.0,
    ) -> rtm2.ConnectionEvent:
        """The next connection event that ``match``es (those before it go to the history)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching connection event; had {self.seen(client)}")
            try:
                event = await self.events[client].get(timeout=left)
            except TimeoutError:
                raise TimeoutError(
                    f"no matching connection event; had {self.seen(client)}"
                ) from None
            self.history[client].append(event)
            if not event.channel and match(event):
                return event

    async def back(self, client: rtm2.RTMClient, timeout: float = 10.0) -> None:
        """Wait until the client says it is connected again after a loss."""
        await self.wait_for(
            client,
            lambda e: (e.state, e.reason) == (State.CONNECTED, Reason.REJOIN_SUCCESS),
            timeout,
        )

    async def close(self) -> None:
        for client in self.clients:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await client.logout()
        for proxy in self.proxies:
            await proxy.close()
        for srv in self.servers:
            srv.stop()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    rig = Rig(tmp_path)
    yield rig
    await rig.close()


def reconnect_pairs(events: list[tuple[State, Reason]]) -> int:
    """Check that after the login every loss (RECONNECTING) is followed by one comeback
    (CONNECTED / REJOIN_SUCCESS) and nothing else; return how many there were."""
    assert events[:2] == [
        (State.CONNECTING, Reason.CONNECTING),
        (State.CONNECTED, Reason.LOGIN_SUCCESS),
    ], events
    rest = events[2:]
    assert all(state is not State.FAILED for state, _ in rest), rest
    assert len(rest) % 2 == 0, rest
    for lost, back in zip(rest[::2], rest[1::2], strict=True):
        assert lost[0] is State.RECONNECTING, rest
        assert lost[1] in LOST_REASONS, rest
        assert back == (State.CONNECTED, Reason.REJOIN_SUCCESS), rest
    return len(rest) // 2


async def collect(
    stream: rtm2.EventStream[rtm2.Message], n: int, timeout: float, extra: float = 0.0
) -> list[rtm2.Message]:
    """Read ``n`` messages (or what arrives within ``timeout``), then whatever else arrives
    within ``extra`` seconds (a duplicate would show up there)."""
    got: list[rtm2.Message] = []
    deadline = time.monotonic() + timeout
    with contextlib.suppress(TimeoutError):
        while len(got) < n:
            got.append(await stream.get(timeout=max(deadline - time.monotonic(), 0.001)))
    with contextlib.suppress(TimeoutError):
        while extra > 0:
            got.append(await stream.get(timeout=extra))
    return got


def payloads(messages: Iterable[rtm2.Message]) -> list[Any]:
    return [m.message for m in messages]


def port_is_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:``port`` and a server could bind it."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def eventually(check: Callable[[], Any], timeout: float = 5.0, every: float = 0.05) -> Any:
    """Poll a (possibly async) check until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(every)


# --- 1. gap-free resume through a flaky network --------------------------------------------------


async def test_subscribers_whose_connections_keep_being_cut_get_every_message_once_in_order(
    server: ServerProcess, rig: Rig
) -> None:
    n = 2000  # messages per channel and per topic
    duration = 4.0  # seconds the publisher spreads them over
    channel, stream_name, topic = unique("flaky"), unique("flakys"), "t"
    proxy = await rig.proxy(server.url)
    publisher = await rig.login(server.url, "pub", APP_SMALL)
    subscribers = [
        await rig.login(proxy.url, f"sub{i}_", APP_SMALL, **FAST_RECONNECT) for i in range(2)
    ]
    sessions = [s.session_id for s in subscribers]

    pub_channel = publisher.stream_channel(stream_name)
    await pub_channel.join(None)
    await pub_channel.join_topic(topic)
    channel_msgs, topic_msgs = [], []
    for sub in subscribers:
        channel_msgs.append(await sub.subscribe(channel, with_presence=False))
        await sub.stream_channel(stream_name).join(None, with_presence=False)
        topic_msgs.append(
            await sub.stream_channel(stream_name).subscribe_topic(topic, [uid(publisher)])
        )

    publishing = True

    async def cutter() -> None:
        while publishing:
            await asyncio.sleep(random.uniform(0.2, 0.4))
            if publishing:
                proxy.cut()

    cutting = asyncio.create_task(cutter())
    started = time.monotonic()
    try:
        for i in range(n):
            await publisher.publish(channel, f"m{i}")
            await pub_channel.publish_topic(topic, f"t{i}")
            ahead = started + duration * (i + 1) / n - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
    finally:
        publishing = False
        await cutting
    published_in = time.monotonic() - started

    received = []
    for sub, cmsgs, tmsgs in zip(subscribers, channel_msgs, topic_msgs, strict=True):
        got_c = await collect(cmsgs, n, timeout=10, extra=0.3)
        got_t = await collect(tmsgs, n, timeout=10, extra=0.3)
        received.append((len(got_c), len(got_t)))
        assert payloads(got_c) == [f"m{i}" for i in range(n)], f"{uid(sub)}: channel"
        assert payloads(got_t) == [f"t{i}" for i in range(n)], f"{uid(sub)}: topic"
        assert {m.user_id for m in got_c + got_t} == {uid(publisher)}
    reconnects = [reconnect_pairs(rig.seen(sub)) for sub in subscribers]
    print(
        f"\n[flaky] cuts={proxy.cuts} connections_cut={proxy.cut_connections} "
        f"accepted={proxy.accepted} messages_published={2 * n} in {published_in:.1f}s "
        f"received={received} reconnects={reconnects}"
    )
    assert proxy.cuts >= 8
    assert proxy.cut_connections >= 8
    for sub, session, count in zip(subscribers, sessions, reconnects, strict=True):
        assert count >= 4, f"{uid(sub)} came back only {count} times"
        assert sub.session_id == session  # resumed every time, never a new login
        assert drain(sub.recovery_events) == []  # everything was replayed
        assert len(sub.errors) == 0
        assert sub.logged_in


# --- 2. no presence flap, no lock loss -----------------------------------------------------------


async def test_a_cut_and_resumed_user_neither_leaves_the_channel_nor_loses_its_lock(
    server: ServerProcess, rig: Rig
) -> None:
    channel = unique("blip")
    proxy = await rig.proxy(server.url)
    user = await rig.login(proxy.url, "blinker", **FAST_RECONNECT)
    await user.subscribe(channel, with_presence=True)
    await user.presence.set_state(channel, MESSAGE, {"mood": "calm"})
    await user.lock.set(channel, MESSAGE, "L", ttl=10)
    fence = await user.lock.acquire(channel, MESSAGE, "L")
    observer = await rig.login(server.url, "observer")
    await observer.subscribe(channel, with_presence=True, with_lock=True)
    snapshot, presence_events = await observer.presence.get_presence_events(channel, MESSAGE)
    assert snapshot[uid(user)] == {"mood": "calm"}
    locks, lock_events = await observer.lock.get_lock_events(channel, MESSAGE)
    assert locks["L"].owner == uid(user)
    drain(presence_events)
    drain(lock_events)
    session = user.session_id

    cuts = 0
    for _ in range(3):
        cuts += proxy.cut()
        await rig.back(user, timeout=5)
        await asyncio.sleep(0.2)
    # Long enough for any leave (debounce 0.5 s), timeout or interval event to show.
    await asyncio.sleep(1.5)

    about_user = [e for e in drain(presence_events) if uid(user) in (e.user_id, *e.left)]
    lock_changes = drain(lock_events)
    print(f"\n[blip] cuts={cuts} presence_events={about_user} lock_events={lock_changes}")
    assert cuts == 3
    assert about_user == []
    assert [e for e in lock_changes if e.type in (LockKind.RELEASED, LockKind.EXPIRED)] == []
    assert (await observer.lock.get(channel, MESSAGE))["L"].owner == uid(user)
    who = await observer.presence.who_now(channel, MESSAGE, include_state=True)
    assert (uid(user), {"mood": "calm"}) in [(u.user_id, u.state) for u in who.users]
    assert user.session_id == session
    assert reconnect_pairs(rig.seen(user)) == 3
    await user.lock.release(channel, MESSAGE, "L")  # still its own lock
    assert await observer.lock.acquire(channel, MESSAGE, "L") == fence + 1


# --- 3. server killed and restarted --------------------------------------------------------------


async def test_after_a_server_crash_and_restart_clients_come_back_with_everything_restored(
    rig: Rig,
) -> None:
    port = free_port()
    srv = rig.server("crash", port=port)
    mch, sch = unique("crashm"), unique("crashs")
    alice = await rig.login(srv.url, "alice", **FAST_RECONNECT)  # publisher
    bob = await rig.login(srv.url, "bob", **FAST_RECONNECT)  # subscriber
    old_sessions = (alice.session_id, bob.session_id)

    await alice.storage.set_user_metadata(uid(alice), [MetadataItem("k", "v1")])
    a_ch, b_ch = alice.stream_channel(sch), bob.stream_channel(sch)
    await a_ch.join(stream_token(alice, sch))
    await a_ch.join_topic("t")
    await b_ch.join(stream_token(bob, sch))
    await b_ch.join_topic("bt")
    topic_msgs = await b_ch.subscribe_topic("t", [uid(alice)])
    channel_msgs = await bob.subscribe(mch, with_presence=True)
    await bob.presence.set_state(mch, MESSAGE, {"mood": "ok"})
    _, meta_events = await bob.storage.subscribe_user_metadata(uid(alice))
    drain(meta_events)

    published = {"channel": 0, "topic": 0}
    refused = 0
    running = True

    async def publish_loop() -> None:
        nonlocal refused
        i = 0
        while running:
            try:
                await alice.publish(mch, f"c{i}")
                published["channel"] += 1
                await a_ch.publish_topic("t", f"p{i}")
                published["topic"] += 1
            except rtm2.RTMError:
                refused += 1
            i += 1
            await asyncio.sleep(0.02)

    publishing = asyncio.create_task(publish_loop())
    await asyncio.sleep(0.5)  # messages flow (and offsets grow) before the crash
    before_kill = dict(published)
    srv.signal(signal.SIGKILL)
    srv.wait(5)
    for client in (alice, bob):
        lost = await rig.wait_for(client, lambda e: e.state is State.RECONNECTING, timeout=5)
        assert lost.reason in LOST_REASONS
    await asyncio.sleep(0.3)
    srv = rig.server("crash", port=port)  # same workdir and data dir, same port
    await rig.back(alice)
    await rig.back(bob)
    running = False
    await publishing

    assert alice.session_id not in old_sessions
    assert bob.session_id not in old_sessions
    # Bob learns that his subscriptions are back, but may have missed messages.
    recovery: list[RecoveryEvent] = []

    def two_recovery_events() -> bool:
        recovery.extend(drain(bob.recovery_events))
        return len(recovery) >= 2

    await eventually(two_recovery_events)
    assert sorted(recovery) == sorted(
        [RecoveryEvent(mch, MESSAGE, "", False, True), RecoveryEvent(sch, STREAM, "t", False, True)]
    )
    # Metadata acknowledged before the kill survived it, and the user-metadata subscription
    # is back on the same stream (a fresh SNAPSHOT first).
    snap = await meta_events.get(timeout=5)
    assert snap.type is rtm2.StorageEventType.SNAPSHOT
    assert snap.items["k"].value == "v1"
    assert (await bob.storage.get_user_metadata(uid(alice))).items["k"].value == "v1"
    # Topic roles are back: each sees the other's, and its own.
    await eventually(lambda: b_ch.topics.get("t") == [uid(alice)])
    assert uid(bob) in b_ch.topics["bt"]
    await eventually(lambda: a_ch.topics.get("bt") == [uid(bob)])
    # Presence with its state is back.
    who = await alice.presence.who_now(mch, MESSAGE, include_state=True)
    assert [(u.user_id, u.state) for u in who.users] == [(uid(bob), {"mood": "ok"})]

    # Old messages first (some may be lost in the crash), then new ones through the SAME streams.
    old_c = drain(channel_msgs)
    old_t = drain(topic_msgs)
    for i in range(5):
        await alice.publish(mch, f"after{i}")
        await a_ch.publish_topic("t", f"after{i}")
    new_c = await collect(channel_msgs, 5, timeout=3)
    new_t = await collect(topic_msgs, 5, timeout=3)
    await meta_events_change(alice, meta_events)
    print(
        f"\n[crash] restarts=1 published_before_kill={before_kill} published={published} "
        f"refused_while_down={refused} received_before={len(old_c)}/{len(old_t)} "
        f"received_after={len(new_c)}/{len(new_t)} recovery={recovery}"
    )
    for old in (payloads(old_c), payloads(old_t)):
        numbers = [int(p[1:]) for p in old if not p.startswith("after")]
        assert numbers == sorted(set(numbers))  # in order, no duplicates
    assert payloads(new_c) == [f"after{i}" for i in range(5)]
    for client in (alice, bob):
        assert reconnect_pairs(rig.seen(client)) == 1
        assert len(client.errors) == 0
    # Known bug (see the report): after the new login the stream channel's topic keeps the
    # OLD server's last offset, and the new server numbers from 1 again, so the first
    # messages of the restarted server are taken for duplicates and silently dropped.
    assert payloads(new_t) == [f"after{i}" for i in range(5)], (
        "the stream-channel subscriber gets no new messages of the publisher after the "
        f"restart: client offsets {bob._offsets}"
    )


async def meta_events_change(
    alice: rtm2.RTMClient, meta_events: rtm2.EventStream[rtm2.StorageEvent]
) -> None:
    """A metadata write after the restart reaches the subscriber's old stream."""
    await alice.storage.update_user_metadata(uid(alice), [MetadataItem("k", "v2")])
    event = await meta_events.get(timeout=5)
    assert event.type is rtm2.StorageEventType.UPDATE
    assert event.items["k"].value == "v2"


# --- 4. failures that must not be retried --------------------------------------------------------


async def test_a_reconnection_refused_for_an_expired_token_fails_and_stops_retrying(
    rig: Rig,
) -> None:
    port = free_port()
    srv = rig.server("expiry", port=port)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger(f"rtm2.test.{unique('expiry')}")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(Keep())
    logger.propagate = False
    logged_in_at = time.time()
    client = await rig.login(srv.url, "shortlived", expire=3, logger=logger, **FAST_RECONNECT)
    srv.signal(signal.SIGKILL)
    srv.wait(5)
    await rig.wait_for(client, lambda e: e.state is State.RECONNECTING, timeout=5)
    # Start the server again only once the token has expired (whole seconds, plus margin).
    await asyncio.sleep(max(0.0, int(logged_in_at) + 3 + 1.2 - time.time()))
    srv = rig.server("expiry", port=port)
    failed = await rig.wait_for(client, lambda e: e.state is State.FAILED, timeout=10)
    error = await client.errors.get(timeout=2)
    attempts = sum("reconnection attempt" in r.getMessage() for r in records)
    log_lines = srv.log().count(uid(client))
    after_failure = len(records)
    await asyncio.sleep(2.0)
    later = [r.getMessage() for r in records[after_failure:]]
    print(
        f"\n[expiry] restarts=1 failed_attempts_while_down={attempts} "
        f"records_after_failure={len(later)} events={rig.seen(client)}"
    )
    assert failed.reason is Reason.TOKEN_EXPIRED
    assert error.code == ErrorCode.TOKEN_EXPIRED
    assert attempts >= 1
    assert later == []  # no more attempts
    assert srv.log().count(uid(client)) == log_lines
    assert not client.logged_in
    assert [s for s, _ in rig.seen(client)].count(State.RECONNECTING) == 1
    assert client._reconnecting is None or client._reconnecting.done()


async def test_a_login_of_the_same_user_elsewhere_fails_the_first_client_without_retrying(
    server: ServerProcess, rig: Rig
) -> None:
    first = await rig.login(server.url, "twin", **FAST_RECONNECT)
    second = rig.client(server.url, "twin", user=uid(first), **FAST_RECONNECT)
    await rig.login_client(second)
    failed = await rig.wait_for(
        first, lambda e: e.state in (State.FAILED, State.RECONNECTING), timeout=5
    )
    error = await first.errors.get(timeout=2)
    await asyncio.sleep(1.0)
    events = rig.seen(first)
    print(f"\n[same uid] logins=2 events={events}")
    assert (failed.state, failed.reason) == (State.FAILED, Reason.SAME_UID_LOGIN)
    assert error.code == ErrorCode.LOGIN_ABORTED
    assert State.RECONNECTING not in [s for s, _ in events]
    assert not first.logged_in
    assert second.logged_in
    assert rig.seen(second)[-1] == (State.CONNECTED, Reason.LOGIN_SUCCESS)


# --- 5. endpoint failover ------------------------------------------------------------------------


async def test_login_skips_an_endpoint_that_cannot_be_reached(
    server: ServerProcess, rig: Rig
) -> None:
    dead = f"ws://127.0.0.1:{free_port()}"
    client = await rig.login([dead, server.url], "failover")
    msgs = await client.subscribe(unique("fo"))
    print(f"\n[failover login] endpoints=2 dead=1 events={rig.seen(client)}")
    assert client.logged_in
    await client.publish(msgs.name, "hi")
    assert (await msgs.get(timeout=5)).message == "hi"


async def test_when_the_first_server_dies_the_client_comes_back_on_the_next_endpoint(
    rig: Rig,
) -> None:
    a = rig.server("a")
    b = rig.server("b")
    channel = unique("fo")
    client = await rig.login([a.url, b.url], "roamer", **FAST_RECONNECT)
    msgs = await client.subscribe(channel)
    session = client.session_id
    a.signal(signal.SIGKILL)
    a.wait(5)
    await rig.wait_for(client, lambda e: e.state is State.RECONNECTING, timeout=5)
    await rig.back(client, timeout=10)
    recovery = await client.recovery_events.get(timeout=5)
    other = await rig.login(b.url, "local")
    await other.publish(channel, "on b")
    got = await msgs.get(timeout=5)
    print(f"\n[failover] servers=2 kills=1 events={rig.seen(client)} recovery={recovery}")
    assert client.session_id != session
    assert f"{uid(client)}@{APP_A[:8]}" in b.log()
    assert recovery == RecoveryEvent(channel, MESSAGE, "", False, True)
    assert got.message == "on b"
    assert reconnect_pairs(rig.seen(client)) == 1


# --- 6. sidecar mode -----------------------------------------------------------------------------


async def test_sidecar_mode_starts_reuses_stops_and_reports_a_dead_sidecar(rig: Rig) -> None:
    port = free_port()
    starts = 0

    def sidecar_client(prefix: str, **params: Any) -> rtm2.RTMClient:
        client = rig.client(None, prefix, APP_OPEN)
        client.set_parameters(params)
        return client

    # The first client starts the sidecar (Go's parameter name works).
    first = sidecar_client("side1", golang_sidecar_port=port)
    assert first.get_parameters() == {rtm2.PARAM_SIDECAR_PORT: port}
    await rig.login_client(first)
    starts += 1
    assert first._sidecar.started
    sidecar_pid = first._sidecar._proc.pid  # type: ignore[union-attr]
    assert not port_is_free(port)
    # A second one on the same port uses the running sidecar.
    second = sidecar_client("side2", **{rtm2.PARAM_SIDECAR_PORT: port})
    await rig.login_client(second)
    assert not second._sidecar.started
    # Go's "host:port" endpoint means ws://host:port.
    third = sidecar_client("side3", golang_sidecar_endpoint=f"127.0.0.1:{port}")
    assert third.get_parameters()[rtm2.PARAM_ENDPOINT] == f"ws://127.0.0.1:{port}"
    await rig.login_client(third)
    assert not third._sidecar.started
    channel = unique("side")
    inbox = await second.subscribe(channel)
    await first.publish(channel, "from first")
    await third.publish(channel, "from third")
    assert payloads(await collect(inbox, 2, timeout=5)) == ["from first", "from third"]

    # Clients that did not start it leave it running; the one that did stops it.
    await second.logout()
    await third.logout()
    assert psutil.pid_exists(sidecar_pid)
    assert not port_is_free(port)
    await first.logout()
    assert not psutil.pid_exists(sidecar_pid) or psutil.Process(sidecar_pid).status() == "zombie"
    await eventually(lambda: port_is_free(port))

    # A sidecar killed under a logged-in client: an error and FAILED.
    doomed = sidecar_client("side4", **{rtm2.PARAM_SIDECAR_PORT: port})
    await rig.login_client(doomed)
    starts += 1
    assert doomed._sidecar.started
    os.kill(doomed._sidecar._proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
    failed = await rig.wait_for(doomed, lambda e: e.state is State.FAILED, timeout=5)
    error = await doomed.errors.get(timeout=5)
    assert failed.reason is Reason.LOST
    assert error.code == ErrorCode.NOT_CONNECTED
    assert "sidecar" in error.reason
    assert not doomed.logged_in

    # Recreate the client: log out, a new RTMClient, log in: a new sidecar.
    await doomed.logout()
    again = sidecar_client("side5", **{rtm2.PARAM_SIDECAR_PORT: port})
    await rig.login_client(again)
    starts += 1
    assert again._sidecar.started
    inbox = await again.subscribe(channel)
    await again.publish(channel, "back")
    assert (await inbox.get(timeout=5)).message == "back"
    await again.logout()
    await eventually(lambda: port_is_free(port))
    print(f"\n[sidecar] sidecars_started={starts} kills=1 clients=5 events={rig.seen(doomed)}")


# --- 7. slow consumers ---------------------------------------------------------------------------


async def test_a_subscriber_that_stops_reading_is_cut_off_without_hurting_the_others(
    rig: Rig,
) -> None:
    srv = rig.server("slow", server={"max_send_buffer": 262144})
    channel = unique("flood")
    # 1,500 x 30 KB = 45 MB: more than the channel's recovery buffer keeps (its last 1,000
    # messages, 30 MB), so a server that buffered it all for the slow subscriber would grow by
    # ~75 MB, one that cut it off by ~30 MB.
    n, size = 1500, 30_000
    slow = await rig.login(srv.url, "slow", APP_SMALL)
    fast = [await rig.login(srv.url, f"fast{i}_", APP_SMALL) for i in range(2)]
    publisher = await rig.login(srv.url, "flooder", APP_SMALL)
    await slow.subscribe(channel, with_presence=False)
    inboxes = [await f.subscribe(channel, with_presence=False) for f in fast]
    server_proc = psutil.Process(srv.pid)
    rss_before = server_proc.memory_info().rss

    assert slow._link is not None
    assert slow._link._transport is not None
    slow._link._transport.underlying_transport.pause_reading()
    started = time.monotonic()
    # One publish at a time: concurrent large publishes break the publisher's own connection
    # (see test_concurrent_publishes_of_messages_within_the_size_limit_keep_the_connection).
    for i in range(n):
        await publisher.publish(channel, f"{i:05d}".encode() + bytes(size - 5))
    flood_time = time.monotonic() - started

    got = [await collect(inbox, n, timeout=15) for inbox in inboxes]
    cut = await rig.wait_for(
        slow, lambda e: e.state in (State.RECONNECTING, State.FAILED), timeout=5
    )
    await eventually(lambda: "slow consumer" in srv.log(), timeout=5)
    rss_after = server_proc.memory_info().rss
    await asyncio.sleep(1.0)
    rss_later = server_proc.memory_info().rss
    mib = 2**20
    growth = (rss_after - rss_before) / mib
    print(
        f"\n[slow] messages={n}x{size}B flood={flood_time:.2f}s received={[len(g) for g in got]} "
        f"slow_client={cut.state.name}/{cut.reason.name} rss_before={rss_before / mib:.1f}MiB "
        f"rss_after={rss_after / mib:.1f}MiB rss_1s_later={rss_later / mib:.1f}MiB "
        f"growth={growth:.1f}MiB slow_recovery={drain(slow.recovery_events)} "
        f"fast_reconnects={[rig.seen(f)[2:] for f in fast]}"
    )
    assert srv.log().count("slow consumer") >= 1
    for received in got:
        assert [m.message[:5] for m in received] == [f"{i:05d}".encode() for i in range(n)]
    # Recovery buffer (<= 1,000 x 30 KB = 28.6 MiB) plus generous slack; the flood is 43 MiB.
    assert growth < 28.6 + 20, f"server RSS grew by {growth:.1f} MiB"
    assert (rss_later - rss_after) / mib < 8, "server RSS still growing after the flood"


# --- 8. a lock wait across a blip ----------------------------------------------------------------


async def test_a_lock_wait_survives_a_connection_blip_and_is_granted_after_the_release(
    server: ServerProcess, rig: Rig
) -> None:
    channel = unique("lockblip")
    proxy = await rig.proxy(server.url)
    holder = await rig.login(server.url, "holder")
    waiter = await rig.login(proxy.url, "waiter", **FAST_RECONNECT)
    await holder.subscribe(channel, with_lock=True)
    await waiter.subscribe(channel)
    await holder.lock.set(channel, MESSAGE, "L", ttl=10)
    fence = await holder.lock.acquire(channel, MESSAGE, "L")
    session = waiter.session_id

    waiting = asyncio.create_task(waiter.lock.acquire(channel, MESSAGE, "L", retry=True))
    cuts = 0
    try:
        await asyncio.sleep(0.3)
        assert not waiting.done()
        for _ in range(2):
            cuts += proxy.cut()
            await rig.back(waiter, timeout=5)
            await asyncio.sleep(0.3)
            assert not waiting.done(), waiting
        await holder.lock.release(channel, MESSAGE, "L")
        granted = await asyncio.wait_for(asyncio.shield(waiting), 5)
    finally:
        if not waiting.done():
            waiting.cancel()
    owner = (await holder.lock.get(channel, MESSAGE))["L"].owner
    print(f"\n[lock wait] cuts={cuts} fence={fence}->{granted} owner={owner}")
    assert cuts == 2
    assert granted == fence + 1
    assert owner == uid(waiter)
    assert waiter.session_id == session
    assert reconnect_pairs(rig.seen(waiter)) == 2


async def test_concurrent_publishes_of_messages_within_the_size_limit_keep_the_connection(
    server: ServerProcess, rig: Rig
) -> None:
    """Each message is under the 32 KB message limit; the client must not pack them into one
    WebSocket frame over the server's frame limit (64 KiB, told in Welcome.max_frame_size)."""
    channel = unique("burst")
    n, size = 8, 30_000
    publisher = await rig.login(server.url, "burster", APP_SMALL, **FAST_RECONNECT)
    subscriber = await rig.login(server.url, "burstee", APP_SMALL)
    inbox = await subscriber.subscribe(channel, with_presence=False)
    results = await asyncio.gather(
        *(publisher.publish(channel, bytes([i]) * size) for i in range(n)),
        return_exceptions=True,
    )
    got = await collect(inbox, n, timeout=3)
    await asyncio.sleep(0.3)
    events = rig.seen(publisher)
    print(f"\n[burst] messages={n}x{size}B results={results} received={len(got)} events={events}")
    assert results == [None] * n
    assert events == [
        (State.CONNECTING, Reason.CONNECTING),
        (State.CONNECTED, Reason.LOGIN_SUCCESS),
    ]
    assert [m.message[0] for m in got] == list(range(n))


async def test_a_frame_over_the_servers_frame_limit_is_refused_and_not_executed(
    server: ServerProcess,
) -> None:
    """The server closes a connection whose frame passes max_frame_size (1009); the requests
    inside that frame must not be carried out, or a client that sees NOT_CONNECTED for them
    cannot tell whether to send them again."""
    channel = unique("toobig")
    listener = rtm2.RTMClient(rtm2.RTMConfig(APP_OPEN, unique("ear")))
    listener.set_parameters({rtm2.PARAM_ENDPOINT: server.url})
    await listener.login("")
    try:
        inbox = await listener.subscribe(channel, with_presence=False)
        ws = await websockets.connect(server.url, max_size=None)
        await ws.send(encode(Hello(1)))
        await ws.send(encode(Login(2, APP_OPEN, unique("big"), "")))
        await ws.recv()
        await ws.recv()
        n = 3
        frame = encode_batch(
            [encode(Publish(10 + i, channel, bytes(30_000), 0, MESSAGE, "")) for i in range(n)]
        )
        await ws.send(frame)
        closed = await closed_with(ws)
        delivered = await collect(inbox, n, timeout=1)
        print(f"\n[frame limit] frame={len(frame)}B publishes={n} delivered={len(delivered)}")
        assert closed == 1009
        assert delivered == []
    finally:
        await listener.logout()


async def test_a_gap_longer_than_the_recovery_buffer_is_reported_not_silently_lost(
    rig: Rig, server: ServerProcess
) -> None:
    # APP_TINY keeps only 3 messages per channel; the subscriber comes back after 0.5-1 s.
    proxy = await rig.proxy(server.url)
    publisher = await rig.login(server.url, "pub", APP_TINY)
    subscriber = await rig.login(
        proxy.url, "sub", APP_TINY, reconnect_min_delay=1.0, reconnect_max_delay=1.0
    )
    session = subscriber.session_id
    channel = unique("gap")
    messages = await subscriber.subscribe(channel)
    await publisher.publish(channel, "m0")
    assert (await messages.get(timeout=5)).message == "m0"
    proxy.cut()
    for i in range(1, 11):  # 10 messages while it is away: 3 fit in the buffer
        await publisher.publish(channel, f"m{i}")
    await rig.back(subscriber)
    assert subscriber.session_id == session  # resumed, yet too much was missed
    event = await subscriber.recovery_events.get(timeout=5)
    assert event == rtm2.RecoveryEvent(channel, rtm2.ChannelType.MESSAGE, "", False, True)
    await publisher.publish(channel, "live")
    assert (await messages.get(timeout=5)).message == "live"  # no partial replay before it
    print(f"cuts={proxy.cuts} missed=10 buffer=3")
