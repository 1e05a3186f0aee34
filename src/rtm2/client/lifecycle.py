"""ClientSession: the login lifecycle of one client: log in, keep the session, reconnect.

It owns the connection (``Link``), the login state, the client's connection, token and error
streams and the ``OffsetBook``, and is the ``Session`` the sub-APIs send requests through. What
lives in channels is the client's: pushes go to ``on_push``; after a new session ``on_restore``
subscribes and joins again; on logout ``on_reset`` ends every channel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any, NamedTuple, TypeVar

from ..errors import ErrorCode, RTMError
from ..protocol.codes import LOGIN_FAILURE_REASONS, TERMINAL_REASONS
from ..protocol.frames import (
    Hello,
    Login,
    LoginResult,
    Logout,
    Position,
    RenewToken,
    Request,
    Resume,
    ResumeResult,
    ServerFrame,
    Welcome,
)
from ..protocol.names import is_valid_user_id
from ..types import (
    ChannelType,
    ConnectionChangeReason,
    ConnectionEvent,
    ConnectionState,
    Message,
    RecoveryEvent,
)
from .config import (
    DEFAULT_SIDECAR_PORT,
    PARAM_ENDPOINT,
    PARAM_SIDECAR_CERTIFICATE,
    PARAM_SIDECAR_PATH,
    PARAM_SIDECAR_PORT,
    RTMConfig,
)
from .connection import Link
from .offsets import OffsetBook
from .reconnect import FATAL_CODES, backoff
from .sidecar import Sidecar
from .streams import EventStream

__all__ = ["ClientSession", "LoginStreams"]

_PRESENCE_TIMEOUT_RANGE = (5, 300)
# Codes after which a login at another endpoint may work.
_UNREACHABLE = frozenset({ErrorCode.NOT_CONNECTED, ErrorCode.LOGIN_TIMEOUT})
T = TypeVar("T")


class LoginStreams(NamedTuple):
    """What ``login`` returns: connection events and token-will-expire notices."""

    conn_events: EventStream[ConnectionEvent]
    token_events: EventStream[str]


class _State(Enum):
    IDLE = "idle"
    LOGGING_IN = "logging in"
    LOGGED_IN = "logged in"
    RECONNECTING = "reconnecting"
    FAILED = "failed"


def _failure_reason(code: int) -> ConnectionChangeReason:
    """The connection-change reason reported with FAILED when a login is refused."""
    if code in (ErrorCode.NOT_CONNECTED, ErrorCode.LOGIN_TIMEOUT):
        return ConnectionChangeReason.LOST
    return LOGIN_FAILURE_REASONS.get(code, ConnectionChangeReason.REJECTED_BY_SERVER)


class ClientSession:
    """One client's login, from ``login`` to ``logout``, through lost connections."""

    def __init__(
        self,
        config: RTMConfig,
        params: dict[str, Any],
        log: logging.Logger,
        on_push: Callable[[ServerFrame], None],
        on_restore: Callable[[], Awaitable[None]],
        on_reset: Callable[[], None],
    ) -> None:
        self._config = config
        self._params = params  # the client's parameters, read at each login
        self._log = log
        self._on_push = on_push
        self._on_restore = on_restore
        self._on_reset = on_reset
        self._state = _State.IDLE
        self.link: Link | None = None
        self.session_id = ""
        self._resume_token = ""
        self._token_expires_at = 0
        self._login_token = ""
        self._connected = asyncio.Event()
        self._sidecar_url = ""
        self.reconnecting: asyncio.Task[None] | None = None
        self._offsets = OffsetBook()
        self._file_handler: logging.FileHandler | None = None
        self.sidecar = Sidecar(log, self._sidecar_exited)
        self._new_streams()

    def _new_streams(self) -> None:
        self.conn_events: EventStream[ConnectionEvent] = EventStream(
            "conn_events", on_overflow=self.overflowed
        )
        self.token_events: EventStream[str] = EventStream(
            "token_events", on_overflow=self.overflowed
        )
        self.errors: EventStream[RTMError] = EventStream("errors")
        self.peer_messages: EventStream[Message] = EventStream(
            "peer_messages", on_overflow=self.overflowed
        )
        self.recovery_events: EventStream[RecoveryEvent] = EventStream("recovery_events")

    # --- the Session role ------------------------------------------------------------------

    @property
    def config(self) -> RTMConfig:
        return self._config

    @config.setter
    def config(self, config: RTMConfig) -> None:
        self._config = config

    @property
    def offsets(self) -> OffsetBook:
        return self._offsets

    @property
    def log(self) -> logging.Logger:
        return self._log

    @property
    def login_token(self) -> str:
        return self._login_token

    @property
    def state_name(self) -> str:
        return self._state.value

    @property
    def logged_in(self) -> bool:
        """Logged in and connected right now."""
        return self._state is _State.LOGGED_IN

    def require_login(self) -> None:
        """Raise NOT_LOGIN unless logged in (connected, or reconnecting)."""
        if self._state is not _State.LOGGED_IN and self._state is not _State.RECONNECTING:
            raise RTMError(ErrorCode.NOT_LOGIN, f"client is {self._state.value}; log in first")

    def reconnectable(self) -> bool:
        """Whether a lost connection is being (or will be) brought back."""
        return self._state is _State.RECONNECTING or (
            self._state is _State.LOGGED_IN and self.link is None
        )

    async def live_link(self) -> Link:
        """The connection, waiting (up to the request timeout) while the client reconnects."""
        self.require_login()
        if self._state is _State.RECONNECTING:
            try:
                async with asyncio.timeout(self._config.request_timeout):
                    await self._connected.wait()
            except TimeoutError:
                raise RTMError(ErrorCode.NOT_CONNECTED, "still reconnecting") from None
        if self._state is not _State.LOGGED_IN or self.link is None:
            raise RTMError(ErrorCode.NOT_LOGIN, f"client is {self._state.value}; log in first")
        return self.link

    async def request(
        self,
        make: Callable[[int], Request],
        result_type: type[T] | None,
        apply: Callable[[T | None], None] | None = None,
    ) -> T | None:
        """Send a request on the logged-in connection (see ``Link.request``)."""
        link = await self.live_link()
        return await link.request(make, result_type, self._config.request_timeout, apply)

    def channel_event(
        self, state: ConnectionState, reason: ConnectionChangeReason, channel: str
    ) -> None:
        where = f" of channel {channel}" if channel else ""
        self._log.info("connection%s %s (%s)", where, state.name, reason.name)
        self.conn_events.put(ConnectionEvent(state, reason, channel))

    def recovered(self, event: RecoveryEvent) -> None:
        self.recovery_events.put(event)

    def overflowed(self, stream: EventStream[Any]) -> None:
        self._log.warning("event stream %s is full; dropped %d events", stream.name, stream.dropped)
        self.errors.put(
            RTMError(
                ErrorCode.INVALID_PARAMETER,
                f"event stream {stream.name} overflowed: the application is not reading it",
            )
        )

    def _emit(self, state: ConnectionState, reason: ConnectionChangeReason) -> None:
        self.channel_event(state, reason, "")

    # --- login, renewal, logout ------------------------------------------------------------

    async def login(self, token: str) -> LoginStreams:
        """See ``RTMClient.login``."""
        if self._state is not _State.IDLE:
            raise RTMError(ErrorCode.DUPLICATE_OPERATION, f"client is {self._state.value}")
        cfg = self._config
        if not is_valid_user_id(cfg.user_id):
            raise RTMError(ErrorCode.INVALID_USER_ID, f"invalid user id {cfg.user_id!r}")
        if not cfg.app_id:
            raise RTMError(ErrorCode.INVALID_APP_ID, "app id is empty")
        self._state = _State.LOGGING_IN
        if self.conn_events.closed:
            self._new_streams()
        self._open_log_file()
        self._emit(ConnectionState.CONNECTING, ConnectionChangeReason.CONNECTING)
        try:
            link, endpoint = await self._connect_any(token)
        except BaseException as exc:
            self._state = _State.IDLE
            if isinstance(exc, RTMError):
                self._emit(ConnectionState.FAILED, _failure_reason(exc.code))
                self._log.warning("login of %s failed: %s", cfg.user_id, exc)
            raise
        self._login_token = token
        self.link = link
        self._state = _State.LOGGED_IN
        self._connected.set()
        self._log.info("logged in as %s to %s (session %s)", cfg.user_id, endpoint, self.session_id)
        self._emit(ConnectionState.CONNECTED, ConnectionChangeReason.LOGIN_SUCCESS)
        return LoginStreams(self.conn_events, self.token_events)

    async def renew_token(self, token: str) -> None:
        """See ``RTMClient.renew_token``."""
        result = await self.request(lambda rid: RenewToken(rid, token), LoginResult)
        assert result is not None
        self._token_expires_at = result.expires_at
        self._login_token = token
        self._log.info("login token renewed")

    async def logout(self) -> None:
        """See ``RTMClient.logout``."""
        if self._state is _State.LOGGING_IN:
            raise RTMError(ErrorCode.DUPLICATE_OPERATION, "a login is in progress")
        link, self.link = self.link, None
        was_logged_in = self._state in (_State.LOGGED_IN, _State.RECONNECTING)
        self._state = _State.IDLE
        self._connected.clear()
        if self.reconnecting is not None:
            self.reconnecting.cancel()
            self.reconnecting = None
        if link is not None:
            if was_logged_in and link.is_open:
                try:
                    await link.request(Logout, None, self._config.request_timeout)
                except RTMError as exc:
                    self._log.info("logout request not answered (%s); closing anyway", exc)
            link.close()
            await link.wait_closed()
        self._on_reset()
        self._offsets.clear()
        self.peer_messages.close()
        self.recovery_events.close()
        if was_logged_in or not self.conn_events.closed:
            self._emit(ConnectionState.DISCONNECTED, ConnectionChangeReason.LOGOUT)
        self.conn_events.close()
        self.token_events.close()
        self.errors.close()
        if self.sidecar.started:
            await self.sidecar.stop()
        self._sidecar_url = ""
        self._log.info("logged out")
        self._close_log_file()

    # --- connecting ------------------------------------------------------------------------

    def _endpoints(self) -> list[str]:
        value = self._params.get(PARAM_ENDPOINT)
        if value is None:
            return [self._sidecar_url] if self._sidecar_url else []
        return [value] if isinstance(value, str) else list(value)

    async def _start_sidecar(self) -> None:
        port = int(self._params.get(PARAM_SIDECAR_PORT, DEFAULT_SIDECAR_PORT))
        self._sidecar_url = await self.sidecar.ensure(
            port,
            self._params.get(PARAM_SIDECAR_PATH),
            self._config.app_id,
            str(self._params.get(PARAM_SIDECAR_CERTIFICATE, "")),
        )

    def _sidecar_exited(self, error: RTMError) -> None:
        self.errors.put(error)
        if self._state in (_State.LOGGED_IN, _State.RECONNECTING):
            if self.reconnecting is not None:
                self.reconnecting.cancel()
                self.reconnecting = None
            if self.link is not None:
                self.link.close()
            self._fail(ConnectionChangeReason.LOST, error.reason, error.code, report=False)

    async def _connect_any(self, token: str) -> tuple[Link, str]:
        """Log in at the first endpoint that answers; endpoints that cannot be reached are
        skipped, a refusal is final. With no endpoint, at the sidecar."""
        if PARAM_ENDPOINT not in self._params:
            await self._start_sidecar()
        error: RTMError | None = None
        for endpoint in self._endpoints():
            link = Link(self._on_push, self._on_lost, self._log)
            try:
                await self._handshake(link, endpoint, token, resume=False)
            except BaseException as exc:
                link.close()
                if not isinstance(exc, RTMError) or exc.code not in _UNREACHABLE:
                    raise
                error = exc
                continue
            return link, endpoint
        assert error is not None
        raise error

    async def _handshake(self, link: Link, endpoint: str, token: str, resume: bool) -> bool:
        """Connect, say hello, and resume the session (if ``resume``) or log in, all within
        one request timeout. Returns whether the old session was resumed."""
        cfg = self._config
        timeout = cfg.request_timeout
        low, high = _PRESENCE_TIMEOUT_RANGE
        presence_timeout = min(max(cfg.presence_timeout, low), high)
        try:
            async with asyncio.timeout(timeout):
                await link.open(endpoint)
                welcome = await link.request(
                    lambda rid: Hello(rid, agent="rtm2-python"), Welcome, timeout
                )
                assert welcome is not None
                link.max_frame_size = welcome.max_frame_size
                if resume:
                    try:
                        resumed = await link.request(
                            lambda rid: Resume(
                                rid,
                                cfg.app_id,
                                cfg.user_id,
                                self.session_id,
                                self._resume_token,
                                self._offsets.positions(),
                            ),
                            ResumeResult,
                            timeout,
                        )
                    except RTMError as exc:
                        if exc.code != ErrorCode.LOGIN_REJECTED:
                            raise
                    else:
                        assert resumed is not None
                        self._token_expires_at = resumed.expires_at
                        self._not_recovered(resumed.unrecovered)
                        link.start_keepalive(welcome.heartbeat_interval, welcome.heartbeat_grace)
                        return True
                result = await link.request(
                    lambda rid: Login(rid, cfg.app_id, cfg.user_id, token, presence_timeout),
                    LoginResult,
                    timeout,
                )
        except TimeoutError:
            raise RTMError(
                ErrorCode.LOGIN_TIMEOUT, f"no answer from {endpoint} within {timeout:g} s"
            ) from None
        assert result is not None
        self.session_id = result.session_id
        self._resume_token = result.resume_token
        # The offsets we hold were counted in the old epoch: on_restore recovers from them.
        self._offsets.new_epoch(result.epoch)
        self._token_expires_at = result.expires_at
        link.start_keepalive(welcome.heartbeat_interval, welcome.heartbeat_grace)
        return False

    def _not_recovered(self, positions: list[Position]) -> None:
        for p in positions:
            self._log.warning("messages of %s %s may be missing", p.channel, p.topic)
            self.recovery_events.put(
                RecoveryEvent(p.channel, ChannelType(p.channel_type), p.topic, False, True)
            )

    # --- losing the connection and reconnecting ---------------------------------------------

    def _on_lost(self, reason: ConnectionChangeReason, message: str) -> None:
        """The connection ended without our asking."""
        if self._state is not _State.LOGGED_IN:
            return
        self.link = None
        self._connected.clear()
        if reason in TERMINAL_REASONS or not self._config.auto_reconnect:
            self._fail(reason, message)
            return
        self._log.warning("connection lost (%s: %s); reconnecting", reason.name, message)
        self._state = _State.RECONNECTING
        self._emit(ConnectionState.RECONNECTING, reason)
        self.reconnecting = asyncio.get_running_loop().create_task(
            self._reconnect(), name="rtm2-reconnect"
        )

    def _fail(
        self, reason: ConnectionChangeReason, message: str, code: int = 0, report: bool = True
    ) -> None:
        """The session is over for good (FAILED); the application must log in again."""
        self._state = _State.FAILED
        self.link = None
        if not code:
            code = ErrorCode.NOT_CONNECTED
            if reason is ConnectionChangeReason.SAME_UID_LOGIN:
                code = ErrorCode.LOGIN_ABORTED
            elif reason is ConnectionChangeReason.TOKEN_EXPIRED:
                code = ErrorCode.TOKEN_EXPIRED
        self._log.warning("session ended: %s: %s", reason.name, message)
        self._emit(ConnectionState.FAILED, reason)
        if report:
            self.errors.put(RTMError(code, f"{reason.name.lower()}: {message}"))

    async def _reconnect(self) -> None:
        """Try the endpoints in turn, with growing delays, until the session is back."""
        cfg = self._config
        loop = asyncio.get_running_loop()
        started = loop.time()
        delays = backoff(cfg.reconnect_min_delay, cfg.reconnect_max_delay)
        endpoints = self._endpoints()
        attempt = 0
        while self._state is _State.RECONNECTING:
            await asyncio.sleep(next(delays))
            endpoint = endpoints[attempt % len(endpoints)]
            attempt += 1
            link = Link(self._on_push, self._on_lost, self._log)
            try:
                resumed = await self._handshake(link, endpoint, self._login_token, resume=True)
            except RTMError as exc:
                link.close()
                if exc.code in FATAL_CODES:
                    self._fail(_failure_reason(exc.code), exc.reason, exc.code)
                    return
                if cfg.reconnect_timeout and loop.time() - started > cfg.reconnect_timeout:
                    self._fail(ConnectionChangeReason.LOST, "gave up reconnecting")
                    return
                self._log.info("reconnection attempt %d (%s) failed: %s", attempt, endpoint, exc)
                continue
            if self._state is not _State.RECONNECTING:  # logged out meanwhile
                link.close()
                return
            self.link = link
            self._state = _State.LOGGED_IN
            self._connected.set()
            how = "resumed the session" if resumed else "logged in again"
            self._log.info("reconnected to %s and %s", endpoint, how)
            self._emit(ConnectionState.CONNECTED, ConnectionChangeReason.REJOIN_SUCCESS)
            if not resumed:
                await self._on_restore()
            return

    # --- the log file ----------------------------------------------------------------------

    def _open_log_file(self) -> None:
        cfg = self._config
        if cfg.log_file and self._file_handler is None and cfg.logger is None:
            handler = logging.FileHandler(cfg.log_file, encoding="utf-8")
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
            )
            self._log.addHandler(handler)
            self._log.setLevel(logging.DEBUG)
            self._file_handler = handler

    def _close_log_file(self) -> None:
        if self._file_handler is not None:
            self._log.removeHandler(self._file_handler)
            self._file_handler.close()
            self._file_handler = None
