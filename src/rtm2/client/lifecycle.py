"""ClientSession: the login lifecycle of one client: log in, keep the session, reconnect.

It owns the connection (``Link``) and the client's connection, token and error streams, and
is the ``Session`` the sub-APIs send requests through. Every decision (may this call go ahead,
what does a lost connection lead to, what does a reply change) is the ``core.LoginCore``'s;
this class does the I/O around it. What lives in channels is the client's: pushes go to
``on_push``; after a new session ``on_restore`` subscribes and joins again; on logout
``on_reset`` ends every channel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

from ..errors import ErrorCode, RTMError
from ..protocol.frames import (
    Hello,
    LoginResult,
    Logout,
    Position,
    RenewToken,
    Request,
    ResumeResult,
    ServerFrame,
    Welcome,
)
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
    client_ssl_context,
)
from .connection import Link
from .core import Failure, LoginCore, Phase, endpoints, failure_reason, unreachable
from .offsets import OffsetBook
from .reconnect import backoff
from .sidecar import Sidecar, access_headers
from .streams import EventStream

__all__ = ["ClientSession", "LoginStreams"]

T = TypeVar("T")


class LoginStreams(NamedTuple):
    """What ``login`` returns: connection events and token-will-expire notices."""

    conn_events: EventStream[ConnectionEvent]
    token_events: EventStream[str]


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
        self._core = LoginCore()
        self.link: Link | None = None
        self._connected = asyncio.Event()
        self._sidecar_url = ""
        self.reconnecting: asyncio.Task[None] | None = None
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
        return self._core.offsets

    @property
    def log(self) -> logging.Logger:
        return self._log

    @property
    def login_token(self) -> str:
        return self._core.login_token

    @property
    def session_id(self) -> str:
        return self._core.session_id

    @property
    def state_name(self) -> str:
        return self._core.phase.value

    @property
    def logged_in(self) -> bool:
        """Logged in and connected right now."""
        return self._core.phase is Phase.LOGGED_IN

    def require_login(self) -> None:
        """Raise NOT_LOGIN unless logged in (connected, or reconnecting)."""
        self._core.require_login()

    def reconnectable(self) -> bool:
        """Whether a lost connection is being (or will be) brought back."""
        return self._core.reconnectable(self.link is not None)

    async def live_link(self) -> Link:
        """The connection, waiting (up to the request timeout) while the client reconnects."""
        self._core.require_login()
        if self._core.reconnecting:
            try:
                async with asyncio.timeout(self._config.request_timeout):
                    await self._connected.wait()
            except TimeoutError:
                raise RTMError(ErrorCode.NOT_CONNECTED, "still reconnecting") from None
        self._core.require_connected(self.link is not None)
        assert self.link is not None
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
        cfg = self._config
        self._core.begin_login(cfg)
        if self.conn_events.closed:
            self._new_streams()
        self._open_log_file()
        self._emit(ConnectionState.CONNECTING, ConnectionChangeReason.CONNECTING)
        try:
            link, endpoint = await self._connect_any(token)
        except BaseException as exc:
            self._core.login_failed()
            if isinstance(exc, RTMError):
                self._emit(ConnectionState.FAILED, failure_reason(exc.code))
                self._log.warning("login of %s failed: %s", cfg.user_id, exc)
            raise
        self._core.login_done(token)
        self.link = link
        self._connected.set()
        self._log.info("logged in as %s to %s (session %s)", cfg.user_id, endpoint, self.session_id)
        self._emit(ConnectionState.CONNECTED, ConnectionChangeReason.LOGIN_SUCCESS)
        return LoginStreams(self.conn_events, self.token_events)

    async def renew_token(self, token: str) -> None:
        """See ``RTMClient.renew_token``."""
        result = await self.request(lambda rid: RenewToken(rid, token), LoginResult)
        assert result is not None
        self._core.token_renewed(token, result)
        self._log.info("login token renewed")

    async def logout(self) -> None:
        """See ``RTMClient.logout``."""
        was_logged_in = self._core.begin_logout()
        link, self.link = self.link, None
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
        self._core.offsets.clear()
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
        return endpoints(self._params, self._sidecar_url)

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
        if self._core.in_session:
            if self.reconnecting is not None:
                self.reconnecting.cancel()
                self.reconnecting = None
            if self.link is not None:
                self.link.close()
            self._failed(
                self._core.fail(ConnectionChangeReason.LOST, error.reason, error.code),
                report=False,
            )

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
                if not isinstance(exc, RTMError) or not unreachable(exc.code):
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
        core = self._core
        timeout = cfg.request_timeout
        try:
            async with asyncio.timeout(timeout):
                secure = endpoint.startswith("wss://")
                await link.open(
                    endpoint, client_ssl_context(cfg) if secure else None, access_headers(endpoint)
                )
                welcome = await link.request(
                    lambda rid: Hello(rid, agent="rtm2-python"), Welcome, timeout
                )
                assert welcome is not None
                link.max_frame_size = welcome.max_frame_size
                if resume:
                    try:
                        resumed = await link.request(
                            lambda rid: core.resume_frame(rid, cfg), ResumeResult, timeout
                        )
                    except RTMError as exc:
                        if not core.resume_refused(exc.code):
                            raise
                    else:
                        assert resumed is not None
                        self._not_recovered(core.resumed(resumed))
                        link.start_keepalive(welcome.heartbeat_interval, welcome.heartbeat_grace)
                        return True
                result = await link.request(
                    lambda rid: core.login_frame(rid, cfg, token),
                    LoginResult,
                    timeout,
                )
        except TimeoutError:
            raise RTMError(
                ErrorCode.LOGIN_TIMEOUT, f"no answer from {endpoint} within {timeout:g} s"
            ) from None
        assert result is not None
        core.new_session(result)
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
        decision = self._core.connection_lost(reason, message, self._config.auto_reconnect)
        if decision is False:
            return
        self.link = None
        self._connected.clear()
        if isinstance(decision, Failure):
            self._failed(decision)
            return
        self._log.warning("connection lost (%s: %s); reconnecting", reason.name, message)
        self._emit(ConnectionState.RECONNECTING, reason)
        self.reconnecting = asyncio.get_running_loop().create_task(
            self._reconnect(), name="rtm2-reconnect"
        )

    def _failed(self, failure: Failure, report: bool = True) -> None:
        """The core ended the session (FAILED): tell the application."""
        self.link = None
        self._log.warning("session ended: %s: %s", failure.reason.name, failure.message)
        self._emit(ConnectionState.FAILED, failure.reason)
        if report:
            self.errors.put(
                RTMError(failure.code, f"{failure.reason.name.lower()}: {failure.message}")
            )

    async def _reconnect(self) -> None:
        """Try the endpoints in turn, with growing delays, until the session is back."""
        cfg = self._config
        loop = asyncio.get_running_loop()
        started = loop.time()
        delays = backoff(cfg.reconnect_min_delay, cfg.reconnect_max_delay)
        endpoints = self._endpoints()
        attempt = 0
        while self._core.reconnecting:
            await asyncio.sleep(next(delays))
            endpoint = endpoints[attempt % len(endpoints)]
            attempt += 1
            link = Link(self._on_push, self._on_lost, self._log)
            try:
                resumed = await self._handshake(link, endpoint, self._core.login_token, resume=True)
            except RTMError as exc:
                link.close()
                failure = self._core.attempt_failed(
                    exc, loop.time() - started, cfg.reconnect_timeout
                )
                if failure is not None:
                    self._failed(failure)
                    return
                self._log.info("reconnection attempt %d (%s) failed: %s", attempt, endpoint, exc)
                continue
            if not self._core.reconnected():  # logged out meanwhile
                link.close()
                return
            self.link = link
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
