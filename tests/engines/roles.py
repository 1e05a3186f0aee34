"""Engine contract suite for the roles nodes share: ``StreamStore``, ``PresenceStore`` and
``Broker`` (``contract.py`` has metadata and locks).

Written once, run against every engine: a test module provides a ``roles`` fixture that yields
a started ``RolesHarness`` on empty stores, and subclasses the contract classes (not collected
on their own: their names do not start with ``Test``). ``CrossNodeContract`` is for engines
that many nodes share (Redis); each ``node()`` of its harness is another engine instance.

The tests use only the Protocol methods of ``rtm2.server.engines.base``.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Protocol

from rtm2.server.engines.base import (
    BUS_MESSAGE,
    BUS_PRESENCE,
    UNNUMBERED,
    Broker,
    BusEvent,
    Engine,
    PresenceEntry,
    PresenceStore,
    RecoveryStore,
    StreamStore,
    TopicPublishers,
    frame_offset,
)

__all__ = [
    "BrokerContract",
    "CrossNodeContract",
    "Node",
    "NodesContract",
    "PresenceStoreContract",
    "RolesHarness",
    "StreamStoreContract",
]

APP = "app1"
ROOM = "msg:app1:room"
HALL = "msg:app1:hall"
STREAM = "stream:app1:river"


class Node:
    """One node's broker and what it delivered: (subject, event) in arrival order."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.events: list[tuple[str, BusEvent]] = []
        self.gaps: list[str | None] = []
        self._arrived = asyncio.Event()
        self.broker: Broker = engine.make_broker(self._handle, self.gaps.append)

    def _handle(self, subject: str, event: BusEvent) -> None:
        self.events.append((subject, event))
        self._arrived.set()

    async def received(self, count: int, timeout: float = 5.0) -> list[tuple[str, BusEvent]]:
        """The first ``count`` events, once they are there."""
        async with asyncio.timeout(timeout):
            while len(self.events) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.events[:count]

    async def subscribed(self, subject: str) -> None:
        self.broker.subscribe(subject)
        await self.broker.ready(subject)


class RolesHarness(Protocol):
    """What the ``roles`` fixture yields."""

    stream: StreamStore
    presence: PresenceStore
    recovery: RecoveryStore

    async def node(self) -> Node:
        """A started node: its own broker (and, for shared engines, its own engine)."""


def event(text: str, kind: int = BUS_PRESENCE, topic: str = "", user: str = "u") -> BusEvent:
    return BusEvent(kind, topic, user, text.encode())


def message(text: str, topic: str = "", user: str = "u") -> BusEvent:
    """A message as a node publishes it: its frame ends with the UNNUMBERED offset."""
    return BusEvent(BUS_MESSAGE, topic, user, text.encode() + struct.pack(">Q", UNNUMBERED))


def texts(events: list[tuple[str, BusEvent]]) -> list[str]:
    return [e.frame.decode() for _, e in events]


def topics(found: list[TopicPublishers] | None) -> dict[str, list[tuple[str, str]]]:
    assert found is not None
    return {t.topic: t.publishers for t in found}


