"""LoginCore: the decisions of a client's login lifecycle, without I/O.

Which state the client is in, whether a call may go ahead, what a lost connection or a failed
reconnection attempt leads to, which frames a handshake sends and what its replies change: all
decided here, from values, so unit tests check them without sockets or an event loop. The
asyncio ``lifecycle.ClientSession`` drives it: it connects, sends, sleeps and reports events as
the core says (the shape of websockets' ``protocol.py`` driven by ``asyncio/connection.py``).
"""

from __future__ import annotations

from enum import Enum
from typing import Any, NamedTuple

from ..errors import ErrorCode, RTMError
from ..protocol.codes import LOGIN_FAILURE_REASONS, TERMINAL_REASONS
from ..protocol.frames import Login, LoginResult, Position, Resume, ResumeResult
from ..protocol.names import is_valid_user_id
from ..types import ConnectionChangeReason
from .config import PARAM_ENDPOINT, RTMConfig
from .offsets import OffsetBook
from .reconnect import FATAL_CODES

__all__ = ["Failure", "LoginCore", "Phase", "endpoints", "failure_reason", "unreachable"]

_PRESENCE_TIMEOUT_RANGE = (5, 300)
# Codes after which a login at another endpoint may work.
_UNREACHABLE = frozenset({ErrorCode.NOT_CONNECTED, ErrorCode.LOGIN_TIMEOUT})


class Phase(Enum):
    IDLE = "idle"
    LOGGING_IN = "logging in"
    LOGGED_IN = "logged in"
    RECONNECTING = "reconnecting"
    FAILED = "failed"


class Failure(NamedTuple):
    """The session is over for good: report FAILED with ``reason`` and ``code``."""

    reason: ConnectionChangeReason
    code: int
    message: str


def failure_reason(code: int) -> ConnectionChangeReason:
    """The connection-change reason reported with FAILED when a login is refused."""
    if code in _UNREACHABLE:
        return ConnectionChangeReason.LOST
    return LOGIN_FAILURE_REASONS.get(code, ConnectionChangeReason.REJECTED_BY_SERVER)


def unreachable(code: int) -> bool:
    """Whether a login that failed with ``code`` may work at another endpoint."""
    return code in _UNREACHABLE


def endpoints(params: dict[str, Any], sidecar_url: str) -> list[str]:
    """The endpoints to try in turn: the configured ones, or the sidecar."""
    value = params.get(PARAM_ENDPOINT)
    if value is None:
        return [sidecar_url] if sidecar_url else []
    return [value] if isinstance(value, str) else list(value)


