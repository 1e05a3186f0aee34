"""The session's state machine in one table: which request is allowed in which state, who
handles it, what a refused one is told, and which state changes are legal.

States::

    NEW --hello--> OPEN --login--> LOGGED_IN --connection lost--> DETACHED
                                   LOGGED_IN <--------resume------ DETACHED
    any state but CLOSED --logout, kick, eviction, timeout, connection ends--> CLOSED

A CLOSED session handles nothing and answers nothing (``Session`` drops the frame before the
table is asked): no request may bring an ended session back to life.

DETACHED is a logged-in session whose connection is gone: it stays (present, holding its
channels) for its presence timeout, and a Resume on a new connection takes it back. The
OPEN session that sent that Resume is closed: its connection now belongs to the resumed one.

Everything here is plain data and pure functions, so the rules are tested without sockets
(``tests/server/test_session_table.py``); ``Session`` looks a frame up with one dictionary
access (the publish hot path included) and calls the handler bound to it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import IntEnum
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

from ..errors import ErrorCode
from ..protocol.frames import (
    AcquireLock,
    CancelAcquire,
    ChannelMetadataWrite,
    ClientFrame,
    GetChannelMetadata,
    GetHistory,
    GetLocks,
    GetState,
    GetUserMetadata,
    Hello,
    JoinTopic,
    LeaveTopic,
    Login,
    Logout,
    Ping,
    Publish,
    PublishTopic,
    ReleaseLock,
    RemoveLock,
    RemoveState,
    RenewToken,
    Resume,
    RevokeLock,
    SetLock,
    SetState,
    StreamJoin,
    StreamLeave,
    Subscribe,
    SubscribeTopic,
    SubscribeUserMetadata,
    Unsubscribe,
    UnsubscribeTopic,
    UnsubscribeUserMetadata,
    UserMetadataWrite,
    WhereNow,
    WhoNow,
)

if TYPE_CHECKING:
    from .handshake import Handshake
    from .history import HistoryService
    from .locks import LockService
    from .messages import MessageService
    from .presence import PresenceService
    from .session import Session
    from .storage import StorageService
    from .stream import StreamService

__all__ = [
    "ANY",
    "TABLE",
    "TRANSITIONS",
    "Handler",
    "IllegalTransition",
    "Refusal",
    "Routes",
    "Services",
    "SessionState",
    "allowed",
    "bind",
    "check_transition",
    "refusal",
]


class SessionState(IntEnum):
    NEW = 0
    OPEN = 1
    LOGGED_IN = 2
    # Logged in, but the connection is gone: kept (and present) for the presence timeout.
    DETACHED = 3
    CLOSED = 4


NEW, OPEN, LOGGED_IN, DETACHED, CLOSED = SessionState

# Legal state changes; anything else is a bug in the server, never a client's doing.
TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    NEW: frozenset({OPEN, CLOSED}),
    OPEN: frozenset({LOGGED_IN, CLOSED}),
    LOGGED_IN: frozenset({DETACHED, CLOSED}),
    DETACHED: frozenset({LOGGED_IN, CLOSED}),
    CLOSED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A state change the table does not allow was attempted."""


def check_transition(current: SessionState, to: SessionState) -> SessionState:
    """``to``, if a session in ``current`` may move there; IllegalTransition otherwise."""
    if to not in TRANSITIONS[current]:
        raise IllegalTransition(f"session cannot go from {current.name} to {to.name}")
    return to


# --- requests ----------------------------------------------------------------------------------


class Services(Protocol):
    """What request handlers are bound to, once per node (the Hub provides it)."""

    @property
    def handshake(self) -> Handshake: ...
    @property
    def stream(self) -> StreamService: ...
    @property
    def messages(self) -> MessageService: ...
    @property
    def presence(self) -> PresenceService: ...
    @property
    def storage(self) -> StorageService: ...
    @property
    def locks(self) -> LockService: ...
    @property
    def history(self) -> HistoryService: ...


# A handler answers the request itself, or returns an awaitable when the answer comes later
# (the session then holds the requests behind it until it is done).
Handler = Callable[["Session", Any], Awaitable[None] | None]
_F = TypeVar("_F")
_Binder = Callable[[Services], Callable[["Session", _F], Awaitable[None] | None]]

ANY = frozenset(SessionState)
_LOGGED_IN = frozenset({LOGGED_IN})
_AFTER_HELLO = frozenset({OPEN, LOGGED_IN, DETACHED})


class _Entry(NamedTuple):
    states: frozenset[SessionState]
    bind: Callable[[Services], Handler]


def _entry(frame: type[_F], states: frozenset[SessionState], bind: _Binder[_F]) -> _Entry:
    """One row; ``frame`` ties the handler's frame type to the row's key for the type checker."""
    return _Entry(states, bind)


