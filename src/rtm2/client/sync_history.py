"""``client.history`` of a sync client (``rtm2.sync``): its asyncio twin as blocking calls."""

from __future__ import annotations

from ..types import ChannelType, HistoryMessage
from . import History as AsyncHistory
from .sync_loop import LoopThread

__all__ = ["History"]


class History:
    """``client.history`` of a sync client: message history."""

    def __init__(self, history: AsyncHistory, loop: LoopThread) -> None:
        self._history = history
        self._loop = loop

    def get_messages(
        self,
        channel: str,
        channel_type: ChannelType,
        count: int = 100,
        start: int = 0,
        end: int = 0,
    ) -> tuple[list[HistoryMessage], int]:
        """Stored messages, newest first, and the ``start`` of the next page (0: none)."""
        return self._loop.run(
            lambda: self._history.get_messages(channel, channel_type, count, start, end)
        )
