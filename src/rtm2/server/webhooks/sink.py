"""Events for the apps' backends: what happened, as one JSON envelope per event.

Most events are read off the bus as services publish them (``Tap``): a presence change, a
lock change, a metadata write, a topic join or leave is published once, by the node where it
happened (or by the node that cleans up after a dead one), so taking the event there emits it
once per deployment, and the services need no change. User events come from the hub.

When no app has a webhook, the hub keeps the engine's broker as it is and each user event costs
one attribute check (``Webhooks.active``). ``message.published`` taps the message path only
when a webhook asks for it, and then once per publish, never per delivery.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from ...protocol.frames import ChannelMessage, LockEvent, PresenceEvent, StorageEvent, TopicEvent
from ...types import LockEventType, PresenceEventType, StorageType
from ..engines.base import Broker, BusEvent, BusKind, EngineUnavailable, EventOutbox
from ..subjects import parse_subject

if TYPE_CHECKING:
    from ..config import AppConfig, WebhookConfig

__all__ = ["PARTITIONS", "PULL_QUEUES", "Hook", "PullQueue", "Tap", "Webhooks", "channel_kind"]

log = logging.getLogger("rtm2.server")

# Each webhook's events are spread over this many queues, each delivered in order by one
# node; one channel's (one user's) events always go to the same queue.
PARTITIONS = 8

_encode = msgspec.json.Encoder().encode
_presence = msgspec.msgpack.Decoder(PresenceEvent).decode
_lock = msgspec.msgpack.Decoder(LockEvent).decode
_storage = msgspec.msgpack.Decoder(StorageEvent).decode
_topic = msgspec.msgpack.Decoder(TopicEvent).decode
_message = msgspec.msgpack.Decoder(ChannelMessage).decode

_PRESENCE_TYPES: dict[int, str] = {
    PresenceEventType.REMOTE_JOIN: "channel.join",
    PresenceEventType.REMOTE_LEAVE: "channel.leave",
    PresenceEventType.REMOTE_TIMEOUT: "channel.timeout",
    PresenceEventType.REMOTE_STATE_CHANGED: "presence.state_changed",
}
_LOCK_TYPES: dict[int, str] = {
    LockEventType.SET: "lock.set",
    LockEventType.REMOVED: "lock.removed",
    LockEventType.ACQUIRED: "lock.acquired",
    LockEventType.RELEASED: "lock.released",
    LockEventType.EXPIRED: "lock.expired",
}


def channel_kind(channel_type: int) -> str:
    return {1: "message", 2: "stream", 3: "user"}.get(channel_type, str(channel_type))


def partition_of(key: str) -> int:
    return zlib.crc32(key.encode()) % PARTITIONS


class Hook:
    """One configured webhook: its queue name (``<app id>/<index>``) and metrics label."""

    __slots__ = ("app_id", "config", "id", "label", "types")

    def __init__(self, app_id: str, index: int, config: WebhookConfig) -> None:
        self.app_id = app_id
        self.id = f"{app_id}/{index}"
        self.label = config.name or f"{app_id[:8]}/{index}"
        self.config = config
        self.types = config.types


# The pull queues of an app (GET /v1/apps/{app}/events/...) and the events each keeps.
PULL_QUEUES = {
    "users": frozenset(
        {"user.login", "user.logout", "user.disconnected", "user.timeout", "user.kicked"}
    ),
    "channels": frozenset({"channel.join", "channel.leave", "channel.timeout"}),
}


class PullQueue:
    """One pull queue of an app: its events wait in the outbox (one partition, in order)
    until a backend pulls them."""

    __slots__ = ("app_id", "bound", "id", "types")

    def __init__(self, app_id: str, name: str, bound: int) -> None:
        self.app_id = app_id
        self.id = f"{app_id}/{name}"
        self.types = PULL_QUEUES[name]
        self.bound = bound


class Webhooks:
    """Turns what happens into envelopes and queues them, durably, for each webhook."""

    def __init__(self, apps: dict[str, AppConfig], outbox: EventOutbox, node: str) -> None:
        self.outbox = outbox
        self.node = node
        self.hooks: dict[str, list[Hook]] = {}
        for app_id, app in apps.items():
            if app.webhooks:
                self.hooks[app_id] = [Hook(app_id, i, w) for i, w in enumerate(app.webhooks)]
        self.all_hooks = [h for hooks in self.hooks.values() for h in hooks]
        self.pulls: dict[str, list[PullQueue]] = {
            app_id: [PullQueue(app_id, name, app.event_queue_size) for name in PULL_QUEUES]
            for app_id, app in apps.items()
            if app.event_queue_size
        }
        self.active = bool(self.all_hooks or self.pulls)
        # Events kept per queue in the outbox, and per webhook while waiting to be written.
        self._bounds = {
            h.id: max(1, -(-h.config.queue_bound // PARTITIONS)) for h in self.all_hooks
        }
        self._bounds |= {q.id: q.bound for queues in self.pulls.values() for q in queues}
        self._waiting = {h.id: h.config.queue_bound for h in self.all_hooks}
        self._waiting |= {q.id: q.bound for queues in self.pulls.values() for q in queues}
        self.wants_messages = any("message.published" in h.types for h in self.all_hooks)
        self._ids = itertools.count(1)
        self._prefix = f"{node}-{os.urandom(4).hex()}-"
        self._pending: dict[str, list[tuple[str, int, bytes]]] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # set while nothing emitted waits to be queued
        self._idle.set()
        self._writer: asyncio.Task[None] | None = None
        # Called with (hook id, partition) once events are queued (delivery wakes up).
        self.on_queued: Callable[[str, int], None] = lambda hook, part: None
        self.dropped: dict[str, int] = {}  # hook id -> events dropped over its bound
        self.emitted = 0
        self.lost = 0  # events the engine refused to queue (it was unreachable)
        # (lock scope, name) being freed: (its owner until now, whether revoked)
        # (``LockService.freeing``).
        self.freeing: dict[tuple[str, str], tuple[str, bool]] = {}

    def start(self) -> None:
        if self.active and self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(
                self._write_loop(), name="rtm2-webhook-outbox"
            )

    async def stop(self) -> None:
        """Queue what is pending, then stop."""
        if self._writer is None:
            return
        await self.flush()
        self._writer.cancel()
        self._writer = None

    async def flush(self) -> None:
        """Return once every event emitted so far is queued (or lost)."""
        if self._writer is not None:
            await self._idle.wait()

    # --- emitting --------------------------------------------------------------------------

    def emit(self, app_id: str, kind: str, key: str, data: dict[str, Any]) -> None:
        """Queue the event for each webhook of the app that wants ``kind``; ``key`` is what
        it is ordered by (a channel's subject, ``user:<app>:<user>``)."""
        wanted: list[Hook | PullQueue] = [h for h in self.hooks.get(app_id, ()) if kind in h.types]
        wanted += [q for q in self.pulls.get(app_id, ()) if kind in q.types]
        if not wanted:
            return
        envelope = {
            "id": f"{self._prefix}{next(self._ids)}",
            "type": kind,
            "app_id": app_id,
            "ts_ms": int(time.time() * 1000),
            "node": self.node,
            "data": data,
        }
        body = _encode(envelope)
        part = partition_of(key)
        for hook in wanted:
            # A pull queue is one partition: pulled in the order the events happened.
            entry = (hook.id, part if isinstance(hook, Hook) else 0, body)
            waiting = self._pending.setdefault(hook.id, [])
            waiting.append(entry)
            if len(waiting) > self._waiting[hook.id]:  # the engine is slower than the events
                del waiting[0]
                self.dropped[hook.id] = self.dropped.get(hook.id, 0) + 1
        self.emitted += 1
        self._idle.clear()
        self._wake.set()

    def user(self, app_id: str, kind: str, user: str, **data: Any) -> None:
        self.emit(app_id, kind, f"user:{app_id}:{user}", {"user_id": user, **data})

    async def _write_loop(self) -> None:
        bounds = self._bounds
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, {}
            try:
                for hook_id, entries in batch.items():
                    try:
                        dropped = await self.outbox.put(entries, bounds[hook_id])
                    except (EngineUnavailable, OSError) as exc:
                        self.lost += len(entries)
                        log.error("webhooks: %d events not queued: %s", len(entries), exc)
                        continue
                    except Exception:  # the writer must outlive any one bad batch
                        self.lost += len(entries)
                        log.exception("webhooks: %d events not queued", len(entries))
                        continue
                    if dropped:
                        self.dropped[hook_id] = self.dropped.get(hook_id, 0) + dropped
                        log.warning(
                            "webhooks: %s queue full, %d oldest events dropped", hook_id, dropped
                        )
                    for part in {part for _, part, _ in entries}:
                        self.on_queued(hook_id, part)
            finally:
                if not self._pending:
                    self._idle.set()

    # --- pull queues ----------------------------------------------------------------------

    def has_pull_queues(self, app_id: str) -> bool:
        return app_id in self.pulls

    async def pull(self, app_id: str, name: str, limit: int) -> list[dict[str, Any]]:
        """Take up to ``limit`` of the oldest events of the app's pull queue ``name``, in
        order; they leave the queue (pull and delete)."""
        queue_id = f"{app_id}/{name}"
        taken: list[dict[str, Any]] = []
        while len(taken) < limit:
            entry = await self.outbox.peek(queue_id, 0, self.node)
            if entry is None:
                break
            await self.outbox.ack(queue_id, 0, entry.id)
            taken.append(msgspec.json.decode(entry.body))
        return taken

    # --- reading events off the bus --------------------------------------------------------

    def tap(self, broker: Broker) -> Broker:
        """``broker``, or (when some webhook listens) one that also emits what it carries."""
        return Tap(broker, self) if self.active else broker

    def on_bus(self, subject: str, event: BusEvent) -> None:
        kind = event.kind
        if kind == BusKind.PRESENCE:
            self._on_presence(subject, event)
        elif kind == BusKind.LOCK:
            self._on_lock(subject, event)
        elif kind == BusKind.STORAGE:
            self._on_storage(subject, event)
        elif kind == BusKind.TOPIC_EVENT:
            self._on_topic(subject, event)

    def _on_presence(self, subject: str, event: BusEvent) -> None:
        app, _, _ = parse_subject(subject)
        if app not in self.hooks and app not in self.pulls:
            return
        pushed = _presence(event.frame)
        kind = _PRESENCE_TYPES.get(pushed.kind)
        if kind is None:
            return
        data: dict[str, Any] = {
            "channel": pushed.channel,
            "channel_type": channel_kind(pushed.channel_type),
            "user_id": pushed.user,
        }
        if pushed.kind in (PresenceEventType.REMOTE_JOIN, PresenceEventType.REMOTE_STATE_CHANGED):
            data["state"] = pushed.state
        self.emit(app, kind, subject, data)

    def _on_lock(self, subject: str, event: BusEvent) -> None:
        app, _, _ = parse_subject(subject)
        if app not in self.hooks and app not in self.pulls:
            return
        pushed = _lock(event.frame)
        kind = _LOCK_TYPES.get(pushed.kind)
        if kind is None:
            return
        for lock in pushed.locks:
            owner, revoked = self.freeing.get((subject, lock.name), (lock.owner, False))
            data = {
                "channel": pushed.channel,
                "channel_type": channel_kind(pushed.channel_type),
                "lock": lock.name,
                "owner": owner,
                "ttl": lock.ttl,
            }
            if revoked:
                kind = "lock.revoked"
            self.emit(app, kind, subject, data)

    def _on_storage(self, subject: str, event: BusEvent) -> None:
        app = subject.split(":", 2)[1]
        if app not in self.hooks and app not in self.pulls:
            return
        pushed = _storage(event.frame)
        items = [
            {
                "key": i.key,
                "value": i.value,
                "revision": i.revision,
                "author": i.author,
                "update_ts": i.update_ts,
            }
            for i in pushed.items
        ]
        if pushed.storage_type == StorageType.USER:
            self.emit(
                app,
                "storage.user_updated",
                subject,
                {"user_id": pushed.user, "major_revision": pushed.major_revision, "items": items},
            )
        else:
            self.emit(
                app,
                "storage.channel_updated",
                subject,
                {
                    "channel": pushed.channel,
                    "channel_type": channel_kind(pushed.channel_type),
                    "major_revision": pushed.major_revision,
                    "items": items,
                },
            )

    def _on_topic(self, subject: str, event: BusEvent) -> None:
        app, _, _ = parse_subject(subject)
        if app not in self.hooks and app not in self.pulls:
            return
        pushed = _topic(event.frame)
        kind = {2: "topic.join", 3: "topic.leave"}.get(pushed.kind)
        if kind is None:
            return
        data = {"channel": pushed.channel, "topic": pushed.topic, "user_id": pushed.user}
        if pushed.meta:
            data["meta"] = pushed.meta
        self.emit(app, kind, subject, data)

    def on_message(self, subject: str, event: BusEvent) -> None:
        app, channel_type, _ = parse_subject(subject)
        hooks = self.hooks.get(app)
        if not hooks or not any("message.published" in h.types for h in hooks):
            return
        data: dict[str, Any]
        if event.topic:  # a stream channel's topic message
            from ...protocol.frames import StreamMessage  # rare: only opted-in webhooks

            m = msgspec.msgpack.decode(event.frame, type=StreamMessage)
            data = {"channel": m.channel, "channel_type": "stream", "topic": m.topic}
        else:
            c = _message(event.frame)
            data = {"channel": c.channel, "channel_type": channel_kind(channel_type), "topic": ""}
            m = c  # type: ignore[assignment]
        data |= {
            "publisher": m.publisher,
            "message_type": "string" if m.message_type == 1 else "binary",
            "message": _text_or_base64(m.payload, m.message_type),
            "custom_type": m.custom_type,
            "timestamp": m.timestamp,
        }
        self.emit(app, "message.published", subject, data)


def _text_or_base64(payload: bytes, message_type: int) -> str:
    if message_type == 1:
        return payload.decode("utf-8", "replace")
    import base64

    return base64.b64encode(payload).decode()


class Tap:
    """A broker that hands what it publishes to ``Webhooks`` too (``Broker``)."""

    def __init__(self, inner: Broker, webhooks: Webhooks) -> None:
        self._inner = inner
        self._webhooks = webhooks
        self.publish_counted = inner.publish_counted
        self.ready = inner.ready
        self.release = inner.release
        self.subscribe = inner.subscribe
        self.unsubscribe = inner.unsubscribe
        if not webhooks.wants_messages:  # the message path stays as fast as it was
            self.publish_message = inner.publish_message  # type: ignore[method-assign]

    def __getattr__(self, name: str) -> Any:  # engine-specific extras (tests, metrics)
        return getattr(self._inner, name)

    def publish(self, subject: str, event: BusEvent) -> None:
        self._inner.publish(subject, event)
        try:
            self._webhooks.on_bus(subject, event)
        except Exception:  # an event the tap cannot read must never fail the publish
            log.exception("webhooks: cannot read a %s event", event.kind)

    def publish_message(self, subject: str, event: BusEvent, keep: int, seconds: float) -> None:
        self._inner.publish_message(subject, event, keep, seconds)
        try:
            self._webhooks.on_message(subject, event)
        except Exception:
            log.exception("webhooks: cannot read a published message")
