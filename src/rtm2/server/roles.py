"""The narrow roles server services depend on, instead of the whole Hub.

Each role is a ``typing.Protocol``: a service names the few operations it uses, the Hub (the
node's composition root) hands it the objects that play them, and a test can hand it small
fakes instead.

- ``ChannelFeatures``: what entering and leaving any channel means beyond membership:
  presence, metadata listening, and the locks its user holds there (``features.Features``).
- ``Replayer``: where a subscription starts, and the replay of what a client missed
  (``replay.Replay``).
- ``PeerDirectory``: the session of a user on this node, for peer messages (the Hub).
- ``SessionRegistry``: the node's sessions: open, log in, resume, lose a connection, end
  (the Hub); ``SessionListener`` is what a service that keeps per-session state registers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, NamedTuple, Protocol

from ..protocol.frames import LockDetail, MetadataResult

if TYPE_CHECKING:
    import msgspec

    from ..protocol.frames import Position, Resume, StreamJoin, Subscribe
    from .config import AppConfig
    from .metrics import Counts
    from .session import Session
    from .table import Routes

__all__ = [
    "ChannelFeatures",
    "Entered",
    "PeerDirectory",
    "Replayer",
    "SessionListener",
    "SessionRegistry",
]


class Entered(NamedTuple):
    """What a session that entered a channel is told about it (None: it did not ask)."""

    presence: dict[str, dict[str, str]]  # everyone present, self included, with their states
    metadata: MetadataResult | None
    locks: list[LockDetail] | None


class ChannelFeatures(Protocol):
    async def enter(self, s: Session, subject: str, f: StreamJoin | Subscribe) -> Entered:
        """The session's user is in the channel now, with the features ``f`` asks for."""

    def leave(self, s: Session, subject: str, timed_out: bool = False) -> None:
        """The session's user left the channel (``timed_out``: its connection stayed away
        longer than its presence timeout)."""


class Replayer(Protocol):
    async def position(self, subject: str, topic: str) -> int:
        """Where (subject, topic) is now: messages after it are a new subscriber's."""

    async def answer_recovering(
        self,
        s: Session,
        rid: int,
        since: Position | None,
        result: Callable[[bool], msgspec.Struct],
    ) -> None:
        """Reply ``result(recovered)``; what the client missed since ``since`` follows."""

    def replay(
        self, s: Session, positions: list[Position], answer: Callable[[list[Position]], bytes]
    ) -> Coroutine[None, None, None] | None:
        """Send ``answer(lost)``, then what ``s`` missed after each position (a coroutine
        when the engine must be asked)."""


class PeerDirectory(Protocol):
    def find(self, app: str, user: str) -> Session | None:
        """The user's logged-in session on this node, if it is here (attached or not)."""


class SessionListener(Protocol):
    """A service that keeps state per session: told once when a session ends for good."""

    def on_session_end(self, s: Session, timed_out: bool) -> None:
        """``s`` logged out, was evicted or kicked, or ``timed_out``: its connection stayed
        away longer than its presence timeout."""


class SessionRegistry(Protocol):
    """The node's sessions, as sessions and their handshake see them."""

    @property
    def routes(self) -> Routes:
        """Every request's handler (``table.bind``), shared by all sessions."""

    @property
    def counts(self) -> Counts:
        """The node's counters (``metrics``) that sessions bump: durations, errors."""

    def clock(self) -> float: ...

    def attach(self, session: Session) -> None:
        """A connection opened."""

    def connection_lost(self, session: Session, reason: str = "connection lost") -> None: ...

    def authenticate(self, app_id: str, user_id: str, token: str) -> tuple[AppConfig, int]:
        """The app and when the login right ends (0 = never), or an RTMError."""

    def check_ban(self, app_id: str, user_id: str) -> Awaitable[None] | None:
        """After ``authenticate``: None, or what to await (raising LOGIN_REJECTED for a
        banned user) before the login goes on."""

    def login(self, session: Session) -> None: ...

    def resume(self, fresh: Session, f: Resume) -> Session:
        """The session ``f`` names, now on ``fresh``'s connection, or an RTMError."""

    def logout(self, session: Session) -> None: ...

    def add_listener(self, listener: SessionListener) -> None:
        """Tell ``listener`` of every session's end from now on."""
