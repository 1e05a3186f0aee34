"""The session's own requests: hello, login, resume, token renewal, logout, and ping.

``table`` decides in which states each may run; these handlers do the work and move the
session to its next state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .. import _version
from ..errors import ErrorCode, RTMError
from ..protocol.codec import encode_result
from ..protocol.codes import CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR
from ..protocol.frames import (
    PROTOCOL_VERSION,
    Hello,
    Login,
    LoginResult,
    Logout,
    Ping,
    Pong,
    Position,
    RenewToken,
    Resume,
    ResumeResult,
    Welcome,
)
from .auth import check_login_token
from .config import RTM_PRESENCE_TIMEOUT, AppConfig
from .session import reply_frame
from .table import SessionState

if TYPE_CHECKING:
    from .config import AppLimits, ServerConfig
    from .engines.base import RecoveryStore
    from .roles import Replayer, SessionRegistry
    from .session import Session

__all__ = ["Handshake"]

log = logging.getLogger("rtm2.server")


class Handshake:
    """Handlers of the requests that open, renew, resume and end a session."""

    def __init__(
        self,
        config: ServerConfig,
        sessions: SessionRegistry,
        replayer: Replayer,
        renew_stream: Callable[[Session, str, str], int],
        recovery: RecoveryStore,
    ) -> None:
        self.config = config
        self.sessions = sessions
        self.replayer = replayer
        # (session, stream channel, token) -> when the new token's right ends
        self._renew_stream = renew_stream
        self._recovery = recovery  # its epoch names the offsets a client may resume from

    @staticmethod
    def ping(s: Session, f: Ping) -> None:
        s.send(Pong(f.ts))

    def hello(self, s: Session, f: Hello) -> None:
        if f.version != PROTOCOL_VERSION:
            s.reply(
                f.rid,
                ErrorCode.SERVICE_NOT_SUPPORTED,
                f"protocol version {f.version} is not supported (server speaks {PROTOCOL_VERSION})",
            )
            s.conn.close(CLOSE_PROTOCOL_ERROR, "unsupported protocol version")
            return
        s.become(SessionState.OPEN)
        config = self.config
        welcome = Welcome(
            version=PROTOCOL_VERSION,
            server=f"rtm2/{_version.__version__}",
            heartbeat_interval=config.timers.heartbeat_interval,
            heartbeat_grace=config.timers.heartbeat_grace,
            max_frame_size=config.max_frame_size,
        )
        s.reply(f.rid, result=encode_result(welcome))

    def login(self, s: Session, f: Login) -> Awaitable[None] | None:
        app, expires_at = self.sessions.authenticate(f.app_id, f.user_id, f.token)
        pending = self.sessions.check_ban(f.app_id, f.user_id)
        if pending is None:  # no round trip: the embedded engine knows every ban
            self._log_in(s, f, app, expires_at)
            return None

        async def checked() -> None:
            await pending
            if s.state is SessionState.OPEN:  # not dropped meanwhile
                self._log_in(s, f, app, expires_at)

        return checked()

    def _log_in(self, s: Session, f: Login, app: AppConfig, expires_at: int) -> None:
        presence_timeout = presence_timeout_for(f.presence_timeout, app.limits)
        s.app = app
        s.user_id = f.user_id
        s.expires_at = expires_at
        s.warned = False
        s.presence_timeout = presence_timeout
        s.become(SessionState.LOGGED_IN)
        self.sessions.login(s)
        s.reply(f.rid, result=encode_result(self.login_result(s)))

    def resume(self, fresh: Session, f: Resume) -> Awaitable[None] | None:
        s = self.sessions.resume(fresh, f)

        # From here on this connection belongs to the resumed session ``s``: the reply, then
        # the missed messages, all before anything live.
        def answer(lost: list[Position]) -> bytes:
            result = ResumeResult(
                s.session_id, int(time.time() * 1000), s.expires_at, lost, s.resume_token
            )
            return reply_frame(f.rid, result=encode_result(result))

        return self.replayer.replay(s, f.positions, answer)

    def renew(self, s: Session, f: RenewToken) -> None:
        if f.channel:
            expires_at = self._renew_stream(s, f.channel, f.token)
            log.info("%r renewed its token for stream channel %s", s, f.channel)
            result = LoginResult(s.session_id, int(time.time() * 1000), expires_at)
            s.reply(f.rid, result=encode_result(result))
            return
        s.expires_at = check_login_token(s.app_config, f.token, s.user_id, int(time.time()))
        s.warned = False
        log.info("%r renewed its token (%s)", s, s.lifetime())
        s.reply(f.rid, result=encode_result(self.login_result(s)))

    def logout(self, s: Session, f: Logout) -> None:
        s.reply(f.rid)
        self.sessions.logout(s)
        s.conn.close(CLOSE_NORMAL, "logout")

    def login_result(self, s: Session) -> LoginResult:
        return LoginResult(
            s.session_id,
            int(time.time() * 1000),
            s.expires_at,
            s.resume_token,
            self._recovery.epoch,
        )


def presence_timeout_for(asked: int, limits: AppLimits) -> int:
    """Refuse what no RTM 2 client asks (nor the app allows); clamp the rest into the app's
    range, so that the SDK's own 5-300 s keeps working whatever range the app chose."""
    low, high = limits.presence_timeout_min, limits.presence_timeout_max
    if not min(low, RTM_PRESENCE_TIMEOUT[0]) <= asked <= max(high, RTM_PRESENCE_TIMEOUT[1]):
        raise RTMError(
            ErrorCode.INVALID_PARAMETER,
            f"presence_timeout {asked} is outside {RTM_PRESENCE_TIMEOUT[0]}-"
            f"{RTM_PRESENCE_TIMEOUT[1]} s",
        )
    return min(max(asked, low), high)