class StreamStoreContract:
    async def test_joining_an_empty_channel_gives_no_topics(self, roles):
        assert await roles.stream.join(APP, "river", "alice", "n1-1", 10) == []

    async def test_a_full_channel_refuses_a_new_user_but_takes_a_member_back(self, roles):
        assert await roles.stream.join(APP, "river", "alice", "n1-1", 2) == []
        assert await roles.stream.join(APP, "river", "bob", "n1-2", 2) == []
        assert await roles.stream.join(APP, "river", "carol", "n1-3", 2) is None
        assert await roles.stream.join(APP, "river", "alice", "n1-4", 2) == []

    async def test_a_joiner_gets_every_topic_with_its_publishers_in_join_order(self, roles):
        for user, member in (("alice", "n1-1"), ("bob", "n1-2"), ("carol", "n1-3")):
            await roles.stream.join(APP, "river", user, member, 10)
        await roles.stream.join_topic(APP, "river", "t1", "bob", "n1-2", "b-meta")
        await roles.stream.join_topic(APP, "river", "t1", "alice", "n1-1", "a-meta")
        await roles.stream.join_topic(APP, "river", "t2", "carol", "n1-3", "")
        found = await roles.stream.join(APP, "river", "dave", "n1-4", 10)
        assert topics(found) == {
            "t1": [("bob", "b-meta"), ("alice", "a-meta")],
            "t2": [("carol", "")],
        }
        assert await roles.stream.publishers(APP, "river", "t1") == ["bob", "alice"]

    async def test_only_a_member_can_become_a_publisher(self, roles):
        await roles.stream.join(APP, "river", "alice", "n1-1", 10)
        await roles.stream.join_topic(APP, "river", "t1", "bob", "n1-2", "")
        await roles.stream.join_topic(APP, "river", "t1", "alice", "n1-9", "")
        assert await roles.stream.publishers(APP, "river", "t1") == []

    async def test_leaving_a_topic_removes_the_publisher_and_the_topic_with_its_last(self, roles):
        await roles.stream.join(APP, "river", "alice", "n1-1", 10)
        await roles.stream.join_topic(APP, "river", "t1", "alice", "n1-1", "")
        assert not await roles.stream.leave_topic(APP, "river", "t1", "alice", "n1-9")
        assert not await roles.stream.leave_topic(APP, "river", "t1", "bob", "n1-1")
        assert await roles.stream.leave_topic(APP, "river", "t1", "alice", "n1-1")
        assert await roles.stream.publishers(APP, "river", "t1") == []
        assert topics(await roles.stream.join(APP, "river", "bob", "n1-2", 10)) == {}

    async def test_leaving_returns_the_topics_the_user_published_in(self, roles):
        await roles.stream.join(APP, "river", "alice", "n1-1", 10)
        await roles.stream.join(APP, "river", "bob", "n1-2", 10)
        for topic in ("t1", "t2"):
            await roles.stream.join_topic(APP, "river", topic, "alice", "n1-1", "")
        await roles.stream.join_topic(APP, "river", "t1", "bob", "n1-2", "")
        assert sorted(await roles.stream.leave(APP, "river", "alice", "n1-1")) == ["t1", "t2"]
        assert await roles.stream.publishers(APP, "river", "t1") == ["bob"]
        assert await roles.stream.publishers(APP, "river", "t2") == []

    async def test_a_stale_member_id_changes_nothing(self, roles):
        await roles.stream.join(APP, "river", "alice", "n1-1", 10)
        await roles.stream.join(APP, "river", "alice", "n2-1", 10)  # a newer session
        await roles.stream.join_topic(APP, "river", "t1", "alice", "n2-1", "")
        assert await roles.stream.leave(APP, "river", "alice", "n1-1") == []
        assert await roles.stream.publishers(APP, "river", "t1") == ["alice"]
        assert await roles.stream.join(APP, "river", "bob", "n1-2", 2) is not None
        assert await roles.stream.join(APP, "river", "carol", "n1-3", 2) is None  # alice stays

    async def test_a_left_user_frees_its_place(self, roles):
        await roles.stream.join(APP, "river", "alice", "n1-1", 1)
        await roles.stream.leave(APP, "river", "alice", "n1-1")
        assert await roles.stream.join(APP, "river", "bob", "n1-2", 1) == []

    async def test_channels_and_apps_are_independent(self, roles):
        await roles.stream.join(APP, "river", "alice", "n1-1", 10)
        await roles.stream.join_topic(APP, "river", "t1", "alice", "n1-1", "")
        assert await roles.stream.publishers(APP, "lake", "t1") == []
        assert await roles.stream.publishers("app2", "river", "t1") == []
        assert await roles.stream.join("app2", "river", "bob", "n1-2", 1) == []


