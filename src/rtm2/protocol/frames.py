"""Wire frames of the rtm2 protocol (version 1). Specified in ``docs/PROTOCOL.md``.

Every WebSocket binary message carries exactly one frame: a MessagePack array whose first
element is the frame tag. Client frames and server frames are two separate tagged unions, so a
tag number means one thing per direction. Field names never go on the wire (``array_like``), so
fields may be renamed freely but never reordered; new optional fields are appended at the end
with a default, which keeps old peers decoding new frames.

Requests carry a client-chosen ``rid``; the server answers each with exactly one :class:`Reply`
carrying the same ``rid`` and an RTM error code (0 = success). Everything else the server sends
is a push.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "NIL",
    "Batch",
    "ClientMessage",
    "ChannelClosed",
    "JoinTopic",
    "LeaveTopic",
    "Publisher",
    "PublishTopic",
    "StreamJoin",
    "StreamJoinResult",
    "StreamLeave",
    "StreamMessage",
    "SubscribeResult",
    "SubscribeTopic",
    "TopicEvent",
    "TopicInfo",
    "UnsubscribeTopic",
    "PROTOCOL_VERSION",
    "ClientFrame",
    "Hello",
    "Kick",
    "Login",
    "LoginResult",
    "Logout",
    "Ping",
    "Pong",
    "RenewToken",
    "Reply",
    "Request",
    "ServerFrame",
    "TokenWillExpire",
    "Welcome",
]

PROTOCOL_VERSION = 1

# MessagePack nil: the result of a reply that carries no data.
NIL = msgspec.Raw(b"\xc0")


class _Frame(msgspec.Struct, array_like=True, gc=False):
    pass


# --- client -> server ------------------------------------------------------------------------


class Hello(_Frame, tag=1):
    """Opens the conversation. The reply's result is a :class:`Welcome`."""

    rid: int
    version: int = PROTOCOL_VERSION
    agent: str = ""


class Login(_Frame, tag=2):
    """Logs ``user_id`` into ``app_id``. The reply's result is a :class:`LoginResult`."""

    rid: int
    app_id: str
    user_id: str
    token: str = ""
    presence_timeout: int = 300


class Logout(_Frame, tag=3):
    """Ends the session. The server replies, then closes the connection."""

    rid: int


class RenewToken(_Frame, tag=4):
    """Replaces the login token (``channel == ""``) or a stream channel's token."""

    rid: int
    token: str
    channel: str = ""


class Ping(_Frame, tag=5):
    """Keepalive. The server answers with a :class:`Pong` echoing ``ts``."""

    ts: float = 0.0


class StreamJoin(_Frame, tag=6):
    """Joins a stream channel. The reply's result is a :class:`StreamJoinResult`.

    ``token`` is a stream (RTC join) token for this channel and user, or a combined token;
    apps whose join policy is ``"login"`` ignore it.
    """

    rid: int
    channel: str
    token: str = ""
    with_presence: bool = True
    with_metadata: bool = False
    with_lock: bool = False
    be_quiet: bool = False


class StreamLeave(_Frame, tag=7):
    rid: int
    channel: str


class JoinTopic(_Frame, tag=8):
    """Makes the caller a publisher of ``topic``; other members get a REMOTE_JOIN event."""

    rid: int
    channel: str
    topic: str
    qos: int = 0
    priority: int = 4
    meta: str = ""
    sync_media: bool = False


class LeaveTopic(_Frame, tag=9):
    rid: int
    channel: str
    topic: str


class PublishTopic(_Frame, tag=10):
    """Publishes one message; ``message_type`` 0 = binary, 1 = UTF-8 text in ``payload``."""

    rid: int
    channel: str
    topic: str
    payload: bytes
    message_type: int = 0
    custom_type: str = ""
    send_ts: int = 0


class SubscribeTopic(_Frame, tag=11):
    """Adds ``users`` to the publishers the caller receives on ``topic`` (a union).

    An empty list means every current publisher of the topic, up to the per-topic limit.
    The reply's result is a :class:`SubscribeResult`.
    """

    rid: int
    channel: str
    topic: str
    users: list[str] = []


