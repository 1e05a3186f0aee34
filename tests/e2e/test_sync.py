"""rtm2.sync end to end: the blocking client against a real server, from plain functions."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

import rtm2
import rtm2.sync
from rtm2 import ChannelType, ErrorCode, MetadataItem, PresenceEventType, TopicEventType
from rtm2 import ConnectionChangeReason as Reason
from rtm2 import ConnectionState as State
from rtm2.tokens import build_stream_token

from ..conftest import APP_A, CERT_A, ServerProcess
from .util import token_for, unique

MESSAGE, STREAM, USER = ChannelType.MESSAGE, ChannelType.STREAM, ChannelType.USER

Login = Callable[[str], rtm2.sync.RTMClient]


def sync_client(server: ServerProcess, user: str) -> rtm2.sync.RTMClient:
    client = rtm2.sync.RTMClient(rtm2.RTMConfig(app_id=APP_A, user_id=user))
    client.set_parameters({rtm2.PARAM_ENDPOINT: server.url})
    return client


def uid(client: rtm2.sync.RTMClient) -> str:
    return client.config.user_id


def sync_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("rtm2-sync-")}


def next_of(
    events: rtm2.sync.EventStream[rtm2.PresenceEvent], user: str, timeout: float = 5
) -> rtm2.PresenceEvent:
    """The next presence event about ``user``."""
    deadline = time.monotonic() + timeout
    while True:
        event = events.get(timeout=max(0.0, deadline - time.monotonic()))
        if event.user_id == user:
            return event


@pytest.fixture
def login(server: ServerProcess) -> Iterator[Login]:
    """Logs sync clients in for one test; closes them all when it ends."""
    clients: list[rtm2.sync.RTMClient] = []

    def login(prefix: str) -> rtm2.sync.RTMClient:
        user = unique(prefix)
        client = sync_client(server, user)
        clients.append(client)
        client.login(token_for(user))
        return client

    yield login
    for client in clients:
        client.close()


def join(client: rtm2.sync.RTMClient, channel: str, **options: bool) -> rtm2.sync.JoinResult:
    token = build_stream_token(APP_A, CERT_A, channel, uid(client))
    return client.stream_channel(channel).join(token, **options)


def test_a_sync_client_logs_in_and_out_and_in_again(server: ServerProcess) -> None:
    user = unique("alice")
    with sync_client(server, user) as client:
        conn_events, token_events = client.login(token_for(user))
        assert client.logged_in
        assert client.session_id
        first = [conn_events.get(timeout=5) for _ in range(2)]
        assert [(e.state, e.reason) for e in first] == [
            (State.CONNECTING, Reason.CONNECTING),
            (State.CONNECTED, Reason.LOGIN_SUCCESS),
        ]
        client.logout()
        assert not client.logged_in
        # The streams of a login end on logout: a blocking iteration stops by itself.
        assert [(e.state, e.reason) for e in conn_events] == [(State.DISCONNECTED, Reason.LOGOUT)]
        assert list(token_events) == []
        client.login(token_for(user))
        assert client.logged_in


def test_messages_published_in_a_channel_are_received_by_a_blocking_iterator(
    login: Login,
) -> None:
    alice, bob = login("alice"), login("bob")
    channel = unique("lobby")
    messages = alice.subscribe(channel)
    for i in range(3):
        bob.publish(channel, f"hello {i}")
    received = []
    for message in messages:
        received.append((message.user_id, message.message))
        if len(received) == 3:
            break
    assert received == [(uid(bob), f"hello {i}") for i in range(3)]
    alice.unsubscribe(channel)
    assert list(messages) == []  # unsubscribing ended the stream
    with pytest.raises(TimeoutError):
        alice.peer_messages.get(timeout=0.2)


def test_a_stream_channel_works_through_the_facade(login: Login) -> None:
    alice, bob = login("alice"), login("bob")
    channel = unique("room")
    join(alice, channel)
    publisher = alice.stream_channel(channel)
    publisher.join_topic("news")
    snapshot, topic_events, _ = join(bob, channel)
    assert snapshot == {"news": [uid(alice)]}
    assert topic_events.get(timeout=5).type is TopicEventType.SNAPSHOT
    subscriber = bob.stream_channel(channel)
    messages = subscriber.subscribe_topic("news", [uid(alice)])
    assert subscriber.get_subscribed_users("news") == [uid(alice)]
    publisher.publish_topic("news", b"\x00binary")
    publisher.publish_topic("news", "text")
    assert [messages.get(timeout=5).message for _ in range(2)] == [b"\x00binary", "text"]
    publisher.leave_topic("news")
    left = topic_events.get(timeout=5)
    assert (left.type, left.user_id, left.topic) == (
        TopicEventType.REMOTE_LEAVE,
        uid(alice),
        "news",
    )
    assert subscriber.topics == {}
    subscriber.leave()
    assert not subscriber.joined
    assert list(messages) == []  # leaving ended the topic's stream
    with pytest.raises(rtm2.RTMError) as info:
        subscriber.subscribe_topic("news")
    assert info.value.code == ErrorCode.CHANNEL_NOT_JOINED


def test_presence_who_now_and_presence_events_through_the_facade(login: Login) -> None:
    alice, bob = login("alice"), login("bob")
    channel = unique("lobby")
    alice.subscribe(channel)
    _, events = alice.presence.get_presence_events(channel, MESSAGE)
    assert events.get(timeout=5).type is PresenceEventType.SNAPSHOT
    bob.presence.set_state(channel, MESSAGE, {"mood": "happy"})  # cached until bob is in
    bob.subscribe(channel)
    joined = events.get(timeout=5)
    assert (joined.type, joined.user_id) == (PresenceEventType.REMOTE_JOIN, uid(bob))
    users, next_page = alice.presence.who_now(channel, MESSAGE, include_state=True)
    assert sorted((u.user_id, u.state) for u in users) == sorted(
        [(uid(alice), {}), (uid(bob), {"mood": "happy"})]
    )
    assert (users.total, next_page) == (2, None)
    assert alice.presence.get_state(channel, MESSAGE, uid(bob)) == {"mood": "happy"}
    assert rtm2.ChannelInfo(channel, MESSAGE) in alice.presence.where_now(uid(bob))


def test_storage_set_and_get_through_the_facade(login: Login) -> None:
    alice, bob = login("alice"), login("bob")
    channel = unique("room")
    alice.storage.set_channel_metadata(
        channel, MESSAGE, [MetadataItem("topic", "standup")], record_author=True
    )
    revision, items = bob.storage.get_channel_metadata(channel, MESSAGE)
    assert revision > 0
    assert items["topic"].value == "standup"
    assert items["topic"].author == uid(alice)
    snapshot, events = bob.storage.subscribe_user_metadata(uid(alice))
    assert snapshot.items == {}
    assert events.get(timeout=5).type is rtm2.StorageEventType.SNAPSHOT
    alice.storage.set_user_metadata(uid(alice), [MetadataItem("city", "Oslo")])
    update = events.get(timeout=5)
    assert update.type is rtm2.StorageEventType.UPDATE
    assert update.items["city"].value == "Oslo"
    bob.storage.unsubscribe_user_metadata(uid(alice))
    assert list(events) == []


def test_lock_acquire_and_release_and_a_bounded_wait(login: Login) -> None:
    alice, bob, carol = login("alice"), login("bob"), login("carol")
    channel = unique("room")
    alice.lock.set(channel, STREAM, "editor", ttl=30)
    fence = alice.lock.acquire(channel, STREAM, "editor")
    assert alice.lock.get(channel, STREAM)["editor"].owner == uid(alice)
    with pytest.raises(rtm2.RTMError) as info:
        bob.lock.acquire(channel, STREAM, "editor")
    assert info.value.code == ErrorCode.LOCK_ACQUIRE_FAILED
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        bob.lock.acquire(channel, STREAM, "editor", retry=True, timeout=0.3)
    assert time.monotonic() - started < 3
    # The timed-out wait was withdrawn: on release the lock goes to nobody, so carol gets it.
    alice.lock.release(channel, STREAM, "editor")
    time.sleep(0.2)  # time for a wait that was not withdrawn to be granted
    assert carol.lock.acquire(channel, STREAM, "editor") == fence + 1
    carol.lock.release(channel, STREAM, "editor")
    assert alice.lock.get(channel, STREAM)["editor"].owner == ""


def test_an_rtm_error_comes_through_with_its_code(server: ServerProcess, login: Login) -> None:
    alice = login("alice")
    with pytest.raises(rtm2.RTMError) as info:
        alice.publish(unique("nobody"), "psst", channel_type=USER)
    assert info.value.code == ErrorCode.CHANNEL_RECEIVER_OFFLINE
    user = unique("mallory")
    with sync_client(server, user) as client:
        with pytest.raises(rtm2.RTMError) as info:
            client.login(token_for("someone-else"))
        assert info.value.code == ErrorCode.INVALID_TOKEN
        assert not client.logged_in


def test_renewing_the_token_keeps_the_session_past_the_first_expiry(
    server: ServerProcess,
) -> None:
    user = unique("mia")
    with sync_client(server, user) as client:
        conn_events, token_events = client.login(token_for(user, expire=3))
        started = time.time()
        assert token_events.get(timeout=5) == ""
        client.renew_token(token_for(user, expire=600))
        time.sleep(max(0.0, started + 4.5 - time.time()))
        assert client.logged_in
        client.renew_token(token_for(user, expire=600))  # the session still answers
        states = []
        while (event := conn_events.get_nowait()) is not None:
            states.append(event.state)
        assert State.FAILED not in states
        with pytest.raises(rtm2.RTMError) as info:
            client.renew_token("007garbage")
        assert info.value.code == ErrorCode.INVALID_TOKEN


def test_the_loop_thread_exits_at_close_and_the_user_leaves(
    server: ServerProcess, login: Login
) -> None:
    watcher = login("watcher")
    channel = unique("lobby")
    watcher.subscribe(channel)
    _, events = watcher.presence.get_presence_events(channel, MESSAGE)
    user = unique("leaver")
    with sync_client(server, user) as client:
        client.login(token_for(user))
        client.subscribe(channel)
        assert f"rtm2-sync-{user}" in sync_threads()
        assert next_of(events, user).type is PresenceEventType.REMOTE_JOIN
    assert f"rtm2-sync-{user}" not in sync_threads()
    assert client.closed
    # Closing logged out: the others see a leave at once, not a timeout much later.
    assert next_of(events, user).type is PresenceEventType.REMOTE_LEAVE
    with pytest.raises(rtm2.RTMError) as info:
        client.publish(channel, "too late")
    assert info.value.code == ErrorCode.NOT_INITIALIZED


def test_two_sync_clients_in_one_process_exchange_peer_messages_from_two_threads(
    login: Login,
) -> None:
    alice, bob = login("alice"), login("bob")
    received: list[tuple[str, bytes | str]] = []

    def read() -> None:
        for message in bob.peer_messages:
            received.append((message.user_id, message.message))
            if len(received) == 2:
                return

    reader = threading.Thread(target=read)
    reader.start()
    alice.publish(uid(bob), "one", channel_type=USER)
    alice.publish(uid(bob), b"two", channel_type=USER)
    reader.join(5)
    assert not reader.is_alive()
    assert received == [(uid(alice), "one"), (uid(alice), b"two")]
    assert {f"rtm2-sync-{uid(alice)}", f"rtm2-sync-{uid(bob)}"} <= sync_threads()
