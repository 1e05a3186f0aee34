"""StreamChannel: join, topics, publish, per-publisher subscriptions (RTM 2 stream channels).

Local state mirrors the server's exactly: it changes when a reply arrives (inside the read
loop, before any push behind that reply is handled), never on hope. Precondition errors that
the local state already answers (not joined, topic not joined) are raised without a round trip.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

from ..errors import ErrorCode, RTMError
from ..protocol import frames as f
from ..protocol.names import is_valid_channel_name
from ..types import (
    ChannelType,
    ConnectionChangeReason,
    ConnectionState,
    Message,
    MessageType,
    RecoveryEvent,
    StreamPriority,
    StreamQos,
    TopicEvent,
    TopicEventType,
)
from .common import message_payload
from .streams import EventStream

if TYPE_CHECKING:
    from .session import ChannelFeatures, ChannelSession

__all__ = ["JoinResult", "StreamChannel"]

_MESSAGE_TYPES = {int(t): t for t in MessageType}


class JoinResult(NamedTuple):
    """What ``StreamChannel.join`` returns."""

    snapshot: dict[str, list[str]]  # topic -> publisher user ids at join time
    topic_events: EventStream[TopicEvent]
    token_events: EventStream[str]


class StreamChannel:
    """A stream channel. Get it with ``client.stream_channel(name)``: one object per name."""

    def __init__(self, session: ChannelSession, features: ChannelFeatures, name: str) -> None:
        if not is_valid_channel_name(name):
            raise RTMError(ErrorCode.INVALID_CHANNEL_NAME, f"invalid channel name {name!r}")
        self._session = session
        self._features = features
        self._name = name
        self._key = (ChannelType.STREAM, name)
        self._joined = False
        self._busy = False
        self._topics: dict[str, list[str]] = {}  # topic -> publishers, as the server told us
        self._joined_topics: set[str] = set()
        # What the channel was joined with, and each topic joined with: to join again after
        # the connection comes back on a new session.
        self._join_args: tuple[str, bool, bool, bool, bool] = ("", True, False, False, False)
        self._topic_args: dict[str, tuple[int, int, str, bool]] = {}
        self._subs: dict[str, set[str]] = {}  # topic -> publishers picked
        self._messages: dict[str, EventStream[Message]] = {}
        self._topic_events: EventStream[TopicEvent] = EventStream(f"{name}/topic_events")
        self._token_events: EventStream[str] = EventStream(f"{name}/token_events")

    def __repr__(self) -> str:
        return f"<StreamChannel {self._name} {'joined' if self._joined else 'not joined'}>"

    @property
    def channel_name(self) -> str:
        return self._name

    @property
    def joined(self) -> bool:
        return self._joined

    @property
    def topic_events(self) -> EventStream[TopicEvent]:
        """The topic-event stream of the current (or last) join, as ``join`` returned it."""
        return self._topic_events

    @property
    def token_events(self) -> EventStream[str]:
        """The token-will-expire stream of the current (or last) join."""
        return self._token_events

    @property
    def topics(self) -> dict[str, list[str]]:
        """The channel's topics and their publishers, kept current by topic events."""
        return {topic: list(users) for topic, users in self._topics.items()}

    # --- joining and leaving ---------------------------------------------------------------

    async def __aenter__(self) -> StreamChannel:
        """``async with client.stream_channel(name) as channel:`` joins with the default
        options (the login token); ``topic_events`` and ``token_events`` hold the streams."""
        await self.join()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Leave the channel, however the block ends (unless it is no longer joined).

        When an exception is already escaping, a failing leave is logged, not raised, so the
        application sees the error that ended the block.
        """
        if not self._joined:
            return
        try:
            await self.leave()
        except RTMError as exc:
            if exc_info[0] is None:
                raise
            self._session.log.warning("leaving %s on an error failed: %s", self._name, exc)

    async def join(
        self,
        token: str | None = None,
        *,
        with_presence: bool = True,
        with_metadata: bool = False,
        with_lock: bool = False,
        be_quiet: bool = False,
    ) -> JoinResult:
        """Join the channel.

        Args:
            token: a stream token for this channel and user (``rtm2.build_stream_token``), or
                a combined login + stream token. ``None`` presents the login token, which is
                enough when it is a combined token or the app lets any logged-in user join.

        Returns:
            The topic snapshot, the channel's topic-event stream (a SNAPSHOT event first,
            then REMOTE_JOIN / REMOTE_LEAVE) and its token-will-expire stream.

        Raises:
            RTMError: NOT_LOGIN; CHANNEL_JOIN_FAILED (already joined, or the channel is full);
                CHANNEL_INSTANCE_EXCEED_LIMITATION; INVALID_TOKEN / TOKEN_EXPIRED.
        """
        if self._joined or self._busy:
            raise RTMError(ErrorCode.CHANNEL_JOIN_FAILED, f"already joined {self._name!r}")
        session = self._session
        session.require_login()
        presented = session.login_token if token is None else token
        self._busy = True
        self._join_args = (presented, with_presence, with_metadata, with_lock, be_quiet)
        # Fresh streams exist before the request leaves, so no event behind the reply is lost.
        self._topic_events = EventStream(f"{self._name}/topic_events")
        self._token_events = EventStream(f"{self._name}/token_events")
        try:
            await session.request(
                lambda rid: f.StreamJoin(
                    rid,
                    self._name,
                    presented,
                    with_presence,
                    with_metadata,
                    with_lock,
                    be_quiet,
                    self._features.state_for(self._key),
                ),
                f.StreamJoinResult,
                lambda result: self._joined_now(result, with_presence),
            )
        finally:
            self._busy = False
        session.channel_event(
            ConnectionState.CONNECTED, ConnectionChangeReason.JOIN_SUCCESS, self._name
        )
        return JoinResult(self.topics, self._topic_events, self._token_events)

    def _joined_now(self, result: f.StreamJoinResult | None, with_presence: bool) -> None:
        assert result is not None
        self._joined = True
        self._features.entered(self._key, result, with_presence)
        self._topics = {t.topic: [p.user for p in t.publishers] for t in result.topics}
        self._joined_topics.clear()
        self._subs.clear()
        self._topic_events.put(TopicEvent(TopicEventType.SNAPSHOT, self._name, "", "", self.topics))

    async def leave(self) -> None:
        """Leave the channel: drops every topic role and subscription and ends its streams.

        The same object can join again afterwards.
        """
        self._require_joined()
        try:
            await self._session.request(lambda rid: f.StreamLeave(rid, self._name), None)
        except RTMError as exc:
            if exc.code != ErrorCode.CHANNEL_NOT_JOINED:  # already gone on the server: fine
                raise
        self._reset(ErrorCode.CHANNEL_NOT_JOINED)
        self._session.channel_event(
            ConnectionState.DISCONNECTED, ConnectionChangeReason.LEAVE_CHANNEL, self._name
        )

    async def renew_token(self, token: str) -> None:
        """Replace this channel's stream token (after a token-will-expire notice)."""
        self._require_joined()
        await self._session.request(lambda rid: f.RenewToken(rid, token, self._name), None)
        self._join_args = (token, *self._join_args[1:])

    # --- topics ----------------------------------------------------------------------------

    async def join_topic(
        self,
        topic: str,
        qos: StreamQos = StreamQos.UNORDERED,
        priority: StreamPriority = StreamPriority.NORMAL,
        meta: str = "",
        sync_media: bool = False,
    ) -> None:
        """Become a publisher of ``topic``; other members get a REMOTE_JOIN topic event."""
        self._require_joined()

        def joined(_: None) -> None:
            self._topic_args[topic] = (qos, priority, meta, sync_media)
            self._publishing(topic, True)

        await self._session.request(
            lambda rid: f.JoinTopic(rid, self._name, topic, qos, priority, meta, sync_media),
            None,
            joined,
        )

    async def leave_topic(self, topic: str) -> None:
        """Stop publishing in ``topic``; other members get a REMOTE_LEAVE topic event."""
        self._require_joined()
        if topic not in self._joined_topics:
            raise RTMError(ErrorCode.CHANNEL_TOPIC_NOT_JOINED, f"not in topic {topic!r}")
        await self._session.request(
            lambda rid: f.LeaveTopic(rid, self._name, topic),
            None,
            lambda _: self._publishing(topic, False),
        )

    def _publishing(self, topic: str, joined: bool) -> None:
        """Our own topic role changed: keep ``topics`` complete (we get no event about us)."""
        me = self._session.config.user_id
        publishers = self._topics.setdefault(topic, [])
        if joined:
            self._joined_topics.add(topic)
            if me not in publishers:
                publishers.append(me)
        else:
            self._joined_topics.discard(topic)
            self._topic_args.pop(topic, None)
            if me in publishers:
                publishers.remove(me)
            if not publishers:
                del self._topics[topic]

    async def publish_topic(
        self,
        topic: str,
        message: bytes | str,
        custom_type: str = "",
        send_ts: int = 0,
        store_in_history: bool = False,
    ) -> None:
        """Publish one message in a topic joined with ``join_topic``.

        ``str`` messages are sent as STRING (UTF-8), bytes-like ones as BINARY. Returns once
        the server accepted the message for delivery. Stream channels keep no history, as in
        RTM 2: ``store_in_history=True`` raises INVALID_PARAMETER.
        """
        if store_in_history:
            raise RTMError(
                ErrorCode.INVALID_PARAMETER, "stream-channel topics are not stored in history"
            )
        self._require_joined()
        if topic not in self._joined_topics:
            raise RTMError(ErrorCode.CHANNEL_TOPIC_NOT_JOINED, f"not in topic {topic!r}")
        payload, message_type = message_payload(message)
        await self._session.request(
            lambda rid: f.PublishTopic(
                rid, self._name, topic, payload, message_type, custom_type, send_ts
            ),
            None,
        )

    # --- subscriptions ---------------------------------------------------------------------

    async def subscribe_topic(self, topic: str, users: Iterable[str] = ()) -> EventStream[Message]:
        """Receive the messages of ``users`` in ``topic``; returns the topic's message stream.

        Subscriptions add up: each call adds users to the topic's set (at most 64). A user who
        has not joined the topic yet is picked in advance: delivery starts when they join. An
        empty ``users`` picks every current publisher of the topic (up to the limit); later
        publishers are not added by themselves. The same stream is returned for the same
        topic until the topic is unsubscribed as a whole or the channel is left.

        Raises:
            RTMError: CHANNEL_NOT_JOINED; CHANNEL_INVALID_TOPIC_NAME;
                CHANNEL_EXCEED_TOPIC_USER_LIMITATION (nothing changes);
                CHANNEL_EXCEED_TOPIC_LIMITATION (too many subscribed topics).
        """
        self._require_joined()
        wanted = list(users)
        stream = self._messages.get(topic)
        created = stream is None
        if stream is None:
            stream = self._messages[topic] = EventStream(
                f"{self._name}/{topic}", on_overflow=self._session.overflowed
            )

        def subscribed(result: f.SubscribeResult | None) -> None:
            assert result is not None
            self._subs.setdefault(topic, set()).update(result.succeeded)
            self._seen(topic, result.offset)

        try:
            await self._session.request(
                lambda rid: f.SubscribeTopic(rid, self._name, topic, wanted),
                f.SubscribeResult,
                subscribed,
            )
        except BaseException:
            if created and topic not in self._subs:
                self._messages.pop(topic, None)
            raise
        return stream

    async def unsubscribe_topic(self, topic: str, users: Iterable[str] = ()) -> None:
        """Stop receiving ``users`` in ``topic``; an empty ``users`` drops the whole topic and
        ends its message stream."""
        self._require_joined()
        if topic not in self._subs:
            raise RTMError(
                ErrorCode.CHANNEL_TOPIC_NOT_SUBSCRIBED, f"not subscribed to topic {topic!r}"
            )
        dropped = list(users)

        def unsubscribed(_: None) -> None:
            if dropped:
                self._subs[topic].difference_update(dropped)
            else:
                del self._subs[topic]
                self._session.offsets.forget((ChannelType.STREAM, self._name, topic))
                stream = self._messages.pop(topic, None)
                if stream is not None:
                    stream.close(ErrorCode.CHANNEL_TOPIC_NOT_SUBSCRIBED)

        await self._session.request(
            lambda rid: f.UnsubscribeTopic(rid, self._name, topic, dropped), None, unsubscribed
        )

    async def get_subscribed_users(self, topic: str) -> list[str]:
        """The publishers picked in ``topic`` (answered locally, always current), sorted."""
        self._require_joined()
        users = self._subs.get(topic)
        if users is None:
            raise RTMError(
                ErrorCode.CHANNEL_TOPIC_NOT_SUBSCRIBED, f"not subscribed to topic {topic!r}"
            )
        return sorted(users)

    # --- pushes from the client's read loop ------------------------------------------------

    def _seen(self, topic: str, offset: int) -> None:
        """Remember how far this topic got, to resume from there after a blip."""
        self._session.offsets.seen((ChannelType.STREAM, self._name, topic), offset)

    def _on_message(self, frame: f.StreamMessage) -> None:
        picked = self._subs.get(frame.topic)
        if picked is None or frame.publisher not in picked:
            return
        if not self._session.offsets.fresh(
            (ChannelType.STREAM, self._name, frame.topic), frame.offset
        ):
            return  # already delivered: a replay overlapping what arrived live
        stream = self._messages.get(frame.topic)
        if stream is None:
            return
        message_type = _MESSAGE_TYPES.get(frame.message_type, MessageType.BINARY)
        payload: bytes | str = frame.payload
        if message_type is MessageType.STRING:
            payload = frame.payload.decode(errors="replace")
        stream.put(
            Message(
                frame.publisher,
                self._name,
                ChannelType.STREAM,
                frame.topic,
                payload,
                message_type,
                frame.custom_type,
                frame.timestamp,
                frame.send_ts,
            )
        )

    def _on_topic_event(self, frame: f.TopicEvent) -> None:
        if not self._joined:
            return
        publishers = self._topics.setdefault(frame.topic, [])
        if frame.kind == TopicEventType.REMOTE_JOIN:
            if frame.user not in publishers:
                publishers.append(frame.user)
            kind = TopicEventType.REMOTE_JOIN
        else:
            if frame.user in publishers:
                publishers.remove(frame.user)
            if not publishers:
                del self._topics[frame.topic]
            kind = TopicEventType.REMOTE_LEAVE
        self._topic_events.put(TopicEvent(kind, self._name, frame.user, frame.topic, self.topics))

    def _on_token_will_expire(self) -> None:
        self._token_events.put(self._name)

    def _on_closed(self, frame: f.ChannelClosed) -> None:
        """The server removed us from the channel (e.g. its token expired)."""
        if not self._joined:
            return
        code = ErrorCode.TOKEN_EXPIRED if frame.code == ErrorCode.TOKEN_EXPIRED else None
        self._reset(code or ErrorCode.CHANNEL_NOT_JOINED)
        try:
            reason = ConnectionChangeReason(frame.reason)
        except ValueError:
            reason = ConnectionChangeReason.REJECTED_BY_SERVER
        self._session.channel_event(ConnectionState.FAILED, reason, self._name)

    # --- after a reconnection -----------------------------------------------------------------

    async def _restore(self) -> None:
        """The client is on a new session: join again with the same topics and picks, keeping
        every stream; on failure the channel ends (and the app gets a RecoveryEvent)."""
        if not self._joined:
            return
        token, presence, metadata, lock, quiet = self._join_args
        topics = dict(self._topic_args)
        picks = {topic: sorted(users) for topic, users in self._subs.items()}
        session = self._session
        try:
            await session.request(
                lambda rid: f.StreamJoin(
                    rid,
                    self._name,
                    token,
                    presence,
                    metadata,
                    lock,
                    quiet,
                    self._features.state_for(self._key),
                ),
                f.StreamJoinResult,
                lambda result: self._rejoined(result, presence),
            )
            for topic, args in topics.items():
                await self._rejoin_topic(topic, *args)
            recovered = {
                topic
                for topic, users in picks.items()
                if users and await self._repick(topic, users)
            }
        except RTMError as exc:
            self._reset(ErrorCode.CHANNEL_JOIN_FAILED)
            session.recovered(
                RecoveryEvent(self._name, ChannelType.STREAM, "", False, False, str(exc))
            )
            return
        for topic in picks:
            if topic not in recovered:
                session.recovered(RecoveryEvent(self._name, ChannelType.STREAM, topic, False, True))

    async def _rejoin_topic(
        self, topic: str, qos: int, priority: int, meta: str, sync_media: bool
    ) -> None:
        await self._session.request(
            lambda rid: f.JoinTopic(rid, self._name, topic, qos, priority, meta, sync_media), None
        )

    async def _repick(self, topic: str, users: list[str]) -> bool:
        """Pick ``users`` again on the new session; return whether the messages missed were
        all recovered (they arrive right after the reply)."""
        key = (ChannelType.STREAM, self._name, topic)
        since, epoch = self._session.offsets.recovering_from(key)
        recovered = False

        def subscribed(result: f.SubscribeResult | None) -> None:
            nonlocal recovered
            assert result is not None
            recovered = result.recovered
            self._session.offsets.resumed_at(key, result.offset, recovered)

        await self._session.request(
            lambda rid: f.SubscribeTopic(rid, self._name, topic, users, since, epoch),
            f.SubscribeResult,
            subscribed,
        )
        return recovered

    def _rejoined(self, result: f.StreamJoinResult | None, with_presence: bool) -> None:
        assert result is not None
        self._topics = {t.topic: [p.user for p in t.publishers] for t in result.topics}
        for topic in self._joined_topics:
            self._topics.setdefault(topic, []).append(self._session.config.user_id)
        self._features.entered(self._key, result, with_presence)
        self._topic_events.put(TopicEvent(TopicEventType.SNAPSHOT, self._name, "", "", self.topics))

    # --- helpers ---------------------------------------------------------------------------

    def _require_joined(self) -> None:
        self._session.require_login()
        if not self._joined:
            raise RTMError(ErrorCode.CHANNEL_NOT_JOINED, f"not in stream channel {self._name!r}")

    def _reset(self, code: ErrorCode) -> None:
        """Back to not joined; every stream of this channel ends with ``code``."""
        if self._joined:
            self._features.left(self._key, code)
        self._joined = False
        self._topics.clear()
        self._joined_topics.clear()
        self._topic_args.clear()
        for topic in self._subs:
            self._session.offsets.forget((ChannelType.STREAM, self._name, topic))
        self._subs.clear()
        for stream in self._messages.values():
            stream.close(code)
        self._messages.clear()
        self._topic_events.close(code)
        self._token_events.close(code)
