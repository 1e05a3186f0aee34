"""Message channels and peer-to-peer messages.

A message channel needs no creation: it exists while someone subscribes. Anyone logged in may
publish to it; every subscriber that asked for messages gets each one, the publisher included
if it subscribed. A peer message goes to one user's live session and is acknowledged only once
that session has it; an offline recipient is an error the sender sees.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..errors import ErrorCode, RTMError
from ..protocol.codec import encode, ws_binary_frame
from ..protocol.frames import (
    ChannelMessage,
    Position,
    Publish,
    Subscribe,
    SubscribeChannelResult,
    Unsubscribe,
)
from ..protocol.names import (
    is_valid_channel_name,
    is_valid_user_id,
)
from ..types import ChannelType
from .checks import check_message, check_server_publish
from .engines.base import UNNUMBERED, Broker, BusEvent, BusKind, frame_offset
from .gateway import send_each
from .interest import Interest
from .metrics import Counts
from .ratelimit import RateBucket
from .subjects import session_subject
from .subjects import subject as make_subject

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterable

    from .config import AppConfig
    from .history import HistoryService
    from .recovery import Recovery
    from .roles import ChannelFeatures, PeerDirectory, Replayer
    from .session import Session

__all__ = ["MessageService", "Subscription"]


# Read per publish: on Python 3.11 an enum member read through its class costs a call of the
# class's ``__getattr__`` hook (~850 instructions), so the hot path reads module globals.
_MESSAGE = ChannelType.MESSAGE
_USER = ChannelType.USER
_BUS_MESSAGE = BusKind.MESSAGE


class Subscription:
    """One session's subscription to one message channel."""

    __slots__ = (
        "be_quiet",
        "subject",
        "with_lock",
        "with_message",
        "with_metadata",
        "with_presence",
    )

    def __init__(self, f: Subscribe, subj: str) -> None:
        self.subject = subj
        self.with_message = f.with_message
        self.with_presence = f.with_presence
        self.with_metadata = f.with_metadata
        self.with_lock = f.with_lock
        self.be_quiet = f.be_quiet


