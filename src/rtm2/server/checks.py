"""Checks every published message passes, whatever the channel type."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ErrorCode, RTMError
from ..protocol.names import MAX_CUSTOM_TYPE_LENGTH, is_valid_custom_type
from ..types import ChannelType, MessageType
from .subjects import channel_subject

if TYPE_CHECKING:
    from .config import AppConfig

__all__ = ["check_message", "check_server_publish"]

# Module globals, not ``MessageType.STRING``: on Python 3.11 an enum member read through its
# class goes through the class's ``__getattr__`` hook, and this runs once per message.
_STRING = MessageType.STRING
_BINARY = MessageType.BINARY


def check_message(payload: bytes, message_type: int, custom_type: str, max_size: int) -> None:
    """Raise the RTM error for a message the server must refuse; return if it may go."""
    if custom_type:
        if len(custom_type) > MAX_CUSTOM_TYPE_LENGTH:
            raise RTMError(
                ErrorCode.CHANNEL_CUSTOM_TYPE_LENGTH_OVERFLOW,
                f"custom_type over {MAX_CUSTOM_TYPE_LENGTH} characters",
            )
        if not is_valid_custom_type(custom_type):
            raise RTMError(ErrorCode.CHANNEL_INVALID_CUSTOM_TYPE, "custom_type is not ASCII")
    if len(payload) + len(custom_type) > max_size:
        raise RTMError(
            ErrorCode.CHANNEL_MESSAGE_LENGTH_EXCEED_LIMITATION,
            f"message over {max_size} bytes (payload + custom_type)",
        )
    if message_type == _STRING:
        try:
            payload.decode()
        except UnicodeDecodeError:
            raise RTMError(ErrorCode.CHANNEL_INVALID_MESSAGE, "text is not UTF-8") from None
    elif message_type != _BINARY:
        raise RTMError(ErrorCode.CHANNEL_UNSUPPORTED_MESSAGE_TYPE, "unknown message type")


def check_server_publish(
    app: AppConfig, channel: str, payload: bytes, message_type: int, custom_type: str
) -> str:
    """The subject of a message channel the app's backend publishes to, once the message and
    the channel name pass the checks a client's publish passes (the stored and the plain
    ``publish_from_server`` share them, so they refuse the same input the same way)."""
    check_message(payload, message_type, custom_type, app.limits.message_size)
    return channel_subject(app.app_id, channel, ChannelType.MESSAGE)
