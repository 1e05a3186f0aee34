"""Webhooks end to end: a real server POSTs signed events to a real HTTP receiver."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import rtm2
from rtm2 import ChannelType

from ..conftest import APP_A, CERT_A, ServerProcess
from .nodes import forget
from .proxy import TcpProxy
from .util import client_for, token_for, unique
from .webhook_receiver import Receiver

SECRET = "s3cret-of-the-backend"


class HookedServer(ServerProcess):
    """A server with app A only, whose webhooks are ``hooks`` (TOML key = value lines)."""

    def __init__(
        self, workdir: Path, hooks: list[dict[str, Any]], app: str = "", **kw: Any
    ) -> None:
        super().__init__(workdir, **kw)
        self.hooks = hooks
        self.app_lines = app  # more settings of the app

    def write_config(self) -> Path:
        lines = ["[server]"]
        lines += [f"{k} = {v}" for k, v in self.server_options.items()]
        lines += ["[timers]"]
        lines += [f"{k} = {v}" for k, v in self.timers.items()]
        lines += [
            "[[apps]]",
            f'id = "{APP_A}"',
            f'certificates = ["{CERT_A}"]',
            'lock_admin = "anyone"',
            'stream_join_policy = "login"',
            self.app_lines,
        ]
        for hook in self.hooks:
            lines.append("[[apps.webhooks]]")
            for key, value in hook.items():
                lines.append(f"{key} = {_toml(value)}")
        path = self.workdir / "rtm2.toml"
        path.write_text("\n".join(lines) + "\n")
        return path


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def _hook(receiver: Receiver, **kw: Any) -> dict[str, Any]:
    return {"url": receiver.url, "secret": SECRET, "retry_min": 0.2, "retry_max": 1.0} | kw


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver(SECRET)
    await r.start()
    yield r
    await r.stop()


class Clients:
    def __init__(self) -> None:
        self.all: list[rtm2.RTMClient] = []

    async def login(self, server: ServerProcess, user: str | None = None) -> rtm2.RTMClient:
        user = user or unique("u")
        client = client_for(server, user)
        await client.login(token_for(user))
        self.all.append(client)
        return client


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    c = Clients()
    yield c
    for client in c.all:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.logout(), 5)


@pytest.fixture
def hooked(tmp_path: Path) -> Iterator[list[HookedServer]]:
    started: list[HookedServer] = []
    yield started
    for srv in started:
        srv.stop()


def _start(
    hooked: list[HookedServer], workdir: Path, hooks: list[dict[str, Any]], **kw: Any
) -> HookedServer:
    workdir.mkdir(exist_ok=True)
    srv = HookedServer(workdir, hooks, http=True, **kw)
    srv.start()
    hooked.append(srv)
    return srv


def _in_order_per_channel(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Each channel's events' ids in arrival order, a redelivered id counted where it came
    first."""
    seen: set[str] = set()
    by_channel: dict[str, list[str]] = {}
    for e in events:
        if e["id"] in seen:
            continue
        seen.add(e["id"])
        key = e["data"].get("channel") or e["data"].get("user_id")
        by_channel.setdefault(key, []).append(e["id"])
    return by_channel


