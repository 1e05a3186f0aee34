"""Several rtm2 nodes on one Redis behave as one: clients on different nodes see each other."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

import rtm2
from rtm2 import ChannelType, ErrorCode
from rtm2 import ConnectionChangeReason as Reason
from rtm2 import ConnectionState as State
from rtm2.server.redisio import hash_tag, key_slot
from rtm2.server.subjects import subject as make_subject

from ..conftest import APP_SMALL, APP_TINY, CERT_SMALL, ServerProcess
from ..redis_cluster import LocalCluster, local_cluster
from .nodes import forget
from .proxy import TcpProxy
from .util import client_for, next_event, unique

REDIS = "redis://127.0.0.1:6379/0"


pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A local 3-master Redis Cluster for this module."""
    with local_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture(params=["redis", pytest.param("cluster", marks=pytest.mark.cluster)])
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
        forget(prefix)


class Clients:
    def __init__(self) -> None:
        self.all: list[rtm2.RTMClient] = []
        self.events: dict[rtm2.RTMClient, rtm2.EventStream[rtm2.ConnectionEvent]] = {}

    async def on(
        self, node: ServerProcess, user: str | None = None, **config: Any
    ) -> rtm2.RTMClient:
        client = client_for(node, user or unique("u"), app_id=APP_SMALL, **config)
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
    forget(prefix)


async def test_the_users_of_a_crashed_node_time_out_and_their_locks_expire_after_the_ttl(
    mortal_nodes: tuple[ServerProcess, ServerProcess], clients: Clients
) -> None:
    a, b = mortal_nodes
    channel = unique("crash")
    watcher = await clients.on(a)
    victim = await clients.on(b, auto_reconnect=False)
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
    holder, first = await _holding(clients, a, channel)
    waiter = await clients.on(b)
    wait = asyncio.create_task(waiter.lock.acquire(channel, ChannelType.MESSAGE, "L", retry=True))
    await asyncio.sleep(0.3)
    assert not wait.done()
    await holder.lock.release(channel, ChannelType.MESSAGE, "L")
    assert await asyncio.wait_for(wait, 5) == first + 1
    locks = await holder.lock.get(channel, ChannelType.MESSAGE)
    assert locks["L"].owner == waiter.config.user_id


# --- recovery across nodes ---------------------------------------------------------------------

FAST_RECONNECT: dict[str, Any] = {"reconnect_min_delay": 0.05, "reconnect_max_delay": 0.2}


async def _publishing(
    publisher_node: ServerProcess, clients: Clients, app_id: str = APP_SMALL
) -> tuple[rtm2.RTMClient, str, str]:
    """A publisher on ``publisher_node`` in topic "t" of a new stream channel, and a new
    message channel: (publisher, channel, stream channel)."""
    channel, stage = unique("room"), unique("stage")
    if app_id == APP_SMALL:
        publisher = await clients.on(publisher_node)
    else:
        publisher = client_for(publisher_node, unique("pub"), app_id=app_id)
        await publisher.login("")
        clients.all.append(publisher)
    await publisher.stream_channel(stage).join(None)
    await publisher.stream_channel(stage).join_topic("t")
    return publisher, channel, stage


class Subscriber:
    """A client behind a TCP proxy to one node (else on a fallback node) taking a message
    channel and topic "t" of a stream channel from one publisher."""

    proxy: TcpProxy
    client: rtm2.RTMClient
    messages: rtm2.EventStream[rtm2.Message]
    topic: rtm2.EventStream[rtm2.Message]

    @classmethod
    async def on(
        cls,
        node: ServerProcess,
        fallback: ServerProcess,
        clients: Clients,
        publisher: rtm2.RTMClient,
        channel: str,
        stage: str,
        app_id: str = APP_SMALL,
    ) -> Subscriber:
        self = cls()
        self.proxy = await TcpProxy(int(node.url.rsplit(":", 1)[1])).start()
        config = rtm2.RTMConfig(app_id=app_id, user_id=unique("sub"), **FAST_RECONNECT)
        client = self.client = rtm2.RTMClient(config)
        clients.all.append(client)
        client.set_parameters({rtm2.PARAM_ENDPOINT: [self.proxy.url, fallback.url]})
        token = rtm2.build_rtm_token(APP_SMALL, CERT_SMALL, client.config.user_id)
        await client.login(token if app_id == APP_SMALL else "")
        self.messages = await client.subscribe(channel, with_presence=False)
        await client.stream_channel(stage).join(None, with_presence=False)
        self.topic = await client.stream_channel(stage).subscribe_topic(
            "t", [publisher.config.user_id]
        )
        return self


