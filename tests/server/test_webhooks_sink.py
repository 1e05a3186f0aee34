"""The webhook sink costs nothing where no webhook listens, and reads each event once where it
is published (the tap on the node's broker)."""

from __future__ import annotations

import json

from rtm2.protocol.codec import encode
from rtm2.protocol.frames import LockDetail, LockEvent, PresenceEvent
from rtm2.server.config import AppConfig, WebhookConfig
from rtm2.server.engines.base import BusEvent, BusKind, OutboxEntry
from rtm2.server.engines.memory import MemoryBroker, Offsets
from rtm2.server.webhooks.sink import PARTITIONS, Tap, Webhooks, partition_of
from rtm2.types import LockEventType, PresenceEventType

APP = "a7" * 16
OTHER = "a8" * 16


class ListOutbox:
    """An ``EventOutbox`` that only records what is put (the sink never reads it back)."""

    def __init__(self) -> None:
        self.put_entries: list[tuple[str, int, bytes]] = []

    async def put(self, entries: list[tuple[str, int, bytes]], bound: int) -> int:
        self.put_entries += entries
        return 0

    async def claim(self, hook: str, partition: int, node: str, lease: float) -> bool:
        return True

    async def peek(self, hook: str, partition: int, node: str) -> OutboxEntry | None:
        return None

    async def ack(self, hook: str, partition: int, entry_id: str) -> None:
        return None

    async def depth(self, hook: str, partition: int) -> tuple[int, int]:
        return 0, 0


def _apps(*hooks: WebhookConfig) -> dict[str, AppConfig]:
    return {APP: AppConfig(APP, webhooks=hooks), OTHER: AppConfig(OTHER)}


def _broker() -> MemoryBroker:
    return MemoryBroker(lambda subject, event: None, Offsets(60.0))


def test_without_webhooks_the_broker_is_the_engines_own() -> None:
    sink = Webhooks(_apps(), ListOutbox(), "n1")
    broker = _broker()
    assert not sink.active
    assert sink.tap(broker) is broker


def test_the_message_path_is_tapped_only_when_a_webhook_names_message_published() -> None:
    broker = _broker()
    plain = Webhooks(_apps(WebhookConfig("http://h/", "s")), ListOutbox(), "n1").tap(broker)
    assert isinstance(plain, Tap)
    assert plain.publish_message == broker.publish_message  # the engine's own, no detour
    wanting = Webhooks(
        _apps(WebhookConfig("http://h/", "s", ("message.published",))), ListOutbox(), "n1"
    ).tap(broker)
    assert wanting.publish_message != broker.publish_message


def test_a_published_event_is_emitted_once_for_each_webhook_that_wants_it() -> None:
    sink = Webhooks(
        _apps(
            WebhookConfig("http://a/", "s", ("channel.*",)),
            WebhookConfig("http://b/", "s", ("lock.*",)),
        ),
        ListOutbox(),
        "n1",
    )
    tap = sink.tap(_broker())
    subject = f"msg:{APP}:room"
    joined = PresenceEvent(PresenceEventType.REMOTE_JOIN, "room", 1, "alice", {"k": "v"})
    tap.publish(subject, BusEvent(BusKind.PRESENCE, "3", "alice", encode(joined)))
    lock = LockEvent(LockEventType.SET, "room", 1, [LockDetail("L", "", 10)])
    tap.publish(subject, BusEvent(BusKind.LOCK, "L", "", encode(lock)))
    tap.publish(f"msg:{OTHER}:room", BusEvent(BusKind.PRESENCE, "3", "bob", encode(joined)))
    pending = sink._pending
    assert sorted(pending) == [f"{APP}/0", f"{APP}/1"]
    (join,) = pending[f"{APP}/0"]
    (lock_set,) = pending[f"{APP}/1"]
    assert join[1] == lock_set[1] == partition_of(subject) < PARTITIONS  # one channel, one queue
    event = json.loads(join[2])
    assert (event["type"], event["app_id"], event["node"]) == ("channel.join", APP, "n1")
    assert event["data"] == {
        "channel": "room",
        "channel_type": "message",
        "user_id": "alice",
        "state": {"k": "v"},
    }
    assert json.loads(lock_set[2])["type"] == "lock.set"
