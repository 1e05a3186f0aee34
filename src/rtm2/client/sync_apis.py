"""Blocking facades of a client's sub-APIs and stream channels, for ``rtm2.sync``.

Each method runs its asyncio twin (same name, same parameters, same result) on the client's
loop thread and blocks until it is done; event streams come back as blocking
``rtm2.sync.EventStream`` views. The docstrings are short: the asyncio methods document what
the calls do, and their errors come through unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from ..types import (
    ChannelInfo,
    ChannelType,
    LockDetail,
    LockEvent,
    Message,
    Metadata,
    MetadataItem,
    PresenceEvent,
    StorageEvent,
    StreamPriority,
    StreamQos,
    TopicEvent,
)
from . import Lock as AsyncLock
from . import Presence as AsyncPresence
from . import Storage as AsyncStorage
from . import StreamChannel as AsyncStreamChannel
from . import WhoNowResult
from .sync_loop import EventStream, LoopThread

__all__ = ["JoinResult", "Lock", "Presence", "Storage", "StreamChannel"]

Items = Iterable[MetadataItem] | Mapping[str, MetadataItem]


class Presence:
    """``client.presence`` of a sync client: who is where, temporary state, presence events."""

    def __init__(self, presence: AsyncPresence, loop: LoopThread) -> None:
        self._presence = presence
        self._loop = loop

    def who_now(
        self,
        channel: str,
        channel_type: ChannelType,
        include_user_id: bool = True,
        include_state: bool = False,
        page: str | None = None,
    ) -> WhoNowResult:
        """Users in a channel, 100 a page (see ``rtm2.Presence.who_now``)."""
        return self._loop.run(
            lambda: self._presence.who_now(
                channel, channel_type, include_user_id, include_state, page
            )
        )

    def where_now(self, user_id: str) -> list[ChannelInfo]:
        """The message and stream channels ``user_id`` is in."""
        return self._loop.run(lambda: self._presence.where_now(user_id))

    def get_state(self, channel: str, channel_type: ChannelType, user_id: str) -> dict[str, str]:
        """``user_id``'s temporary state in a channel (PRESENCE_USER_NOT_EXIST if absent)."""
        return self._loop.run(lambda: self._presence.get_state(channel, channel_type, user_id))

    def set_state(self, channel: str, channel_type: ChannelType, state: dict[str, str]) -> None:
        """Set keys of this user's state in a channel (cached until the user is in it)."""
        self._loop.run(lambda: self._presence.set_state(channel, channel_type, state))

    def remove_state(self, channel: str, channel_type: ChannelType, keys: Iterable[str]) -> None:
        """Remove keys from this user's state in a channel (or from the cached state)."""
        self._loop.run(lambda: self._presence.remove_state(channel, channel_type, keys))

    def get_presence_events(
        self, channel: str, channel_type: ChannelType
    ) -> tuple[dict[str, dict[str, str]], EventStream[PresenceEvent]]:
        """The channel's presence now and its event stream (SNAPSHOT first)."""
        snapshot, events = self._loop.run(
            lambda: self._presence.get_presence_events(channel, channel_type)
        )
        return snapshot, EventStream(events, self._loop)