class PresenceStoreContract:
    async def test_a_first_join_has_no_previous_entry_and_shows_in_members(self, roles):
        assert await roles.presence.join(ROOM, "alice", "n1-1", {"mood": "ok"}, False) is None
        assert await roles.presence.members(ROOM) == {
            "alice": PresenceEntry("n1-1", {"mood": "ok"}, False)
        }

    async def test_joining_again_takes_the_entry_over_and_returns_the_previous(self, roles):
        await roles.presence.join(ROOM, "alice", "n1-1", {"a": "1"}, True)
        previous = await roles.presence.join(ROOM, "alice", "n2-1", {"b": "2"}, False)
        assert previous == PresenceEntry("n1-1", {"a": "1"}, True)
        assert (await roles.presence.members(ROOM))["alice"] == PresenceEntry(
            "n2-1", {"b": "2"}, False
        )

    async def test_leave_removes_the_entry_only_for_its_member(self, roles):
        await roles.presence.join(ROOM, "alice", "n1-1", {}, False)
        assert await roles.presence.leave(ROOM, "alice", "n1-9") is None
        assert "alice" in await roles.presence.members(ROOM)
        left = await roles.presence.leave(ROOM, "alice", "n1-1")
        assert left == PresenceEntry("n1-1", {}, False)
        assert await roles.presence.members(ROOM) == {}
        assert await roles.presence.leave(ROOM, "alice", "n1-1") is None

    async def test_update_state_upserts_and_removes_keys_and_returns_the_whole_state(self, roles):
        await roles.presence.join(ROOM, "alice", "n1-1", {"a": "1", "b": "2"}, False)
        state = await roles.presence.update_state(ROOM, "alice", "n1-1", {"c": "3"}, ["a"])
        assert state == {"b": "2", "c": "3"}
        assert (await roles.presence.members(ROOM))["alice"].state == state
        assert await roles.presence.update_state(ROOM, "alice", "n1-1", {}, ["b", "c"]) == {}

    async def test_update_state_of_someone_absent_or_of_a_stale_member_changes_nothing(self, roles):
        assert await roles.presence.update_state(ROOM, "bob", "n1-2", {"a": "1"}, []) is None
        await roles.presence.join(ROOM, "alice", "n1-1", {"a": "1"}, False)
        assert await roles.presence.update_state(ROOM, "alice", "n1-9", {"a": "2"}, []) is None
        assert (await roles.presence.members(ROOM))["alice"].state == {"a": "1"}

    async def test_where_now_lists_the_users_channels_of_the_app_with_quietness(self, roles):
        await roles.presence.join(ROOM, "alice", "n1-1", {}, False)
        await roles.presence.join(HALL, "alice", "n1-1", {}, True)
        await roles.presence.join("msg:app2:room", "alice", "n1-1", {}, False)
        assert sorted(await roles.presence.where_now(APP, "alice")) == [
            (HALL, True),
            (ROOM, False),
        ]
        await roles.presence.leave(HALL, "alice", "n1-1")
        assert await roles.presence.where_now(APP, "alice") == [(ROOM, False)]
        assert await roles.presence.where_now(APP, "bob") == []

    async def test_channels_are_independent(self, roles):
        await roles.presence.join(ROOM, "alice", "n1-1", {}, False)
        await roles.presence.join(STREAM, "bob", "n1-2", {}, False)
        assert list(await roles.presence.members(ROOM)) == ["alice"]
        assert list(await roles.presence.members(STREAM)) == ["bob"]

    async def test_channels_lists_the_subjects_under_a_prefix_with_their_entry_counts(self, roles):
        odd = "msg:app1:we*i{r}d%?"  # glob and hash-tag characters are matched literally
        for subject, users in [(ROOM, 2), (HALL, 1), (odd, 1), (STREAM, 3), ("msg:app2:room", 1)]:
            for i in range(users):
                await roles.presence.join(subject, f"u{i}", f"n1-{i}", {}, i == 1)
        assert await roles.presence.channels("msg:app1:") == {ROOM: 2, HALL: 1, odd: 1}
        assert await roles.presence.channels("msg:app1:we*") == {odd: 1}
        assert await roles.presence.channels("stream:app1:") == {STREAM: 3}
        assert await roles.presence.channels("msg:app3:") == {}
        await roles.presence.leave(HALL, "u0", "n1-0")
        assert await roles.presence.channels("msg:app1:h") == {}


class BrokerContract:
    async def test_events_reach_a_subscribed_node_once_in_publish_order(self, roles):
        node = await roles.node()
        await node.subscribed(ROOM)
        node.broker.subscribe(ROOM)  # idempotent: still delivered once
        for i in range(20):
            node.broker.publish(ROOM, event(f"e{i}"))
        assert texts(await node.received(20)) == [f"e{i}" for i in range(20)]
        await asyncio.sleep(0.1)
        assert len(node.events) == 20

    async def test_a_subject_nobody_subscribes_to_is_published_to_silently(self, roles):
        node = await roles.node()
        await node.subscribed(ROOM)
        node.broker.publish(HALL, event("nobody"))
        assert await node.broker.publish_counted(HALL, event("nobody")) == 0
        node.broker.publish(ROOM, event("somebody"))
        assert texts(await node.received(1)) == ["somebody"]
        await asyncio.sleep(0.1)
        assert texts(node.events) == ["somebody"]

    async def test_publish_counted_reaches_a_subscribed_node(self, roles):
        node = await roles.node()
        await node.subscribed(ROOM)
        assert await node.broker.publish_counted(ROOM, event("hi")) >= 1
        assert texts(await node.received(1)) == ["hi"]

    async def test_an_unsubscribed_node_gets_nothing_more(self, roles):
        node = await roles.node()
        await node.subscribed(ROOM)
        node.broker.unsubscribe(ROOM)
        node.broker.unsubscribe(ROOM)  # idempotent
        await asyncio.sleep(0.1)  # the unsubscription reaches the engine
        node.broker.publish(ROOM, event("gone"))
        await asyncio.sleep(0.1)
        assert node.events == []

    async def test_messages_are_numbered_one_by_one_per_subject_and_topic(self, roles):
        node = await roles.node()
        await node.subscribed(ROOM)
        for i in range(3):
            node.broker.publish_message(ROOM, message(f"a{i}", "t1"), 100, 60)
            node.broker.publish_message(ROOM, message(f"b{i}", "t2"), 100, 60)
        got = await node.received(6)
        for topic in ("t1", "t2"):
            offsets = [frame_offset(e.frame) for _, e in got if e.topic == topic]
            assert offsets == list(range(offsets[0], offsets[0] + 3))
            assert await roles.recovery.position(ROOM, topic) == offsets[-1]
        assert [e.frame[:-8].decode() for _, e in got if e.topic == "t1"] == ["a0", "a1", "a2"]
        assert await roles.recovery.position(ROOM, "never") == 0

    async def test_events_keep_their_order_around_messages(self, roles):
        node = await roles.node()
        await node.subscribed(ROOM)
        node.broker.publish_message(ROOM, message("m1"), 100, 60)
        node.broker.publish(ROOM, event("e1"))
        node.broker.publish_message(ROOM, message("m2"), 100, 60)
        got = await node.received(3)
        assert [e.frame[:2].decode() for _, e in got] == ["m1", "e1", "m2"]