async def _publish(client: rtm2.RTMClient, channel: str, stage: str, texts: Iterable[str]) -> None:
    for text in texts:
        await client.publish(channel, text)
        await client.stream_channel(stage).publish_topic("t", text)


async def _moved(client: rtm2.RTMClient, session: str) -> None:
    """Wait until ``client`` is logged in again with a new session (on the other node)."""
    async with asyncio.timeout(10):
        while client.session_id == session or not client.logged_in:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def _read(stream: rtm2.EventStream[rtm2.Message], n: int) -> list[str]:
    """``n`` messages, then proof that nothing more (a duplicate) follows."""
    got = [str((await stream.get(timeout=10)).message) for _ in range(n)]
    with contextlib.suppress(TimeoutError):
        got.append(f"unexpected {(await stream.get(timeout=0.3)).message}")
    return got


async def test_a_client_that_comes_back_on_another_node_gets_what_it_missed_once_in_order(
    nodes: tuple[ServerProcess, ServerProcess], clients: Clients
) -> None:
    a, b = nodes
    publisher, channel, stage = await _publishing(b, clients)
    s = await Subscriber.on(a, b, clients, publisher, channel, stage)
    proxy, sub, messages, topic = s.proxy, s.client, s.messages, s.topic
    session = sub.session_id
    await asyncio.sleep(0.2)  # node a's pub/sub subscriptions are in place
    await _publish(publisher, channel, stage, (f"m{i}" for i in range(50)))
    proxy.cut()
    await proxy.close()  # node a is out of reach: the client must move to node b
    await _publish(publisher, channel, stage, (f"m{i}" for i in range(50, 250)))
    await _moved(sub, session)
    await _publish(publisher, channel, stage, (f"m{i}" for i in range(250, 300)))
    expected = [f"m{i}" for i in range(300)]
    assert await _read(messages, 300) == expected
    assert await _read(topic, 300) == expected
    assert len(sub.recovery_events) == 0  # all of it recovered on node b
    assert len(sub.errors) == 0


async def test_a_client_resuming_on_its_redis_node_through_cuts_misses_nothing(
    nodes: tuple[ServerProcess, ServerProcess], clients: Clients
) -> None:
    a, b = nodes
    publisher, channel, stage = await _publishing(b, clients)
    s = await Subscriber.on(a, a, clients, publisher, channel, stage)
    proxy, sub, messages, topic = s.proxy, s.client, s.messages, s.topic
    try:
        session = sub.session_id
        await asyncio.sleep(0.2)
        n, cuts = 600, 0
        for i in range(n):
            await _publish(publisher, channel, stage, [f"m{i}"])
            if i % 100 == 50:
                proxy.cut()
                cuts += 1
            await asyncio.sleep(0.002)
        expected = [f"m{i}" for i in range(n)]
        assert await _read(messages, n) == expected
        assert await _read(topic, n) == expected
        assert sub.session_id == session  # resumed every time on node a
        assert proxy.cut_connections >= 4
        assert len(sub.recovery_events) == 0
    finally:
        await proxy.close()


async def test_a_gap_longer_than_the_redis_buffer_is_reported_on_the_new_node(
    nodes: tuple[ServerProcess, ServerProcess], clients: Clients
) -> None:
    a, b = nodes
    publisher, channel, stage = await _publishing(b, clients, APP_TINY)  # keeps 3 per topic
    s = await Subscriber.on(a, b, clients, publisher, channel, stage, APP_TINY)
    proxy, sub, messages, topic = s.proxy, s.client, s.messages, s.topic
    session = sub.session_id
    await asyncio.sleep(0.2)
    await _publish(publisher, channel, stage, ["m0"])
    assert [(await s.get(timeout=5)).message for s in (messages, topic)] == ["m0", "m0"]
    proxy.cut()
    await proxy.close()
    await _publish(publisher, channel, stage, (f"m{i}" for i in range(1, 11)))
    await _moved(sub, session)
    got = {await sub.recovery_events.get(timeout=5) for _ in range(2)}
    assert got == {
        rtm2.RecoveryEvent(channel, ChannelType.MESSAGE, "", False, True),
        rtm2.RecoveryEvent(stage, ChannelType.STREAM, "t", False, True),
    }
    await _publish(publisher, channel, stage, ["live"])
    assert await _read(messages, 1) == ["live"]  # no partial replay before it
    assert await _read(topic, 1) == ["live"]


