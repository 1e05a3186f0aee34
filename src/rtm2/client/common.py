"""Small pieces the SDK's channel-facing modules share."""

from __future__ import annotations

from ..errors import ErrorCode, RTMError
from ..types import ChannelType, MessageType

__all__ = ["message_payload", "not_in_channel_code"]


def message_payload(message: object) -> tuple[bytes, int]:
    """The wire payload and message type of a message: ``str`` is STRING (UTF-8), bytes-like
    is BINARY; anything else is CHANNEL_INVALID_MESSAGE."""
    if isinstance(message, str):
        return message.encode(), MessageType.STRING.value
    if isinstance(message, bytes | bytearray | memoryview):
        return bytes(message), MessageType.BINARY.value
    raise RTMError(ErrorCode.CHANNEL_INVALID_MESSAGE, "message must be bytes or str")


def not_in_channel_code(channel_type: ChannelType) -> ErrorCode:
    """The code for "not in this channel": a stream channel is joined, a message channel is
    subscribed."""
    if channel_type == ChannelType.STREAM:
        return ErrorCode.CHANNEL_NOT_JOINED
    return ErrorCode.CHANNEL_NOT_SUBSCRIBED
