"""The Redis engine's broker: events between nodes over Redis pub/sub.

Every node subscribes, on one pub/sub connection (one per shard with Redis Cluster, whose
sharded pub/sub sends a channel only to its shard), to the subjects of the channels it has
local members in; events published by any node reach every interested node through Redis,
in publish order per node. Messages are numbered and kept for recovery by one script call per
(subject, topic) and event-loop pass (``recovery.py``). A channel's pub/sub channel is named
by its hash tag, so with Redis Cluster it lives in the slot of the channel's keys.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import Any

import msgspec

from ...redisio import (
    Commands,
    RedisClusterSubscriber,
    RedisError,
    RedisSubscriber,
    Subscriber,
    hash_tag,
    send,
    unescape_tag,
)
from ..base import BUS_MESSAGE, BusEvent, BusHandler, EngineUnavailable, frame_offset
from .recovery import BATCH, batch_events, publish_numbered, recovery_keys

__all__ = ["RedisBroker"]

log = logging.getLogger("rtm2.server")

_encode = msgspec.msgpack.Encoder().encode

# At most this many messages in one publishing script call.
_BATCH_MAX = 500
_decode_event = msgspec.msgpack.Decoder(BusEvent).decode


class _Batch:
    __slots__ = ("events", "keep", "keep_ms")

    def __init__(self, keep: int, keep_ms: int) -> None:
        self.keep = keep
        self.keep_ms = keep_ms
        self.events: list[BusEvent] = []


class RedisBroker:
    """Publishes on the command connection, receives on a pub/sub connection (one per shard
    with Redis Cluster, whose sharded pub/sub sends a channel only to its shard)."""

    def __init__(
        self,
        client: Commands,
        url: str,
        prefix: str,
        handler: BusHandler,
        gap: Callable[[str | None], None],
        cluster: bool,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._handler = handler
        self._gap = gap
        self._subjects: set[str] = set()
        # Subjects whose channel moved to another master, with what arrived since: held until
        # the node caught up on what it missed meanwhile (``release``). Those of them whose
        # channel moved once more during that catch-up: it may have read the recovery buffer
        # before the second move, so it must be done again (see ``release``).
        self._held: dict[str, list[bytes]] = {}
        self._moved_again: set[str] = set()
        self._publish = "SPUBLISH" if cluster else "PUBLISH"
        self._numbered = publish_numbered(cluster)
        client.preload(self._numbered.source)
        # Messages published in this event-loop pass, per (subject, topic), sent with one
        # script call each at the end of the pass.
        self._batches: dict[tuple[str, str], _Batch] = {}
        # (subject, topic) -> (offset counter, buffer, pub/sub channel): built once, not per
        # message (bounded: cleared when it grows past 4,096 topics)
        self._names: dict[tuple[str, str], tuple[str, str, str]] = {}
        self._subscriber: Subscriber
        if cluster:
            self._subscriber = RedisClusterSubscriber(
                url, self._received, self._lost, on_moved=self._moved
            )
        else:
            self._subscriber = RedisSubscriber(url, self._received, self._lost)

    async def start(self) -> None:
        await self._subscriber.connect()

    async def close(self) -> None:
        await self._subscriber.close()

    def _channel(self, subject: str) -> str:
        return f"{self._prefix}{{{hash_tag(subject)}}}"

    def publish(self, subject: str, event: BusEvent) -> None:
        if self._batches:  # messages published before this event go out before it
            self._flush()
        try:
            future = self._client.send(self._publish, self._channel(subject), _encode(event))
        except RedisError as exc:  # never acknowledge what Redis did not take
            raise EngineUnavailable(f"redis is unavailable: {exc}") from None
        future.add_done_callback(_log_failure)

    def publish_message(self, subject: str, event: BusEvent, keep: int, seconds: float) -> None:
        if not self._client.connected:  # never acknowledge what Redis cannot take
            raise EngineUnavailable("redis is unavailable")
        key = (subject, event.topic)
        batch = self._batches.get(key)
        if batch is None:
            if not self._batches:
                asyncio.get_running_loop().call_soon(self._flush)
            batch = self._batches[key] = _Batch(keep, max(int(seconds * 1000), 1))
        batch.events.append(event)
        if len(batch.events) >= _BATCH_MAX:
            self._flush()

    def _flush(self) -> None:
        """One script call per (subject, topic) for the messages of this loop pass."""
        batches, self._batches = self._batches, {}
        for (subject, topic), batch in batches.items():
            names = self._names.get((subject, topic))
            if names is None:
                if len(self._names) >= 4096:
                    self._names.clear()
                counter, buffer = recovery_keys(self._prefix, subject, topic)
                names = (counter, buffer, self._channel(subject))
                self._names[(subject, topic)] = names
            counter, buffer, channel = names
            events = batch.events
            args = (channel, batch.keep, batch.keep_ms, len(events), _encode(events))
            try:
                future = send(self._client, self._numbered, (counter, buffer), args)
            except RedisError as exc:
                log.error("redis: %d messages of %s not published: %s", len(events), subject, exc)
                continue
            future.add_done_callback(_log_failure)

    async def publish_counted(self, subject: str, event: BusEvent) -> int:
        try:
            channel = self._channel(subject)
            return int(await self._client.call(self._publish, channel, _encode(event)))
        except RedisError as exc:
            raise EngineUnavailable(str(exc)) from None

    async def ready(self, subject: str) -> None:
        try:
            await self._subscriber.ready(self._channel(subject))
        except RedisError as exc:
            raise EngineUnavailable(str(exc)) from None

    def subscribe(self, subject: str) -> None:
        if subject not in self._subjects:
            self._subjects.add(subject)
            self._subscriber.subscribe(self._channel(subject))

    def unsubscribe(self, subject: str) -> None:
        if subject in self._subjects:
            self._subjects.discard(subject)
            self._subscriber.unsubscribe(self._channel(subject))

    def _subject(self, channel: str) -> str:
        return unescape_tag(channel[len(self._prefix) + 1 : -1])

    def _received(self, channel: bytes, data: bytes) -> None:
        subject = self._subject(channel.decode())
        if subject not in self._subjects:
            return
        held = self._held.get(subject)
        if held is not None:
            held.append(data)
            return
        for event in _events(subject, data):
            self._handler(subject, event)

    def _lost(self) -> None:
        log.error("redis: the pub/sub connection was lost; reconnecting")
        self._gap(None)

    def _moved(self, channel: str) -> None:
        """The channel's slot moved (Redis Cluster): messages may have passed us by."""
        subject = self._subject(channel)
        if subject not in self._subjects:
            return
        if subject in self._held:
            # A catch-up is under way, and may already have read the recovery buffer (a
            # master drops a channel's subscribers even when the slot ends up on it, so a
            # move can follow the confirmed subscription that catch-up waited for).
            self._moved_again.add(subject)
            return
        self._held[subject] = []
        self._gap(subject)

    def release(self, subject: str, missed: list[BusEvent]) -> None:
        """Deliver what the node missed of ``subject``, then what was held meanwhile (less
        the messages ``missed`` already had). If the channel moved again during the
        catch-up, what was published between its reading and the new subscription is in
        neither: keep holding and catch up once more, from what was just delivered."""
        held = self._held.pop(subject, None)
        again = subject in self._moved_again
        self._moved_again.discard(subject)
        if subject not in self._subjects:
            return
        seen: dict[str, int] = {}
        for event in missed:
            self._handler(subject, event)
            seen[event.topic] = frame_offset(event.frame)
        for data in held or ():
            for event in _events(subject, data):
                if event.kind == BUS_MESSAGE and frame_offset(event.frame) <= seen.get(
                    event.topic, 0
                ):
                    continue
                self._handler(subject, event)
        if again and subject not in self._held:
            self._held[subject] = []
            self._gap(subject)


def _events(subject: str, data: bytes) -> list[BusEvent]:
    """The events of a pub/sub message: one event, or a numbered batch."""
    try:
        if data[:1] == BATCH:
            return batch_events(data)
        return [_decode_event(data)]
    except (msgspec.DecodeError, msgspec.ValidationError, struct.error):
        log.error("redis: dropping a malformed event on %s", subject)
        return []


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("redis: publish failed: %s", future.exception())