async def test_every_event_type_arrives_signed_as_clients_use_the_server(
    tmp_path: Path, receiver: Receiver, hooked: list[HookedServer], clients: Clients
) -> None:
    srv = _start(hooked, tmp_path / "n", [_hook(receiver, events=["*", "message.published"])])
    channel, stage = unique("room"), unique("stage")
    alice = await clients.login(srv)
    bob = await clients.login(srv)
    a, b = alice.config.user_id, bob.config.user_id
    await alice.subscribe(channel)
    await bob.subscribe(channel)
    await alice.presence.set_state(channel, ChannelType.MESSAGE, {"mood": "fine"})
    await alice.storage.set_channel_metadata(
        channel, ChannelType.MESSAGE, [rtm2.MetadataItem("topic", "rust")]
    )
    await alice.storage.set_user_metadata(a, [rtm2.MetadataItem("bio", "hi")])
    await alice.lock.set(channel, ChannelType.MESSAGE, "L", ttl=10)
    await alice.lock.acquire(channel, ChannelType.MESSAGE, "L")
    await alice.lock.release(channel, ChannelType.MESSAGE, "L")
    await alice.lock.remove(channel, ChannelType.MESSAGE, "L")
    await alice.publish(channel, "hello")
    sc = alice.stream_channel(stage)
    await sc.join()
    await sc.join_topic("t")
    await sc.publish_topic("t", b"\x00\x01")
    await sc.leave_topic("t")
    await sc.leave()
    await bob.unsubscribe(channel)
    await bob.logout()
    await receiver.wait_for(
        lambda events: (
            {"user.logout", "channel.leave", "topic.leave"} <= {e["type"] for e in events}
        )
    )
    got = {e["type"]: e for e in receiver.events}
    for event in receiver.events:
        assert set(event) == {"id", "type", "app_id", "ts_ms", "node", "data"}
        assert event["app_id"] == APP_A
    assert {e["data"]["user_id"] for e in receiver.of_type("user.login")} >= {a, b}
    joins = {
        (e["data"]["user_id"], e["data"]["channel"], e["data"]["channel_type"])
        for e in receiver.of_type("channel.join")
    }
    assert {(a, channel, "message"), (b, channel, "message"), (a, stage, "stream")} <= joins
    assert got["presence.state_changed"]["data"]["state"] == {"mood": "fine"}
    channel_meta = got["storage.channel_updated"]["data"]
    assert (channel_meta["channel"], channel_meta["items"][0]["value"]) == (channel, "rust")
    assert got["storage.user_updated"]["data"]["user_id"] == a
    assert [e["type"] for e in receiver.events if e["type"].startswith("lock.")] == [
        "lock.set",
        "lock.acquired",
        "lock.released",
        "lock.removed",
    ]
    assert got["lock.acquired"]["data"]["owner"] == a
    published = [e["data"] for e in receiver.of_type("message.published")]
    assert {(m["channel"], m["channel_type"], m["topic"], m["message"]) for m in published} == {
        (channel, "message", "", "hello"),
        (stage, "stream", "t", "AAE="),  # binary: base64
    }
    assert {m["publisher"] for m in published} == {a}
    assert got["topic.join"]["data"] == {"channel": stage, "topic": "t", "user_id": a}
    assert (b, channel) in {
        (e["data"]["user_id"], e["data"]["channel"]) for e in receiver.of_type("channel.leave")
    }
    assert got["user.logout"]["data"]["user_id"] == b
    assert receiver.bad_signatures == 0
    ids = [e["id"] for e in receiver.events]
    assert len(set(ids)) == len(ids)


async def test_lost_connections_timeouts_kicks_and_revokes_are_told_as_such(
    tmp_path: Path, receiver: Receiver, hooked: list[HookedServer], clients: Clients
) -> None:
    srv = _start(hooked, tmp_path / "n", [_hook(receiver, events=["user.*", "lock.*"])])
    room = unique("room")
    admin = await clients.login(srv)
    async with TcpProxy(int(srv.url.rsplit(":", 1)[1])) as proxy:
        lost = client_for(srv, unique("lost"), auto_reconnect=False, presence_timeout=5)
        lost.set_parameters({rtm2.PARAM_ENDPOINT: proxy.url})
        who = lost.config.user_id
        await lost.login(token_for(who))
        await lost.subscribe(room)
        await lost.lock.set(room, ChannelType.MESSAGE, "L", ttl=10)
        await lost.lock.acquire(room, ChannelType.MESSAGE, "L")
        await admin.lock.revoke(room, ChannelType.MESSAGE, "L", who)
        proxy.cut()
        await receiver.wait_for(lambda events: bool(receiver.of_type("user.timeout")), 15)
    kicked = await clients.login(srv)
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{srv.http_url}/v1/apps/{APP_A}/users/{kicked.config.user_id}/kick",
            json={"reason": "spam"},
            headers=_admin(srv),
        )
        assert response.status_code == 200, response.text
    await receiver.wait_for(lambda events: bool(receiver.of_type("user.kicked")))
    (disconnected,) = receiver.of_type("user.disconnected")
    assert disconnected["data"] == {"user_id": who, "reason": "connection lost"}
    (timed_out,) = receiver.of_type("user.timeout")
    assert timed_out["data"]["user_id"] == who
    (revoked,) = receiver.of_type("lock.revoked")
    assert (revoked["data"]["lock"], revoked["data"]["owner"]) == ("L", who)
    assert not receiver.of_type("lock.released")
    (kick,) = receiver.of_type("user.kicked")
    assert kick["data"] == {"user_id": kicked.config.user_id, "reason": "spam"}
    user_events = [e["type"] for e in receiver.events if e["data"].get("user_id") == who]
    assert user_events == ["user.login", "user.disconnected", "user.timeout"]


