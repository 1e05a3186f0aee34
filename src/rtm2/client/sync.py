"""``rtm2.sync``: the SDK as blocking calls, for code that does not run an asyncio loop.

Django and Flask views, Celery tasks and scripts call ``rtm2.sync.RTMClient`` like any other
library; underneath, the asyncio ``rtm2.RTMClient`` runs on an event-loop thread of the sync
client's own (``sync_loop.py``). Every method has the asyncio method's name, parameters and
result, except that event streams are blocking iterators::

    with rtm2.sync.RTMClient(config) as client:
        client.login(token)
        for message in client.subscribe("lobby"):
            ...

Leaving the ``with`` block (also by an exception) logs out and ends the thread. Errors are the
asyncio client's, unchanged: ``rtm2.RTMError`` with its code. A call to a closed client
raises NOT_INITIALIZED, and a call from inside a running event loop raises RuntimeError,
since blocking there could stall the loop for good.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from types import TracebackType
from typing import Any, NamedTuple

from ..errors import RTMError
from ..types import ChannelType, ConnectionEvent, Message, RecoveryEvent
from . import RTMClient as AsyncRTMClient
from . import RTMConfig
from .sync_apis import JoinResult, Lock, Presence, Storage, StreamChannel
from .sync_history import History
from .sync_loop import EventStream, LoopThread, refuse_in_event_loop

__all__ = [
    "EventStream",
    "History",
    "JoinResult",
    "Lock",
    "LoginStreams",
    "Presence",
    "RTMClient",
    "Storage",
    "StreamChannel",
]

# How long ``close`` lets logout take beyond one request timeout: closing the connection and
# stopping a sidecar.
CLOSE_GRACE = 10.0


class LoginStreams(NamedTuple):
    """What ``login`` returns: connection events and token-will-expire notices."""

    conn_events: EventStream[ConnectionEvent]
    token_events: EventStream[str]


class RTMClient:
    """A blocking RTM 2 client: ``rtm2.RTMClient``'s methods as plain calls.

    Use it as a context manager, or call ``close()``: that logs out and ends the client's
    event-loop thread. Several clients may live in one process, and one client may be called
    from several threads at once.
    """

    def __init__(self, config: RTMConfig) -> None:
        refuse_in_event_loop()
        self._config = config
        self._log = config.logger or logging.getLogger("rtm2.sync")
        self._loop = LoopThread(f"rtm2-sync-{config.user_id}")
        try:
            # Built on the loop thread: whatever it sets up belongs to that loop.
            self._client = self._loop.call(lambda: AsyncRTMClient(config))
        except BaseException:
            self._loop.stop()
            raise
        self.presence = Presence(self._client.presence, self._loop)
        self.storage = Storage(self._client.storage, self._loop)
        self.lock = Lock(self._client.lock, self._loop)
        self.history = History(self._client.history, self._loop)
        self._channels: dict[str, StreamChannel] = {}
        self._channels_lock = threading.Lock()

    @property
    def config(self) -> RTMConfig:
        """The configuration the client was made with."""
        return self._config

    def __repr__(self) -> str:
        return f"<sync {self._client!r}{' closed' if self._loop.closed else ''}>"

    def __enter__(self) -> RTMClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Log out and end the event-loop thread. Idempotent; the client cannot log in again.

        A logout that fails (say, the server is gone) is logged, not raised: closing goes on.
        """
        if self._loop.closed:
            return
        refuse_in_event_loop()
        client = self._client
        limit = self.config.request_timeout + CLOSE_GRACE

        async def logout() -> None:
            async with asyncio.timeout(limit):
                await client.logout()

        try:
            self._loop.run(logout)
        except (RTMError, TimeoutError) as exc:
            self._log.warning("closing %s: logout failed (%r); closing anyway", self, exc)
        finally:
            self._loop.stop()

    @property
    def closed(self) -> bool:
        return self._loop.closed

    # --- properties ----------------------------------------------------------------------------

    @property
    def errors(self) -> EventStream[RTMError]:
        """Fatal errors of the current login, such as a connection that cannot come back."""
        return EventStream(self._client.errors, self._loop)

    @property
    def peer_messages(self) -> EventStream[Message]:
        """Messages other users sent to this one (``channel_type`` USER) during this login."""
        return EventStream(self._client.peer_messages, self._loop)

    @property
    def recovery_events(self) -> EventStream[RecoveryEvent]:
        """After a reconnection: subscriptions not set up again, or that may have missed
        messages."""
        return EventStream(self._client.recovery_events, self._loop)

    @property
    def logged_in(self) -> bool:
        """Logged in and connected right now."""
        return self._client.logged_in

    @property
    def session_id(self) -> str:
        return self._client.session_id

    def stream_channel(self, name: str) -> StreamChannel:
        """The stream channel ``name``: the same object every time for the same name.

        Raises:
            RTMError: INVALID_CHANNEL_NAME.
        """
        with self._channels_lock:
            channel = self._channels.get(name)
            if channel is None:
                channel = StreamChannel(
                    self._loop.call(lambda: self._client.stream_channel(name)), self._loop
                )
                self._channels[name] = channel
            return channel

    # --- parameters and the login lifecycle ------------------------------------------------------

    def set_parameters(self, params: dict[str, Any]) -> None:
        """Set client parameters, e.g. ``{rtm2.PARAM_ENDPOINT: "ws://host:7001"}``."""
        self._loop.call(lambda: self._client.set_parameters(params))

    def get_parameters(self) -> dict[str, Any]:
        """A copy of the parameters; changing it changes nothing."""
        return self._loop.call(self._client.get_parameters)

    def login(self, token: str = "") -> LoginStreams:
        """Connect and log in; returns the connection-event and token-event streams.

        Raises:
            RTMError: as ``rtm2.RTMClient.login`` (DUPLICATE_OPERATION, INVALID_TOKEN, ...).
        """
        streams = self._loop.run(lambda: self._client.login(token))
        return LoginStreams(
            EventStream(streams.conn_events, self._loop),
            EventStream(streams.token_events, self._loop),
        )

    def renew_token(self, token: str) -> None:
        """Replace the login token; the session then lives until the new token expires."""
        self._loop.run(lambda: self._client.renew_token(token))

    def logout(self) -> None:
        """Log out and end every event stream of this login; the client may log in again."""
        self._loop.run(self._client.logout)

    # --- message channels and peer messages ----------------------------------------------------

    def subscribe(
        self,
        channel: str,
        *,
        with_message: bool = True,
        with_presence: bool = True,
        with_metadata: bool = False,
        with_lock: bool = False,
        be_quiet: bool = False,
    ) -> EventStream[Message]:
        """Subscribe to a message channel; returns its message stream."""
        stream = self._loop.run(
            lambda: self._client.subscribe(
                channel,
                with_message=with_message,
                with_presence=with_presence,
                with_metadata=with_metadata,
                with_lock=with_lock,
                be_quiet=be_quiet,
            )
        )
        return EventStream(stream, self._loop)

    def unsubscribe(self, channel: str) -> None:
        """Unsubscribe from a message channel: tells the server and ends its streams."""
        self._loop.run(lambda: self._client.unsubscribe(channel))

    def publish(
        self,
        channel: str,
        message: bytes | str,
        *,
        channel_type: ChannelType = ChannelType.MESSAGE,
        custom_type: str = "",
        store_in_history: bool = False,
    ) -> None:
        """Publish to a message channel, or (``channel_type=USER``) send to a user."""
        self._loop.run(
            lambda: self._client.publish(
                channel,
                message,
                channel_type=channel_type,
                custom_type=custom_type,
                store_in_history=store_in_history,
            )
        )
