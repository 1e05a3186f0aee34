"""Name rules for user ids (and, later, channels and topics), per the RTM 2 limits."""

from __future__ import annotations

import string

__all__ = ["MAX_USER_ID_LENGTH", "is_valid_user_id"]

MAX_USER_ID_LENGTH = 64

# RTM 2 allows these in user ids. "." and a leading "_" are refused, as RTM 2's migration guide
# says 2.x does not support them; a leading or trailing space cannot be addressed over REST.
_USER_ID_CHARS = frozenset(string.ascii_letters + string.digits + " !#$%&()+-:;<=>?@[]^_{}|~,")


def is_valid_user_id(user_id: str) -> bool:
    return (
        0 < len(user_id) <= MAX_USER_ID_LENGTH
        and not user_id.startswith("_")
        and user_id.strip(" ") == user_id
        and all(c in _USER_ID_CHARS for c in user_id)
    )
