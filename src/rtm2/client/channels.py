"""Message channels and peer messages: subscribe, unsubscribe, publish, and their messages."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ErrorCode, RTMError
from ..protocol.frames import (
    ChannelMessage,
    Publish,
    Subscribe,
    SubscribeChannelResult,
    Unsubscribe,
)
from ..protocol.names import is_valid_channel_name
from ..types import ChannelType, Message, MessageType, RecoveryEvent
from .common import message_payload
from .streams import EventStream

if TYPE_CHECKING:
    from .lifecycle import ClientSession
    from .session import ChannelFeatures

__all__ = ["MessageChannels"]

# What a message channel was subscribed with, to subscribe again after a new login:
# (with_message, with_presence, with_metadata, with_lock, be_quiet).
Flags = tuple[bool, bool, bool, bool, bool]


class MessageChannels:
    """The client's message-channel subscriptions, and its peer messages."""

    def __init__(self, session: ClientSession, features: ChannelFeatures) -> None:
        self._session = session
        self._features = features
        self._flags: dict[str, Flags] = {}
        self._streams: dict[str, EventStream[Message]] = {}
        self._subscribing: set[str] = set()

    async def subscribe(
        self,
        channel: str,
        with_message: bool,
        with_presence: bool,
        with_metadata: bool,
        with_lock: bool,
        be_quiet: bool,
    ) -> EventStream[Message]:
        """See ``RTMClient.subscribe``."""
        session = self._session
        session.require_login()
        if not is_valid_channel_name(channel):
            raise RTMError(ErrorCode.INVALID_CHANNEL_NAME, f"invalid channel name {channel!r}")
        if channel in self._streams or channel in self._subscribing:
            raise RTMError(ErrorCode.CHANNEL_SUBSCRIBE_FAILED, f"already subscribed to {channel!r}")
        key = (ChannelType.MESSAGE, channel)
        stream: EventStream[Message] = EventStream(channel, on_overflow=session.overflowed)

        flags = (with_message, with_presence, with_metadata, with_lock, be_quiet)

        def subscribed(result: SubscribeChannelResult | None) -> None:
            assert result is not None
            self._streams[channel] = stream
            self._flags[channel] = flags
            session.offsets.start((ChannelType.MESSAGE, channel, ""), result.offset)
            self._features.entered(key, result, with_presence)

        self._subscribing.add(channel)
        try:
            await session.request(
                lambda rid: Subscribe(
                    rid,
                    channel,
                    with_message,
                    with_presence,
                    with_metadata,
                    with_lock,
                    be_quiet,
                    self._features.state_for(key),
                ),
                SubscribeChannelResult,
                subscribed,
            )
        finally:
            self._subscribing.discard(channel)
        return stream

    async def unsubscribe(self, channel: str) -> None:
        """See ``RTMClient.unsubscribe``."""
        self._session.require_login()
        if channel not in self._streams:
            raise RTMError(ErrorCode.CHANNEL_NOT_SUBSCRIBED, f"not subscribed to {channel!r}")

        def unsubscribed(_: None) -> None:
            self._drop(channel, ErrorCode.CHANNEL_NOT_SUBSCRIBED)

        await self._session.request(lambda rid: Unsubscribe(rid, channel), None, unsubscribed)

    async def publish(
        self, channel: str, message: bytes | str, channel_type: ChannelType, custom_type: str
    ) -> None:
        """See ``RTMClient.publish``."""
        payload, message_type = message_payload(message)
        await self._session.request(
            lambda rid: Publish(rid, channel, payload, message_type, channel_type, custom_type),
            None,
        )

    async def publish_stored(
        self, channel: str, message: bytes | str, channel_type: ChannelType, custom_type: str
    ) -> None:
        """See ``RTMClient.publish`` (``store_in_history=True``)."""
        if channel_type == ChannelType.STREAM:
            raise RTMError(
                ErrorCode.INVALID_PARAMETER, "stream channels keep no history: publish_topic"
            )
        payload, message_type = message_payload(message)
        await self._session.request(
            lambda rid: Publish(
                rid, channel, payload, message_type, channel_type, custom_type, True
            ),
            None,
        )

    def _drop(self, channel: str, code: ErrorCode) -> None:
        self._flags.pop(channel, None)
        self._session.offsets.forget((ChannelType.MESSAGE, channel, ""))
        stream = self._streams.pop(channel, None)
        if stream is not None:
            stream.close(code)
        self._features.left((ChannelType.MESSAGE, channel), code)

    def reset(self) -> None:
        """Logged out: every subscription ends."""
        for name in list(self._streams):
            self._drop(name, ErrorCode.NOT_LOGIN)

    # --- pushes from the read loop ---------------------------------------------------------

    def on_message(self, frame: ChannelMessage) -> None:
        peer = frame.channel_type == ChannelType.USER
        stream = self._session.peer_messages if peer else self._streams.get(frame.channel)
        if stream is None:
            return
        if not self._session.offsets.fresh((ChannelType.MESSAGE, frame.channel, ""), frame.offset):
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

    # --- after a new login -----------------------------------------------------------------

    async def restore(self) -> None:
        """A new session: subscribe again, as before the connection was lost."""
        for channel, flags in list(self._flags.items()):
            await self._resubscribe(channel, flags)

    async def _resubscribe(self, channel: str, flags: Flags) -> None:
        session = self._session
        key = (ChannelType.MESSAGE, channel)
        message, presence, metadata, lock, quiet = flags
        state = self._features.state_for(key)
        since, epoch = session.offsets.recovering_from((ChannelType.MESSAGE, channel, ""))
        recovered = False

        def subscribed(result: SubscribeChannelResult | None) -> None:
            nonlocal recovered
            assert result is not None
            recovered = result.recovered
            session.offsets.resumed_at((ChannelType.MESSAGE, channel, ""), result.offset, recovered)
            self._features.entered(key, result, presence)

        try:
            await session.request(
                lambda rid: Subscribe(
                    rid, channel, message, presence, metadata, lock, quiet, state, since, epoch
                ),
                SubscribeChannelResult,
                subscribed,
            )
        except RTMError as exc:
            self._drop(channel, ErrorCode.CHANNEL_SUBSCRIBE_FAILED)
            session.recovered(
                RecoveryEvent(channel, ChannelType.MESSAGE, "", False, False, str(exc))
            )
            return
        if not recovered:
            session.recovered(RecoveryEvent(channel, ChannelType.MESSAGE, "", False, True))
