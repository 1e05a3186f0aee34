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


Request = Hello | Login | Logout | RenewToken
ClientFrame = Hello | Login | Logout | RenewToken | Ping


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


ServerFrame = Reply | Pong | TokenWillExpire | Kick


# --- reply results ---------------------------------------------------------------------------


class Welcome(_Frame):
    """Result of :class:`Hello`: what the client needs to keep the connection alive."""

    version: int
    server: str
    heartbeat_interval: float
    heartbeat_grace: float
    max_frame_size: int


class LoginResult(_Frame):
    """Result of :class:`Login` and of a login-token :class:`RenewToken`.

    ``expires_at`` is the unix time at which the token's login right ends (0 = never).
    """

    session_id: str
    server_time_ms: int
    expires_at: int
