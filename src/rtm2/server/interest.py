"""Which subjects this node listens to on the broker, counted per reason.

Several services need the same subject (a channel's stream members, its lock waiters, its
metadata listeners); the node subscribes on the first need and unsubscribes after the last.
"""

from __future__ import annotations

from collections.abc import Callable

from .engines.base import Broker

__all__ = ["Interest"]


class Interest:
    __slots__ = ("_broker", "_counts", "_dropped")

    def __init__(self, broker: Broker, dropped: Callable[[str], None] | None = None) -> None:
        self._broker = broker
        self._counts: dict[str, int] = {}
        self._dropped = dropped  # told of every subject the node stops listening to

    def add(self, subject: str) -> None:
        count = self._counts.get(subject, 0)
        if count == 0:
            self._broker.subscribe(subject)
        self._counts[subject] = count + 1

    def remove(self, subject: str) -> None:
        count = self._counts.get(subject, 0)
        if count <= 1:
            self._counts.pop(subject, None)
            if count == 1:
                self._broker.unsubscribe(subject)
                if self._dropped is not None:
                    self._dropped(subject)
        else:
            self._counts[subject] = count - 1