async def test_events_wait_for_a_receiver_that_is_down_and_arrive_in_order_per_channel(
    tmp_path: Path, receiver: Receiver, hooked: list[HookedServer], clients: Clients
) -> None:
    srv = _start(hooked, tmp_path / "n", [_hook(receiver, events=["channel.*", "presence.*"])])
    alice = await clients.login(srv)
    rooms = [unique(f"r{i}-") for i in range(3)]
    await receiver.stop()
    down = time.monotonic()
    for room in rooms:
        await alice.subscribe(room)
    for n in range(5):
        for room in rooms:
            await alice.presence.set_state(room, ChannelType.MESSAGE, {"n": str(n)})
        await asyncio.sleep(0.15)  # state changes go out at most one per sweep
    await asyncio.sleep(max(0.0, 3.0 - (time.monotonic() - down)))
    await receiver.start()
    await receiver.wait_for(
        lambda events: (
            sum(
                1
                for e in events
                if e["type"] == "presence.state_changed" and e["data"]["state"]["n"] == "4"
            )
            == 3
        )
    )
    for room in rooms:
        mine = [e for e in receiver.events if e["data"]["channel"] == room]
        assert mine[0]["type"] == "channel.join"
        states = [int(e["data"]["state"]["n"]) for e in mine[1:]]
        assert states == sorted(states), states
        assert states[-1] == 4


async def test_events_queued_when_the_node_is_killed_are_delivered_after_its_restart(
    tmp_path: Path, receiver: Receiver, hooked: list[HookedServer], clients: Clients
) -> None:
    srv = _start(hooked, tmp_path / "n", [_hook(receiver, events=["channel.join", "user.*"])])
    await receiver.stop()
    users = [await clients.login(srv) for _ in range(3)]
    room = unique("room")
    for user in users:
        await user.subscribe(room)
    await asyncio.sleep(0.3)  # well past the group commit; nothing can be delivered
    srv.signal(signal.SIGKILL)
    srv.wait()
    await receiver.start()
    srv.start()
    expected = {u.config.user_id for u in users}
    await receiver.wait_for(
        lambda events: (
            {e["data"]["user_id"] for e in events if e["type"] == "channel.join"} == expected
            and {e["data"]["user_id"] for e in events if e["type"] == "user.login"} == expected
        )
    )


async def test_a_failing_receiver_is_retried_with_backoff_and_one_that_never_recovers_is_bounded(
    tmp_path: Path, receiver: Receiver, hooked: list[HookedServer], clients: Clients
) -> None:
    dead = Receiver(SECRET)
    await dead.start()
    await dead.stop()  # a port nobody listens on
    srv = _start(
        hooked,
        tmp_path / "n",
        [
            _hook(receiver, events=["channel.join"], name="good", timeout=0.5),
            _hook(dead, events=["channel.join"], name="dead", queue_bound=8),
        ],
    )
    receiver.slow_next, receiver.fail_next = 1, 3  # a timeout, then three 500s
    alice = await clients.login(srv)
    first = unique("first")
    await alice.subscribe(first)
    await receiver.wait_for(lambda events: len(events) == 1)
    assert receiver.refusals == 4
    assert len(receiver.requests) == 5
    # Backoff from 0.2 s, doubling up to 1 s, each with jitter down to half: the gaps after
    # the 500s grow (the first gap also holds the 0.5 s timeout).
    gaps = [b - a for a, b in zip(receiver.requests, receiver.requests[1:], strict=False)]
    assert gaps[0] >= 0.5 + 0.1, gaps  # the timeout, then at least 0.1 s
    assert gaps[1] >= 0.2, gaps  # at least half of 0.4 s
    assert gaps[3] >= 0.5, gaps  # at least half of 1 s (0.2 s doubled thrice, at most 1 s)
    rooms = [unique(f"many{i}-") for i in range(40)]
    for room in rooms:
        await alice.subscribe(room)
    await receiver.wait_for(lambda events: len(events) == 41)
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{srv.http_url}/health")).status_code == 200
        deadline = time.monotonic() + 10
        while True:
            text = (await http.get(f"{srv.http_url}/metrics", headers=_admin(srv))).text
            dropped = _metric(text, 'rtm2_webhook_dropped_total{reason="bound",webhook="dead"}')
            if dropped >= 41 - 8 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    assert dropped >= 41 - 8
    assert _metric(text, 'rtm2_webhook_deliveries_total{webhook="good"}') == 41
    assert _metric(text, 'rtm2_webhook_queue_depth{webhook="dead"}') <= 8
    assert _metric(text, 'rtm2_webhook_failures_total{status="500",webhook="good"}') == 3
    assert _metric(text, 'rtm2_webhook_failures_total{status="timeout",webhook="good"}') == 1
    assert _metric(text, 'rtm2_webhook_retries_total{webhook="good"}') == 4
    assert "dropped" in srv.log()


