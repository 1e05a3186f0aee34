"""Subjects name what bus events are about, across nodes: a channel (``msg:<app>:<channel>``,
``stream:<app>:<channel>``), a user's session (``session:<app>:<user>``: its peer messages and
login notices) or a user's metadata (``user:<app>:<user>``).

App ids are 32 hex characters, so the first two colons always split a subject correctly even
though channel names may contain colons.
"""

from __future__ import annotations

from enum import IntEnum

from ..errors import ErrorCode, RTMError
from ..protocol.names import is_valid_channel_name
from ..types import ChannelType

__all__ = [
    "SubjectKind",
    "channel_subject",
    "parse_subject",
    "session_subject",
    "subject",
    "subject_kind",
    "user_subject",
]


class SubjectKind(IntEnum):
    MESSAGE = 1  # a message channel
    STREAM = 2  # a stream channel
    SESSION = 3  # a user's session
    USER = 4  # a user's metadata


_PREFIX = {ChannelType.MESSAGE: "msg", ChannelType.STREAM: "stream"}
_TYPE = {prefix: ctype for ctype, prefix in _PREFIX.items()}
_KIND = {
    "msg": SubjectKind.MESSAGE,
    "stream": SubjectKind.STREAM,
    "session": SubjectKind.SESSION,
    "user": SubjectKind.USER,
}


def subject(app: str, channel_type: ChannelType, channel: str) -> str:
    return f"{_PREFIX[channel_type]}:{app}:{channel}"


def parse_subject(value: str) -> tuple[str, ChannelType, str]:
    """(app id, channel type, channel name) of a subject."""
    prefix, app, channel = value.split(":", 2)
    return app, _TYPE[prefix], channel


def channel_subject(app: str, channel: str, channel_type: int) -> str:
    """The subject of a message or stream channel named in a request, checked."""
    if channel_type not in (ChannelType.MESSAGE, ChannelType.STREAM):
        raise RTMError(ErrorCode.INVALID_CHANNEL_TYPE, "a message or stream channel is needed")
    if not is_valid_channel_name(channel):
        raise RTMError(ErrorCode.INVALID_CHANNEL_NAME, f"invalid channel name {channel!r}")
    return subject(app, ChannelType(channel_type), channel)


def session_subject(app: str, user: str) -> str:
    return f"session:{app}:{user}"


def user_subject(app: str, user: str) -> str:
    return f"user:{app}:{user}"


def subject_kind(value: str) -> SubjectKind:
    return _KIND[value.partition(":")[0]]
