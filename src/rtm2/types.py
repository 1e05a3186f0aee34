"""Enums and event types shared by the server and the SDK.

The numbering is the RTM 2 GA numbering (see ``shared/DESIGN.md``); tests, users and the wire
depend on it, so values never change once published.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

__all__ = [
    "ChannelType",
    "ConnectionChangeReason",
    "ConnectionEvent",
    "ConnectionState",
    "Message",
    "MessageType",
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
