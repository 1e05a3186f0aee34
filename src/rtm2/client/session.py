"""The narrow roles the SDK's sub-APIs depend on, instead of the whole ``RTMClient``.

``Session`` is the logged-in connection as presence, storage and locks see it: send a request,
check the login, read the configuration. ``ChannelSession`` adds what a stream channel needs to
report on the client's event streams. ``ChannelFeatures`` is the per-channel state that follows
a user into and out of a channel (presence, metadata and lock views). ``lifecycle.ClientSession``
and ``client`` implement them; tests can implement them without a socket.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..errors import ErrorCode
from ..protocol.frames import Request, StreamJoinResult, SubscribeChannelResult
from ..types import ChannelType, ConnectionChangeReason, ConnectionState, RecoveryEvent

if TYPE_CHECKING:
    from .config import RTMConfig
    from .connection import Link
    from .offsets import OffsetBook
    from .streams import EventStream

__all__ = ["ChannelFeatures", "ChannelKey", "ChannelSession", "Session"]

T = TypeVar("T")
ChannelKey = tuple[ChannelType, str]


class Session(Protocol):
    """A client's login, as the sub-APIs use it."""

    @property
    def config(self) -> RTMConfig: ...

    @property
    def offsets(self) -> OffsetBook: ...

    def require_login(self) -> None:
        """Raise NOT_LOGIN unless logged in (connected, or reconnecting)."""

    async def request(
        self,
        make: Callable[[int], Request],
        result_type: type[T] | None,
        apply: Callable[[T | None], None] | None = None,
    ) -> T | None:
        """Send a request on the logged-in connection (see ``Link.request``)."""

    async def live_link(self) -> Link:
        """The connection, waiting (up to the request timeout) while the client reconnects."""

    def reconnectable(self) -> bool:
        """Whether a lost connection is being (or will be) brought back."""


class ChannelSession(Session, Protocol):
    """A client's login, as a stream channel uses it."""

    @property
    def log(self) -> logging.Logger: ...

    @property
    def login_token(self) -> str: ...

    def channel_event(
        self, state: ConnectionState, reason: ConnectionChangeReason, channel: str
    ) -> None:
        """Report a channel's connection change on the client's connection events."""

    def recovered(self, event: RecoveryEvent) -> None:
        """Report what a reconnection could not set up again, or may have lost."""

    def overflowed(self, stream: EventStream[Any]) -> None:
        """A stream the application does not read is full (report it on ``errors``)."""


class ChannelFeatures(Protocol):
    """What follows the user into and out of a channel: presence, metadata and lock views."""

    def state_for(self, key: ChannelKey) -> dict[str, str]:
        """The presence state to enter ``key`` with (set before entering, or kept)."""

    def entered(
        self,
        key: ChannelKey,
        result: SubscribeChannelResult | StreamJoinResult,
        with_presence: bool,
    ) -> None:
        """The user is now in a channel: start its views from the server's reply."""

    def left(self, key: ChannelKey, code: ErrorCode) -> None:
        """The user left a channel: its views end with ``code``."""