class NodesContract:
    """Every engine: a node's descriptor, given with its heartbeat, is handed out."""

    async def test_a_node_descriptor_given_with_its_heartbeat_is_handed_out(self, roles):
        node = await roles.node()
        assert await node.engine.node_descriptors(5) == {}
        await node.engine.heartbeat("n1", b"first", 5)
        assert await node.engine.node_descriptors(5) == {"n1": b"first"}
        await node.engine.heartbeat("n1")  # a heartbeat without one keeps the last
        await node.engine.heartbeat("n1", b"second", 5)
        await node.engine.heartbeat("n1")
        assert await node.engine.node_descriptors(5) == {"n1": b"second"}


class CrossNodeContract:
    """For engines that many nodes share: what one node does, another sees."""

    async def test_every_live_node_descriptor_is_seen_from_any_node_until_it_falls_silent(
        self, roles
    ):
        a, b, c = await roles.node(), await roles.node(), await roles.node()
        await a.engine.heartbeat("n1", b"one", 5)
        await b.engine.heartbeat("n2", b"two", 5)
        await b.engine.heartbeat("n3")  # alive, but has told nothing yet: not listed
        assert await c.engine.node_descriptors(5) == {"n1": b"one", "n2": b"two"}
        await asyncio.sleep(2.1)  # Redis's clock, in whole seconds: n1 is 2 s silent
        await b.engine.heartbeat("n2", b"two again", 5)
        assert await c.engine.node_descriptors(1) == {"n2": b"two again"}

    async def test_an_event_published_on_one_node_reaches_every_subscribed_node(self, roles):
        a, b, c = await roles.node(), await roles.node(), await roles.node()
        await a.subscribed(ROOM)
        await b.subscribed(ROOM)
        await c.subscribed(HALL)
        for i in range(10):
            a.broker.publish(ROOM, event(f"e{i}"))
        assert texts(await b.received(10)) == [f"e{i}" for i in range(10)]
        assert texts(await a.received(10)) == [f"e{i}" for i in range(10)]
        assert await c.broker.publish_counted(ROOM, event("counted")) == 2
        await asyncio.sleep(0.1)
        assert c.events == []

    async def test_messages_from_two_nodes_share_one_sequence_of_offsets(self, roles):
        a, b = await roles.node(), await roles.node()
        await a.subscribed(ROOM)
        await b.subscribed(ROOM)
        for i in range(5):
            a.broker.publish_message(ROOM, message(f"a{i}", "t"), 100, 60)
            await asyncio.sleep(0)
            b.broker.publish_message(ROOM, message(f"b{i}", "t"), 100, 60)
            await asyncio.sleep(0.01)
        seen_a = [frame_offset(e.frame) for _, e in await a.received(10)]
        seen_b = [frame_offset(e.frame) for _, e in await b.received(10)]
        assert seen_a == seen_b == list(range(seen_a[0], seen_a[0] + 10))

    async def test_what_a_dead_node_held_is_handed_to_exactly_one_live_node(self, roles):
        dead, live, late = await roles.node(), await roles.node(), await roles.node()
        await roles.presence.join(ROOM, "alice", "n1-1", {}, False)
        await roles.stream.join(APP, "river", "bob", "n1-2", 10)
        await dead.engine.heartbeat("n1")
        await live.engine.heartbeat("n2")
        await asyncio.sleep(1.1)  # node clocks count seconds
        found = await live.engine.orphans("n2", 1)
        assert sorted(found) == [
            ["presence", ROOM, "alice", "n1-1"],
            ["stream", APP, "river", "bob", "n1-2"],
        ]
        assert await late.engine.orphans("n3", 1) == []
