"""Which subjects this node listens to on the broker, counted per reason.

Several services need the same subject (a channel's stream members, its lock waiters, its
metadata listeners); the node subscribes on the first need and unsubscribes after the last.
Each subject's kind is parsed once, when the node starts listening, for the bus to route by.
"""

from __future__ import annotations

from collections.abc import Callable

from .engines.base import Broker
from .subjects import SubjectKind, subject_kind

__all__ = ["Interest"]


class Interest:
    __slots__ = ("_broker", "_counts", "_dropped", "kinds")

    def __init__(self, broker: Broker, dropped: Callable[[str], None] | None = None) -> None:
        self._broker = broker
        self._counts: dict[str, int] = {}
        self._dropped = dropped  # told of every subject the node stops listening to
        # The kind of every subject listened to (read only, please).
        self.kinds: dict[str, SubjectKind] = {}

    def add(self, subject: str) -> None:
        count = self._counts.get(subject, 0)
        if count == 0:
            self.kinds[subject] = subject_kind(subject)
            self._broker.subscribe(subject)
        self._counts[subject] = count + 1

    def remove(self, subject: str) -> None:
        count = self._counts.get(subject, 0)
        if count <= 1:
            self._counts.pop(subject, None)
            if count == 1:
                del self.kinds[subject]
                self._broker.unsubscribe(subject)
                if self._dropped is not None:
                    self._dropped(subject)
        else:
            self._counts[subject] = count - 1
