"""The console's logins: a key exchanged for a session cookie, kept server-side.

The cookie holds a random token only (the key never reaches the browser's storage); the node
keeps what the token opens, until it expires. Writes made with the cookie must echo the
session's CSRF token in ``X-CSRF-Token``: another site can make a browser send the cookie
(SameSite=Strict already refuses that in current browsers), never read and send that token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["COOKIE", "CSRF_HEADER", "ConsoleSession", "ConsoleSessions"]

COOKIE = "rtm2_console"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class ConsoleSession:
    owner: str  # "*" (the admin key) or the app id its key opens
    csrf: str
    expires: float  # idle expiry, pushed on with each use
    ends: float  # absolute expiry


class ConsoleSessions:
    """Sessions by the SHA-256 of their token, the oldest dropped past ``limit``."""

    def __init__(
        self,
        idle: float = 30 * 60,
        lifetime: float = 12 * 3600,
        limit: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle = idle
        self.lifetime = lifetime
        self.limit = limit
        self._clock = clock
        self._by_token: OrderedDict[bytes, ConsoleSession] = OrderedDict()

    @staticmethod
    def _id(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def open(self, owner: str) -> tuple[str, ConsoleSession]:
        """A new session for ``owner``: its cookie token, and the session."""
        now = self._clock()
        self._expire(now)
        while len(self._by_token) >= self.limit:
            self._by_token.popitem(last=False)
        token = secrets.token_urlsafe(32)
        session = ConsoleSession(
            owner, secrets.token_urlsafe(32), now + self.idle, now + self.lifetime
        )
        self._by_token[self._id(token)] = session
        return token, session

    def get(self, token: str) -> ConsoleSession | None:
        """The live session of ``token`` (its idle expiry pushed on), or None."""
        if not token:
            return None
        key = self._id(token)
        session = self._by_token.get(key)
        if session is None:
            return None
        now = self._clock()
        if now >= session.expires or now >= session.ends:
            del self._by_token[key]
            return None
        session.expires = min(now + self.idle, session.ends)
        return session

    def close(self, token: str) -> None:
        self._by_token.pop(self._id(token), None)

    def __len__(self) -> int:
        return len(self._by_token)

    def _expire(self, now: float) -> None:
        dead = [k for k, s in self._by_token.items() if now >= s.expires or now >= s.ends]
        for k in dead:
            del self._by_token[k]

    @staticmethod
    def csrf_ok(session: ConsoleSession, method: str, given: str) -> bool:
        """Whether a request of ``method`` with ``given`` in the CSRF header may go on."""
        if method.upper() in SAFE_METHODS:
            return True
        return bool(given) and hmac.compare_digest(given.encode(), session.csrf.encode())