# --- lock waits across nodes -----------------------------------------------------------------


async def _holding(
    clients: Clients, node: ServerProcess, channel: str, ttl: int = 30
) -> tuple[rtm2.RTMClient, int]:
    """A user on ``node`` holding lock "L" of message channel ``channel``: (it, the fence)."""
    holder = await clients.on(node)
    await holder.lock.set(channel, ChannelType.MESSAGE, "L", ttl=ttl)
    return holder, await holder.lock.acquire(channel, ChannelType.MESSAGE, "L")


async def test_lock_waiters_on_different_nodes_get_the_lock_in_the_order_they_asked(
    nodes: tuple[ServerProcess, ServerProcess], clients: Clients
) -> None:
    a, b = nodes
    channel = unique("fifo")
    holder, _ = await _holding(clients, a, channel)
    waiters = [await clients.on(node) for node in (b, a, b, a)]
    granted: list[str] = []

    async def wait(client: rtm2.RTMClient) -> None:
        await client.lock.acquire(channel, ChannelType.MESSAGE, "L", retry=True)
        granted.append(client.config.user_id)
        await asyncio.sleep(0.1)
        await client.lock.release(channel, ChannelType.MESSAGE, "L")

    tasks = []
    for client in waiters:  # one after the other: each is queued before the next asks
        tasks.append(asyncio.create_task(wait(client)))
        await asyncio.sleep(0.3)
    assert granted == []
    await holder.lock.release(channel, ChannelType.MESSAGE, "L")
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert granted == [client.config.user_id for client in waiters]


async def test_a_waiter_whose_node_died_does_not_hold_up_the_queue(
    mortal_nodes: tuple[ServerProcess, ServerProcess], clients: Clients
) -> None:
    a, b = mortal_nodes
    channel = unique("deadq")
    holder, _ = await _holding(clients, a, channel)
    doomed = await clients.on(b, auto_reconnect=False)
    first = asyncio.create_task(doomed.lock.acquire(channel, ChannelType.MESSAGE, "L", retry=True))
    await asyncio.sleep(0.3)
    patient = await clients.on(a)
    second = asyncio.create_task(
        patient.lock.acquire(channel, ChannelType.MESSAGE, "L", retry=True)
    )
    await asyncio.sleep(0.3)
    b.signal(signal.SIGKILL)  # the first in the queue dies with its node
    b.wait()
    await holder.lock.release(channel, ChannelType.MESSAGE, "L")
    await asyncio.wait_for(second, 15)  # once node b is found dead (2 s here)
    locks = await patient.lock.get(channel, ChannelType.MESSAGE)
    assert locks["L"].owner == patient.config.user_id
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)


async def test_subscribers_miss_nothing_while_their_channel_moves_to_another_master(
    cluster: LocalCluster, tmp_path: Path, clients: Clients
) -> None:
    prefix = f"rtm2test:{uuid.uuid4().hex[:12]}:"
    engine = f'"{cluster.url}?prefix={prefix}"'
    a = ServerProcess(tmp_path / "a", server={"engine": engine})
    b = ServerProcess(tmp_path / "b", server={"engine": engine})
    for node in (a, b):
        node.workdir.mkdir()
        node.start()
    try:
        publisher, channel, stage = await _publishing(b, clients)
        sub = await clients.on(a)
        messages = await sub.subscribe(channel, with_presence=False)
        await sub.stream_channel(stage).join(None, with_presence=False)
        topic = await sub.stream_channel(stage).subscribe_topic("t", [publisher.config.user_id])
        await asyncio.sleep(0.2)
        slots = [
            key_slot("{" + hash_tag(make_subject(APP_SMALL, kind, name)) + "}")
            for kind, name in ((ChannelType.MESSAGE, channel), (ChannelType.STREAM, stage))
        ]

        async def publish_all() -> None:
            for i in range(400):
                await _publish(publisher, channel, stage, [f"m{i}"])
                await asyncio.sleep(0.003)

        publishing = asyncio.create_task(publish_all())
        await asyncio.sleep(0.4)
        for slot in slots:  # each to a master it is not on
            here = cluster.owner_of(slot)
            there = next(p for p in cluster.ports if p != here)
            await asyncio.to_thread(cluster.migrate_slot, slot, there)
        await publishing
        expected = [f"m{i}" for i in range(400)]
        assert await _read(messages, 400) == expected
        assert await _read(topic, 400) == expected
        assert len(sub.recovery_events) == 0
        assert len(sub.errors) == 0
        assert "moved to another master" in a.log()  # it did follow, and caught up
    except BaseException:
        print("NODE A", a.log()[-3000:], "NODE B", b.log()[-3000:])
        raise
    finally:
        for node in (a, b):
            node.stop()


