"""How error codes, kick reasons and request types relate, for both sides of the wire."""

from __future__ import annotations

from ..errors import ErrorCode
from ..types import ConnectionChangeReason
from .frames import (
    AcquireLock,
    CancelAcquire,
    ChannelMetadataWrite,
    GetChannelMetadata,
    GetLocks,
    GetState,
    GetUserMetadata,
    Hello,
    JoinTopic,
    LeaveTopic,
    Login,
    Logout,
    Publish,
    PublishTopic,
    ReleaseLock,
    RemoveLock,
    RemoveState,
    RenewToken,
    Request,
    Resume,
    RevokeLock,
    SetLock,
    SetState,
    StreamJoin,
    StreamLeave,
    Subscribe,
    SubscribeTopic,
    SubscribeUserMetadata,
    Unsubscribe,
    UnsubscribeTopic,
    UnsubscribeUserMetadata,
    UserMetadataWrite,
    WhereNow,
    WhoNow,
)

__all__ = [
    "ACCESS_KEY_HEADER",
    "CLOSE_GOING_AWAY",
    "CLOSE_NORMAL",
    "CLOSE_POLICY",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_TOO_BIG",
    "LOGIN_FAILURE_REASONS",
    "TERMINAL_REASONS",
    "timeout_code",
]

# The upgrade header carrying a server's access key (``[server] access_key``); without the
# right one, the upgrade is refused with HTTP 403.
ACCESS_KEY_HEADER = "X-RTM2-Access-Key"

# WebSocket close codes the server uses (RFC 6455 §7.4.1).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009

_TIMEOUT_CODES: dict[type[Request], ErrorCode] = {
    Hello: ErrorCode.LOGIN_TIMEOUT,
    Resume: ErrorCode.LOGIN_TIMEOUT,
    Login: ErrorCode.LOGIN_TIMEOUT,
    Logout: ErrorCode.NOT_CONNECTED,
    RenewToken: ErrorCode.RENEW_TOKEN_TIMEOUT,
    StreamJoin: ErrorCode.CHANNEL_JOIN_FAILED,
    StreamLeave: ErrorCode.CHANNEL_LEAVE_FAILED,
    JoinTopic: ErrorCode.CHANNEL_JOIN_TOPIC_FAILED,
    LeaveTopic: ErrorCode.CHANNEL_LEAVE_FAILED,
    PublishTopic: ErrorCode.CHANNEL_PUBLISH_MESSAGE_TIMEOUT,
    SubscribeTopic: ErrorCode.CHANNEL_SUBSCRIBE_TIMEOUT,
    UnsubscribeTopic: ErrorCode.CHANNEL_UNSUBSCRIBE_FAILED,
    Subscribe: ErrorCode.CHANNEL_SUBSCRIBE_TIMEOUT,
    Unsubscribe: ErrorCode.CHANNEL_UNSUBSCRIBE_FAILED,
    Publish: ErrorCode.CHANNEL_PUBLISH_MESSAGE_TIMEOUT,
    WhoNow: ErrorCode.PRESENCE_OPERATION_TIMEOUT,
    WhereNow: ErrorCode.PRESENCE_OPERATION_TIMEOUT,
    SetState: ErrorCode.PRESENCE_OPERATION_TIMEOUT,
    RemoveState: ErrorCode.PRESENCE_OPERATION_TIMEOUT,
    GetState: ErrorCode.PRESENCE_OPERATION_TIMEOUT,
    ChannelMetadataWrite: ErrorCode.STORAGE_OPERATION_TIMEOUT,
    UserMetadataWrite: ErrorCode.STORAGE_OPERATION_TIMEOUT,
    GetChannelMetadata: ErrorCode.STORAGE_OPERATION_TIMEOUT,
    GetUserMetadata: ErrorCode.STORAGE_OPERATION_TIMEOUT,
    SubscribeUserMetadata: ErrorCode.STORAGE_OPERATION_TIMEOUT,
    UnsubscribeUserMetadata: ErrorCode.STORAGE_OPERATION_TIMEOUT,
    SetLock: ErrorCode.LOCK_OPERATION_TIMEOUT,
    RemoveLock: ErrorCode.LOCK_OPERATION_TIMEOUT,
    AcquireLock: ErrorCode.LOCK_OPERATION_TIMEOUT,
    ReleaseLock: ErrorCode.LOCK_OPERATION_TIMEOUT,
    RevokeLock: ErrorCode.LOCK_OPERATION_TIMEOUT,
    GetLocks: ErrorCode.LOCK_OPERATION_TIMEOUT,
    CancelAcquire: ErrorCode.LOCK_OPERATION_TIMEOUT,
}


def timeout_code(request: Request) -> ErrorCode:
    """The official code a request raises when no reply comes within the request timeout."""
    return _TIMEOUT_CODES.get(type(request), ErrorCode.NOT_CONNECTED)


# A login refused with one of these codes ends in FAILED with the matching reason.
LOGIN_FAILURE_REASONS: dict[int, ConnectionChangeReason] = {
    ErrorCode.INVALID_TOKEN: ConnectionChangeReason.INVALID_TOKEN,
    ErrorCode.TOKEN_EXPIRED: ConnectionChangeReason.TOKEN_EXPIRED,
    ErrorCode.INVALID_APP_ID: ConnectionChangeReason.INVALID_APP_ID,
    ErrorCode.INCONSISTENT_APPID: ConnectionChangeReason.INCONSISTENT_APPID,
}

# Kick reasons after which retrying with the same credentials cannot succeed.
TERMINAL_REASONS = frozenset(
    {
        ConnectionChangeReason.SAME_UID_LOGIN,
        ConnectionChangeReason.TOKEN_EXPIRED,
        ConnectionChangeReason.INVALID_TOKEN,
        ConnectionChangeReason.BANNED_BY_SERVER,
        ConnectionChangeReason.REJECTED_BY_SERVER,
        ConnectionChangeReason.INVALID_APP_ID,
        ConnectionChangeReason.INCONSISTENT_APPID,
    }
)
