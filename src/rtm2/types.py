"""Enums and event types shared by the server and the SDK.

The numbering is the RTM 2 GA numbering of Agora's public Signaling (RTM 2) SDK enums, such as
``RTM_CHANNEL_TYPE`` and ``RTM_MESSAGE_TYPE`` of its C++ API, documented in the Signaling 2.x
API reference (https://docs.agora.io/en/signaling/reference/api). Tests, users and the wire
depend on it, so values never change once published.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

__all__ = [
    "HistoryMessage",
    "ChannelType",
    "ConnectionChangeReason",
    "ConnectionEvent",
    "ConnectionState",
    "ChannelInfo",
    "LockDetail",
    "LockEvent",
    "LockEventType",
    "Metadata",
    "MetadataItem",
    "StorageEvent",
    "StorageEventType",
    "StorageType",
    "Message",
    "MessageType",
    "PresenceEvent",
    "RecoveryEvent",
    "PresenceEventType",
    "UserState",
    "StreamPriority",
    "StreamQos",
    "TopicEvent",
    "TopicEventType",
]


class ChannelType(IntEnum):
    MESSAGE = 1
    STREAM = 2
    USER = 3


class MessageType(IntEnum):
    BINARY = 0
    STRING = 1


class StreamQos(IntEnum):
    UNORDERED = 0
    ORDERED = 1


class StreamPriority(IntEnum):
    HIGHEST = 0
    HIGH = 1
    NORMAL = 4
    LOW = 8


class TopicEventType(IntEnum):
    SNAPSHOT = 1
    REMOTE_JOIN = 2
    REMOTE_LEAVE = 3


class PresenceEventType(IntEnum):
    SNAPSHOT = 1
    INTERVAL = 2
    REMOTE_JOIN = 3
    REMOTE_LEAVE = 4
    REMOTE_TIMEOUT = 5
    REMOTE_STATE_CHANGED = 6
    ERROR_OUT_OF_SERVICE = 7


class StorageEventType(IntEnum):
    SNAPSHOT = 1
    SET = 2
    UPDATE = 3
    REMOVE = 4


class StorageType(IntEnum):
    USER = 1
    CHANNEL = 2


class LockEventType(IntEnum):
    SNAPSHOT = 1
    SET = 2
    REMOVED = 3
    ACQUIRED = 4
    RELEASED = 5
    EXPIRED = 6


class ConnectionState(IntEnum):
    DISCONNECTED = 1
    CONNECTING = 2
    CONNECTED = 3
    RECONNECTING = 4
    FAILED = 5


class ConnectionChangeReason(IntEnum):
    """Why the connection state changed (the Go SDK's consts, 2.1.x numbering)."""

    CONNECTING = 0
    JOIN_SUCCESS = 1
    INTERRUPTED = 2
    BANNED_BY_SERVER = 3
    JOIN_FAILED = 4
    LEAVE_CHANNEL = 5
    INVALID_APP_ID = 6
    INVALID_CHANNEL_NAME = 7
    INVALID_TOKEN = 8
    TOKEN_EXPIRED = 9
    REJECTED_BY_SERVER = 10
    SETTING_PROXY_SERVER = 11
    RENEW_TOKEN = 12
    CLIENT_IP_ADDRESS_CHANGED = 13
    KEEP_ALIVE_TIMEOUT = 14
    REJOIN_SUCCESS = 15
    LOST = 16
    ECHO_TEST = 17
    CLIENT_IP_ADDRESS_CHANGED_BY_USER = 18
    SAME_UID_LOGIN = 19
    TOO_MANY_BROADCASTERS = 20
    LICENSE_VALIDATION_FAILURE = 21
    CERTIFICATION_VERIFY_FAILURE = 22
    STREAM_CHANNEL_NOT_AVAILABLE = 23
    INCONSISTENT_APPID = 24
    LOGIN_SUCCESS = 10001
    LOGOUT = 10002


class ConnectionEvent(NamedTuple):
    """A connection state change. ``channel`` is "" for the login connection."""

    state: ConnectionState
    reason: ConnectionChangeReason
    channel: str = ""


class Message(NamedTuple):
    """A message received on a topic, a message channel or from a peer.

    ``message`` is ``bytes`` for BINARY messages and ``str`` for STRING ones; ``timestamp`` is
    the server's receive time in ms; ``send_ts`` is what the publisher passed (0 if nothing).
    """

    user_id: str
    channel: str
    channel_type: ChannelType
    topic: str
    message: bytes | str
    message_type: MessageType
    custom_type: str = ""
    timestamp: int = 0
    send_ts: int = 0


class TopicEvent(NamedTuple):
    """A change of a stream channel's topic publishers.

    SNAPSHOT comes first after a join (``user_id`` and ``topic`` empty); REMOTE_JOIN and
    REMOTE_LEAVE name the publisher and topic. ``snapshot`` is always the channel's topics
    with their publishers as the SDK knows them after the event.
    """

    type: TopicEventType
    channel: str
    user_id: str
    topic: str
    snapshot: dict[str, list[str]]


class PresenceEvent(NamedTuple):
    """A presence change in a channel.

    SNAPSHOT (first, after subscribe or join with presence) fills ``snapshot`` with everyone
    present, self included: user id -> state. REMOTE_JOIN, REMOTE_LEAVE, REMOTE_TIMEOUT and
    REMOTE_STATE_CHANGED name ``user_id``; ``state`` is that user's full state (REMOTE_JOIN and
    REMOTE_STATE_CHANGED). INTERVAL (in channels above the interval threshold) lists who
    ``joined``, ``left`` and ``timed_out`` since the last one, and in ``snapshot`` the states
    that changed.
    """

    type: PresenceEventType
    channel: str
    channel_type: ChannelType
    user_id: str
    state: dict[str, str]
    joined: list[str]
    left: list[str]
    timed_out: list[str]
    snapshot: dict[str, dict[str, str]]


class UserState(NamedTuple):
    user_id: str
    state: dict[str, str]


class ChannelInfo(NamedTuple):
    channel: str
    channel_type: ChannelType


class MetadataItem(NamedTuple):
    """One metadata item. ``revision`` -1 writes without a check, 0 only creates (the key must
    not exist), > 0 only if the item is at that revision. ``author`` and ``update_ts`` (ms)
    are filled in by the server when the write asks to record them; they are read-only."""

    key: str
    value: str = ""
    revision: int = -1
    author: str = ""
    update_ts: int = 0


class Metadata(NamedTuple):
    """A metadata set: its major revision (0 when it does not exist) and its items by key."""

    major_revision: int
    items: dict[str, MetadataItem]


class StorageEvent(NamedTuple):
    """A metadata set as it is now: SNAPSHOT first, then UPDATE after every change.

    ``storage_type`` USER names ``user_id``; CHANNEL names ``channel`` and ``channel_type``.
    """

    type: StorageEventType
    storage_type: StorageType
    channel: str
    channel_type: ChannelType | None
    user_id: str
    major_revision: int
    items: dict[str, MetadataItem]


class LockDetail(NamedTuple):
    name: str
    owner: str  # "" when nobody holds it
    ttl: int


class LockEvent(NamedTuple):
    """A lock change in a channel (SNAPSHOT first: every lock)."""

    type: LockEventType
    channel: str
    channel_type: ChannelType
    locks: dict[str, LockDetail]


class RecoveryEvent(NamedTuple):
    """After the connection came back: a subscription that missed messages or was lost.

    ``restored`` False: the subscription (message channel, or a stream channel with all its
    topics) could not be set up again and its streams have ended; ``reason`` says why.
    ``recovered`` False: it is set up again, but messages published while the client was away
    may be missing (the server no longer had them all, or had restarted). ``topic`` is "" for
    message channels and for a stream channel as a whole.
    """

    channel: str
    channel_type: ChannelType
    topic: str
    recovered: bool
    restored: bool
    reason: str = ""


class HistoryMessage(NamedTuple):
    """A message read back from history (``client.history.get_messages``).

    ``message`` is ``bytes`` for BINARY and ``str`` for STRING messages; ``timestamp`` is the
    server time in ms when it was stored; ``id`` is unique within the channel (or peer
    conversation) and orders its messages: a newer message has a larger id.
    """

    id: int
    user_id: str
    channel: str
    channel_type: ChannelType
    message: bytes | str
    message_type: MessageType
    custom_type: str = ""
    timestamp: int = 0
