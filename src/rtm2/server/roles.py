"""The narrow roles server services depend on, instead of the whole Hub.

Each role is a ``typing.Protocol``: a service names the few operations it uses, the Hub (the
node's composition root) provides them, and a test can hand a service a small fake instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .session import Session

__all__ = ["SessionListener"]


class SessionListener(Protocol):
    """A service that keeps state per session: told once when a session ends for good."""

    def on_session_end(self, s: Session, timed_out: bool) -> None:
        """``s`` logged out, was evicted or kicked, or ``timed_out``: its connection stayed
        away longer than its presence timeout."""
