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
    "AcquireLock",
    "Acquired",
    "CancelAcquire",
    "ChannelMetadataWrite",
    "GetChannelMetadata",
    "GetLocks",
    "GetHistory",
    "GetUserMetadata",
    "HistoryMessage",
    "HistoryResult",
    "LockDetail",
    "LockEvent",
    "MetadataItem",
    "MetadataResult",
    "Position",
    "ReleaseLock",
    "Resume",
    "ResumeResult",
    "RemoveLock",
    "RevokeLock",
    "SetLock",
    "StorageEvent",
    "SubscribeUserMetadata",
    "UnsubscribeUserMetadata",
    "UserMetadataWrite",
    "Batch",
    "ChannelInfo",
    "ChannelMessage",
    "ClientMessage",
    "GetState",
    "PresenceEvent",
    "Publish",
    "RemoveState",
    "SetState",
    "Subscribe",
    "SubscribeChannelResult",
    "Unsubscribe",
    "UserState",
    "WhereNow",
    "WhereNowResult",
    "WhoNow",
    "WhoNowResult",
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
    # Presence state to apply on join (what the SDK cached before joining).
    state: dict[str, str] = {}


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
    # A client setting up again on a new session: the offset it got to in ``epoch`` (""
    # none). The messages after it are replayed right after the reply, which says whether
    # they all were (``recovered``).
    since: int = 0
    epoch: str = ""


class UnsubscribeTopic(_Frame, tag=12):
    """Removes ``users`` from the topic's subscription; an empty list drops the whole topic."""

    rid: int
    channel: str
    topic: str
    users: list[str] = []


class Subscribe(_Frame, tag=13):
    """Subscribes to a message channel. The reply's result is a :class:`SubscribeChannelResult`."""

    rid: int
    channel: str
    with_message: bool = True
    with_presence: bool = True
    with_metadata: bool = False
    with_lock: bool = False
    be_quiet: bool = False
    state: dict[str, str] = {}
    # As in SubscribeTopic: recover the messages after offset ``since`` of ``epoch``.
    since: int = 0
    epoch: str = ""


class Unsubscribe(_Frame, tag=14):
    rid: int
    channel: str


class Publish(_Frame, tag=15):
    """Publishes to a message channel (``channel_type`` 1) or to a user (3, ``channel`` is
    the recipient's user id; the reply comes once the recipient's session has it)."""

    rid: int
    channel: str
    payload: bytes
    message_type: int = 0
    channel_type: int = 1
    custom_type: str = ""
    # Keep the message in the channel's (or the conversation's) history; acknowledged once
    # it is durable. See docs/HISTORY.md.
    store_in_history: bool = False


class WhoNow(_Frame, tag=16):
    """Who is in a channel, 100 users a page. The result is a :class:`WhoNowResult`."""

    rid: int
    channel: str
    channel_type: int
    include_user_id: bool = True
    include_state: bool = False
    page: str = ""


class WhereNow(_Frame, tag=17):
    """The channels a user is in. The result is a :class:`WhereNowResult`."""

    rid: int
    user: str


class SetState(_Frame, tag=18):
    """Upserts keys of the caller's presence state in a channel it is in."""

    rid: int
    channel: str
    channel_type: int
    state: dict[str, str]


class RemoveState(_Frame, tag=19):
    rid: int
    channel: str
    channel_type: int
    keys: list[str]


class GetState(_Frame, tag=20):
    """A user's presence state in a channel. The result is a ``dict[str, str]``."""

    rid: int
    channel: str
    channel_type: int
    user: str


class MetadataItem(_Frame):
    """An item of a metadata set. In writes ``revision`` is the compare-and-set condition:
    -1 none, 0 the key must not exist, > 0 the item's current revision; ``author`` and
    ``update_ts`` are read-only (stamped by the server)."""

    key: str
    value: str = ""
    revision: int = -1
    author: str = ""
    update_ts: int = 0


class ChannelMetadataWrite(_Frame, tag=21):
    """Sets (op 0), updates (1) or removes (2) items of a channel's metadata."""

    rid: int
    channel: str
    channel_type: int
    op: int
    items: list[MetadataItem]
    major_revision: int = -1
    lock: str = ""
    record_ts: bool = False
    record_author: bool = False


