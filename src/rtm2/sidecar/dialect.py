"""The Go SDK's 2.1.x dialect next to rtm2's: URIs, enum values and error codes (no I/O).

rtm2 numbers its enums like RTM 2 GA, which is what the Go SDK's 2.1.x dialect uses too
(``None=0`` first, so MESSAGE=1, STREAM=2, USER=3, SNAPSHOT=1 ...): those pass unchanged. The
differences are the stream priority (Go HIGHEST..LOW = 0..3), three connection-change reasons
and the error codes rtm2 has beyond the Go SDK's table (10001-10019, 11001-11033, 12001-12019,
13001-13013, 14001-14009), which are sent as their nearest code in that table.
"""

from __future__ import annotations

from enum import IntEnum

from ..errors import ErrorCode
from ..types import ConnectionChangeReason, StreamPriority

__all__ = ["EVENT_URIS", "Uri", "go_error_code", "go_reason", "rtm2_priority"]


class Uri(IntEnum):
    """The URIs of the Go SDK's sidecar protocol (requests, and the events it pushes)."""

    MESSAGE_SUBSCRIBE = 0
    MESSAGE_UNSUBSCRIBE = 1
    MESSAGE_PUBLISH = 2
    MESSAGE_EVENT = 3
    STREAM_JOIN = 4
    STREAM_LEAVE = 5
    STREAM_JOIN_TOPIC = 6
    STREAM_LEAVE_TOPIC = 7
    STREAM_PUBLISH = 8
    STREAM_EVENT = 9
    STREAM_TOPIC_EVENT = 10
    STREAM_SUB_TOPIC = 11
    STREAM_UNSUB_TOPIC = 12
    STORAGE_OP_CHANNEL = 24
    STORAGE_GET_CHANNEL = 25
    STORAGE_OP_USER = 26
    STORAGE_GET_USER = 27
    STORAGE_SUBSCRIBE_USER = 28
    STORAGE_UNSUBSCRIBE_USER = 29
    STORAGE_CHANNEL_EVENT = 30
    STORAGE_USER_EVENT = 31
    PRESENCE_WHERE_NOW = 36
    PRESENCE_WHO_NOW = 37
    PRESENCE_SET_STATE = 38
    PRESENCE_GET_STATE = 39
    PRESENCE_REMOVE_STATE = 40
    PRESENCE_EVENT = 41
    LOGIN = 100
    LOGOUT = 101
    CONNECTION_STATE_CHANGE = 102
    SET_PARAMS = 103
    RENEW_TOKEN = 104
    LOCK_ACQUIRE = 105
    LOCK_GET = 106
    LOCK_RELEASE = 107
    LOCK_REMOVE = 108
    LOCK_REVOKE = 109
    LOCK_SET = 110
    LOCK_EVENT = 111
    TOKEN_PRIVILEGE_EXPIRE = 112


EVENT_URIS = frozenset(
    {
        Uri.MESSAGE_EVENT,
        Uri.STREAM_EVENT,
        Uri.STREAM_TOPIC_EVENT,
        Uri.STORAGE_CHANNEL_EVENT,
        Uri.STORAGE_USER_EVENT,
        Uri.PRESENCE_EVENT,
        Uri.CONNECTION_STATE_CHANGE,
        Uri.LOCK_EVENT,
        Uri.TOKEN_PRIVILEGE_EXPIRE,
    }
)

_PRIORITIES = (
    StreamPriority.HIGHEST,
    StreamPriority.HIGH,
    StreamPriority.NORMAL,
    StreamPriority.LOW,
)


def rtm2_priority(go_priority: int) -> StreamPriority:
    """Go's StreamPriority (HIGHEST=0, HIGH=1, NORMAL=2, LOW=3) as rtm2's (0, 1, 4, 8).

    Go's zero value is HIGHEST; an unknown value is taken as NORMAL, RTM's default.
    """
    if 0 <= go_priority < len(_PRIORITIES):
        return _PRIORITIES[go_priority]
    return StreamPriority.NORMAL


# rtm2 reasons whose Go 2.1.x number differs (Go: 22 StreamChannelNotAvailable,
# 23 InconsistentAppid; it has no certificate-verification reason).
_REASONS = {
    ConnectionChangeReason.CERTIFICATION_VERIFY_FAILURE: ConnectionChangeReason.REJECTED_BY_SERVER,
    ConnectionChangeReason.STREAM_CHANNEL_NOT_AVAILABLE: 22,
    ConnectionChangeReason.INCONSISTENT_APPID: 23,
}


def go_reason(reason: int) -> int:
    """rtm2's ConnectionChangeReason as the Go SDK's 2.1.x number."""
    return int(_REASONS.get(ConnectionChangeReason(reason), reason))


# rtm2 codes outside the Go SDK's 2.1 table, as the nearest code in it.
_CODES = {
    ErrorCode.INVALID_ENCRYPTION_PARAMETER: ErrorCode.INVALID_PARAMETER,
    ErrorCode.OPERATION_RATE_EXCEED_LIMITATION: ErrorCode.CHANNEL_PUBLISH_MESSAGE_TOO_FREQUENT,
    ErrorCode.SERVICE_NOT_SUPPORTED: ErrorCode.INVALID_PARAMETER,
    ErrorCode.LOGIN_CANCELED: ErrorCode.LOGIN_ABORTED,
    ErrorCode.INVALID_PRIVATE_CONFIG: ErrorCode.INVALID_PARAMETER,
    ErrorCode.NOT_CONNECTED: ErrorCode.CHANNEL_NOT_CONNECTED,
    ErrorCode.RENEW_TOKEN_TIMEOUT: ErrorCode.LOGIN_TIMEOUT,
    ErrorCode.CHANNEL_JOIN_CANCELED: ErrorCode.CHANNEL_JOIN_FAILED,
    ErrorCode.CHANNEL_RECEIVER_OFFLINE_BUT_STORE_SUCCEEDED: ErrorCode.CHANNEL_RECEIVER_OFFLINE,
    ErrorCode.CHANNEL_RECEIVER_OFFLINE_AND_STORE_FAILED: ErrorCode.CHANNEL_RECEIVER_OFFLINE,
    ErrorCode.CHANNEL_MESSAGE_DELIVERED_BUT_STORE_FAILED: ErrorCode.CHANNEL_PUBLISH_MESSAGE_FAILED,
}


# The Go SDK's 2.1 table: the last code of each thousand, and the generic failure of that
# thousand for codes it does not know (rtm2's history codes, for example).
_TABLE = {10: (10019, 10014), 11: (11033, 11006), 12: (12019, 12001), 13: (13013, 13013)}
_TABLE[14] = (14009, 14001)


def go_error_code(code: int) -> int:
    """An rtm2 error code as the Go SDK's 2.1 table has it (most are the same number)."""
    if code == 0:
        return 0
    mapped = _CODES.get(code)  # type: ignore[call-overload]
    if mapped is not None:
        return int(mapped)
    last, generic = _TABLE.get(code // 1000, (0, ErrorCode.INVALID_PARAMETER))
    return code if code % 1000 and code <= last else int(generic)
