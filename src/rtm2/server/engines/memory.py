"""The embedded engine: everything in this process's memory. Single node only."""

from __future__ import annotations

from .base import BusEvent, BusHandler, TopicPublishers

__all__ = ["MemoryBroker", "MemoryStreamStore"]


class MemoryBroker:
    """Delivers events to this node synchronously, in publish order."""

    __slots__ = ("_handler", "_subjects")

    def __init__(self, handler: BusHandler) -> None:
        self._handler = handler
        self._subjects: set[str] = set()

    def publish(self, subject: str, event: BusEvent) -> None:
        if subject in self._subjects:
            self._handler(subject, event)

    def subscribe(self, subject: str) -> None:
        self._subjects.add(subject)

    def unsubscribe(self, subject: str) -> None:
        self._subjects.discard(subject)


class _Channel:
    __slots__ = ("members", "topics")

    def __init__(self) -> None:
        self.members: dict[str, str] = {}  # user -> member id
        # topic -> user -> (member id, meta); dicts keep join order
        self.topics: dict[str, dict[str, tuple[str, str]]] = {}


class MemoryStreamStore:
    def __init__(self) -> None:
        self._channels: dict[tuple[str, str], _Channel] = {}

    async def join(
        self, app: str, channel: str, user: str, member: str, max_users: int
    ) -> list[TopicPublishers] | None:
        ch = self._channels.get((app, channel))
        if ch is None:
            ch = self._channels[(app, channel)] = _Channel()
        if user not in ch.members and len(ch.members) >= max_users:
            return None
        ch.members[user] = member
        return [
            TopicPublishers(topic, [(u, meta) for u, (_, meta) in pubs.items()])
            for topic, pubs in ch.topics.items()
        ]

    async def leave(self, app: str, channel: str, user: str, member: str) -> list[str]:
        ch = self._channels.get((app, channel))
        if ch is None or ch.members.get(user) != member:
            return []
        del ch.members[user]
        left = []
        for topic, pubs in list(ch.topics.items()):
            entry = pubs.get(user)
            if entry is not None and entry[0] == member:
                del pubs[user]
                left.append(topic)
                if not pubs:
                    del ch.topics[topic]
        if not ch.members:
            del self._channels[(app, channel)]
        return left

    async def join_topic(
        self, app: str, channel: str, topic: str, user: str, member: str, meta: str
    ) -> None:
        ch = self._channels.get((app, channel))
        if ch is None or ch.members.get(user) != member:
            return
        ch.topics.setdefault(topic, {})[user] = (member, meta)

    async def leave_topic(self, app: str, channel: str, topic: str, user: str, member: str) -> bool:
        ch = self._channels.get((app, channel))
        pubs = ch.topics.get(topic) if ch is not None else None
        if ch is None or pubs is None or pubs.get(user, ("",))[0] != member:
            return False
        del pubs[user]
        if not pubs:
            del ch.topics[topic]
        return True

    async def publishers(self, app: str, channel: str, topic: str) -> list[str]:
        ch = self._channels.get((app, channel))
        return list(ch.topics.get(topic, {})) if ch is not None else []