class UserMetadataWrite(_Frame, tag=22):
    rid: int
    user: str
    op: int
    items: list[MetadataItem]
    major_revision: int = -1
    record_ts: bool = False
    record_author: bool = False


class GetChannelMetadata(_Frame, tag=23):
    rid: int
    channel: str
    channel_type: int


class GetUserMetadata(_Frame, tag=24):
    rid: int
    user: str


class SubscribeUserMetadata(_Frame, tag=25):
    """Receive a user's metadata changes; the result is the current set (a snapshot)."""

    rid: int
    user: str


class UnsubscribeUserMetadata(_Frame, tag=26):
    rid: int
    user: str


class SetLock(_Frame, tag=27):
    rid: int
    channel: str
    channel_type: int
    name: str
    ttl: int = 10


class RemoveLock(_Frame, tag=28):
    rid: int
    channel: str
    channel_type: int
    name: str


class AcquireLock(_Frame, tag=29):
    """Acquires a lock. With ``retry`` the reply waits until the lock is held (FIFO among
    waiters), the waiter cancels, leaves or logs out. The result is an :class:`Acquired`."""

    rid: int
    channel: str
    channel_type: int
    name: str
    retry: bool = False


class ReleaseLock(_Frame, tag=30):
    rid: int
    channel: str
    channel_type: int
    name: str


class RevokeLock(_Frame, tag=31):
    rid: int
    channel: str
    channel_type: int
    name: str
    owner: str


class GetLocks(_Frame, tag=32):
    rid: int
    channel: str
    channel_type: int


class CancelAcquire(_Frame, tag=33):
    """Withdraws the waiting :class:`AcquireLock` whose rid is ``acquire_rid``; that request
    is then answered with LOCK_ACQUIRE_FAILED (or was already answered with the lock)."""

    rid: int
    acquire_rid: int


class Position(_Frame):
    """How far a client got in a message channel (``topic`` "") or a stream-channel topic."""

    channel_type: int
    channel: str
    topic: str
    offset: int
    epoch: str


class Resume(_Frame, tag=34):
    """Takes over a logged-in session whose connection was lost, instead of logging in.

    The server answers with a :class:`ResumeResult`, then replays the buffered messages after
    each position. A session that no longer exists (it timed out, the server restarted) is
    refused with ``LOGIN_REJECTED``: log in instead.
    """

    rid: int
    app_id: str
    user_id: str
    session_id: str
    resume_token: str
    positions: list[Position] = []


class GetHistory(_Frame, tag=35):
    """Stored messages of a message channel (``channel_type`` 1) or of the conversation with
    the user ``channel`` (3), newest first. ``start`` (exclusive) and ``end`` (inclusive) are
    server times in ms or positions (a ``new_start``); 0 = no bound. The result is a
    :class:`HistoryResult`."""

    rid: int
    channel: str
    channel_type: int
    count: int = 100
    start: int = 0
    end: int = 0


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
    | Subscribe
    | Unsubscribe
    | Publish
    | WhoNow
    | WhereNow
    | SetState
    | RemoveState
    | GetState
    | ChannelMetadataWrite
    | UserMetadataWrite
    | GetChannelMetadata
    | GetUserMetadata
    | SubscribeUserMetadata
    | UnsubscribeUserMetadata
    | SetLock
    | RemoveLock
    | AcquireLock
    | ReleaseLock
    | RevokeLock
    | GetLocks
    | CancelAcquire
    | Resume
    | GetHistory
)
ClientFrame = Request | Ping


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
    # Position of the message in its topic (see docs/RELIABILITY.md); 0 when not buffered.
    offset: int = 0


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


class ChannelMessage(_Frame, tag=8):
    """A message of a message channel (``channel_type`` 1) or from a peer (3; ``channel`` is
    then the publisher's user id)."""

    channel: str
    channel_type: int
    publisher: str
    payload: bytes
    message_type: int = 0
    custom_type: str = ""
    timestamp: int = 0
    # Position of the message in its channel; 0 for peer messages and when not buffered.
    offset: int = 0