class MessageService:
    def __init__(
        self,
        broker: Broker,
        interest: Interest,
        features: ChannelFeatures,
        replayer: Replayer,
        recovery: Recovery,
        peers: PeerDirectory,
        counts: Counts | None = None,
    ) -> None:
        self.broker = broker
        self.counts = Counts() if counts is None else counts
        self.interest = interest
        self.features = features
        self.replayer = replayer
        self.recovery = recovery
        self.peers = peers
        # subject -> local sessions subscribed (they keep the node on the subject, since
        # presence events travel there too), and those of them that take messages
        self.local: dict[str, set[Session]] = {}
        self.receivers: dict[str, set[Session]] = {}
        # subject -> its app's id, while it has receivers: deliveries are counted per app
        # without reading it from a receiver on every fan-out (~2,700 instructions a publish)
        self._app_of: dict[str, str] = {}
        self._clock = time.monotonic
        # Set by the hub: stored publishes (server/history.py).
        self.history: HistoryService
        # Sends one frame to each session's connection; the hub sets its outbox's ``send_all``.
        self.fan_out: Callable[[Iterable[Session], bytes], None] = send_each

    async def subscribe(self, s: Session, f: Subscribe) -> None:
        limits = s.app_config.limits
        if not is_valid_channel_name(f.channel):
            raise RTMError(ErrorCode.INVALID_CHANNEL_NAME, f"invalid channel name {f.channel!r}")
        if f.channel in s.subscriptions:
            raise RTMError(
                ErrorCode.CHANNEL_SUBSCRIBE_FAILED, f"already subscribed to {f.channel!r}"
            )
        if len(s.subscriptions) >= limits.subscribed_channels:
            raise RTMError(
                ErrorCode.CHANNEL_INSTANCE_EXCEED_LIMITATION,
                f"already subscribed to {limits.subscribed_channels} message channels",
            )
        subj = make_subject(s.app_config.app_id, ChannelType.MESSAGE, f.channel)
        sub = s.subscriptions[f.channel] = Subscription(f, subj)
        local = self.local.get(subj)
        if local is None:
            local = self.local[subj] = set()
            self.interest.add(subj)
        local.add(s)
        try:
            entered = await self.features.enter(s, subj, f)
            offset = await self.replayer.position(subj, "")
        except BaseException:
            self._forget(s, f.channel, sub)
            raise
        if s.subscriptions.get(f.channel) is not sub:  # the session ended meanwhile
            return
        # Messages flow from the reply on (a client takes none before it), or from the
        # replay of what it missed when it asked to recover.
        if f.with_message:
            self.receivers.setdefault(subj, set()).add(s)
            self._app_of[subj] = s.app_config.app_id
        since = None
        if f.epoch:
            since = Position(ChannelType.MESSAGE, f.channel, "", f.since, f.epoch)
        await self.replayer.answer_recovering(
            s,
            f.rid,
            since,
            lambda recovered: SubscribeChannelResult(*entered, offset, recovered),
        )

    def unsubscribe(self, s: Session, f: Unsubscribe) -> None:
        sub = s.subscriptions.get(f.channel)
        if sub is None:
            raise RTMError(ErrorCode.CHANNEL_NOT_SUBSCRIBED, f"not subscribed to {f.channel!r}")
        self._forget(s, f.channel, sub)
        self.features.leave(s, sub.subject)
        s.reply(f.rid)

    def on_session_end(self, s: Session, timed_out: bool) -> None:
        for channel, sub in list(s.subscriptions.items()):
            self._forget(s, channel, sub)

    def _forget(self, s: Session, channel: str, sub: Subscription) -> None:
        s.subscriptions.pop(channel, None)
        receivers = self.receivers.get(sub.subject)
        if receivers is not None:
            receivers.discard(s)
            if not receivers:
                del self.receivers[sub.subject]
                self._app_of.pop(sub.subject, None)
        local = self.local.get(sub.subject)
        if local is not None:
            local.discard(s)
            if not local:
                del self.local[sub.subject]
                self.interest.remove(sub.subject)

    # --- publishing (synchronous: no engine round trip on the hot path) ------------------

    def publish(self, s: Session, f: Publish) -> Coroutine[None, None, None] | None:
        """Publish; a peer message returns a coroutine (it may wait for another node)."""
        limits = s.app_config.limits
        custom_type = f.custom_type
        check_message(f.payload, f.message_type, custom_type, limits.message_size)
        if f.channel_type == _MESSAGE:
            if not is_valid_channel_name(f.channel):
                raise RTMError(
                    ErrorCode.INVALID_CHANNEL_NAME, f"invalid channel name {f.channel!r}"
                )
        elif f.channel_type == _USER:
            if not is_valid_user_id(f.channel):
                raise RTMError(ErrorCode.INVALID_USER_ID, f"invalid user id {f.channel!r}")
        else:
            raise RTMError(ErrorCode.INVALID_CHANNEL_TYPE, "publish to a message channel or a user")
        now = self._clock()
        if s.message_bucket is None:
            s.message_bucket = RateBucket(limits.message_rate, now)
        if not s.message_bucket.allow(now, limits.message_rate):
            raise RTMError(
                ErrorCode.CHANNEL_PUBLISH_MESSAGE_TOO_FREQUENT,
                f"over {limits.message_rate:g} messages/s",
            )
        timestamp = int(time.time() * 1000)
        if f.store_in_history:
            return self.history.publish(self, s, f, timestamp)
        if f.channel_type == _USER:
            return self._to_peer(s, f, timestamp)
        app_id = s.app_config.app_id
        subj = make_subject(app_id, _MESSAGE, f.channel)
        frame = encode(
            ChannelMessage(
                f.channel,
                _MESSAGE,
                s.user_id,
                f.payload,
                f.message_type,
                custom_type,
                timestamp,
                UNNUMBERED,
            )
        )
        self.broker.publish_message(
            subj,
            BusEvent(_BUS_MESSAGE, "", s.user_id, frame),
            limits.recovery_messages,
            limits.recovery_seconds,
        )
        self.counts.published_message += 1
        self.counts.published_by_app[app_id] += 1
        s.reply(f.rid)
        return None

    async def _to_peer(self, s: Session, f: Publish, timestamp: int) -> None:
        app = s.app_config.app_id
        frame = encode(
            ChannelMessage(
                s.user_id,
                ChannelType.USER,
                s.user_id,
                f.payload,
                f.message_type,
                f.custom_type,
                timestamp,
            )
        )
        await self._deliver(app, f.channel, s.user_id, frame)
        s.reply(f.rid)

    # --- from the app's backend (the HTTP API): no session, so no per-client rate ----------

    def publish_from_server(
        self,
        app: AppConfig,
        channel: str,
        payload: bytes,
        message_type: int,
        custom_type: str,
        publisher: str,
    ) -> None:
        """Publish to a message channel as ``publisher``; the same checks as a client's."""
        subj = check_server_publish(app, channel, payload, message_type, custom_type)
        frame = encode(
            ChannelMessage(
                channel,
                ChannelType.MESSAGE,
                publisher,
                payload,
                message_type,
                custom_type,
                int(time.time() * 1000),
                UNNUMBERED,
            )
        )
        # Through the broker like a client's publish: subscribers on every node get it.
        self.broker.publish_message(
            subj,
            BusEvent(BusKind.MESSAGE, "", publisher, frame),
            app.limits.recovery_messages,
            app.limits.recovery_seconds,
        )
        self.counts.published_message += 1
        self.counts.published_by_app[app.app_id] += 1

    async def send_from_server(
        self,
        app: AppConfig,
        user: str,
        payload: bytes,
        message_type: int,
        custom_type: str,
        publisher: str,
    ) -> None:
        """A peer message to ``user`` from ``publisher``; CHANNEL_RECEIVER_OFFLINE when no
        node holds a live session of the user."""
        check_message(payload, message_type, custom_type, app.limits.message_size)
        if not is_valid_user_id(user):
            raise RTMError(ErrorCode.INVALID_USER_ID, f"invalid user id {user!r}")
        frame = encode(
            ChannelMessage(
                publisher,
                ChannelType.USER,
                publisher,
                payload,
                message_type,
                custom_type,
                int(time.time() * 1000),
            )
        )
        await self._deliver(app.app_id, user, publisher, frame)

    async def _deliver(self, app: str, user: str, sender: str, frame: bytes) -> None:
        recipient = self.peers.find(app, user)
        if recipient is not None and recipient.attached:  # on this node: no broker trip
            recipient.conn.send(ws_binary_frame(frame))
            self.counts.delivered_user += 1
            self.counts.delivered_by_app[app] += 1
        elif recipient is not None or not await self.broker.publish_counted(
            session_subject(app, user), BusEvent(BusKind.PEER, "", sender, frame)
        ):
            raise RTMError(ErrorCode.CHANNEL_RECEIVER_OFFLINE, f"{user!r} is not online")
        self.counts.published_user += 1
        self.counts.published_by_app[app] += 1

    def on_message(self, subj: str, event: BusEvent) -> None:
        self.recovery.receive(subj, "", frame_offset(event.frame), event.user, event.frame)
        receivers = self.receivers.get(subj)
        if receivers:
            self.fan_out(receivers, ws_binary_frame(event.frame))
            n = len(receivers)  # counted once per fan-out, never per delivery
            self.counts.delivered_message += n
            self.counts.delivered_by_app[self._app_of[subj]] += n
