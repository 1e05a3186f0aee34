"""rtm2's events and results as the Go SDK's protobuf messages, and back (no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..errors import ErrorCode, RTMError
from ..types import (
    ChannelType,
    ConnectionEvent,
    LockDetail,
    LockEvent,
    Message,
    MessageType,
    MetadataItem,
    PresenceEvent,
    StorageEvent,
    StorageType,
    TopicEvent,
    TopicEventType,
)
from .dialect import Uri, go_reason
from .proto import gosdk_pb2 as pb

__all__ = [
    "Event",
    "channel_type",
    "connection_event",
    "lock_details",
    "lock_event",
    "message_event",
    "metadata_items",
    "payload",
    "presence_event",
    "rtm2_items",
    "storage_event",
    "stream_message_event",
    "token_event",
    "topic_event",
    "user_states",
]

Event = tuple[Uri, bytes]  # an event's URI and its serialized message


def channel_type(value: int) -> ChannelType:
    """A Go ChannelType (MESSAGE=1, STREAM=2) as rtm2's; anything else is refused."""
    if value not in (ChannelType.MESSAGE, ChannelType.STREAM):
        raise RTMError(ErrorCode.INVALID_CHANNEL_TYPE, f"invalid channel type {value}")
    return ChannelType(value)


def payload(message: bytes, message_type: int) -> bytes | str:
    """A Go message payload as rtm2 sends it: STRING as str (it must be UTF-8), else bytes."""
    if message_type == MessageType.STRING:
        try:
            return message.decode()
        except UnicodeDecodeError:
            raise RTMError(
                ErrorCode.CHANNEL_INVALID_MESSAGE, "a STRING message must be UTF-8"
            ) from None
    return message


def _raw(message: bytes | str) -> bytes:
    return message.encode() if isinstance(message, str) else message


def rtm2_items(items: Iterable[pb.MetadataItem]) -> list[MetadataItem]:
    """Go metadata items as rtm2's. Go's zero revision (its default) means "no check"."""
    return [MetadataItem(i.key, i.value, i.rev if i.rev > 0 else -1) for i in items]


def metadata_items(items: Mapping[str, MetadataItem]) -> list[pb.MetadataItem]:
    return [
        pb.MetadataItem(
            key=i.key, value=i.value, author=i.author, rev=i.revision, updateTs=i.update_ts
        )
        for i in items.values()
    ]


def user_states(states: Mapping[str, Mapping[str, str]]) -> list[pb.UserState]:
    return [
        pb.UserState(
            userId=user, items=[pb.UserStateItem(key=k, value=v) for k, v in state.items()]
        )
        for user, state in states.items()
    ]


def lock_details(locks: Mapping[str, LockDetail]) -> list[pb.LockDetail]:
    return [pb.LockDetail(lock=d.name, owner=d.owner, ttl=d.ttl) for d in locks.values()]


def connection_event(event: ConnectionEvent) -> Event:
    msg = pb.ConnectionStateChangeEvent(
        state=int(event.state), reason=go_reason(event.reason), channel=event.channel
    )
    return Uri.CONNECTION_STATE_CHANGE, msg.SerializeToString()


def token_event(channel: str) -> Event:
    return Uri.TOKEN_PRIVILEGE_EXPIRE, pb.TokenPrivilegeExpire(channel=channel).SerializeToString()


def message_event(message: Message) -> Event:
    """A message-channel message (channelType MESSAGE) or a peer message (USER)."""
    msg = pb.MessageEvent(
        channel=message.channel,
        publisher=message.user_id,
        type=int(message.message_type),
        message=_raw(message.message),
        sendTs=message.send_ts,
        customType=message.custom_type,
        channelType=int(message.channel_type),
    )
    return Uri.MESSAGE_EVENT, msg.SerializeToString()


def stream_message_event(message: Message) -> Event:
    msg = pb.StreamMessageEvent(
        channel=message.channel,
        type=int(message.message_type),
        sendTs=message.send_ts,
        message=_raw(message.message),
        topic=message.topic,
        publisher=message.user_id,
        customType=message.custom_type,
    )
    return Uri.STREAM_EVENT, msg.SerializeToString()


def topic_event(event: TopicEvent) -> Event:
    """A topic event. Go reads a join or leave from ``infos[0].publishers[0]`` (and panics
    without it), so those carry exactly one topic and one user."""
    if event.type == TopicEventType.SNAPSHOT:
        infos = [
            pb.TopicInfo(topic=topic, publishers=[pb.Publish(userId=u) for u in users])
            for topic, users in event.snapshot.items()
        ]
    else:
        infos = [pb.TopicInfo(topic=event.topic, publishers=[pb.Publish(userId=event.user_id)])]
    msg = pb.StreamTopicEvent(
        type=int(event.type), channel=event.channel, userId=event.user_id, infos=infos
    )
    return Uri.STREAM_TOPIC_EVENT, msg.SerializeToString()


def presence_event(event: PresenceEvent) -> Event:
    msg = pb.PresenceEvent(
        channel=event.channel,
        channelType=int(event.channel_type),
        eventType=int(event.type),
        publisher=event.user_id,
        items=[pb.UserStateItem(key=k, value=v) for k, v in event.state.items()],
        joined=event.joined,
        left=event.left,
        timeout=event.timed_out,
        snapshot=user_states(event.snapshot),
    )
    return Uri.PRESENCE_EVENT, msg.SerializeToString()


def storage_event(event: StorageEvent) -> Event:
    items = metadata_items(event.items)
    if event.storage_type == StorageType.USER:
        user = pb.StorageUserEvent(
            userId=event.user_id,
            items=items,
            majorRev=event.major_revision,
            eventType=int(event.type),
        )
        return Uri.STORAGE_USER_EVENT, user.SerializeToString()
    channel = pb.StorageChannelEvent(
        channel=event.channel,
        channelType=int(event.channel_type or 0),
        items=items,
        majorRev=event.major_revision,
        eventType=int(event.type),
    )
    return Uri.STORAGE_CHANNEL_EVENT, channel.SerializeToString()


def lock_event(event: LockEvent) -> Event:
    msg = pb.LockEvent(
        channel=event.channel,
        channelType=int(event.channel_type),
        eventType=int(event.type),
        locks=lock_details(event.locks),
    )
    return Uri.LOCK_EVENT, msg.SerializeToString()
