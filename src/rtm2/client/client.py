"""RTMClient: login lifecycle, connection events and token renewal.

The API follows the RTM 2 Go SDK (``Login`` returns the connection-event and token-event
streams; ``RenewToken``; ``Logout``), with its bugs left out: every call before login raises
NOT_LOGIN, a second concurrent login is refused, every request times out, nothing blocks the
read loop, and a client can log in again after logout.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, NamedTuple, TypeVar

from ..errors import ErrorCode, RTMError
from ..protocol.codes import LOGIN_FAILURE_REASONS, TERMINAL_REASONS
from ..protocol.frames import (
    ChannelClosed,
    ChannelMessage,
    Hello,
    Login,
    LoginResult,
    Logout,
    Position,
    Publish,
    RenewToken,
    Request,
    Resume,
    ResumeResult,
    ServerFrame,
    StreamJoinResult,
    StreamMessage,
    Subscribe,
    SubscribeChannelResult,
    TokenWillExpire,
    TopicEvent,
    Unsubscribe,
    Welcome,
)
from ..protocol.frames import LockEvent as LockEventFrame
from ..protocol.frames import PresenceEvent as PresenceEventFrame
from ..protocol.frames import StorageEvent as StorageEventFrame
from ..protocol.names import is_valid_channel_name, is_valid_user_id
from ..types import (
    ChannelType,
    ConnectionChangeReason,
    ConnectionEvent,
    ConnectionState,
    Message,
    MessageType,
    RecoveryEvent,
)
from .common import message_payload
from .connection import Link
from .lock import Lock
from .offsets import OffsetBook
from .presence import Presence
from .reconnect import FATAL_CODES, backoff
from .sidecar import Sidecar
from .storage import Storage
from .stream_channel import StreamChannel
from .streams import EventStream

__all__ = [
    "PARAM_ENDPOINT",
    "PARAM_SIDECAR_CERTIFICATE",
    "PARAM_SIDECAR_PATH",
    "PARAM_SIDECAR_PORT",
    "LoginStreams",
    "RTMClient",
    "RTMConfig",
]

PARAM_ENDPOINT = "endpoint"  # a ws:// or wss:// URL, or a list of them (tried in turn)
PARAM_SIDECAR_PORT = "sidecar_port"  # sidecar mode (no endpoint): its port, default 7001
PARAM_SIDECAR_PATH = "sidecar_path"  # the rtm2 executable (or its folder) to start
PARAM_SIDECAR_CERTIFICATE = "sidecar_certificate"  # makes the sidecar check tokens
# The Go SDK's names, accepted as they are.
_ALIASES = {
    "golang_sidecar_endpoint": PARAM_ENDPOINT,
    "golang_sidecar_port": PARAM_SIDECAR_PORT,
    "golang_sidecar_path": PARAM_SIDECAR_PATH,
}
DEFAULT_SIDECAR_PORT = 7001

_PRESENCE_TIMEOUT_RANGE = (5, 300)
# Codes after which a login at another endpoint may work.
_UNREACHABLE = frozenset({ErrorCode.NOT_CONNECTED, ErrorCode.LOGIN_TIMEOUT})
T = TypeVar("T")
_client_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class RTMConfig:
    """Client configuration.

    Attributes:
        app_id: the app to log into.
        user_id: this client's user id (1-64 characters, RTM 2 rules).
        request_timeout: seconds any request may take before it fails with a timeout code.
        presence_timeout: seconds the server keeps a lost user present (clamped to 5-300).
        log_file: a file the SDK appends its log to, if given.
        logger: a stdlib logger to log to instead of ``rtm2.client``.
        auto_reconnect: when the connection is lost, reconnect and resume by itself
            (RECONNECTING, then CONNECTED / REJOIN_SUCCESS) instead of ending in FAILED.
        reconnect_min_delay, reconnect_max_delay: the first and the longest wait between
            reconnection attempts (seconds; exponential with jitter in between).
        reconnect_timeout: give up (FAILED) after trying this long; 0 = never give up.
    """

    app_id: str
    user_id: str
    request_timeout: float = 10.0
    presence_timeout: int = 300
    log_file: str | None = None
    logger: logging.Logger | None = None
    auto_reconnect: bool = True
    reconnect_min_delay: float = 0.5
    reconnect_max_delay: float = 30.0
    reconnect_timeout: float = 0.0

    def __post_init__(self) -> None:
        if self.request_timeout <= 0:
            raise RTMError(ErrorCode.INVALID_PARAMETER, "request_timeout must be > 0")
        if not 0 < self.reconnect_min_delay <= self.reconnect_max_delay:
            raise RTMError(ErrorCode.INVALID_PARAMETER, "need 0 < reconnect_min_delay <= max")


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


class RTMClient:
    """An RTM 2 client. Create one per user; ``login``, work, ``logout``; log in again if needed."""

    def __init__(self, config: RTMConfig) -> None:
        self.config = config
        self._params: dict[str, Any] = {}
        self._state = _State.IDLE
        self._link: Link | None = None
        self._session_id = ""
        self._resume_token = ""
        self._token_expires_at = 0
        self._login_token = ""
        self._welcome: Welcome | None = None
        self._connected = asyncio.Event()
        self._sidecar_url = ""
        self._reconnecting: asyncio.Task[None] | None = None
        self._offsets = OffsetBook()
        # Message-channel subscriptions: name -> (with_message, with_presence, with_metadata,
        # with_lock, be_quiet), to subscribe again after a new login.
        self._sub_flags: dict[str, tuple[bool, bool, bool, bool, bool]] = {}
        self._stream_channels: dict[str, StreamChannel] = {}
        self._subscriptions: dict[str, EventStream[Message]] = {}
        self._subscribing: set[str] = set()
        self.presence = Presence(self)
        self.storage = Storage(self)
        self.lock = Lock(self)
        self._id = next(_client_ids)
        self._file_handler: logging.FileHandler | None = None
        self._log = config.logger or logging.getLogger(f"rtm2.client.{self._id}")
        self._sidecar = Sidecar(self._log, self._sidecar_exited)
        self._new_streams()

    def __repr__(self) -> str:
        return f"<RTMClient {self.config.user_id}@{self.config.app_id[:8]} {self._state.value}>"

    async def __aenter__(self) -> RTMClient:
        """``async with RTMClient(config) as client:``; log in inside with ``client.login``."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Log out and stop a sidecar this client started, however the block ends.

        When an exception is already escaping, a failing logout is logged, not raised, so the
        application sees the error that ended the block.
        """
        try:
            await self.logout()
        except RTMError as exc:
            if exc_info[0] is None:
                raise
            self._log.warning("logout on leaving the client's block failed: %s", exc)
        finally:
            if self._sidecar.started:
                await self._sidecar.stop()

    def _new_streams(self) -> None:
        self._conn_events: EventStream[ConnectionEvent] = EventStream(
            "conn_events", on_overflow=self._overflowed
        )
        self._token_events: EventStream[str] = EventStream(
            "token_events", on_overflow=self._overflowed
        )
        self._errors: EventStream[RTMError] = EventStream("errors")
        self._peer_messages: EventStream[Message] = EventStream(
            "peer_messages", on_overflow=self._overflowed
        )
        self._recovery_events: EventStream[RecoveryEvent] = EventStream("recovery_events")

    def _overflowed(self, stream: EventStream[Any]) -> None:
        self._log.warning("event stream %s is full; dropped %d events", stream.name, stream.dropped)
        self._errors.put(
            RTMError(
                ErrorCode.INVALID_PARAMETER,
                f"event stream {stream.name} overflowed: the application is not reading it",
            )
        )

    # --- public properties -----------------------------------------------------------------

    @property
    def errors(self) -> EventStream[RTMError]:
        """Fatal errors of the current login, such as a connection that cannot come back."""
        return self._errors

    @property
    def peer_messages(self) -> EventStream[Message]:
        """Messages other users sent to this one (``channel_type`` USER) during this login."""
        return self._peer_messages

    @property
    def recovery_events(self) -> EventStream[RecoveryEvent]:
        """After a reconnection: subscriptions that could not be set up again, or that may
        have missed messages (see ``rtm2.RecoveryEvent``)."""
        return self._recovery_events

    @property
    def logged_in(self) -> bool:
        """Logged in and connected right now."""
        return self._state is _State.LOGGED_IN

    @property
    def session_id(self) -> str:
        return self._session_id

    def stream_channel(self, name: str) -> StreamChannel:
        """The stream channel ``name``: the same object every time for the same name.

        Raises:
            RTMError: INVALID_CHANNEL_NAME.
        """
        channel = self._stream_channels.get(name)
        if channel is None:
            channel = self._stream_channels[name] = StreamChannel(self, name)
        return channel

    # --- message channels and peer messages --------------------------------------------------

    async def subscribe(
        self,
        channel: str,
        *,
        with_message: bool = True,
        with_presence: bool = True,
        with_metadata: bool = False,
        with_lock: bool = False,
        be_quiet: bool = False,
    ) -> EventStream[Message]:
        """Subscribe to a message channel; returns its message stream.

        ``with_presence`` makes presence events available through
        ``client.presence.get_presence_events``; ``be_quiet`` keeps this user out of others'
        presence (it still sees theirs).

        Raises:
            RTMError: NOT_LOGIN; INVALID_CHANNEL_NAME; CHANNEL_SUBSCRIBE_FAILED (already
                subscribed); CHANNEL_INSTANCE_EXCEED_LIMITATION (too many channels).
        """
        self._require_login()
        if not is_valid_channel_name(channel):
            raise RTMError(ErrorCode.INVALID_CHANNEL_NAME, f"invalid channel name {channel!r}")
        if channel in self._subscriptions or channel in self._subscribing:
            raise RTMError(ErrorCode.CHANNEL_SUBSCRIBE_FAILED, f"already subscribed to {channel!r}")
        key = (ChannelType.MESSAGE, channel)
        stream: EventStream[Message] = EventStream(channel, on_overflow=self._overflowed)

        flags = (with_message, with_presence, with_metadata, with_lock, be_quiet)

        def subscribed(result: SubscribeChannelResult | None) -> None:
            assert result is not None
            self._subscriptions[channel] = stream
            self._sub_flags[channel] = flags
            self._offsets.start((ChannelType.MESSAGE, channel, ""), result.offset)
            self._channel_entered(key, result, with_presence)

        self._subscribing.add(channel)
        try:
            await self._request(
                lambda rid: Subscribe(
                    rid,
                    channel,
                    with_message,
                    with_presence,
                    with_metadata,
                    with_lock,
                    be_quiet,
                    self.presence._state_for(key),
                ),
                SubscribeChannelResult,
                subscribed,
            )
        finally:
            self._subscribing.discard(channel)
        return stream

    async def unsubscribe(self, channel: str) -> None:
        """Unsubscribe from a message channel: tells the server and ends its streams."""
        self._require_login()
        if channel not in self._subscriptions:
            raise RTMError(ErrorCode.CHANNEL_NOT_SUBSCRIBED, f"not subscribed to {channel!r}")

        def unsubscribed(_: None) -> None:
            self._drop_subscription(channel, ErrorCode.CHANNEL_NOT_SUBSCRIBED)

        await self._request(lambda rid: Unsubscribe(rid, channel), None, unsubscribed)

    def _drop_subscription(self, channel: str, code: ErrorCode) -> None:
        self._sub_flags.pop(channel, None)
        self._offsets.forget((ChannelType.MESSAGE, channel, ""))
        stream = self._subscriptions.pop(channel, None)
        if stream is not None:
            stream.close(code)
        self._channel_left((ChannelType.MESSAGE, channel), code)

    def _channel_entered(
        self,
        key: tuple[ChannelType, str],
        result: SubscribeChannelResult | StreamJoinResult,
        with_presence: bool,
    ) -> None:
        """The user is now in a channel: start its presence, metadata and lock views."""
        self.presence._entered(key, result.presence, with_presence)
        if result.metadata is not None:
            self.storage._open_view(key, result.metadata)
        if result.locks is not None:
            self.lock._open_view(key, result.locks)

    def _channel_left(self, key: tuple[ChannelType, str], code: ErrorCode) -> None:
        self.presence._left(key, code)
        self.storage._close_view(key, code)
        self.lock._close_view(key, code)

    async def publish(
        self,
        channel: str,
        message: bytes | str,
        *,
        channel_type: ChannelType = ChannelType.MESSAGE,
        custom_type: str = "",
    ) -> None:
        """Publish to a message channel, or (``channel_type=USER``) send to the user
        ``channel``. A ``str`` is sent as STRING (UTF-8), bytes-like as BINARY.

        A peer message returns once the recipient's session has it; an offline recipient
        raises CHANNEL_RECEIVER_OFFLINE. Publishing to a channel needs no subscription.
        """
        payload, message_type = message_payload(message)
        await self._request(
            lambda rid: Publish(rid, channel, payload, message_type, channel_type, custom_type),
            None,
        )

    def set_parameters(self, params: dict[str, Any]) -> None:
        """Set client parameters.

        ``PARAM_ENDPOINT``: a ``ws://``/``wss://`` URL, or a list of them to fail over between.
        Without it the client runs in sidecar mode: it uses the rtm2 server listening on
        127.0.0.1:``PARAM_SIDECAR_PORT`` (7001), or starts one (``PARAM_SIDECAR_PATH``,
        ``PARAM_SIDECAR_CERTIFICATE``). The Go SDK's ``golang_sidecar_endpoint`` ("host:port"),
        ``golang_sidecar_port`` and ``golang_sidecar_path`` are accepted too.
        """
        normalised = {_ALIASES.get(k, k): v for k, v in params.items()}
        endpoint = normalised.get(PARAM_ENDPOINT)
        if isinstance(endpoint, str) and endpoint and "://" not in endpoint:
            endpoint = normalised[PARAM_ENDPOINT] = f"ws://{endpoint}"  # Go's "host:port"
        if endpoint is not None:
            urls = [endpoint] if isinstance(endpoint, str) else endpoint
            if (
                not isinstance(urls, list | tuple)
                or not urls
                or not all(isinstance(u, str) and u.startswith(("ws://", "wss://")) for u in urls)
            ):
                raise RTMError(ErrorCode.INVALID_PARAMETER, f"bad endpoint {endpoint!r}")
        port = normalised.get(PARAM_SIDECAR_PORT)
        if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
            raise RTMError(ErrorCode.INVALID_PARAMETER, f"bad sidecar port {port!r}")
        self._params.update(normalised)

    def get_parameters(self) -> dict[str, Any]:
        """A copy of the parameters; changing it changes nothing."""
        return dict(self._params)

    # --- login lifecycle -------------------------------------------------------------------

    async def login(self, token: str = "") -> LoginStreams:
        """Connect and log in.

        Returns the connection-event stream (CONNECTING, then CONNECTED/LOGIN_SUCCESS, and
        later changes) and the token-event stream ("" when the login token will expire soon).

        Raises:
            RTMError: DUPLICATE_OPERATION if already logged in or logging in; INVALID_USER_ID;
                INVALID_APP_ID, INVALID_TOKEN, TOKEN_EXPIRED, INCONSISTENT_APPID from the server;
                NOT_CONNECTED if the endpoint cannot be reached; LOGIN_TIMEOUT.
        """
        if self._state is not _State.IDLE:
            raise RTMError(ErrorCode.DUPLICATE_OPERATION, f"client is {self._state.value}")
        cfg = self.config
        if not is_valid_user_id(cfg.user_id):
            raise RTMError(ErrorCode.INVALID_USER_ID, f"invalid user id {cfg.user_id!r}")
        if not cfg.app_id:
            raise RTMError(ErrorCode.INVALID_APP_ID, "app id is empty")
        self._state = _State.LOGGING_IN
        if self._conn_events.closed:
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
        self._link = link
        self._state = _State.LOGGED_IN
        self._connected.set()
        self._log.info(
            "logged in as %s to %s (session %s)", cfg.user_id, endpoint, self._session_id
        )
        self._emit(ConnectionState.CONNECTED, ConnectionChangeReason.LOGIN_SUCCESS)
        return LoginStreams(self._conn_events, self._token_events)

    def _endpoints(self) -> list[str]:
        value = self._params.get(PARAM_ENDPOINT)
        if value is None:
            return [self._sidecar_url] if self._sidecar_url else []
        return [value] if isinstance(value, str) else list(value)

    async def _start_sidecar(self) -> None:
        port = int(self._params.get(PARAM_SIDECAR_PORT, DEFAULT_SIDECAR_PORT))
        self._sidecar_url = await self._sidecar.ensure(
            port,
            self._params.get(PARAM_SIDECAR_PATH),
            self.config.app_id,
            str(self._params.get(PARAM_SIDECAR_CERTIFICATE, "")),
        )

    def _sidecar_exited(self, error: RTMError) -> None:
        self._errors.put(error)
        if self._state in (_State.LOGGED_IN, _State.RECONNECTING):
            if self._reconnecting is not None:
                self._reconnecting.cancel()
                self._reconnecting = None
            if self._link is not None:
                self._link.close()
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
        cfg = self.config
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
                                self._session_id,
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
        self._session_id = result.session_id
        self._resume_token = result.resume_token
        # The offsets we hold were counted in the old epoch: _restore recovers from them.
        self._offsets.new_epoch(result.epoch)
        self._token_expires_at = result.expires_at
        link.start_keepalive(welcome.heartbeat_interval, welcome.heartbeat_grace)
        return False

    async def renew_token(self, token: str) -> None:
        """Replace the login token; the session then lives until the new token expires.

        Raises:
            RTMError: NOT_LOGIN; INVALID_TOKEN or TOKEN_EXPIRED (the session keeps the old
                token); RENEW_TOKEN_TIMEOUT.
        """
        result = await self._request(lambda rid: RenewToken(rid, token), LoginResult)
        assert result is not None
        self._token_expires_at = result.expires_at
        self._login_token = token
        self._log.info("login token renewed")

    async def logout(self) -> None:
        """Log out, close the connection and end every event stream of this login.

        Idempotent: logging out a client that is not logged in (or whose session already
        failed) just cleans up. The client can log in again afterwards.
        """
        if self._state is _State.LOGGING_IN:
            raise RTMError(ErrorCode.DUPLICATE_OPERATION, "a login is in progress")
        link, self._link = self._link, None
        was_logged_in = self._state in (_State.LOGGED_IN, _State.RECONNECTING)
        self._state = _State.IDLE
        self._connected.clear()
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            self._reconnecting = None
        if link is not None:
            if was_logged_in and link.is_open:
                try:
                    await link.request(Logout, None, self.config.request_timeout)
                except RTMError as exc:
                    self._log.info("logout request not answered (%s); closing anyway", exc)
            link.close()
            await link.wait_closed()
        for channel in self._stream_channels.values():
            channel._reset(ErrorCode.NOT_LOGIN)
        for name in list(self._subscriptions):
            self._drop_subscription(name, ErrorCode.NOT_LOGIN)
        self.presence._reset()
        self.storage._reset()
        self.lock._reset()
        self._offsets.clear()
        self._peer_messages.close()
        self._recovery_events.close()
        if was_logged_in or not self._conn_events.closed:
            self._emit(ConnectionState.DISCONNECTED, ConnectionChangeReason.LOGOUT)
        self._conn_events.close()
        self._token_events.close()
        self._errors.close()
        if self._sidecar.started:
            await self._sidecar.stop()
        self._sidecar_url = ""
        self._log.info("logged out")
        self._close_log_file()

    # --- internals -------------------------------------------------------------------------

    def _require_login(self) -> None:
        """Raise NOT_LOGIN unless logged in (connected, or reconnecting)."""
        if self._state is not _State.LOGGED_IN and self._state is not _State.RECONNECTING:
            raise RTMError(ErrorCode.NOT_LOGIN, f"client is {self._state.value}; log in first")

    def _reconnectable(self) -> bool:
        """Whether a lost connection is being (or will be) brought back."""
        return self._state is _State.RECONNECTING or (
            self._state is _State.LOGGED_IN and self._link is None
        )

    async def _live_link(self) -> Link:
        """The connection, waiting (up to the request timeout) while the client reconnects."""
        self._require_login()
        if self._state is _State.RECONNECTING:
            try:
                async with asyncio.timeout(self.config.request_timeout):
                    await self._connected.wait()
            except TimeoutError:
                raise RTMError(ErrorCode.NOT_CONNECTED, "still reconnecting") from None
        if self._state is not _State.LOGGED_IN or self._link is None:
            raise RTMError(ErrorCode.NOT_LOGIN, f"client is {self._state.value}; log in first")
        return self._link

    async def _request(
        self,
        make: Callable[[int], Request],
        result_type: type[T] | None,
        apply: Callable[[T | None], None] | None = None,
    ) -> T | None:
        """Send a request on the logged-in connection (see ``Link.request``)."""
        link = await self._live_link()
        return await link.request(make, result_type, self.config.request_timeout, apply)

    def _emit(self, state: ConnectionState, reason: ConnectionChangeReason) -> None:
        self._channel_event(state, reason, "")

    def _channel_event(
        self, state: ConnectionState, reason: ConnectionChangeReason, channel: str
    ) -> None:
        where = f" of channel {channel}" if channel else ""
        self._log.info("connection%s %s (%s)", where, state.name, reason.name)
        self._conn_events.put(ConnectionEvent(state, reason, channel))

    def _on_push(self, frame: ServerFrame) -> None:
        if isinstance(frame, ChannelMessage):
            self._on_channel_message(frame)
        elif isinstance(frame, PresenceEventFrame):
            self.presence._on_event(frame)
        elif isinstance(frame, StorageEventFrame):
            self.storage._on_event(frame)
        elif isinstance(frame, LockEventFrame):
            self.lock._on_event(frame)
        elif isinstance(frame, StreamMessage):
            channel = self._stream_channels.get(frame.channel)
            if channel is not None:
                channel._on_message(frame)
        elif isinstance(frame, TopicEvent):
            channel = self._stream_channels.get(frame.channel)
            if channel is not None:
                channel._on_topic_event(frame)
        elif isinstance(frame, TokenWillExpire):
            self._log.info("token for %r will expire at %d", frame.channel, frame.expires_at)
            if not frame.channel:
                self._token_events.put("")
            elif (channel := self._stream_channels.get(frame.channel)) is not None:
                channel._on_token_will_expire()
        elif isinstance(frame, ChannelClosed):
            channel = self._stream_channels.get(frame.channel)
            if channel is not None:
                self._log.warning("removed from channel %s: %s", frame.channel, frame.message)
                channel._on_closed(frame)

    def _on_channel_message(self, frame: ChannelMessage) -> None:
        peer = frame.channel_type == ChannelType.USER
        stream = self._peer_messages if peer else self._subscriptions.get(frame.channel)
        if stream is None:
            return
        if not self._offsets.fresh((ChannelType.MESSAGE, frame.channel, ""), frame.offset):
            return  # already delivered: a replay overlapping what arrived live
        text = frame.message_type == MessageType.STRING
        stream.put(
            Message(
                frame.publisher,
                frame.channel,
                ChannelType.USER if peer else ChannelType.MESSAGE,
                "",
                frame.payload.decode(errors="replace") if text else frame.payload,
                MessageType.STRING if text else MessageType.BINARY,
                frame.custom_type,
                frame.timestamp,
                0,
            )
        )

    def _on_lost(self, reason: ConnectionChangeReason, message: str) -> None:
        """The connection ended without our asking."""
        if self._state is not _State.LOGGED_IN:
            return
        self._link = None
        self._connected.clear()
        if reason in TERMINAL_REASONS or not self.config.auto_reconnect:
            self._fail(reason, message)
            return
        self._log.warning("connection lost (%s: %s); reconnecting", reason.name, message)
        self._state = _State.RECONNECTING
        self._emit(ConnectionState.RECONNECTING, reason)
        self._reconnecting = asyncio.get_running_loop().create_task(
            self._reconnect(), name="rtm2-reconnect"
        )

    def _fail(
        self, reason: ConnectionChangeReason, message: str, code: int = 0, report: bool = True
    ) -> None:
        """The session is over for good (FAILED); the application must log in again."""
        self._state = _State.FAILED
        self._link = None
        if not code:
            code = ErrorCode.NOT_CONNECTED
            if reason is ConnectionChangeReason.SAME_UID_LOGIN:
                code = ErrorCode.LOGIN_ABORTED
            elif reason is ConnectionChangeReason.TOKEN_EXPIRED:
                code = ErrorCode.TOKEN_EXPIRED
        self._log.warning("session ended: %s: %s", reason.name, message)
        self._emit(ConnectionState.FAILED, reason)
        if report:
            self._errors.put(RTMError(code, f"{reason.name.lower()}: {message}"))

    async def _reconnect(self) -> None:
        """Try the endpoints in turn, with growing delays, until the session is back."""
        cfg = self.config
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
            self._link = link
            self._state = _State.LOGGED_IN
            self._connected.set()
            how = "resumed the session" if resumed else "logged in again"
            self._log.info("reconnected to %s and %s", endpoint, how)
            self._emit(ConnectionState.CONNECTED, ConnectionChangeReason.REJOIN_SUCCESS)
            if not resumed:
                await self._restore()
            return

    async def _restore(self) -> None:
        """A new session: subscribe and join again, as before the connection was lost."""
        for channel, flags in list(self._sub_flags.items()):
            await self._resubscribe(channel, flags)
        for stream_channel in list(self._stream_channels.values()):
            await stream_channel._restore()
        await self.storage._restore()

    async def _resubscribe(self, channel: str, flags: tuple[bool, bool, bool, bool, bool]) -> None:
        key = (ChannelType.MESSAGE, channel)
        message, presence, metadata, lock, quiet = flags
        state = self.presence._state_for(key)

        since, epoch = self._offsets.recovering_from((ChannelType.MESSAGE, channel, ""))
        recovered = False

        def subscribed(result: SubscribeChannelResult | None) -> None:
            nonlocal recovered
            assert result is not None
            recovered = result.recovered
            self._offsets.resumed_at((ChannelType.MESSAGE, channel, ""), result.offset, recovered)
            self._channel_entered(key, result, presence)

        try:
            await self._request(
                lambda rid: Subscribe(
                    rid, channel, message, presence, metadata, lock, quiet, state, since, epoch
                ),
                SubscribeChannelResult,
                subscribed,
            )
        except RTMError as exc:
            self._drop_subscription(channel, ErrorCode.CHANNEL_SUBSCRIBE_FAILED)
            self._recovery_events.put(
                RecoveryEvent(channel, ChannelType.MESSAGE, "", False, False, str(exc))
            )
            return
        if not recovered:
            self._recovery_events.put(RecoveryEvent(channel, ChannelType.MESSAGE, "", False, True))

    def _not_recovered(self, positions: list[Position]) -> None:
        for p in positions:
            self._log.warning("messages of %s %s may be missing", p.channel, p.topic)
            self._recovery_events.put(
                RecoveryEvent(p.channel, ChannelType(p.channel_type), p.topic, False, True)
            )

    def _open_log_file(self) -> None:
        if self.config.log_file and self._file_handler is None and self.config.logger is None:
            handler = logging.FileHandler(self.config.log_file, encoding="utf-8")
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
