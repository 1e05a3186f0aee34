"""Stream channels and topics: join, topic roles, per-publisher subscriptions, fan-out.

Shared state (who is in a channel, who publishes in which topic) lives in the engine's
``StreamStore``; events travel on the engine's ``Broker`` with one subject per channel. What a
node keeps for itself is only its routing table: for each (channel, topic, publisher), the local
sessions that picked that publisher. Fan-out is then a dictionary lookup and one pre-built
WebSocket frame written to each subscriber, whatever their number.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from ..errors import ErrorCode, RTMError
from ..protocol.codec import encode, encode_result, ws_binary_frame
from ..protocol.frames import (
    ChannelClosed,
    JoinTopic,
    LeaveTopic,
    Position,
    Publisher,
    PublishTopic,
    StreamJoin,
    StreamJoinResult,
    StreamLeave,
    StreamMessage,
    SubscribeResult,
    SubscribeTopic,
    TopicEvent,
    TopicInfo,
    UnsubscribeTopic,
)
from ..protocol.names import (
    MAX_TOPIC_META_LENGTH,
    is_valid_channel_name,
    is_valid_topic_name,
    is_valid_user_id,
)
from ..types import ChannelType, ConnectionChangeReason, StreamPriority, StreamQos
from .auth import check_stream_token
from .checks import check_message
from .engines.base import (
    UNNUMBERED,
    Broker,
    BusEvent,
    BusKind,
    StreamStore,
    frame_offset,
)
from .gateway import send_each
from .interest import Interest
from .metrics import Counts
from .ratelimit import RateBucket
from .subjects import subject as make_subject

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterable

    from .recovery import Recovery
    from .roles import ChannelFeatures, Replayer
    from .session import Session

__all__ = ["Member", "StreamService"]

log = logging.getLogger("rtm2.server")

TOPIC_REMOTE_JOIN = 2
TOPIC_REMOTE_LEAVE = 3

_QOS = frozenset(int(q) for q in StreamQos)
_PRIORITIES = frozenset(int(p) for p in StreamPriority)
# Read per publish: through its class, an enum member costs an ``EnumType.__getattr__`` hook
# call on Python 3.11 (docs/PERFORMANCE.md).
_BUS_MESSAGE = BusKind.MESSAGE


class TopicRole:
    """This member publishes in a topic. Carries its publish-rate bucket."""

    __slots__ = ("bucket", "meta", "priority", "qos", "sync_media")

    def __init__(self, f: JoinTopic, rate: float, now: float) -> None:
        self.meta = f.meta
        self.qos = f.qos
        self.priority = f.priority
        self.sync_media = f.sync_media
        self.bucket = RateBucket(rate, now)


class Member:
    """One session's membership in one stream channel."""

    __slots__ = (
        "be_quiet",
        "channel",
        "expires_at",
        "subject",
        "subs",
        "topics",
        "warned",
        "with_lock",
        "with_metadata",
        "with_presence",
    )

    def __init__(self, f: StreamJoin, subject: str, expires_at: int) -> None:
        self.channel = f.channel
        self.subject = subject
        self.topics: dict[str, TopicRole] = {}
        self.subs: dict[str, set[str]] = {}
        self.expires_at = expires_at
        self.warned = False
        self.with_presence = f.with_presence
        self.with_metadata = f.with_metadata
        self.with_lock = f.with_lock
        self.be_quiet = f.be_quiet


