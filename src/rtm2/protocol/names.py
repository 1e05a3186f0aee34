"""Name rules for user ids, channels, topics and custom types, per the RTM 2 limits.

The rules follow Agora's public Signaling 2.x docs:

* lengths: "API usage restrictions", https://docs.agora.io/en/signaling/reference/limitations;
* allowed characters: the channel name and user id descriptions of the API reference,
  https://docs.agora.io/en/signaling/reference/api;
* no "." in user ids and no leading "_": the 1.x to 2.x "Migration guide",
  https://docs.agora.io/en/signaling/overview/migration-guide.
"""

from __future__ import annotations

import string

__all__ = [
    "MAX_CHANNEL_NAME_LENGTH",
    "MAX_CUSTOM_TYPE_LENGTH",
    "MAX_TOPIC_META_LENGTH",
    "MAX_TOPIC_NAME_LENGTH",
    "MAX_USER_ID_LENGTH",
    "is_valid_channel_name",
    "is_valid_custom_type",
    "is_valid_topic_name",
    "is_valid_user_id",
]

MAX_USER_ID_LENGTH = 64
MAX_CHANNEL_NAME_LENGTH = 64
MAX_TOPIC_NAME_LENGTH = 16
MAX_CUSTOM_TYPE_LENGTH = 32
MAX_TOPIC_META_LENGTH = 256

# RTM 2 allows these in user ids. "." and a leading "_" are refused, as RTM 2's migration guide
# says 2.x does not support them; a leading or trailing space cannot be addressed over REST.
_USER_ID_CHARS = frozenset(string.ascii_letters + string.digits + " !#$%&()+-:;<=>?@[]^_{}|~,")
# Channel and topic names: printable ASCII except . * / \ (and no NUL or control characters).
_NAME_CHARS = frozenset(string.ascii_letters + string.digits + " !#$%&()+,-:;<=>?@[]^_{|}~`")
_PRINTABLE = frozenset(chr(c) for c in range(0x20, 0x7F))


def is_valid_user_id(user_id: str) -> bool:
    return (
        0 < len(user_id) <= MAX_USER_ID_LENGTH
        and not user_id.startswith("_")
        and user_id.strip(" ") == user_id
        and _USER_ID_CHARS.issuperset(user_id)
    )


def _is_valid_name(name: str, limit: int) -> bool:
    # ``issuperset`` walks the characters in C: a generator in ``all()`` cost ~2,700
    # instructions per publish for a 5-character name (callgrind), more for longer ones.
    return 0 < len(name) <= limit and not name.startswith("_") and _NAME_CHARS.issuperset(name)


def is_valid_channel_name(name: str) -> bool:
    return _is_valid_name(name, MAX_CHANNEL_NAME_LENGTH)


def is_valid_topic_name(name: str) -> bool:
    return _is_valid_name(name, MAX_TOPIC_NAME_LENGTH)


def is_valid_custom_type(custom_type: str) -> bool:
    """Printable ASCII only; the length limit has its own error code and is checked apart."""
    return _PRINTABLE.issuperset(custom_type)
