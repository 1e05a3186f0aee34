"""When to retry a lost connection, and how long to wait between attempts."""

from __future__ import annotations

import random
from collections.abc import Iterator

from ..errors import ErrorCode

__all__ = ["FATAL_CODES", "backoff"]

# A refusal with one of these codes means the same credentials can never succeed: stop.
FATAL_CODES = frozenset(
    {
        ErrorCode.INVALID_TOKEN,
        ErrorCode.TOKEN_EXPIRED,
        ErrorCode.INVALID_APP_ID,
        ErrorCode.INCONSISTENT_APPID,
        ErrorCode.INVALID_USER_ID,
    }
)


def backoff(first: float, cap: float) -> Iterator[float]:
    """Capped exponential delays with full jitter: uniform in [d/2, d], d = first, 2·first, …

    Jitter spreads the clients of a restarted server over time instead of letting them all
    come back in the same instant.
    """
    delay = first
    while True:
        yield random.uniform(delay / 2, delay)
        delay = min(delay * 2, cap)