class StreamService:
    def __init__(
        self,
        store: StreamStore,
        broker: Broker,
        interest: Interest,
        features: ChannelFeatures,
        replayer: Replayer,
        recovery: Recovery,
        counts: Counts | None = None,
    ) -> None:
        self.store = store
        self.counts = Counts() if counts is None else counts
        self.broker = broker
        self.interest = interest
        self.features = features
        self.replayer = replayer
        self.recovery = recovery
        # (subject, topic, publisher) -> local sessions subscribed to that publisher
        self.routes: dict[tuple[str, str, str], set[Session]] = {}
        # the same keys -> their channel's app id: deliveries are counted per app without
        # reading it from a recipient on every fan-out (as MessageService does)
        self._route_app: dict[tuple[str, str, str], str] = {}
        # subject -> local sessions in that channel
        self.local: dict[str, set[Session]] = {}
        self._clock = time.monotonic
        # Sends one frame to each session's connection; the hub sets its outbox's ``send_all``.
        self.fan_out: Callable[[Iterable[Session], bytes], None] = send_each
        self._tasks: set[asyncio.Task[None]] = set()

    # --- joining and leaving ---------------------------------------------------------------

    async def join(self, s: Session, f: StreamJoin) -> None:
        app = s.app_config
        if not is_valid_channel_name(f.channel):
            raise RTMError(ErrorCode.INVALID_CHANNEL_NAME, f"invalid channel name {f.channel!r}")
        if f.channel in s.stream:
            raise RTMError(ErrorCode.CHANNEL_JOIN_FAILED, f"already in channel {f.channel!r}")
        if len(s.stream) >= app.limits.stream_channels:
            raise RTMError(
                ErrorCode.CHANNEL_INSTANCE_EXCEED_LIMITATION,
                f"already in {app.limits.stream_channels} stream channels",
            )
        expires_at = check_stream_token(app, f.token, f.channel, s.user_id, int(time.time()))
        topics = await self.store.join(
            app.app_id, f.channel, s.user_id, s.session_id, app.limits.channel_users
        )
        if topics is None:
            raise RTMError(
                ErrorCode.CHANNEL_JOIN_FAILED,
                f"channel {f.channel!r} is full ({app.limits.channel_users} users)",
            )
        if not s.alive:  # the connection ended while the store answered
            await self.store.leave(app.app_id, f.channel, s.user_id, s.session_id)
            return
        subject = make_subject(app.app_id, ChannelType.STREAM, f.channel)
        member = s.stream[f.channel] = Member(f, subject, expires_at)
        local = self.local.get(subject)
        if local is None:
            local = self.local[subject] = set()
            self.interest.add(subject)
        local.add(s)
        try:
            entered = await self.features.enter(s, subject, f)
        except BaseException:
            self._forget(s, member)
            await self.store.leave(app.app_id, f.channel, s.user_id, s.session_id)
            raise
        log.debug("%r joined stream channel %s", s, f.channel)
        result = StreamJoinResult(
            [
                TopicInfo(t.topic, [Publisher(user, meta) for user, meta in t.publishers])
                for t in topics
            ],
            expires_at,
            *entered,
        )
        s.reply(f.rid, result=encode_result(result))

    async def leave(self, s: Session, f: StreamLeave) -> None:
        member = self._member(s, f.channel)
        await self._leave(s, member)
        s.reply(f.rid)

    async def _leave(self, s: Session, member: Member, timed_out: bool = False) -> None:
        self._forget(s, member)
        self.features.leave(s, member.subject, timed_out)
        await self._release(s, member)

    async def _release(self, s: Session, member: Member) -> None:
        """Remove the membership from the engine and tell the channel who stopped publishing."""
        topics = await self.store.leave(
            s.app_config.app_id, member.channel, s.user_id, s.session_id
        )
        for topic in topics:
            self._topic_event(member, TOPIC_REMOTE_LEAVE, topic, s.user_id, "")

    async def remove_orphan(self, app: str, channel: str, user: str, member: str) -> None:
        """A dead node's member: it leaves the channel and its topics."""
        subject = make_subject(app, ChannelType.STREAM, channel)
        for topic in await self.store.leave(app, channel, user, member):
            frame = encode(TopicEvent(TOPIC_REMOTE_LEAVE, channel, topic, user, ""))
            self.broker.publish(subject, BusEvent(BusKind.TOPIC_EVENT, topic, user, frame))

    def _forget(self, s: Session, member: Member) -> None:
        """Drop every local trace of the membership (routes, local set, subject)."""
        s.stream.pop(member.channel, None)
        for topic, publishers in member.subs.items():
            for publisher in publishers:
                self._unroute(member.subject, topic, publisher, s)
        local = self.local.get(member.subject)
        if local is not None:
            local.discard(s)
            if not local:
                del self.local[member.subject]
                self.interest.remove(member.subject)

    def on_session_end(self, s: Session, timed_out: bool) -> None:
        """The session is over: leave every channel (publishers leave their topics)."""
        for member in list(s.stream.values()):
            self._spawn(self._leave(s, member, timed_out))

    def _spawn(self, coro: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def expire(self, s: Session, member: Member) -> None:
        """The member's stream token expired: remove it from the channel and say why."""
        log.info("%r stream token for %s expired, leaving the channel", s, member.channel)
        s.send(
            ChannelClosed(
                member.channel,
                ChannelType.STREAM,
                ConnectionChangeReason.TOKEN_EXPIRED,
                ErrorCode.TOKEN_EXPIRED,
                "the stream channel token expired",
            )
        )
        self._spawn(self._leave(s, member))

    def renew(self, s: Session, channel: str, token: str) -> int:
        member = self._member(s, channel)
        member.expires_at = check_stream_token(
            s.app_config, token, channel, s.user_id, int(time.time())
        )
        member.warned = False
        return member.expires_at

    # --- topics ----------------------------------------------------------------------------

    async def join_topic(self, s: Session, f: JoinTopic) -> None:
        member = self._member(s, f.channel)
        limits = s.app_config.limits
        self._check_topic(f.topic)
        if f.topic in member.topics:
            raise RTMError(ErrorCode.CHANNEL_JOIN_TOPIC_FAILED, f"already in topic {f.topic!r}")
        if len(member.topics) >= limits.joined_topics:
            raise RTMError(
                ErrorCode.CHANNEL_EXCEED_TOPIC_LIMITATION,
                f"already publishing in {limits.joined_topics} topics of {f.channel!r}",
            )
        if len(f.meta.encode()) > MAX_TOPIC_META_LENGTH:
            raise RTMError(
                ErrorCode.CHANNEL_INVALID_TOPIC_META, f"meta over {MAX_TOPIC_META_LENGTH} bytes"
            )
        if f.qos not in _QOS or f.priority not in _PRIORITIES:
            raise RTMError(ErrorCode.INVALID_PARAMETER, "unknown qos or priority")
        member.topics[f.topic] = TopicRole(f, limits.topic_message_rate, self._clock())
        await self.store.join_topic(
            s.app_config.app_id, f.channel, f.topic, s.user_id, s.session_id, f.meta
        )
        self._topic_event(member, TOPIC_REMOTE_JOIN, f.topic, s.user_id, f.meta)
        s.reply(f.rid)

    async def leave_topic(self, s: Session, f: LeaveTopic) -> None:
        member = self._member(s, f.channel)
        if member.topics.pop(f.topic, None) is None:
            raise RTMError(ErrorCode.CHANNEL_TOPIC_NOT_JOINED, f"not in topic {f.topic!r}")
        await self.store.leave_topic(
            s.app_config.app_id, f.channel, f.topic, s.user_id, s.session_id
        )
        self._topic_event(member, TOPIC_REMOTE_LEAVE, f.topic, s.user_id, "")
        s.reply(f.rid)

    def _topic_event(self, member: Member, kind: int, topic: str, user: str, meta: str) -> None:
        frame = encode(TopicEvent(kind, member.channel, topic, user, meta))
        self.broker.publish(member.subject, BusEvent(BusKind.TOPIC_EVENT, topic, user, frame))

    # --- publishing (the hot path: synchronous, no engine round trip) ----------------------

    def publish(self, s: Session, f: PublishTopic) -> None:
        member = s.stream.get(f.channel)
        if member is None:
            raise RTMError(ErrorCode.CHANNEL_NOT_JOINED, f"not in channel {f.channel!r}")
        role = member.topics.get(f.topic)
        if role is None:
            raise RTMError(ErrorCode.CHANNEL_TOPIC_NOT_JOINED, f"not in topic {f.topic!r}")
        app = s.app_config
        limits = app.limits
        payload = f.payload
        custom_type = f.custom_type
        check_message(payload, f.message_type, custom_type, limits.topic_message_size)
        if not role.bucket.allow(self._clock(), limits.topic_message_rate):
            raise RTMError(
                ErrorCode.CHANNEL_PUBLISH_MESSAGE_TOO_FREQUENT,
                f"over {limits.topic_message_rate:g} messages/s in topic {f.topic!r}",
            )
        frame = encode(
            StreamMessage(
                f.channel,
                f.topic,
                s.user_id,
                payload,
                f.message_type,
                custom_type,
                int(time.time() * 1000),
                f.send_ts,
                UNNUMBERED,
            )
        )
        self.broker.publish_message(
            member.subject,
            BusEvent(_BUS_MESSAGE, f.topic, s.user_id, frame),
            limits.recovery_messages,
            limits.recovery_seconds,
        )
        self.counts.published_stream += 1
        self.counts.published_by_app[app.app_id] += 1
        s.reply(f.rid)

    def on_message(self, subject: str, event: BusEvent) -> None:
        """Deliver a message from the broker to this node's subscribers of its publisher."""
        self.recovery.receive(
            subject, event.topic, frame_offset(event.frame), event.user, event.frame
        )
        key = (subject, event.topic, event.user)
        recipients = self.routes.get(key)
        if recipients:
            self.fan_out(recipients, ws_binary_frame(event.frame))
            n = len(recipients)  # counted once per fan-out, never per delivery
            self.counts.delivered_stream += n
            self.counts.delivered_by_app[self._route_app[key]] += n

    def on_topic_event(self, subject: str, event: BusEvent) -> None:
        """Tell this node's members of the channel, but the publisher it is about."""
        members = self.local.get(subject)
        if members:
            data = ws_binary_frame(event.frame)
            for s in members:
                if s.user_id != event.user:
                    s.conn.send(data)

    # --- subscriptions ---------------------------------------------------------------------

    async def subscribe(self, s: Session, f: SubscribeTopic) -> None:
        member = self._member(s, f.channel)
        limits = s.app_config.limits
        self._check_topic(f.topic)
        current = member.subs.get(f.topic)
        if current is None and len(member.subs) >= limits.subscribed_topics:
            raise RTMError(
                ErrorCode.CHANNEL_EXCEED_TOPIC_LIMITATION,
                f"already subscribed to {limits.subscribed_topics} topics of {f.channel!r}",
            )
        have = current or set()
        room = limits.publishers_per_topic - len(have)
        if f.users:
            requested = list(dict.fromkeys(f.users))
            failed = [u for u in requested if not is_valid_user_id(u)]
            wanted = [u for u in requested if is_valid_user_id(u)]
            new = [u for u in wanted if u not in have]
            if len(new) > room:
                raise RTMError(
                    ErrorCode.CHANNEL_EXCEED_TOPIC_USER_LIMITATION,
                    f"at most {limits.publishers_per_topic} publishers per topic",
                )
        else:
            publishers = await self.store.publishers(s.app_config.app_id, f.channel, f.topic)
            if s.stream.get(f.channel) is not member:
                raise RTMError(ErrorCode.CHANNEL_NOT_JOINED, f"left channel {f.channel!r}")
            candidates = [u for u in publishers if u != s.user_id and u not in have]
            new, failed = candidates[: max(room, 0)], candidates[max(room, 0) :]
            wanted = [*have, *new]
        offset = await self.replayer.position(member.subject, f.topic)
        if s.stream.get(f.channel) is not member:
            raise RTMError(ErrorCode.CHANNEL_NOT_JOINED, f"left channel {f.channel!r}")
        # Messages flow from the reply on (a client takes none before it), or from the
        # replay of what it missed when it asked to recover.
        subs = member.subs.setdefault(f.topic, set())
        for user in new:
            subs.add(user)
            key = (member.subject, f.topic, user)
            self.routes.setdefault(key, set()).add(s)
            self._route_app[key] = s.app_config.app_id
        since = None
        if f.epoch:
            since = Position(ChannelType.STREAM, f.channel, f.topic, f.since, f.epoch)
        await self.replayer.answer_recovering(
            s,
            f.rid,
            since,
            lambda recovered: SubscribeResult(wanted, failed, offset, recovered),
        )

    def unsubscribe(self, s: Session, f: UnsubscribeTopic) -> None:
        member = self._member(s, f.channel)
        subs = member.subs.get(f.topic)
        if subs is None:
            raise RTMError(
                ErrorCode.CHANNEL_TOPIC_NOT_SUBSCRIBED, f"not subscribed to topic {f.topic!r}"
            )
        dropped = [u for u in f.users if u in subs] if f.users else list(subs)
        for user in dropped:
            subs.discard(user)
            self._unroute(member.subject, f.topic, user, s)
        if not f.users:
            del member.subs[f.topic]
        s.reply(f.rid)

    def _unroute(self, subject: str, topic: str, publisher: str, s: Session) -> None:
        key = (subject, topic, publisher)
        sessions = self.routes.get(key)
        if sessions is not None:
            sessions.discard(s)
            if not sessions:
                del self.routes[key]
                self._route_app.pop(key, None)

    # --- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _member(s: Session, channel: str) -> Member:
        member = s.stream.get(channel)
        if member is None:
            raise RTMError(ErrorCode.CHANNEL_NOT_JOINED, f"not in stream channel {channel!r}")
        return member

    @staticmethod
    def _check_topic(topic: str) -> None:
        if not is_valid_topic_name(topic):
            raise RTMError(ErrorCode.CHANNEL_INVALID_TOPIC_NAME, f"invalid topic name {topic!r}")