def _admin(srv: ServerProcess) -> dict[str, str]:
    return {"X-API-Key": srv.admin_key}


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.redis
async def test_a_live_node_emits_the_timeouts_of_a_killed_nodes_users_and_their_lock_expiry(
    tmp_path: Path, receiver: Receiver, hooked: list[HookedServer]
) -> None:
    prefix = f"rtm2test:{uuid.uuid4().hex[:12]}:"
    engine = f'"{REDIS}?prefix={prefix}"'
    hook = _hook(receiver, events=["user.*", "channel.*", "lock.*"])
    try:
        a = _start(hooked, tmp_path / "a", [hook], timers=_MORTAL, server={"engine": engine})
        _start(hooked, tmp_path / "b", [hook], timers=_MORTAL, server={"engine": engine})
        room, stage = unique("crash"), unique("stage")
        victim = client_for(a, unique("victim"), auto_reconnect=False)
        who = victim.config.user_id
        await victim.login(token_for(who))
        await victim.subscribe(room)
        await victim.stream_channel(stage).join()
        await victim.lock.set(room, ChannelType.MESSAGE, "L", ttl=10)
        await victim.lock.acquire(room, ChannelType.MESSAGE, "L")
        await receiver.wait_for(lambda events: len(events) >= 5)  # login, 2 joins, set, acquire
        a.signal(signal.SIGKILL)
        a.wait()
        await receiver.wait_for(
            lambda events: (
                {"user.timeout", "channel.timeout"} <= {e["type"] for e in events}
                and len([e for e in events if e["type"] == "channel.timeout"]) == 2
            ),
            timeout=15,
        )
        timeouts = receiver.of_type("channel.timeout")
        assert {(e["data"]["channel"], e["data"]["channel_type"]) for e in timeouts} == {
            (room, "message"),
            (stage, "stream"),
        }
        (user_timeout,) = receiver.of_type("user.timeout")
        assert user_timeout["data"]["user_id"] == who
        (login,) = receiver.of_type("user.login")
        dead = login["node"]
        assert {e["node"] for e in [*timeouts, user_timeout]} - {dead} == {
            e["node"] for e in [*timeouts, user_timeout]
        }
        await receiver.wait_for(lambda events: bool(receiver.of_type("lock.expired")), 20)
        (expired,) = receiver.of_type("lock.expired")
        assert (expired["data"]["lock"], expired["data"]["channel"]) == ("L", room)
        assert expired["node"] not in (dead, "")
        assert receiver.bad_signatures == 0
    finally:
        forget(prefix)


REDIS = "redis://127.0.0.1:6379/0"
_MORTAL = {"node_timeout": 2.0}  # nodes declare each other dead after 2 s of silence


async def test_pull_queues_hand_out_user_and_channel_events_once_oldest_first_and_bounded(
    tmp_path: Path, hooked: list[HookedServer], clients: Clients
) -> None:
    srv = _start(hooked, tmp_path / "n", [], app="event_queue_size = 4")
    first = await clients.login(srv)
    room = unique("room")
    await first.subscribe(room)
    key = _admin(srv)
    async with httpx.AsyncClient(base_url=srv.http_url, headers=key) as http:
        users_url = f"/v1/apps/{APP_A}/events/users"
        pulled: list[dict[str, Any]] = []
        deadline = time.monotonic() + 5
        while not pulled and time.monotonic() < deadline:
            answer = await http.get(users_url)
            assert answer.status_code == 200, answer.text
            pulled = answer.json()["events"]
        assert [(e["type"], e["data"]["user_id"]) for e in pulled] == [
            ("user.login", first.config.user_id)
        ]
        assert (await http.get(users_url)).json()["events"] == []  # pulled means deleted
        others = [await clients.login(srv) for _ in range(6)]  # 6 logins, the queue keeps 4
        await first.logout()
        await asyncio.sleep(0.5)
        user_events: list[dict[str, Any]] = []
        deadline = time.monotonic() + 5
        while not any(e["type"] == "Logout" for e in user_events):
            assert time.monotonic() < deadline, user_events
            agora = (await http.get(f"/dev/v2/project/{APP_A}/rtm/vendor/user_events")).json()
            assert agora["result"] == "success"
            user_events += agora["events"]
        # The queue keeps the 4 newest: the 3 last logins and the logout (or, pulled before
        # the logout was queued, the 4 last logins, then the logout).
        logins = [(c.config.user_id, "Login") for c in others]
        assert [(e["user_id"], e["type"]) for e in user_events] in (
            [*logins[3:], (first.config.user_id, "Logout")],
            [*logins[2:], (first.config.user_id, "Logout")],
        )
        channel_events: list[dict[str, Any]] = []
        deadline = time.monotonic() + 5  # the leave comes after the presence debounce
        while len(channel_events) < 2 and time.monotonic() < deadline:
            url = f"/dev/v2/project/{APP_A}/rtm/vendor/channel_events"
            channel_events += (await http.get(url)).json()["events"]
        assert [(e["channel_id"], e["user_id"], e["type"]) for e in channel_events] == [
            (room, first.config.user_id, "Join"),
            (room, first.config.user_id, "Leave"),
        ]
        assert (await http.get(f"/v1/apps/{APP_A}/events/channels?limit=0")).status_code == 400