class Storage:
    """``client.storage`` of a sync client: channel and user metadata."""

    def __init__(self, storage: AsyncStorage, loop: LoopThread) -> None:
        self._storage = storage
        self._loop = loop

    def set_channel_metadata(
        self,
        channel: str,
        channel_type: ChannelType,
        items: Items,
        *,
        major_revision: int = -1,
        lock_name: str = "",
        record_ts: bool = False,
        record_author: bool = False,
    ) -> None:
        """Create or overwrite items of a channel's metadata."""
        self._loop.run(
            lambda: self._storage.set_channel_metadata(
                channel,
                channel_type,
                items,
                major_revision=major_revision,
                lock_name=lock_name,
                record_ts=record_ts,
                record_author=record_author,
            )
        )

    def update_channel_metadata(
        self,
        channel: str,
        channel_type: ChannelType,
        items: Items,
        *,
        major_revision: int = -1,
        lock_name: str = "",
        record_ts: bool = False,
        record_author: bool = False,
    ) -> None:
        """Change existing items only; a missing key fails the whole call."""
        self._loop.run(
            lambda: self._storage.update_channel_metadata(
                channel,
                channel_type,
                items,
                major_revision=major_revision,
                lock_name=lock_name,
                record_ts=record_ts,
                record_author=record_author,
            )
        )

    def remove_channel_metadata(
        self,
        channel: str,
        channel_type: ChannelType,
        items: Items = (),
        *,
        major_revision: int = -1,
        lock_name: str = "",
        record_ts: bool = False,
        record_author: bool = False,
    ) -> None:
        """Remove items; an empty ``items`` removes the whole set."""
        self._loop.run(
            lambda: self._storage.remove_channel_metadata(
                channel,
                channel_type,
                items,
                major_revision=major_revision,
                lock_name=lock_name,
                record_ts=record_ts,
                record_author=record_author,
            )
        )

    def get_channel_metadata(self, channel: str, channel_type: ChannelType) -> Metadata:
        """The channel's metadata: ``major_revision, items = ...``."""
        return self._loop.run(lambda: self._storage.get_channel_metadata(channel, channel_type))

    def get_channel_metadata_events(
        self, channel: str, channel_type: ChannelType
    ) -> tuple[Metadata, EventStream[StorageEvent]]:
        """The channel's metadata now and its event stream (SNAPSHOT first, then UPDATE)."""
        snapshot, events = self._loop.run(
            lambda: self._storage.get_channel_metadata_events(channel, channel_type)
        )
        return snapshot, EventStream(events, self._loop)

    def set_user_metadata(
        self,
        user_id: str,
        items: Items,
        *,
        major_revision: int = -1,
        record_ts: bool = False,
        record_author: bool = False,
    ) -> None:
        self._loop.run(
            lambda: self._storage.set_user_metadata(
                user_id,
                items,
                major_revision=major_revision,
                record_ts=record_ts,
                record_author=record_author,
            )
        )

    def update_user_metadata(
        self,
        user_id: str,
        items: Items,
        *,
        major_revision: int = -1,
        record_ts: bool = False,
        record_author: bool = False,
    ) -> None:
        self._loop.run(
            lambda: self._storage.update_user_metadata(
                user_id,
                items,
                major_revision=major_revision,
                record_ts=record_ts,
                record_author=record_author,
            )
        )

    def remove_user_metadata(
        self,
        user_id: str,
        items: Items = (),
        *,
        major_revision: int = -1,
        record_ts: bool = False,
        record_author: bool = False,
    ) -> None:
        self._loop.run(
            lambda: self._storage.remove_user_metadata(
                user_id,
                items,
                major_revision=major_revision,
                record_ts=record_ts,
                record_author=record_author,
            )
        )

    def get_user_metadata(self, user_id: str) -> Metadata:
        return self._loop.run(lambda: self._storage.get_user_metadata(user_id))

    def subscribe_user_metadata(self, user_id: str) -> tuple[Metadata, EventStream[StorageEvent]]:
        """Follow a user's metadata: its current set and an event stream (SNAPSHOT first)."""
        snapshot, events = self._loop.run(lambda: self._storage.subscribe_user_metadata(user_id))
        return snapshot, EventStream(events, self._loop)

    def unsubscribe_user_metadata(self, user_id: str) -> None:
        """Stop following a user's metadata; its event stream ends."""
        self._loop.run(lambda: self._storage.unsubscribe_user_metadata(user_id))


class Lock:
    """``client.lock`` of a sync client: distributed locks with a fair wait and fencing."""

    def __init__(self, lock: AsyncLock, loop: LoopThread) -> None:
        self._lock = lock
        self._loop = loop

    def set(self, channel: str, channel_type: ChannelType, name: str, ttl: int = 10) -> None:
        """Define a lock (LOCK_ALREADY_EXIST if it exists)."""
        self._loop.run(lambda: self._lock.set(channel, channel_type, name, ttl))

    def remove(self, channel: str, channel_type: ChannelType, name: str) -> None:
        """Delete a lock; anyone waiting for it gets LOCK_NOT_EXIST."""
        self._loop.run(lambda: self._lock.remove(channel, channel_type, name))

    def acquire(
        self,
        channel: str,
        channel_type: ChannelType,
        name: str,
        retry: bool = False,
        *,
        timeout: float | None = None,
    ) -> int:
        """Acquire a lock and return its fencing number (see ``rtm2.Lock.acquire``).

        With ``retry`` the call blocks until the lock is held. ``timeout`` (seconds; the one
        parameter the asyncio method lacks, since there a task is cancelled instead) bounds
        that wait: the wait is withdrawn and TimeoutError raised.
        """
        lock = self._lock

        async def acquire() -> int:
            async with asyncio.timeout(timeout):
                return await lock.acquire(channel, channel_type, name, retry)

        return self._loop.run(acquire)

    def release(self, channel: str, channel_type: ChannelType, name: str) -> None:
        """Release a lock this user holds (LOCK_NOT_ACQUIRED otherwise)."""
        self._loop.run(lambda: self._lock.release(channel, channel_type, name))

    def revoke(self, channel: str, channel_type: ChannelType, name: str, owner: str) -> None:
        """Free a lock held by ``owner``."""
        self._loop.run(lambda: self._lock.revoke(channel, channel_type, name, owner))

    def get(self, channel: str, channel_type: ChannelType) -> dict[str, LockDetail]:
        """The channel's locks by name: owner ("" if free) and TTL."""
        return self._loop.run(lambda: self._lock.get(channel, channel_type))

    def get_lock_events(
        self, channel: str, channel_type: ChannelType
    ) -> tuple[dict[str, LockDetail], EventStream[LockEvent]]:
        """The channel's locks now and its lock-event stream (SNAPSHOT first)."""
        locks, events = self._loop.run(lambda: self._lock.get_lock_events(channel, channel_type))
        return locks, EventStream(events, self._loop)