class PresenceEvent(_Frame, tag=9):
    """A presence change in a channel; ``kind`` is a ``PresenceEventType`` value.

    REMOTE_JOIN, REMOTE_LEAVE, REMOTE_TIMEOUT and REMOTE_STATE_CHANGED name ``user`` (with its
    full ``state`` for REMOTE_JOIN and REMOTE_STATE_CHANGED); INTERVAL carries the users who
    joined, left and timed out since the last one and, in ``states``, the changed states.
    """

    kind: int
    channel: str
    channel_type: int
    user: str = ""
    state: dict[str, str] = {}
    joined: list[str] = []
    left: list[str] = []
    timeout: list[str] = []
    states: dict[str, dict[str, str]] = {}


class LockDetail(_Frame):
    name: str
    owner: str = ""
    ttl: int = 0


class StorageEvent(_Frame, tag=10):
    """A metadata set changed (or a SNAPSHOT of it). ``storage_type`` 1 = a user's metadata
    (``user``), 2 = a channel's (``channel``, ``channel_type``); ``items`` is the whole set."""

    kind: int
    storage_type: int
    channel: str
    channel_type: int
    user: str
    major_revision: int
    items: list[MetadataItem]


class LockEvent(_Frame, tag=11):
    """A lock changed: ``kind`` is a ``LockEventType`` value, ``locks`` the lock(s) concerned."""

    kind: int
    channel: str
    channel_type: int
    locks: list[LockDetail]


ServerFrame = (
    Reply
    | Pong
    | TokenWillExpire
    | Kick
    | StreamMessage
    | TopicEvent
    | ChannelClosed
    | ChannelMessage
    | PresenceEvent
    | StorageEvent
    | LockEvent
)


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
    # Everyone present (self included, quiet users excluded) with their states.
    presence: dict[str, dict[str, str]] = {}
    metadata: MetadataResult | None = None
    locks: list[LockDetail] | None = None


class MetadataResult(_Frame):
    major_revision: int
    items: list[MetadataItem]


class SubscribeChannelResult(_Frame):
    """Result of :class:`Subscribe`: everyone present, self included, with their states, and
    (when asked for with with_metadata / with_lock) the channel's metadata and locks."""

    presence: dict[str, dict[str, str]]
    metadata: MetadataResult | None = None
    locks: list[LockDetail] | None = None
    # The channel's current position: messages after it are this subscription's.
    offset: int = 0
    # Asked to recover (``since``/``epoch``): every message after ``since`` follows.
    recovered: bool = False


class Acquired(_Frame):
    """Result of :class:`AcquireLock`: the lock's fencing number (grows on every acquire)."""

    fence: int


class UserState(_Frame):
    user: str
    state: dict[str, str] = {}


class WhoNowResult(_Frame):
    """One page of users (sorted by id); ``next_page`` is "" on the last page."""

    users: list[UserState]
    next_page: str
    total: int


class ChannelInfo(_Frame):
    channel: str
    channel_type: int


class WhereNowResult(_Frame):
    channels: list[ChannelInfo]


class SubscribeResult(_Frame):
    succeeded: list[str]
    failed: list[str]
    # The topic's current position: messages after it are this subscription's.
    offset: int = 0
    # Asked to recover (``since``/``epoch``): every message after ``since`` follows.
    recovered: bool = False


class LoginResult(_Frame):
    """Result of :class:`Login` and of a login-token :class:`RenewToken`.

    ``expires_at`` is the unix time at which the token's login right ends (0 = never).
    """

    session_id: str
    server_time_ms: int
    expires_at: int
    # Presented with Resume to take the session over on a new connection.
    resume_token: str = ""
    # Identifies the server's message buffers; positions from another epoch cannot be resumed.
    epoch: str = ""


class ResumeResult(_Frame):
    """Result of :class:`Resume`: the session is back; ``unrecovered`` lists the positions
    whose missed messages are no longer buffered (the rest were replayed right after this)."""

    session_id: str
    server_time_ms: int
    expires_at: int
    unrecovered: list[Position] = []
    # Replaces the one presented: each resume hands out a new token and retires the old one.
    resume_token: str = ""


class HistoryMessage(_Frame):
    """One stored message; ``id`` is unique in its channel and orders it (newer is larger)."""

    id: int
    publisher: str
    payload: bytes
    message_type: int = 0
    custom_type: str = ""
    timestamp: int = 0


class HistoryResult(_Frame):
    """Result of :class:`GetHistory`: ``new_start`` is the ``start`` of the next, older page
    (0: there is none)."""

    messages: list[HistoryMessage]
    new_start: int = 0
