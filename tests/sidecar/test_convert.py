"""rtm2's events as the Go SDK's messages (no I/O): the shapes the Go client relies on."""

from __future__ import annotations

from typing import TypeVar

import pytest
from google.protobuf.message import Message as ProtoMessage

from rtm2 import ChannelType, ErrorCode, RTMError
from rtm2.sidecar import convert
from rtm2.sidecar.dialect import Uri
from rtm2.sidecar.proto import gosdk_pb2 as pb
from rtm2.types import (
    ConnectionChangeReason,
    ConnectionEvent,
    ConnectionState,
    LockDetail,
    LockEvent,
    LockEventType,
    Message,
    MessageType,
    MetadataItem,
    PresenceEvent,
    PresenceEventType,
    StorageEvent,
    StorageEventType,
    StorageType,
    TopicEvent,
    TopicEventType,
)

M = TypeVar("M", bound=ProtoMessage)


def decode(event: tuple[Uri, bytes], kind: type[M]) -> M:
    message = kind()
    message.ParseFromString(event[1])
    return message


def test_a_topic_snapshot_lists_every_topic_with_its_publishers() -> None:
    event = TopicEvent(TopicEventType.SNAPSHOT, "ch", "", "", {"a": ["u1", "u2"], "b": []})
    uri, _ = out = convert.topic_event(event)
    msg = decode(out, pb.StreamTopicEvent)
    assert uri == Uri.STREAM_TOPIC_EVENT
    assert msg.type == 1
    assert [(i.topic, [p.userId for p in i.publishers]) for i in msg.infos] == [
        ("a", ["u1", "u2"]),
        ("b", []),
    ]


@pytest.mark.parametrize("kind", [TopicEventType.REMOTE_JOIN, TopicEventType.REMOTE_LEAVE])
def test_a_topic_join_or_leave_has_one_topic_and_one_publisher(kind: TopicEventType) -> None:
    msg = decode(convert.topic_event(TopicEvent(kind, "ch", "u1", "t", {})), pb.StreamTopicEvent)
    assert (msg.type, msg.userId, msg.channel) == (int(kind), "u1", "ch")
    assert [(i.topic, [p.userId for p in i.publishers]) for i in msg.infos] == [("t", ["u1"])]


def test_messages_carry_bytes_type_and_channel_type() -> None:
    peer = Message("alice", "alice", ChannelType.USER, "", "héllo", MessageType.STRING, "ct")
    msg = decode(convert.message_event(peer), pb.MessageEvent)
    assert (msg.publisher, msg.message, msg.type, msg.channelType, msg.customType) == (
        "alice", "héllo".encode(), 1, 3, "ct",
    )  # fmt: skip
    topic = Message("bob", "ch", ChannelType.STREAM, "t", b"\x00", MessageType.BINARY, send_ts=9)
    smsg = decode(convert.stream_message_event(topic), pb.StreamMessageEvent)
    assert (smsg.channel, smsg.topic, smsg.publisher, smsg.message, smsg.sendTs) == (
        "ch", "t", "bob", b"\x00", 9,
    )  # fmt: skip


def test_presence_storage_and_lock_events_keep_rtm2s_2_1_numbers() -> None:
    presence = PresenceEvent(
        PresenceEventType.INTERVAL, "ch", ChannelType.STREAM, "", {}, ["a"], ["b"], ["c"],
        {"a": {"k": "v"}},
    )  # fmt: skip
    p = decode(convert.presence_event(presence), pb.PresenceEvent)
    assert (p.eventType, p.channelType, list(p.joined), list(p.left), list(p.timeout)) == (
        2, 2, ["a"], ["b"], ["c"],
    )  # fmt: skip
    assert [(s.userId, [(i.key, i.value) for i in s.items]) for s in p.snapshot] == [
        ("a", [("k", "v")])
    ]
    items = {"k": MetadataItem("k", "v", 3, "me", 1700)}
    user = StorageEvent(StorageEventType.UPDATE, StorageType.USER, "", None, "me", 4, items)
    uri, _ = convert.storage_event(user)
    assert uri == Uri.STORAGE_USER_EVENT
    channel = StorageEvent(
        StorageEventType.SNAPSHOT, StorageType.CHANNEL, "ch", ChannelType.MESSAGE, "", 4, items
    )
    c = decode(convert.storage_event(channel), pb.StorageChannelEvent)
    assert (c.eventType, c.channelType, c.majorRev) == (1, 1, 4)
    assert [(i.key, i.value, i.rev, i.author, i.updateTs) for i in c.items] == [
        ("k", "v", 3, "me", 1700)
    ]
    lock = LockEvent(
        LockEventType.EXPIRED, "ch", ChannelType.STREAM, {"L": LockDetail("L", "", 10)}
    )
    lk = decode(convert.lock_event(lock), pb.LockEvent)
    assert (lk.eventType, [(d.lock, d.owner, d.ttl) for d in lk.locks]) == (6, [("L", "", 10)])


def test_connection_events_use_go_reason_numbers() -> None:
    event = ConnectionEvent(
        ConnectionState.CONNECTED, ConnectionChangeReason.INCONSISTENT_APPID, "ch"
    )
    msg = decode(convert.connection_event(event), pb.ConnectionStateChangeEvent)
    assert (msg.state, msg.reason, msg.channel) == (3, 23, "ch")


def test_go_item_revisions_of_zero_mean_no_check() -> None:
    items = [
        pb.MetadataItem(key="a"),
        pb.MetadataItem(key="b", rev=5),
        pb.MetadataItem(key="c", rev=-1),
    ]
    assert [i.revision for i in convert.rtm2_items(items)] == [-1, 5, -1]


def test_string_payloads_must_be_utf8_and_channel_types_known() -> None:
    assert convert.payload("é".encode(), 1) == "é"
    assert convert.payload(b"\xff", 0) == b"\xff"
    with pytest.raises(RTMError) as bad:
        convert.payload(b"\xff", 1)
    assert bad.value.code == ErrorCode.CHANNEL_INVALID_MESSAGE
    assert convert.channel_type(2) == ChannelType.STREAM
    with pytest.raises(RTMError) as unknown:
        convert.channel_type(3)  # USER has no channel-scoped state
    assert unknown.value.code == ErrorCode.INVALID_CHANNEL_TYPE
