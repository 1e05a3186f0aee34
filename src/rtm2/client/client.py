"""RTMClient: the SDK's entry point, composing the login lifecycle, channels and sub-APIs.

The API follows the RTM 2 Go SDK (``Login`` returns the connection-event and token-event
streams; ``RenewToken``; ``Logout``), with its bugs left out: every call before login raises
NOT_LOGIN, a second concurrent login is refused, every request times out, nothing blocks the
read loop, and a client can log in again after logout.

The parts, one concern each: ``config`` (RTMConfig, parameters), ``core`` (the login and
reconnection decisions, no I/O), ``lifecycle`` (the asyncio driver of the core: the
``Session`` the sub-APIs use), ``channels`` (message channels and peer messages),
``offsets`` (positions and de-duplication), ``views`` (followed channel state),
``stream_channel``, ``presence``, ``storage`` and ``lock``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import ErrorCode, RTMError
from ..protocol.frames import (
    ChannelClosed,
    ChannelMessage,
    ServerFrame,
    StreamJoinResult,
    StreamMessage,
    SubscribeChannelResult,
    TokenWillExpire,
    TopicEvent,
)
from ..protocol.frames import LockEvent as LockEventFrame
from ..protocol.frames import PresenceEvent as PresenceEventFrame
from ..protocol.frames import StorageEvent as StorageEventFrame
from ..types import ChannelType, ConnectionEvent, Message, RecoveryEvent
from .channels import MessageChannels
from .config import (
    PARAM_ENDPOINT,
    PARAM_SIDECAR_CERTIFICATE,
    PARAM_SIDECAR_PATH,
    PARAM_SIDECAR_PORT,
    RTMConfig,
    checked_parameters,
)
from .connection import Link
from .history import History
from .lifecycle import ClientSession, LoginStreams
from .lock import Lock
from .offsets import OffsetBook
from .presence import Presence
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

_client_ids = itertools.count(1)
F = TypeVar("F")
ChannelKey = tuple[ChannelType, str]


class _Features:
    """The ``ChannelFeatures`` of a client: its presence, metadata and lock views."""

    __slots__ = ("_lock", "_presence", "_storage")

    def __init__(self, presence: Presence, storage: Storage, lock: Lock) -> None:
        self._presence = presence
        self._storage = storage
        self._lock = lock

    def state_for(self, key: ChannelKey) -> dict[str, str]:
        return self._presence.state_for(key)

    def entered(
        self,
        key: ChannelKey,
        result: SubscribeChannelResult | StreamJoinResult,
        with_presence: bool,
    ) -> None:
        self._presence.entered(key, result.presence, with_presence)
        if result.metadata is not None:
            self._storage.open_view(key, result.metadata)
        if result.locks is not None:
            self._lock.open_view(key, result.locks)

    def left(self, key: ChannelKey, code: ErrorCode) -> None:
        self._presence.left(key, code)
        self._storage.close_view(key, code)
        self._lock.close_view(key, code)


class RTMClient:
    """An RTM 2 client. Create one per user; ``login``, work, ``logout``; log in again if needed.

    ``async with RTMClient(config) as client:`` logs out (and stops a sidecar the client
    started) when the block ends, also on an exception; logging in stays ``client.login``.
    """

    def __init__(self, config: RTMConfig) -> None:
        self._params: dict[str, Any] = {}
        self._id = next(_client_ids)
        self._log = config.logger or logging.getLogger(f"rtm2.client.{self._id}")
        self._session = ClientSession(
            config, self._params, self._log, self._on_push, self._restore, self._reset
        )
        self.presence = Presence(self._session)
        self.storage = Storage(self._session)
        self.lock = Lock(self._session)
        self.history = History(self._session)
        self._features = _Features(self.presence, self.storage, self.lock)
        self._messages = MessageChannels(self._session, self._features)
        self._stream_channels: dict[str, StreamChannel] = {}
        self._push_handlers = self._routes()

    def __repr__(self) -> str:
        cfg = self.config
        return f"<RTMClient {cfg.user_id}@{cfg.app_id[:8]} {self._session.state_name}>"

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
            if self._session.sidecar.started:
                await self._session.sidecar.stop()

    # --- public properties -----------------------------------------------------------------

    @property
    def config(self) -> RTMConfig:
        """The configuration; a new one (``dataclasses.replace``) applies from then on."""
        return self._session.config

    @config.setter
    def config(self, config: RTMConfig) -> None:
        self._session.config = config

    @property
    def errors(self) -> EventStream[RTMError]:
        """Fatal errors of the current login, such as a connection that cannot come back."""
        return self._session.errors

    @property
    def peer_messages(self) -> EventStream[Message]:
        """Messages other users sent to this one (``channel_type`` USER) during this login."""
        return self._session.peer_messages

    @property
    def recovery_events(self) -> EventStream[RecoveryEvent]:
        """After a reconnection: subscriptions that could not be set up again, or that may
        have missed messages (see ``rtm2.RecoveryEvent``)."""
        return self._session.recovery_events

    @property
    def logged_in(self) -> bool:
        """Logged in and connected right now."""
        return self._session.logged_in

    @property
    def session_id(self) -> str:
        return self._session.session_id

    def stream_channel(self, name: str) -> StreamChannel:
        """The stream channel ``name``: the same object every time for the same name.

        Raises:
            RTMError: INVALID_CHANNEL_NAME.
        """
        channel = self._stream_channels.get(name)
        if channel is None:
            channel = self._stream_channels[name] = StreamChannel(
                self._session, self._features, name
            )
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
        return await self._messages.subscribe(
            channel, with_message, with_presence, with_metadata, with_lock, be_quiet
        )

    async def unsubscribe(self, channel: str) -> None:
        """Unsubscribe from a message channel: tells the server and ends its streams."""
        await self._messages.unsubscribe(channel)

    async def publish(
        self,
        channel: str,
        message: bytes | str,
        *,
        channel_type: ChannelType = ChannelType.MESSAGE,
        custom_type: str = "",
        store_in_history: bool = False,
    ) -> None:
        """Publish to a message channel, or (``channel_type=USER``) send to the user
        ``channel``. A ``str`` is sent as STRING (UTF-8), bytes-like as BINARY.

        A peer message returns once the recipient's session has it; an offline recipient
        raises CHANNEL_RECEIVER_OFFLINE. Publishing to a channel needs no subscription.

        ``store_in_history``: also keep the message in the channel's (or the peer
        conversation's) history, read with ``client.history.get_messages``; the call returns
        once it is stored durably. An app without history raises
        HISTORY_OPERATION_NOT_PERMITTED; a stored peer message to an offline user raises
        CHANNEL_RECEIVER_OFFLINE_BUT_STORE_SUCCEEDED (docs/HISTORY.md).
        """
        if store_in_history:
            await self._messages.publish_stored(channel, message, channel_type, custom_type)
            return
        await self._messages.publish(channel, message, channel_type, custom_type)

    # --- parameters ------------------------------------------------------------------------

    def set_parameters(self, params: dict[str, Any]) -> None:
        """Set client parameters.

        ``PARAM_ENDPOINT``: a ``ws://``/``wss://`` URL, or a list of them to fail over between.
        Without it the client runs in sidecar mode: it uses the rtm2 server listening on
        127.0.0.1:``PARAM_SIDECAR_PORT`` (7001), or starts one (``PARAM_SIDECAR_PATH``,
        ``PARAM_SIDECAR_CERTIFICATE``). The Go SDK's ``golang_sidecar_endpoint`` ("host:port"),
        ``golang_sidecar_port`` and ``golang_sidecar_path`` are accepted too.
        """
        self._params.update(checked_parameters(params))

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
        return await self._session.login(token)

    async def renew_token(self, token: str) -> None:
        """Replace the login token; the session then lives until the new token expires.

        Raises:
            RTMError: NOT_LOGIN; INVALID_TOKEN or TOKEN_EXPIRED (the session keeps the old
                token); RENEW_TOKEN_TIMEOUT.
        """
        await self._session.renew_token(token)

    async def logout(self) -> None:
        """Log out, close the connection and end every event stream of this login.

        Idempotent: logging out a client that is not logged in (or whose session already
        failed) just cleans up. The client can log in again afterwards.
        """
        await self._session.logout()

    # --- hooks of the session --------------------------------------------------------------

    def _reset(self) -> None:
        """Logged out: every channel and view ends."""
        for channel in self._stream_channels.values():
            channel._reset(ErrorCode.NOT_LOGIN)
        self._messages.reset()
        self.presence.reset()
        self.storage.reset()
        self.lock.reset()

    async def _restore(self) -> None:
        """A new session: subscribe and join again, as before the connection was lost."""
        await self._messages.restore()
        for stream_channel in list(self._stream_channels.values()):
            await stream_channel._restore()
        await self.storage.restore()

    def _on_push(self, frame: ServerFrame) -> None:
        handler = self._push_handlers.get(type(frame))
        if handler is not None:
            handler(frame)

    def _routes(self) -> dict[type[Any], Callable[[Any], None]]:
        """Push frame type -> its handler. The handlers look their target up when a frame
        comes, so a sub-API's ``_on_event`` replaced later (as test spies do) still gets it."""
        routes: dict[type[Any], Callable[[Any], None]] = {}

        def route(kind: type[F], handler: Callable[[F], None]) -> None:
            routes[kind] = handler

        route(ChannelMessage, self._messages.on_message)
        route(PresenceEventFrame, lambda frame: self.presence._on_event(frame))
        route(StorageEventFrame, lambda frame: self.storage._on_event(frame))
        route(LockEventFrame, lambda frame: self.lock._on_event(frame))
        route(StreamMessage, self._on_stream_message)
        route(TopicEvent, self._on_topic_event)
        route(TokenWillExpire, self._on_token_will_expire)
        route(ChannelClosed, self._on_channel_closed)
        return routes

    def _on_stream_message(self, frame: StreamMessage) -> None:
        channel = self._stream_channels.get(frame.channel)
        if channel is not None:
            channel._on_message(frame)

    def _on_topic_event(self, frame: TopicEvent) -> None:
        channel = self._stream_channels.get(frame.channel)
        if channel is not None:
            channel._on_topic_event(frame)

    def _on_token_will_expire(self, frame: TokenWillExpire) -> None:
        self._log.info("token for %r will expire at %d", frame.channel, frame.expires_at)
        if not frame.channel:
            self._session.token_events.put("")
        elif (channel := self._stream_channels.get(frame.channel)) is not None:
            channel._on_token_will_expire()

    def _on_channel_closed(self, frame: ChannelClosed) -> None:
        channel = self._stream_channels.get(frame.channel)
        if channel is not None:
            self._log.warning("removed from channel %s: %s", frame.channel, frame.message)
            channel._on_closed(frame)

    # --- for tests and debugging: the session's parts, under their old names ----------------

    @property
    def _link(self) -> Link | None:
        return self._session.link

    @property
    def _conn_events(self) -> EventStream[ConnectionEvent]:
        return self._session.conn_events

    @property
    def _offsets(self) -> OffsetBook:
        return self._session.offsets

    @property
    def _reconnecting(self) -> asyncio.Task[None] | None:
        return self._session.reconnecting

    @property
    def _sidecar(self) -> Sidecar:
        return self._session.sidecar