# {frame type: (states that allow it, handler)}. A handler is bound to this node's services
# by ``bind``; the session's own requests are handled in ``handshake``.
TABLE: dict[type[ClientFrame], _Entry] = {
    PublishTopic: _entry(PublishTopic, _LOGGED_IN, lambda h: h.stream.publish),
    Publish: _entry(Publish, _LOGGED_IN, lambda h: h.messages.publish),
    # Not before Hello: a stranger gets nothing but the Welcome (issue 13, finding 1).
    Ping: _entry(Ping, _AFTER_HELLO, lambda h: h.handshake.ping),
    Hello: _entry(Hello, frozenset({NEW}), lambda h: h.handshake.hello),
    Login: _entry(Login, frozenset({OPEN}), lambda h: h.handshake.login),
    Resume: _entry(Resume, frozenset({OPEN}), lambda h: h.handshake.resume),
    RenewToken: _entry(RenewToken, _LOGGED_IN, lambda h: h.handshake.renew),
    Logout: _entry(Logout, _LOGGED_IN, lambda h: h.handshake.logout),
    # stream channels
    StreamJoin: _entry(StreamJoin, _LOGGED_IN, lambda h: h.stream.join),
    StreamLeave: _entry(StreamLeave, _LOGGED_IN, lambda h: h.stream.leave),
    JoinTopic: _entry(JoinTopic, _LOGGED_IN, lambda h: h.stream.join_topic),
    LeaveTopic: _entry(LeaveTopic, _LOGGED_IN, lambda h: h.stream.leave_topic),
    SubscribeTopic: _entry(SubscribeTopic, _LOGGED_IN, lambda h: h.stream.subscribe),
    UnsubscribeTopic: _entry(UnsubscribeTopic, _LOGGED_IN, lambda h: h.stream.unsubscribe),
    # message channels
    Subscribe: _entry(Subscribe, _LOGGED_IN, lambda h: h.messages.subscribe),
    Unsubscribe: _entry(Unsubscribe, _LOGGED_IN, lambda h: h.messages.unsubscribe),
    # presence
    WhoNow: _entry(WhoNow, _LOGGED_IN, lambda h: h.presence.who_now),
    WhereNow: _entry(WhereNow, _LOGGED_IN, lambda h: h.presence.where_now),
    SetState: _entry(SetState, _LOGGED_IN, lambda h: h.presence.set_state),
    RemoveState: _entry(RemoveState, _LOGGED_IN, lambda h: h.presence.set_state),
    GetState: _entry(GetState, _LOGGED_IN, lambda h: h.presence.get_state),
    # storage
    ChannelMetadataWrite: _entry(
        ChannelMetadataWrite, _LOGGED_IN, lambda h: h.storage.write_channel
    ),
    UserMetadataWrite: _entry(UserMetadataWrite, _LOGGED_IN, lambda h: h.storage.write_user),
    GetChannelMetadata: _entry(GetChannelMetadata, _LOGGED_IN, lambda h: h.storage.get_channel),
    GetUserMetadata: _entry(GetUserMetadata, _LOGGED_IN, lambda h: h.storage.get_user),
    SubscribeUserMetadata: _entry(
        SubscribeUserMetadata, _LOGGED_IN, lambda h: h.storage.subscribe_user
    ),
    UnsubscribeUserMetadata: _entry(
        UnsubscribeUserMetadata, _LOGGED_IN, lambda h: h.storage.unsubscribe_user
    ),
    # locks
    SetLock: _entry(SetLock, _LOGGED_IN, lambda h: h.locks.set),
    RemoveLock: _entry(RemoveLock, _LOGGED_IN, lambda h: h.locks.remove),
    AcquireLock: _entry(AcquireLock, _LOGGED_IN, lambda h: h.locks.acquire),
    ReleaseLock: _entry(ReleaseLock, _LOGGED_IN, lambda h: h.locks.release),
    RevokeLock: _entry(RevokeLock, _LOGGED_IN, lambda h: h.locks.revoke),
    GetLocks: _entry(GetLocks, _LOGGED_IN, lambda h: h.locks.get),
    CancelAcquire: _entry(CancelAcquire, _LOGGED_IN, lambda h: h.locks.cancel),
    # message history
    GetHistory: _entry(GetHistory, _LOGGED_IN, lambda h: h.history.get),
}

# What a session looks a frame up in: (states that allow it, the bound handler).
Routes = dict[type[ClientFrame], tuple[frozenset[SessionState], Handler]]


def bind(services: Services) -> Routes:
    """The table with every handler bound to one node's services (done once per node)."""
    return {frame: (e.states, e.bind(services)) for frame, e in TABLE.items()}


def allowed(state: SessionState) -> frozenset[type[ClientFrame]]:
    """The frame types a session in ``state`` handles."""
    return frozenset(frame for frame, e in TABLE.items() if state in e.states)


class Refusal(NamedTuple):
    """The reply to a request its session's state does not allow (nothing else changes)."""

    code: ErrorCode
    reason: str
    close: bool = False  # the connection is closed after the reply


def refusal(state: SessionState, frame: type[ClientFrame]) -> Refusal:
    """What a session in ``state`` answers a ``frame`` that ``TABLE`` does not allow there."""
    if frame is Hello:
        return Refusal(ErrorCode.DUPLICATE_OPERATION, "hello was already sent")
    if state is NEW:
        return Refusal(ErrorCode.INVALID_PARAMETER, "send hello first", close=True)
    if frame is Resume or (frame is Login and state in (LOGGED_IN, DETACHED)):
        return Refusal(ErrorCode.DUPLICATE_OPERATION, "already logged in")
    return Refusal(ErrorCode.NOT_LOGIN, "log in first")
