"""The Go SDK's sidecar protocol against a real ``rtm2 serve``, through a real sidecar process
(``rtm2-wrapper.exe --port=N --mode=1``, as the Go SDK spawns it), driven by a client written
from the spec (tests/e2e/gowire.py), with Python SDK users on the other side."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import pytest

import rtm2
from rtm2 import ChannelType, ErrorCode
from rtm2.sidecar.proto import gosdk_pb2 as pb
from rtm2.tokens import build_stream_token

from ..conftest import APP_A, APP_OPEN, CERT_A, ServerProcess, free_port
from .gowire import GoWire, SidecarProcess
from .util import Users, token_for, unique

MESSAGE, STREAM, USER = 1, 2, 3  # Go 2.1.x ChannelType
CONNECTING, CONNECTED, DISCONNECTED, RECONNECTING = 2, 3, 1, 4
TOKENS: list[str] = []  # every token given to the sidecar: none may appear in its log


def token(user: str, **kw: int) -> str:
    TOKENS.append(token_for(user, **kw))
    return TOKENS[-1]


@pytest.fixture(scope="module")
def sidecar(server: ServerProcess) -> Iterator[SidecarProcess]:
    """The console script the Go SDK spawns, with the server in RTM2_ENDPOINT."""
    process = SidecarProcess.wrapper(free_port(), server.url)
    yield process
    process.stop()
    log = process.text()
    assert TOKENS
    assert not [t for t in TOKENS if t[10:40] in log], "a token was logged"


async def login(
    port: int, user: str, params: dict[str, str] | None = None, app_id: str = APP_OPEN
) -> GoWire:
    """A Go client logged in; the app without a certificate by default (tokens "": stream
    channels need no stream token there)."""
    go = await GoWire.connect(port)
    go.login_user = user
    await go.ok(
        100,
        pb.LoginReq(
            appId=app_id,
            userId=user,
            token=token(user) if app_id == APP_A else "",
            params=json.dumps(params or {}),
            presenceTimeout=10,
        ),
    )
    return go


@pytest.fixture
async def go(sidecar: SidecarProcess) -> AsyncIterator[GoWire]:
    wire = await login(sidecar.port, unique("go"))
    yield wire
    await wire.close()


async def test_every_request_before_login_is_refused_with_not_login(
    sidecar: SidecarProcess,
) -> None:
    go = await GoWire.connect(sidecar.port)
    try:
        reply = await go.call(4, pb.StreamJoinReq(channel="c"))
        assert reply.code == ErrorCode.NOT_LOGIN
        reply = await go.call(37, pb.PresenceWhoNowReq(channel="c", channelType=STREAM))
        assert reply.code == ErrorCode.NOT_LOGIN
        assert reply.header.seqId == 2
    finally:
        await go.close()


async def test_login_reports_connecting_then_connected_with_login_success(
    sidecar: SidecarProcess,
) -> None:
    go = await login(sidecar.port, unique("go"), app_id=APP_A)
    try:
        first = await go.wait_event(pb.ConnectionStateChangeEvent)
        second = await go.wait_event(pb.ConnectionStateChangeEvent)
        assert (first.state, first.reason, first.channel) == (CONNECTING, 0, "")
        assert (second.state, second.reason, second.channel) == (CONNECTED, 10001, "")
        again = await go.call(100, pb.LoginReq(appId=APP_A, userId="x", token=""))
        assert again.code == ErrorCode.DUPLICATE_OPERATION
        await go.ok(101, pb.LogoutReq())
        gone = await go.wait_event(pb.ConnectionStateChangeEvent)
        assert (gone.state, gone.reason) == (DISCONNECTED, 10002)
        after = await go.call(2, pb.MessagePublishReq(channel="c", message=b"x"))
        assert after.code == ErrorCode.NOT_LOGIN
    finally:
        await go.close()


async def test_a_bad_token_fails_login_with_its_official_code(sidecar: SidecarProcess) -> None:
    go = await GoWire.connect(sidecar.port)
    try:
        reply = await go.call(100, pb.LoginReq(appId=APP_A, userId="bad", token="007nonsense"))
        assert reply.code == ErrorCode.INVALID_TOKEN
    finally:
        await go.close()


async def test_unknown_uris_and_undecodable_requests_get_one_error_reply_each(
    go: GoWire,
) -> None:
    assert (await go.call(13, None)).code == ErrorCode.INVALID_PARAMETER
    undecodable = await go.call(4, b"\xff\xff\xff")
    assert undecodable.code == ErrorCode.INVALID_PARAMETER
    seq = go.send(104, None)
    seq2 = go.send(4, None)
    reply = await go.call(36, pb.PresenceWhereNowReq(userId="nobody"))
    assert reply.code == 0
    assert go.replies.get(seq) == 1
    assert go.replies.get(seq2) == 1
    assert all(n == 1 for n in go.replies.values())


async def test_stream_channel_topics_and_messages_flow_between_go_and_python(
    sidecar: SidecarProcess, users: Users
) -> None:
    go_user = unique("go")
    go = await login(sidecar.port, go_user)
    py = await users.login("py", app_id=APP_OPEN)
    py_user = py.config.user_id
    channel = unique("ch")
    try:
        # Python is in first, publishing in topic t1.
        py_channel = py.stream_channel(channel)
        await py_channel.join()
        await py_channel.join_topic("t1")

        await go.ok(4, pb.StreamJoinReq(channel=channel))
        snapshot = await go.wait_event(pb.StreamTopicEvent)
        assert (snapshot.type, snapshot.channel) == (1, channel)
        assert [(i.topic, [p.userId for p in i.publishers]) for i in snapshot.infos] == [
            ("t1", [py_user])
        ]
        joined = await go.wait_event(pb.ConnectionStateChangeEvent, lambda e: e.channel == channel)
        assert (joined.state, joined.reason) == (CONNECTED, 1)
        assert (await go.call(4, pb.StreamJoinReq(channel=channel))).code == (
            ErrorCode.CHANNEL_JOIN_FAILED
        )

        # Go subscribes to Python's messages in t1 and receives them.
        reply = await go.ok(
            11, pb.StreamSubTopicReq(channel=channel, topic="t1", userIds=[py_user, "ghost"])
        )
        result = reply.body(pb.StreamSubTopicResp)
        assert (result.channel, result.topic) == (channel, "t1")
        assert py_user in result.succeed
        await py_channel.publish_topic("t1", "hello go", custom_type="greeting")
        await py_channel.publish_topic("t1", b"\x00\x01")
        first = await go.wait_event(pb.StreamMessageEvent)
        second = await go.wait_event(pb.StreamMessageEvent)
        assert (first.channel, first.topic, first.publisher) == (channel, "t1", py_user)
        assert (first.message, first.type, first.customType) == (b"hello go", 1, "greeting")
        assert (second.message, second.type) == (b"\x00\x01", 0)

        # Go joins topic t2 and publishes; Python sees the join and the messages.
        py_events = py_channel.topic_events
        await go.ok(6, pb.StreamJoinTopicReq(channel=channel, topic="t2", priority=2, qos=1))
        event = await py_events.get(timeout=5)
        while event.type != rtm2.TopicEventType.REMOTE_JOIN:
            event = await py_events.get(timeout=5)
        assert (event.user_id, event.topic) == (go_user, "t2")
        stream = await py_channel.subscribe_topic("t2", [go_user])
        await go.ok(
            8, pb.StreamMessageReq(channel=channel, topic="t2", type=1, message="héllo".encode())
        )
        await go.ok(
            8, pb.StreamMessageReq(channel=channel, topic="t2", type=0, message=b"\xff\xfe")
        )
        got = await stream.get(timeout=5)
        assert (got.user_id, got.message, got.topic) == (go_user, "héllo", "t2")
        assert (await stream.get(timeout=5)).message == b"\xff\xfe"
        bad_utf8 = await go.call(
            8, pb.StreamMessageReq(channel=channel, topic="t2", type=1, message=b"\xff")
        )
        assert bad_utf8.code == ErrorCode.CHANNEL_INVALID_MESSAGE
        not_joined = await go.call(8, pb.StreamMessageReq(channel=channel, topic="t9"))
        assert not_joined.code == ErrorCode.CHANNEL_TOPIC_NOT_JOINED

        # Python joins t3: one topic and one user per event, infos[0].publishers[0] set.
        await py_channel.join_topic("t3")
        join = await go.wait_event(pb.StreamTopicEvent, lambda e: e.type == 2)
        assert (join.channel, join.userId) == (channel, py_user)
        assert [(i.topic, [p.userId for p in i.publishers]) for i in join.infos] == [
            ("t3", [py_user])
        ]
        await py_channel.leave_topic("t3")
        leave = await go.wait_event(pb.StreamTopicEvent, lambda e: e.type == 3)
        assert [(i.topic, i.publishers[0].userId) for i in leave.infos] == [("t3", py_user)]

        # Unsubscribe (then a topic never subscribed is an error), leave topic, leave.
        await go.ok(12, pb.StreamUnsubTopicReq(channel=channel, topic="t1", userIds=[py_user]))
        unsub = await go.call(12, pb.StreamUnsubTopicReq(channel=channel, topic="never"))
        assert unsub.code == ErrorCode.CHANNEL_TOPIC_NOT_SUBSCRIBED
        await go.ok(7, pb.StreamLeaveTopicReq(channel=channel, topic="t2"))
        event = await py_events.get(timeout=5)
        while event.type != rtm2.TopicEventType.REMOTE_LEAVE:
            event = await py_events.get(timeout=5)
        assert (event.user_id, event.topic) == (go_user, "t2")
        await go.ok(5, pb.StreamLeaveReq(channel=channel))
        left = await go.wait_event(
            pb.ConnectionStateChangeEvent, lambda e: e.channel == channel and e.reason == 5
        )
        assert left.state == DISCONNECTED
        again = await go.call(5, pb.StreamLeaveReq(channel=channel))
        assert again.code == ErrorCode.CHANNEL_NOT_JOINED
        assert all(n == 1 for n in go.replies.values())
    finally:
        await go.close()


async def test_pipelined_requests_each_get_their_own_reply(
    sidecar: SidecarProcess, users: Users
) -> None:
    """Go goroutines send requests without waiting for each other: every seqId gets exactly
    one reply, with its own URI and outcome, and the messages arrive in order."""
    go = await login(sidecar.port, unique("go"))
    py = await users.login("py", app_id=APP_OPEN)
    channel = unique("pl")
    try:
        await go.ok(4, pb.StreamJoinReq(channel=channel))
        await go.ok(6, pb.StreamJoinTopicReq(channel=channel, topic="t"))
        py_channel = py.stream_channel(channel)
        await py_channel.join()
        stream = await py_channel.subscribe_topic("t", [go.login_user])
        calls = []
        for i in range(100):
            topic = "t" if i % 10 else "not-joined"
            calls.append(
                go.call(8, pb.StreamMessageReq(channel=channel, topic=topic, message=b"%d" % i))
            )
        replies = await asyncio.gather(*calls)
        assert [r.code for r in replies] == [
            0 if i % 10 else ErrorCode.CHANNEL_TOPIC_NOT_JOINED for i in range(100)
        ]
        assert all(r.header.uri == 8 for r in replies)
        assert sorted(go.replies) == list(range(1, go.sent + 1))
        assert set(go.replies.values()) == {1}
        got = [(await stream.get(timeout=5)).message for _ in range(90)]
        assert got == [b"%d" % i for i in range(100) if i % 10]
    finally:
        await go.close()


async def test_get_subscribed_users_sent_on_uri_0_is_refused_not_subscribed_to(
    go: GoWire,
) -> None:
    """The Go SDK sends StreamSubListReq on URI 0 (MessageSubscribe): no channel named like
    the stream channel may be subscribed because of it."""
    reply = await go.call(0, pb.StreamSubListReq(channel="chan", topic="topic"))
    assert reply.code == ErrorCode.CHANNEL_TOPIC_NOT_SUBSCRIBED
    unsub = await go.call(1, pb.MessageUnsubReq(channel="chan"))
    assert unsub.code == ErrorCode.CHANNEL_NOT_SUBSCRIBED


async def test_the_endpoint_can_come_from_the_login_params(server: ServerProcess) -> None:
    bare = SidecarProcess.wrapper(0, None)
    try:
        go = await GoWire.connect(bare.port)
        user = unique("go")
        refused = await go.call(100, pb.LoginReq(appId=APP_A, userId=user, token=token(user)))
        assert refused.code == ErrorCode.INVALID_PARAMETER
        await go.close()
        go = await login(bare.port, user, {"rtm2_endpoint": server.url}, APP_A)
        await go.ok(36, pb.PresenceWhereNowReq(userId=user))
        await go.close()
    finally:
        bare.stop()


async def test_message_channels_and_peer_messages_flow_both_ways(
    sidecar: SidecarProcess, users: Users
) -> None:
    go_user = unique("go")
    go = await login(sidecar.port, go_user)
    py = await users.login("py", app_id=APP_OPEN)
    py_user = py.config.user_id
    channel = unique("mc")
    try:
        await go.ok(
            0,
            pb.MessageSubReq(
                channel=channel, message=True, presence=True, metadata=True, lock=True
            ),
        )
        # The snapshots the Go SDK waits for after subscribing with those flags.
        presence = await go.wait_event(pb.PresenceEvent, lambda e: e.channel == channel)
        assert (presence.eventType, presence.channelType) == (1, MESSAGE)
        assert go_user in [u.userId for u in presence.snapshot]
        metadata = await go.wait_event(pb.StorageChannelEvent, lambda e: e.channel == channel)
        assert (metadata.eventType, metadata.channelType, list(metadata.items)) == (1, MESSAGE, [])
        locks = await go.wait_event(pb.LockEvent, lambda e: e.channel == channel)
        assert (locks.eventType, locks.channelType) == (1, MESSAGE)
        dup = await go.call(0, pb.MessageSubReq(channel=channel, message=True))
        assert dup.code == ErrorCode.CHANNEL_SUBSCRIBE_FAILED

        # Python -> Go in the channel, and Go -> Python.
        py_messages = await py.subscribe(channel)
        joined = await go.wait_event(
            pb.PresenceEvent, lambda e: e.eventType == 3 and e.publisher == py_user
        )
        assert joined.channel == channel
        await py.publish(channel, "to go", custom_type="ct")
        got = await go.wait_event(pb.MessageEvent)
        assert (got.channel, got.publisher, got.message, got.type) == (
            channel, py_user, b"to go", 1,
        )  # fmt: skip
        assert (got.channelType, got.customType) == (MESSAGE, "ct")
        await go.ok(2, pb.MessagePublishReq(channel=channel, type=0, message=b"\x01to py"))
        received = await py_messages.get(timeout=5)
        while received.user_id == py_user:  # its own message, echoed
            received = await py_messages.get(timeout=5)
        assert (received.user_id, received.message) == (go_user, b"\x01to py")

        # Peer messages both ways (channelType USER), and to someone offline.
        await py.publish(go_user, b"peer to go", channel_type=ChannelType.USER)
        peer = await go.wait_event(pb.MessageEvent, lambda e: e.channelType == USER)
        assert (peer.publisher, peer.message, peer.type) == (py_user, b"peer to go", 0)
        await go.ok(
            2, pb.MessagePublishReq(channel=py_user, channelType=USER, type=1, message=b"hi py")
        )
        from_go = await py.peer_messages.get(timeout=5)
        assert (from_go.user_id, from_go.message, from_go.channel_type) == (
            go_user, "hi py", ChannelType.USER,
        )  # fmt: skip
        offline = await go.call(
            2, pb.MessagePublishReq(channel=unique("nobody"), channelType=USER, message=b"x")
        )
        assert offline.code == ErrorCode.CHANNEL_RECEIVER_OFFLINE

        # Python leaves: Go sees it; Go unsubscribes: Python sees that.
        await py.unsubscribe(channel)
        left = await go.wait_event(pb.PresenceEvent, lambda e: e.eventType == 4)
        assert left.publisher == py_user
        await go.ok(1, pb.MessageUnsubReq(channel=channel))
        again = await go.call(1, pb.MessageUnsubReq(channel=channel))
        assert again.code == ErrorCode.CHANNEL_NOT_SUBSCRIBED
    finally:
        await go.close()


async def test_presence_queries_state_and_events(sidecar: SidecarProcess, users: Users) -> None:
    go_user = unique("go")
    go = await login(sidecar.port, go_user)
    py = await users.login("py", app_id=APP_OPEN)
    py_user = py.config.user_id
    channel = unique("pc")
    try:
        await go.ok(4, pb.StreamJoinReq(channel=channel, presence=True))
        snapshot = await go.wait_event(pb.PresenceEvent, lambda e: e.eventType == 1)
        assert (snapshot.channel, snapshot.channelType) == (channel, STREAM)
        assert [u.userId for u in snapshot.snapshot] == [go_user]

        await py.stream_channel(channel).join()
        joined = await go.wait_event(pb.PresenceEvent, lambda e: e.eventType == 3)
        assert joined.publisher == py_user
        await py.presence.set_state(channel, ChannelType.STREAM, {"mood": "fine"})
        changed = await go.wait_event(pb.PresenceEvent, lambda e: e.eventType == 6)
        assert (changed.publisher, [(i.key, i.value) for i in changed.items]) == (
            py_user, [("mood", "fine")],
        )  # fmt: skip

        who = await go.ok(
            37,
            pb.PresenceWhoNowReq(
                channel=channel, channelType=STREAM, withUserId=True, withState=True
            ),
        )
        listed = who.body(pb.PresenceWhoNowResp)
        assert sorted(u.userId for u in listed.users) == sorted([go_user, py_user])
        assert listed.count == 2
        states = {u.userId: {i.key: i.value for i in u.items} for u in listed.users}
        assert states[py_user] == {"mood": "fine"}
        only_count = await go.ok(37, pb.PresenceWhoNowReq(channel=channel, channelType=STREAM))
        counted = only_count.body(pb.PresenceWhoNowResp)
        assert (list(counted.users), counted.count) == ([], 2)

        where = (await go.ok(36, pb.PresenceWhereNowReq(userId=go_user))).body(
            pb.PresenceWhereNowResp
        )
        assert [(c.channel, c.channelType) for c in where.channels] == [(channel, STREAM)]

        items = [pb.UserStateItem(key="k", value="v"), pb.UserStateItem(key="x", value="y")]
        await go.ok(38, pb.PresenceSetStateReq(channel=channel, channelType=STREAM, items=items))
        state = (
            await go.ok(
                39, pb.PresenceGetStateReq(channel=channel, channelType=STREAM, userId=go_user)
            )
        ).body(pb.PresenceGetStateResp)
        assert {i.key: i.value for i in state.items} == {"k": "v", "x": "y"}
        assert state.userId == go_user
        await go.ok(40, pb.PresenceRemoveStateReq(channel=channel, channelType=STREAM, keys=["x"]))
        assert await py.presence.get_state(channel, ChannelType.STREAM, go_user) == {"k": "v"}
        missing = await go.call(
            39, pb.PresenceGetStateReq(channel=channel, channelType=STREAM, userId="ghost")
        )
        assert missing.code == ErrorCode.PRESENCE_USER_NOT_EXIST
        bad_type = await go.call(37, pb.PresenceWhoNowReq(channel=channel, channelType=7))
        assert bad_type.code == ErrorCode.INVALID_CHANNEL_TYPE

        await py.stream_channel(channel).leave()
        left = await go.wait_event(pb.PresenceEvent, lambda e: e.eventType == 4)
        assert left.publisher == py_user
    finally:
        await go.close()


def items_of(event: pb.StorageChannelEvent | pb.StorageUserEvent) -> dict[str, str]:
    return {i.key: i.value for i in event.items}


async def test_channel_and_user_metadata_with_events(sidecar: SidecarProcess, users: Users) -> None:
    go_user = unique("go")
    go = await login(sidecar.port, go_user)
    py = await users.login("py", app_id=APP_OPEN)
    channel = unique("sc")
    try:
        await go.ok(4, pb.StreamJoinReq(channel=channel, metadata=True))
        first = await go.wait_event(pb.StorageChannelEvent)
        assert (first.eventType, first.channel, first.channelType) == (1, channel, STREAM)

        # Set with author and timestamp recorded; Go's zero item revision means "no check".
        await go.ok(
            24,
            pb.StorageChannelReq(
                channel=channel,
                channelType=STREAM,
                opType=pb.SET,
                items=[pb.MetadataItem(key="color", value="red")],
                majorRev=-1,
                recordTs=True,
                recordUid=True,
            ),
        )
        event = await go.wait_event(pb.StorageChannelEvent)
        assert (event.eventType, items_of(event)) == (3, {"color": "red"})  # rtm2: UPDATE
        (item,) = event.items
        assert (item.author, item.updateTs > 0, item.rev > 0) == (go_user, True, True)
        await py.storage.set_channel_metadata(
            channel, ChannelType.STREAM, [rtm2.MetadataItem("size", "L")]
        )
        event = await go.wait_event(pb.StorageChannelEvent)
        assert items_of(event) == {"color": "red", "size": "L"}

        got = (await go.ok(25, pb.StorageChannelGetReq(channel=channel, channelType=STREAM))).body(
            pb.StorageChannelGetResp
        )
        assert {i.key: i.value for i in got.items} == {"color": "red", "size": "L"}
        assert got.majorRev == event.majorRev
        stale = await go.call(
            24,
            pb.StorageChannelReq(
                channel=channel,
                channelType=STREAM,
                opType=pb.UPDATE,
                items=[pb.MetadataItem(key="color", value="blue")],
                majorRev=got.majorRev - 1,
            ),
        )
        assert stale.code == ErrorCode.STORAGE_OUTDATED_REVISION
        await go.ok(
            24,
            pb.StorageChannelReq(
                channel=channel,
                channelType=STREAM,
                opType=pb.REMOVE,
                items=[pb.MetadataItem(key="size")],
                majorRev=-1,
            ),
        )
        removed = await go.wait_event(pb.StorageChannelEvent)
        assert (removed.eventType, items_of(removed)) == (3, {"color": "red"})  # rtm2: UPDATE

        # User metadata: subscribe (snapshot first), set, update, get, unsubscribe.
        await go.ok(28, pb.StorageUserSubReq(userId=go_user))
        snapshot = await go.wait_event(pb.StorageUserEvent)
        assert (snapshot.eventType, snapshot.userId, items_of(snapshot)) == (1, go_user, {})
        await go.ok(
            26,
            pb.StorageUserReq(
                userId=go_user,
                opType=pb.SET,
                items=[pb.MetadataItem(key="name", value="gopher", rev=-1)],
                majorRev=-1,
                recordTs=True,
                recordUid=True,
            ),
        )
        set_event = await go.wait_event(pb.StorageUserEvent)
        assert (set_event.eventType, items_of(set_event)) == (3, {"name": "gopher"})
        assert set_event.items[0].author == go_user
        user_meta = await py.storage.get_user_metadata(go_user)
        assert user_meta.items["name"].value == "gopher"
        await go.ok(
            26,
            pb.StorageUserReq(
                userId=go_user,
                opType=pb.UPDATE,
                items=[pb.MetadataItem(key="name", value="go")],
                majorRev=-1,  # what the Go SDK always sends unless told a revision
            ),
        )
        updated = await go.wait_event(pb.StorageUserEvent)
        assert (updated.eventType, items_of(updated)) == (3, {"name": "go"})
        got_user = (await go.ok(27, pb.StorageUserGetReq(userId=go_user))).body(
            pb.StorageUserGetResp
        )
        assert ({i.key: i.value for i in got_user.items}, got_user.userId) == (
            {"name": "go"}, go_user,
        )  # fmt: skip
        missing = await go.call(
            26,
            pb.StorageUserReq(
                userId=go_user,
                opType=pb.UPDATE,
                items=[pb.MetadataItem(key="nope", value="1")],
                majorRev=-1,
            ),
        )
        assert 12001 <= missing.code <= 12019
        await go.ok(29, pb.StorageUserUnsubReq(userId=go_user))
        again = await go.call(29, pb.StorageUserUnsubReq(userId=go_user))
        assert again.code == ErrorCode.STORAGE_NOT_SUBSCRIBE
    finally:
        await go.close()


async def test_locks_from_set_to_revoke_with_their_events(
    sidecar: SidecarProcess, users: Users
) -> None:
    go_user = unique("go")
    go = await login(sidecar.port, go_user)
    py = await users.login("py", app_id=APP_OPEN)
    py_user = py.config.user_id
    channel = unique("lc")
    where = {"channel": channel, "channelType": STREAM}
    try:
        await go.ok(4, pb.StreamJoinReq(channel=channel, lock=True))
        snapshot = await go.wait_event(pb.LockEvent)
        assert (snapshot.eventType, snapshot.channel, list(snapshot.locks)) == (1, channel, [])
        await py.stream_channel(channel).join()

        await go.ok(110, pb.LockSetReq(**where, lock="L", ttl=30))
        set_event = await go.wait_event(pb.LockEvent)
        assert (set_event.eventType, [(d.lock, d.owner, d.ttl) for d in set_event.locks]) == (
            2, [("L", "", 30)],
        )  # fmt: skip
        dup = await go.call(110, pb.LockSetReq(**where, lock="L", ttl=30))
        assert dup.code == ErrorCode.LOCK_ALREADY_EXIST

        await go.ok(105, pb.LockAcquireReq(**where, lock="L"))
        acquired = await go.wait_event(pb.LockEvent, lambda e: e.eventType == 4)
        assert [(d.lock, d.owner) for d in acquired.locks] == [("L", go_user)]
        got = (await go.ok(106, pb.LockGetReq(**where))).body(pb.LockGetResp)
        assert [(d.lock, d.owner, d.ttl) for d in got.locks] == [("L", go_user, 30)]

        # Python waits for it; Go releases; Python has it; Go revokes it.
        with pytest.raises(rtm2.RTMError) as held:
            await py.lock.acquire(channel, ChannelType.STREAM, "L")
        assert held.value.code == ErrorCode.LOCK_ACQUIRE_FAILED
        not_mine = await go.call(107, pb.LockReleaseReq(**where, lock="nope"))
        assert not_mine.code == ErrorCode.LOCK_NOT_EXIST
        await go.ok(107, pb.LockReleaseReq(**where, lock="L"))
        released = await go.wait_event(pb.LockEvent, lambda e: e.eventType == 5)
        assert released.locks[0].lock == "L"
        await py.lock.acquire(channel, ChannelType.STREAM, "L")
        await go.wait_event(pb.LockEvent, lambda e: e.eventType == 4)
        busy = await go.call(105, pb.LockAcquireReq(**where, lock="L"))
        assert busy.code == ErrorCode.LOCK_ACQUIRE_FAILED
        waiting = await go.call(105, pb.LockAcquireReq(**where, lock="L", retry=True), 10)
        assert waiting.code == ErrorCode.LOCK_OPERATION_TIMEOUT
        release_other = await go.call(107, pb.LockReleaseReq(**where, lock="L"))
        assert release_other.code == ErrorCode.LOCK_NOT_ACQUIRED
        await go.ok(109, pb.LockRevokeReq(**where, lock="L", owner=py_user))
        revoked = await go.wait_event(pb.LockEvent, lambda e: e.eventType == 5)
        assert revoked.locks[0].owner == ""
        await go.ok(108, pb.LockRemoveReq(**where, lock="L"))
        gone = await go.wait_event(pb.LockEvent, lambda e: e.eventType == 3)
        assert [d.lock for d in gone.locks] == ["L"]
        missing = await go.call(108, pb.LockRemoveReq(**where, lock="L"))
        assert missing.code == ErrorCode.LOCK_NOT_EXIST
        # The waiting acquire that timed out was withdrawn: Go does not hold the lock.
        await go.ok(110, pb.LockSetReq(**where, lock="M", ttl=10))
        got = (await go.ok(106, pb.LockGetReq(**where))).body(pb.LockGetResp)
        assert [(d.lock, d.owner) for d in got.locks] == [("M", "")]
    finally:
        await go.close()


async def test_token_will_expire_then_renew_token(sidecar: SidecarProcess) -> None:
    user = unique("go")
    go = await GoWire.connect(sidecar.port)
    try:
        # The test server warns 2 s before expiry: a 4 s token is warned about at once.
        await go.ok(100, pb.LoginReq(appId=APP_A, userId=user, token=token(user, expire=4)))
        warned = await go.wait_event(pb.TokenPrivilegeExpire)
        assert warned.channel == ""
        await go.ok(104, pb.RenewTokenReq(token=token(user)))
        # A stream channel's own token: its notice names the channel; renewed on the channel.
        channel = unique("tc")
        join_token = build_stream_token(APP_A, CERT_A, channel, user, 4)
        TOKENS.append(join_token)
        await go.ok(4, pb.StreamJoinReq(channel=channel, token=join_token))
        await go.wait_event(pb.StreamTopicEvent)
        stream_warned = await go.wait_event(pb.TokenPrivilegeExpire)
        assert stream_warned.channel == channel
        fresh = build_stream_token(APP_A, CERT_A, channel, user, 3600)
        TOKENS.append(fresh)
        await go.ok(104, pb.RenewTokenReq(token=fresh, channel=channel))
        bad = await go.call(104, pb.RenewTokenReq(token="007garbage"))
        assert bad.code == ErrorCode.INVALID_TOKEN
        other = await go.call(104, pb.RenewTokenReq(token=token("someone-else")))
        assert other.code != 0
        await go.ok(103, pb.SetParamsReq(params=json.dumps({"anything": 1})))
        assert (await go.call(103, pb.SetParamsReq(params="not json"))).code == (
            ErrorCode.INVALID_PARAMETER
        )
        # Still logged in well past the first token's expiry.
        await asyncio.sleep(3)
        await go.ok(36, pb.PresenceWhereNowReq(userId=user))
        refused = await go.call(8, pb.StreamMessageReq(channel=channel, topic="t"))
        assert refused.code == ErrorCode.CHANNEL_TOPIC_NOT_JOINED
        states = [(e.state, e.channel) for e in go.of(pb.ConnectionStateChangeEvent)]
        assert states == [(CONNECTING, ""), (CONNECTED, ""), (CONNECTED, channel)]
    finally:
        await go.close()
