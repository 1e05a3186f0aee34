"""Several rtm2 nodes on one Redis behave as one: clients on different nodes see each other."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import rtm2
from rtm2 import ChannelType, ErrorCode
from rtm2 import ConnectionChangeReason as Reason
from rtm2 import ConnectionState as State

from ..conftest import APP_SMALL, CERT_SMALL, ServerProcess
from ..redis_cluster import LocalCluster, local_cluster
from .util import client_for, next_event, unique

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A local 3-master Redis Cluster for this module."""
    with local_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture(params=["redis", "cluster"])
def nodes(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two nodes on one Redis, or on a Redis Cluster, in a key namespace of the test's own."""
    prefix = f"rtm2test:{uuid.uuid4().hex[:12]}:"
    url = request.getfixturevalue("cluster").url if request.param == "cluster" else REDIS
    engine = f'"{url}?prefix={prefix}"'
    a = ServerProcess(tmp_path / "a", server={"engine": engine})
    b = ServerProcess(tmp_path / "b", server={"engine": engine})
    for node in (a, b):
        node.workdir.mkdir()
        node.start()
    yield a, b
    for node in (a, b):
        node.stop()
    if request.param == "redis":
        _forget(prefix)


def _forget(prefix: str) -> None:
    import subprocess

    keys = subprocess.run(
        ["redis-cli", "--scan", "--pattern", f"{prefix}*"], capture_output=True, text=True
    ).stdout.split()
    if keys:
        subprocess.run(["redis-cli", "DEL", *keys], capture_output=True)


class Clients:
    def __init__(self) -> None:
        self.all: list[rtm2.RTMClient] = []
        self.events: dict[rtm2.RTMClient, rtm2.EventStream[rtm2.ConnectionEvent]] = {}

    async def on(self, node: ServerProcess, user: str | None = None) -> rtm2.RTMClient:
        client = client_for(node, user or unique("u"), app_id=APP_SMALL)
        token = rtm2.build_rtm_token(APP_SMALL, CERT_SMALL, client.config.user_id)
        self.events[client] = (await client.login(token)).conn_events
        self.all.append(client)
        return client


@pytest.fixture
async def clients() -> AsyncIterator[Clients]:
    c = Clients()
    yield c
    await asyncio.gather(*(client.logout() for client in c.all), return_exceptions=True)


async def test_a_message_published_on_one_node_reaches_subscribers_on_both_once_in_order(
    nodes: tuple[ServerProcess, ServerProcess], clients: Clients
) -> None:
    a, b = nodes
    channel = unique("room")
    publisher, near, far = await clients.on(a), await clients.on(a), await clients.on(b)
    streams = [await near.subscribe(channel), await far.subscribe(channel)]
    await asyncio.sleep(0.2)  # both nodes' pub/sub subscriptions are in place
    for i in range(300):
        await publisher.publish(channel, f"m{i}")
    for stream in streams:
        got = [(await stream.get(timeout=5)).message for _ in range(300)]
        assert got == [f"m{i}" for i in range(300)]
        with pytest.raises(TimeoutError):
            await stream.get(timeout=0.3)


async def test_stream_topics_work_across_nodes_with_publisher_picking(
    nodes: tuple[ServerProcess, ServerProcess], clients: Clients
) -> None:
    a, b = nodes
    channel = unique("stage")
    alice, carol, bob = await clients.on(a), await clients.on(a), await clients.on(b)
    for client in (alice, carol):
        await client.stream_channel(channel).join()
        await client.stream_channel(channel).join_topic("t")
    snapshot, topic_events, _ = await bob.stream_channel(channel).join()
    assert sorted(snapshot["t"]) == sorted([alice.config.user_id, carol.config.user_id])
    messages = await bob.stream_channel(channel).subscribe_topic("t", [alice.config.user_id])
    await asyncio.sleep(0.2)
    await carol.stream_channel(channel).publish_topic("t", "not picked")
    await alice.stream_channel(channel).publish_topic("t", "picked")
    message = await messages.get(timeout=5)
    assert (message.user_id, message.message) == (alice.config.user_id, "picked")
    await carol.stream_channel(channel).leave_topic("t")
    await topic_events.get(timeout=5)  # SNAPSHOT
    event = await topic_events.get(timeout=5)
    assert (event.type, event.user_id) == (rtm2.TopicEventType.REMOTE_LEAVE, carol.config.user_id)


async def test_peer_messages_cross_nodes_and_an_offline_user_is_reported(
    nodes: tuple[ServerProcess, ServerProcess], clients: Clients
) -> None:
    a, b = nodes
    alice, bob = await clients.on(a), await clients.on(b)
    await alice.publish(bob.config.user_id, "psst", channel_type=ChannelType.USER)
    message = await bob.peer_messages.get(timeout=5)
    assert (message.user_id, message.message) == (alice.config.user_id, "psst")
    with pytest.raises(rtm2.RTMError) as info:
        await alice.publish(unique("nobody"), "x", channel_type=ChannelType.USER)
    assert info.value.code == ErrorCode.CHANNEL_RECEIVER_OFFLINE


async def test_a_login_on_another_node_evicts_the_same_user(
    nodes: tuple[ServerProcess, ServerProcess], clients: Clients
) -> None:
    a, b = nodes
    user = unique("twin")
    first = await clients.on(a, user)
    await clients.on(b, user)
    events = clients.events[first]
    states = [await next_event(events) for _ in range(3)]
    assert states[-1] == (State.FAILED, Reason.SAME_UID_LOGIN)


async def test_presence_is_global(
    nodes: tuple[ServerProcess, ServerProcess], clients: Clients
) -> None:
    a, b = nodes
    channel = unique("lobby")
    alice, bob = await clients.on(a), await clients.on(b)
    await alice.presence.set_state(channel, ChannelType.MESSAGE, {"mood": "fine"})
    await alice.subscribe(channel)
    await bob.subscribe(channel)
    _snapshot, events = await alice.presence.get_presence_events(channel, ChannelType.MESSAGE)
    users, _ = await bob.presence.who_now(channel, ChannelType.MESSAGE, include_state=True)
    assert {u.user_id: u.state for u in users} == {
        alice.config.user_id: {"mood": "fine"},
        bob.config.user_id: {},
    }
    assert await bob.presence.where_now(alice.config.user_id) == [
        rtm2.ChannelInfo(channel, ChannelType.MESSAGE)
    ]
    await bob.presence.set_state(channel, ChannelType.MESSAGE, {"k": "v"})
    seen = [await events.get(timeout=5) for _ in range(3)]
    kinds = [(e.type, e.user_id) for e in seen[1:]]
    assert (rtm2.PresenceEventType.REMOTE_STATE_CHANGED, bob.config.user_id) in kinds


async def test_storage_and_locks_are_global_and_atomic(
    nodes: tuple[ServerProcess, ServerProcess], clients: Clients
) -> None:
    a, b = nodes
    channel = unique("doc")
    alice, bob = await clients.on(a), await clients.on(b)
    await bob.subscribe(channel, with_metadata=True, with_lock=True)
    _, meta_events = await bob.storage.get_channel_metadata_events(channel, ChannelType.MESSAGE)
    _, lock_events = await bob.lock.get_lock_events(channel, ChannelType.MESSAGE)
    await alice.lock.set(channel, ChannelType.MESSAGE, "editor", ttl=30)
    fence = await alice.lock.acquire(channel, ChannelType.MESSAGE, "editor")
    with pytest.raises(rtm2.RTMError) as info:
        await bob.lock.acquire(channel, ChannelType.MESSAGE, "editor")
    assert info.value.code == ErrorCode.LOCK_ACQUIRE_FAILED
    item = rtm2.MetadataItem("title", "draft")
    await alice.storage.set_channel_metadata(
        channel, ChannelType.MESSAGE, [item], lock_name="editor"
    )
    with pytest.raises(rtm2.RTMError) as info:
        await bob.storage.set_channel_metadata(
            channel, ChannelType.MESSAGE, [item], lock_name="editor"
        )
    assert info.value.code == ErrorCode.STORAGE_LOCK_NOT_ACQUIRED
    await meta_events.get(timeout=5)  # SNAPSHOT
    update = await meta_events.get(timeout=5)
    assert update.items["title"].value == "draft"
    major, _ = await bob.storage.get_channel_metadata(channel, ChannelType.MESSAGE)
    assert major == update.major_revision
    kinds = [(await lock_events.get(timeout=5)).type for _ in range(3)]
    assert kinds == [
        rtm2.LockEventType.SNAPSHOT,
        rtm2.LockEventType.SET,
        rtm2.LockEventType.ACQUIRED,
    ]
    await alice.lock.release(channel, ChannelType.MESSAGE, "editor")
    assert await bob.lock.acquire(channel, ChannelType.MESSAGE, "editor") == fence + 1


@pytest.fixture
def mortal_nodes(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two nodes that declare each other dead after 2 s of silence."""
    prefix = f"rtm2test:{uuid.uuid4().hex[:12]}:"
    engine = f'"{REDIS}?prefix={prefix}"'
    pair = []
    for name in ("a", "b"):
        node = ServerProcess(
            tmp_path / name, timers={"node_timeout": 2.0}, server={"engine": engine}
        )
        node.workdir.mkdir()
        pair.append(node.start())
    yield pair[0], pair[1]
    for node in pair:
        node.stop()
    _forget(prefix)


async def test_the_users_of_a_crashed_node_time_out_and_their_locks_expire_after_the_ttl(
    mortal_nodes: tuple[ServerProcess, ServerProcess], clients: Clients
) -> None:
    a, b = mortal_nodes
    channel = unique("crash")
    watcher = await clients.on(a)
    victim = client_for(b, unique("v"), app_id=APP_SMALL, auto_reconnect=False)
    await victim.login(rtm2.build_rtm_token(APP_SMALL, CERT_SMALL, victim.config.user_id))
    clients.all.append(victim)
    who = victim.config.user_id
    await victim.subscribe(channel)
    await victim.stream_channel(channel).join()
    await victim.stream_channel(channel).join_topic("t")
    await victim.lock.set(channel, ChannelType.MESSAGE, "L", ttl=10)
    await victim.lock.acquire(channel, ChannelType.MESSAGE, "L")

    await watcher.subscribe(channel, with_lock=True)
    _, presence = await watcher.presence.get_presence_events(channel, ChannelType.MESSAGE)
    _, locks = await watcher.lock.get_lock_events(channel, ChannelType.MESSAGE)
    _, topics, _ = await watcher.stream_channel(channel).join()
    for stream in (presence, locks, topics):
        await stream.get(timeout=5)  # the snapshots

    b.signal(signal.SIGKILL)
    b.wait()
    timeout = await presence.get(timeout=10)
    assert (timeout.type, timeout.user_id) == (rtm2.PresenceEventType.REMOTE_TIMEOUT, who)
    left = await topics.get(timeout=5)
    assert (left.type, left.user_id, left.topic) == (rtm2.TopicEventType.REMOTE_LEAVE, who, "t")
    users, _ = await watcher.presence.who_now(channel, ChannelType.MESSAGE)
    assert who not in [u.user_id for u in users]
    assert (await watcher.lock.get(channel, ChannelType.MESSAGE))["L"].owner == who  # TTL runs
    expired = await locks.get(timeout=15)
    assert expired.type is rtm2.LockEventType.EXPIRED
    assert (await watcher.lock.get(channel, ChannelType.MESSAGE))["L"].owner == ""


async def test_a_lock_wait_on_one_node_is_granted_when_another_node_releases(
    nodes: tuple[ServerProcess, ServerProcess], clients: Clients
) -> None:
    a, b = nodes
    channel = unique("wait")
    holder, waiter = await clients.on(a), await clients.on(b)
    await holder.lock.set(channel, ChannelType.MESSAGE, "L", ttl=30)
    first = await holder.lock.acquire(channel, ChannelType.MESSAGE, "L")
    wait = asyncio.create_task(waiter.lock.acquire(channel, ChannelType.MESSAGE, "L", retry=True))
    await asyncio.sleep(0.3)
    assert not wait.done()
    await holder.lock.release(channel, ChannelType.MESSAGE, "L")
    assert await asyncio.wait_for(wait, 5) == first + 1
    locks = await holder.lock.get(channel, ChannelType.MESSAGE)
    assert locks["L"].owner == waiter.config.user_id