class UnsubscribeTopic(_Frame, tag=12):
    """Removes ``users`` from the topic's subscription; an empty list drops the whole topic."""

    rid: int
    channel: str
    topic: str
    users: list[str] = []


Request = (
    Hello
    | Login
    | Logout
    | RenewToken
    | StreamJoin
    | StreamLeave
    | JoinTopic
    | LeaveTopic
    | PublishTopic
    | SubscribeTopic
    | UnsubscribeTopic
)
ClientFrame = (
    Hello
    | Login
    | Logout
    | RenewToken
    | Ping
    | StreamJoin
    | StreamLeave
    | JoinTopic
    | LeaveTopic
    | PublishTopic
    | SubscribeTopic
    | UnsubscribeTopic
)


class Batch(_Frame, tag=0):
    """Several client frames in one WebSocket message, handled in order.

    A client that queues frames within one event-loop pass sends them as one batch: one
    WebSocket frame to mask, one system call, one read on the server. Batches do not nest.
    """

    frames: list[ClientFrame]


ClientMessage = ClientFrame | Batch


# --- server -> client ------------------------------------------------------------------------


class Reply(_Frame, tag=1):
    """The answer to the request with the same ``rid``.

    ``result`` holds the encoded result (a MessagePack value whose type the request defines) so
    the client decodes it with the type it expects; :data:`NIL` when there is none.
    """

    rid: int
    code: int = 0
    reason: str = ""
    result: msgspec.Raw = NIL


class Pong(_Frame, tag=2):
    ts: float = 0.0


class TokenWillExpire(_Frame, tag=3):
    """The token of the login (``channel == ""``) or of a stream channel expires soon."""

    channel: str
    expires_at: int


class Kick(_Frame, tag=4):
    """The server ends the session; the connection closes right after this frame.

    ``reason`` is a ``ConnectionChangeReason`` value and ``code`` the matching error code.
    """

    reason: int
    code: int = 0
    message: str = ""


class StreamMessage(_Frame, tag=5):
    """A message published on a topic by ``publisher``; ``timestamp`` is server time in ms."""

    channel: str
    topic: str
    publisher: str
    payload: bytes
    message_type: int = 0
    custom_type: str = ""
    timestamp: int = 0
    send_ts: int = 0


class TopicEvent(_Frame, tag=6):
    """``user`` joined (kind 2) or left (kind 3) ``topic`` as a publisher."""

    kind: int
    channel: str
    topic: str
    user: str
    meta: str = ""


class ChannelClosed(_Frame, tag=7):
    """The server removed this client from a channel (e.g. its stream token expired).

    ``reason`` is a ``ConnectionChangeReason`` value, ``code`` the matching error code.
    """

    channel: str
    channel_type: int
    reason: int
    code: int = 0
    message: str = ""


ServerFrame = Reply | Pong | TokenWillExpire | Kick | StreamMessage | TopicEvent | ChannelClosed


# --- reply results ---------------------------------------------------------------------------


class Welcome(_Frame):
    """Result of :class:`Hello`: what the client needs to keep the connection alive."""

    version: int
    server: str
    heartbeat_interval: float
    heartbeat_grace: float
    max_frame_size: int


class Publisher(_Frame):
    user: str
    meta: str = ""


class TopicInfo(_Frame):
    topic: str
    publishers: list[Publisher]


class StreamJoinResult(_Frame):
    """Result of :class:`StreamJoin`: every topic of the channel with its publishers.

    ``expires_at`` is when the join right ends (0 = never, e.g. under the "login" policy).
    """

    topics: list[TopicInfo]
    expires_at: int = 0


class SubscribeResult(_Frame):
    succeeded: list[str]
    failed: list[str]


class LoginResult(_Frame):
    """Result of :class:`Login` and of a login-token :class:`RenewToken`.

    ``expires_at`` is the unix time at which the token's login right ends (0 = never).
    """

    session_id: str
    server_time_ms: int
    expires_at: int
