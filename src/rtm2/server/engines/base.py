"""Engine contracts: small role Protocols that every engine implements the same way.

A server node keeps its own connections and routing tables; an engine holds what all nodes of
a deployment must agree on (who is in a stream channel, who publishes in which topic) and
carries events between nodes. The embedded engine (``memory``) does both inside one process;
the Redis engine does them across many. One contract test suite (``tests/engines``) runs
against every engine, so the server above them cannot tell them apart.

Outcomes are returned as values, not raised: the service layer turns them into RTM errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import msgspec

__all__ = [
    "BUS_MESSAGE",
    "BUS_TOPIC_EVENT",
    "Broker",
    "BusEvent",
    "BusHandler",
    "StreamStore",
    "TopicPublishers",
]

# Kinds of bus events.
BUS_MESSAGE = 1  # ``frame`` is a StreamMessage push; deliver to subscribers of (topic, user)
BUS_TOPIC_EVENT = 2  # ``frame`` is a TopicEvent push; deliver to every member but ``user``


class BusEvent(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """What travels between nodes: an event about one channel, with its client push ready.

    ``frame`` is the MessagePack push exactly as clients receive it, encoded once by the node
    where the event happened; receiving nodes only add WebSocket framing.
    """

    kind: int
    topic: str
    user: str
    frame: bytes


BusHandler = Callable[[str, BusEvent], None]


class Broker(Protocol):
    """Carries events on subjects (one per channel) to every node subscribed to them.

    Contract: events published on one subject by one node arrive at each subscribed node once,
    in publish order. ``publish`` never blocks and never raises for a subject nobody
    subscribes to. Delivery calls the handler given to the engine when it was created.
    """

    def publish(self, subject: str, event: BusEvent) -> None: ...

    def subscribe(self, subject: str) -> None:
        """Start receiving ``subject`` on this node. Idempotent."""

    def unsubscribe(self, subject: str) -> None:
        """Stop receiving ``subject`` on this node. Idempotent."""


class TopicPublishers(msgspec.Struct, frozen=True, gc=False):
    topic: str
    # (user id, meta) of each publisher, in the order they joined.
    publishers: list[tuple[str, str]]


class StreamStore(Protocol):
    """Stream-channel membership and topic publishers, shared by all nodes.

    Every member and publisher entry is owned by a member id (the session id); an update
    carrying another member id than the entry's does nothing, so a stale session's clean-up
    can never remove the entry of a newer session of the same user.
    """

    async def join(
        self, app: str, channel: str, user: str, member: str, max_users: int
    ) -> list[TopicPublishers] | None:
        """Add ``user`` to the channel and return its topics; None when the channel is full.

        Re-joining replaces the user's member id (and keeps the entry if it existed).
        """

    async def leave(self, app: str, channel: str, user: str, member: str) -> list[str]:
        """Remove the user (if ``member`` owns the entry); return the topics it published in."""

    async def join_topic(
        self, app: str, channel: str, topic: str, user: str, member: str, meta: str
    ) -> None:
        """Make ``user`` a publisher of ``topic`` (creating the topic)."""

    async def leave_topic(self, app: str, channel: str, topic: str, user: str, member: str) -> bool:
        """Remove a publisher; the topic goes away with its last one. False if not a publisher."""

    async def publishers(self, app: str, channel: str, topic: str) -> list[str]:
        """Current publishers of ``topic``, in the order they joined."""
