"""OffsetBook: how far each subscription got, in which server epoch, and what is a duplicate.

Every channel message and stream-topic message carries an offset that grows per
(channel type, channel, topic) within one server epoch. The SDK remembers the last one it
delivered, so that after a lost connection it can ask the server for exactly what it missed
(``positions`` on resume, ``recovering_from`` on a new session) and drop a message that
arrives twice: once replayed and once live (``fresh``).
"""

from __future__ import annotations

from ..protocol.frames import Position
from ..types import ChannelType

__all__ = ["OffsetBook", "OffsetKey"]

# (channel type, channel, topic); the topic is "" for a message channel.
OffsetKey = tuple[ChannelType, str, str]


class OffsetBook:
    """The last offset delivered per subscription, with the epochs they were counted in."""

    __slots__ = ("_last", "_old_epoch", "epoch")

    def __init__(self) -> None:
        self._last: dict[OffsetKey, int] = {}
        self.epoch = ""  # the epoch of the current session
        # The epoch before the last login: the offsets held were counted in it.
        self._old_epoch = ""

    def __repr__(self) -> str:
        return f"<OffsetBook epoch={self.epoch!r} {self._last!r}>"

    def __len__(self) -> int:
        return len(self._last)

    def __contains__(self, key: object) -> bool:
        return key in self._last

    def get(self, key: OffsetKey) -> int | None:
        return self._last.get(key)

    # --- sessions ----------------------------------------------------------------------------

    def new_epoch(self, epoch: str) -> None:
        """A login succeeded in ``epoch``: offsets held until now belong to the previous one."""
        self._old_epoch, self.epoch = self.epoch, epoch

    def clear(self) -> None:
        """Logged out: nothing to recover any more (the epochs stay, for the next login)."""
        self._last.clear()

    def positions(self) -> list[Position]:
        """What a resume asks for: every subscription's last offset, in the current epoch."""
        return [
            Position(ctype, channel, topic, offset, self.epoch)
            for (ctype, channel, topic), offset in self._last.items()
        ]

    def recovering_from(self, key: OffsetKey) -> tuple[int, str]:
        """(offset, epoch) to recover ``key`` from on a new session; (0, "") for nothing."""
        offset = self._last.get(key)
        if offset is None or not self._old_epoch:
            return 0, ""
        return offset, self._old_epoch

    def resumed_at(self, key: OffsetKey, offset: int, recovered: bool) -> None:
        """A new session subscribed again: when it recovers, the missed messages follow and
        our offset stays; otherwise we start at the server's position (which may be below
        ours: a restarted embedded server numbers from 1 again)."""
        if not recovered:
            self._last[key] = offset

    # --- subscriptions -----------------------------------------------------------------------

    def start(self, key: OffsetKey, offset: int) -> None:
        """A subscription begins at the server's ``offset``, whatever was held before."""
        self._last[key] = offset

    def seen(self, key: OffsetKey, offset: int) -> None:
        """The subscription got at least to ``offset`` (never moves back)."""
        self._last[key] = max(self._last.get(key, 0), offset)

    def forget(self, key: OffsetKey) -> None:
        """The subscription ended: nothing to recover for it."""
        self._last.pop(key, None)

    def fresh(self, key: OffsetKey, offset: int) -> bool:
        """Whether a message at ``offset`` is new, recording it if so. An offset of 0 (a
        message without one, like a peer message) is always new and changes nothing; one at
        or below the last is a replay overlapping what arrived live."""
        if not offset:
            return True
        if offset <= self._last.get(key, 0):
            return False
        self._last[key] = offset
        return True