async def test_a_lock_of_a_crashed_nodes_user_who_came_back_elsewhere_does_not_expire(
    mortal_nodes: tuple[ServerProcess, ServerProcess], clients: Clients
) -> None:
    a, b = mortal_nodes
    channel, user = unique("back"), unique("v")
    watcher = await clients.on(a)
    first = await clients.on(b, user, auto_reconnect=False)
    await first.subscribe(channel)
    await first.lock.set(channel, ChannelType.MESSAGE, "L", ttl=10)
    fence = await first.lock.acquire(channel, ChannelType.MESSAGE, "L")
    await watcher.subscribe(channel, with_lock=True)
    _, locks = await watcher.lock.get_lock_events(channel, ChannelType.MESSAGE)
    await locks.get(timeout=5)  # the snapshot
    b.signal(signal.SIGKILL)
    b.wait()
    again = await clients.on(a, user)  # the user is back, through node a
    await again.subscribe(channel)
    await asyncio.sleep(2 + 10 + 2)  # node b found dead, then the lock's TTL, then a sweep
    held = (await watcher.lock.get(channel, ChannelType.MESSAGE))["L"]
    assert held.owner == user
    assert await again.lock.acquire(channel, ChannelType.MESSAGE, "L") == fence  # still its
    while (event := locks.get_nowait()) is not None:
        assert event.type is not rtm2.LockEventType.EXPIRED


async def test_locks_a_crashed_node_answered_for_expire_even_without_their_owners_presence(
    mortal_nodes: tuple[ServerProcess, ServerProcess], clients: Clients
) -> None:
    a, b = mortal_nodes
    channel = unique("held")
    watcher = await clients.on(a)
    await watcher.subscribe(channel, with_lock=True)
    _, locks = await watcher.lock.get_lock_events(channel, ChannelType.MESSAGE)
    await locks.get(timeout=5)  # the snapshot
    for name in ("never-in", "left"):
        await watcher.lock.set(channel, ChannelType.MESSAGE, name, ttl=10)
    owners = {}
    for name in ("never-in", "left"):
        owner = await clients.on(b, auto_reconnect=False)
        owners[name] = owner.config.user_id
        if name == "left":  # in the channel, then out: its TTL counts down on node b
            await owner.subscribe(channel)
        await owner.lock.acquire(channel, ChannelType.MESSAGE, name)
        if name == "left":
            await owner.unsubscribe(channel)
    held = await watcher.lock.get(channel, ChannelType.MESSAGE)
    assert {name: held[name].owner for name in owners} == owners
    b.signal(signal.SIGKILL)
    b.wait()
    expired = set()
    async with asyncio.timeout(25):  # node b found dead (2 s), then the TTL (10 s)
        while expired != set(owners):
            event = await locks.get()
            if event.type is rtm2.LockEventType.EXPIRED:
                expired.update(event.locks)
    held = await watcher.lock.get(channel, ChannelType.MESSAGE)
    assert {held[name].owner for name in owners} == {""}


async def test_a_node_that_starts_leaves_the_locks_of_other_nodes_alone(
    nodes: tuple[ServerProcess, ServerProcess], clients: Clients
) -> None:
    a, b = nodes
    channel = unique("keep")
    holder, _ = await _holding(clients, a, channel, ttl=10)
    await holder.subscribe(channel)  # present, connected: nothing to count down
    b.stop()
    b.start()  # a restarted node finds the lock held: it is node a's, not its own
    await asyncio.sleep(10 + 2)
    locks = await holder.lock.get(channel, ChannelType.MESSAGE)
    assert locks["L"].owner == holder.config.user_id