class LoginCore:
    """One client's login state, with every decision about it."""

    def __init__(self) -> None:
        self.phase = Phase.IDLE
        self.session_id = ""
        self.resume_token = ""
        self.login_token = ""
        self.expires_at = 0
        self.offsets = OffsetBook()

    # --- what may happen now ---------------------------------------------------------------

    @property
    def in_session(self) -> bool:
        """Logged in, connected or reconnecting: requests may be made."""
        return self.phase in (Phase.LOGGED_IN, Phase.RECONNECTING)

    def require_login(self) -> None:
        """Raise NOT_LOGIN unless logged in (connected, or reconnecting)."""
        if not self.in_session:
            raise RTMError(ErrorCode.NOT_LOGIN, f"client is {self.phase.value}; log in first")

    def require_connected(self, has_link: bool) -> None:
        """Raise NOT_LOGIN unless logged in with a connection (after waiting for one)."""
        if self.phase is not Phase.LOGGED_IN or not has_link:
            raise RTMError(ErrorCode.NOT_LOGIN, f"client is {self.phase.value}; log in first")

    def reconnectable(self, has_link: bool) -> bool:
        """Whether a lost connection is being (or will be) brought back."""
        return self.phase is Phase.RECONNECTING or (self.phase is Phase.LOGGED_IN and not has_link)

    # --- login and logout ------------------------------------------------------------------

    def begin_login(self, config: RTMConfig) -> None:
        """A login starts (or is refused before anything is sent)."""
        if self.phase is not Phase.IDLE:
            raise RTMError(ErrorCode.DUPLICATE_OPERATION, f"client is {self.phase.value}")
        if not is_valid_user_id(config.user_id):
            raise RTMError(ErrorCode.INVALID_USER_ID, f"invalid user id {config.user_id!r}")
        if not config.app_id:
            raise RTMError(ErrorCode.INVALID_APP_ID, "app id is empty")
        self.phase = Phase.LOGGING_IN

    def login_failed(self) -> None:
        self.phase = Phase.IDLE

    def login_done(self, token: str) -> None:
        self.login_token = token
        self.phase = Phase.LOGGED_IN

    def token_renewed(self, token: str, result: LoginResult) -> None:
        self.expires_at = result.expires_at
        self.login_token = token

    def begin_logout(self) -> bool:
        """Back to IDLE; returns whether a session was on (and so gets a LOGOUT event)."""
        if self.phase is Phase.LOGGING_IN:
            raise RTMError(ErrorCode.DUPLICATE_OPERATION, "a login is in progress")
        was_logged_in = self.in_session
        self.phase = Phase.IDLE
        return was_logged_in

    # --- the handshake ---------------------------------------------------------------------

    def resume_frame(self, rid: int, config: RTMConfig) -> Resume:
        """Take the lost session over, asking for every message missed since our positions."""
        return Resume(
            rid,
            config.app_id,
            config.user_id,
            self.session_id,
            self.resume_token,
            self.offsets.positions(),
        )

    def login_frame(self, rid: int, config: RTMConfig, token: str) -> Login:
        low, high = _PRESENCE_TIMEOUT_RANGE
        presence_timeout = min(max(config.presence_timeout, low), high)
        return Login(rid, config.app_id, config.user_id, token, presence_timeout)

    @staticmethod
    def resume_refused(code: int) -> bool:
        """A refused resume means "log in instead"; anything else fails the attempt."""
        return code == ErrorCode.LOGIN_REJECTED

    def resumed(self, result: ResumeResult) -> list[Position]:
        """The session is back; returns the positions whose missed messages are lost."""
        self.expires_at = result.expires_at
        if result.resume_token:  # the old one no longer works
            self.resume_token = result.resume_token
        return list(result.unrecovered)

    def new_session(self, result: LoginResult) -> None:
        self.session_id = result.session_id
        self.resume_token = result.resume_token
        # The offsets we hold were counted in the old epoch: a restore recovers from them.
        self.offsets.new_epoch(result.epoch)
        self.expires_at = result.expires_at

    # --- losing the connection -------------------------------------------------------------

    def connection_lost(
        self, reason: ConnectionChangeReason, message: str, auto_reconnect: bool
    ) -> Failure | bool:
        """The connection ended without our asking: a Failure, True to reconnect, or False
        when there is nothing to do (not logged in and connected)."""
        if self.phase is not Phase.LOGGED_IN:
            return False
        if reason in TERMINAL_REASONS or not auto_reconnect:
            return self.fail(reason, message)
        self.phase = Phase.RECONNECTING
        return True

    def fail(self, reason: ConnectionChangeReason, message: str, code: int = 0) -> Failure:
        """The session is over for good (FAILED); the application must log in again."""
        self.phase = Phase.FAILED
        if not code:
            code = ErrorCode.NOT_CONNECTED
            if reason is ConnectionChangeReason.SAME_UID_LOGIN:
                code = ErrorCode.LOGIN_ABORTED
            elif reason is ConnectionChangeReason.TOKEN_EXPIRED:
                code = ErrorCode.TOKEN_EXPIRED
        return Failure(reason, code, message)

    @property
    def reconnecting(self) -> bool:
        return self.phase is Phase.RECONNECTING

    def attempt_failed(
        self, error: RTMError, elapsed: float, give_up_after: float
    ) -> Failure | None:
        """A reconnection attempt failed: a Failure to stop, or None to try again."""
        if error.code in FATAL_CODES:
            return self.fail(failure_reason(error.code), error.reason, error.code)
        if give_up_after and elapsed > give_up_after:
            return self.fail(ConnectionChangeReason.LOST, "gave up reconnecting")
        return None

    def reconnected(self) -> bool:
        """An attempt succeeded; False if the client was logged out meanwhile."""
        if self.phase is not Phase.RECONNECTING:
            return False
        self.phase = Phase.LOGGED_IN
        return True