class JoinResult(NamedTuple):
    """What ``StreamChannel.join`` returns."""

    snapshot: dict[str, list[str]]  # topic -> publisher user ids at join time
    topic_events: EventStream[TopicEvent]
    token_events: EventStream[str]


class StreamChannel:
    """A stream channel of a sync client: ``client.stream_channel(name)``, one per name."""

    def __init__(self, channel: AsyncStreamChannel, loop: LoopThread) -> None:
        self._channel = channel
        self._loop = loop

    def __repr__(self) -> str:
        return f"<sync {self._channel!r}>"

    @property
    def channel_name(self) -> str:
        return self._channel.channel_name

    @property
    def joined(self) -> bool:
        return self._channel.joined

    @property
    def topics(self) -> dict[str, list[str]]:
        """The channel's topics and their publishers, kept current by topic events."""
        return self._loop.call(lambda: self._channel.topics)

    @property
    def topic_events(self) -> EventStream[TopicEvent]:
        """The topic events of the current (or last) join, as ``join`` returned them."""
        return EventStream(self._loop.call(lambda: self._channel.topic_events), self._loop)

    @property
    def token_events(self) -> EventStream[str]:
        """The token-will-expire notices of the current (or last) join."""
        return EventStream(self._loop.call(lambda: self._channel.token_events), self._loop)

    def join(
        self,
        token: str | None = None,
        *,
        with_presence: bool = True,
        with_metadata: bool = False,
        with_lock: bool = False,
        be_quiet: bool = False,
    ) -> JoinResult:
        """Join the channel (see ``rtm2.StreamChannel.join``)."""
        result = self._loop.run(
            lambda: self._channel.join(
                token,
                with_presence=with_presence,
                with_metadata=with_metadata,
                with_lock=with_lock,
                be_quiet=be_quiet,
            )
        )
        return JoinResult(
            result.snapshot,
            EventStream(result.topic_events, self._loop),
            EventStream(result.token_events, self._loop),
        )

    def leave(self) -> None:
        """Leave the channel: drops every topic role and subscription and ends its streams."""
        self._loop.run(self._channel.leave)

    def renew_token(self, token: str) -> None:
        """Replace this channel's stream token (after a token-will-expire notice)."""
        self._loop.run(lambda: self._channel.renew_token(token))

    def join_topic(
        self,
        topic: str,
        qos: StreamQos = StreamQos.UNORDERED,
        priority: StreamPriority = StreamPriority.NORMAL,
        meta: str = "",
        sync_media: bool = False,
    ) -> None:
        """Become a publisher of ``topic``."""
        self._loop.run(lambda: self._channel.join_topic(topic, qos, priority, meta, sync_media))

    def leave_topic(self, topic: str) -> None:
        """Stop publishing in ``topic``."""
        self._loop.run(lambda: self._channel.leave_topic(topic))

    def publish_topic(
        self,
        topic: str,
        message: bytes | str,
        custom_type: str = "",
        send_ts: int = 0,
        store_in_history: bool = False,
    ) -> None:
        """Publish one message in a topic joined with ``join_topic``."""
        self._loop.run(
            lambda: self._channel.publish_topic(
                topic, message, custom_type, send_ts, store_in_history
            )
        )

    def subscribe_topic(self, topic: str, users: Iterable[str] = ()) -> EventStream[Message]:
        """Receive the messages of ``users`` in ``topic``; returns the topic's message stream."""
        stream = self._loop.run(lambda: self._channel.subscribe_topic(topic, users))
        return EventStream(stream, self._loop)

    def unsubscribe_topic(self, topic: str, users: Iterable[str] = ()) -> None:
        """Stop receiving ``users`` in ``topic``; an empty ``users`` drops the whole topic."""
        self._loop.run(lambda: self._channel.unsubscribe_topic(topic, users))

    def get_subscribed_users(self, topic: str) -> list[str]:
        """The publishers picked in ``topic``, sorted."""
        return self._loop.run(lambda: self._channel.get_subscribed_users(topic))
