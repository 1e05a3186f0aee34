"""Subjects name a channel across nodes: ``msg:<app>:<channel>`` and ``stream:<app>:<channel>``.

App ids are 32 hex characters, so the first two colons always split a subject correctly even
though channel names may contain colons.
"""

from __future__ import annotations

from ..errors import ErrorCode, RTMError
from ..protocol.names import is_valid_channel_name
from ..types import ChannelType

__all__ = ["channel_subject", "parse_subject", "subject"]

_PREFIX = {ChannelType.MESSAGE: "msg", ChannelType.STREAM: "stream"}
_TYPE = {prefix: ctype for ctype, prefix in _PREFIX.items()}


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
