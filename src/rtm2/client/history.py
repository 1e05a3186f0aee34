"""``client.history``: reading back messages published with ``store_in_history=True``.

Pages come newest first. ``start`` and ``end`` are server times in ms (``start`` excluded,
``end`` included; 0 = no bound), or the ``new_start`` a previous page returned: it names the
exact message the page stopped at, so paging never repeats or skips a message, even when
several share a millisecond. docs/HISTORY.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ErrorCode, RTMError
from ..protocol import frames as f
from ..types import ChannelType, HistoryMessage, MessageType

if TYPE_CHECKING:
    from .session import Session

__all__ = ["MAX_HISTORY_COUNT", "History"]

MAX_HISTORY_COUNT = 100


class History:
    def __init__(self, session: Session) -> None:
        self._session = session

    async def get_messages(
        self,
        channel: str,
        channel_type: ChannelType,
        count: int = MAX_HISTORY_COUNT,
        start: int = 0,
        end: int = 0,
    ) -> tuple[list[HistoryMessage], int]:
        """Up to ``count`` (at most 100) stored messages of a message channel, or
        (``channel_type=USER``) of this user's conversation with the user ``channel``, newest
        first, and the ``start`` of the next, older page (0 when there is none).

        Raises INVALID_PARAMETER for a stream channel or a count out of 1-100,
        HISTORY_INVALID_TIMESTAMP for a negative bound or ``end`` not before ``start``, and
        HISTORY_OPERATION_NOT_PERMITTED when the app keeps no history or (app policy
        ``history_read = "subscribers"``) the client is not subscribed to the channel.
        """
        if channel_type == ChannelType.STREAM:
            raise RTMError(ErrorCode.INVALID_PARAMETER, "stream channels keep no history")
        if not 0 < count <= MAX_HISTORY_COUNT:
            raise RTMError(
                ErrorCode.INVALID_PARAMETER, f"count must be 1 to {MAX_HISTORY_COUNT}, not {count}"
            )
        result = await self._session.request(
            lambda rid: f.GetHistory(rid, channel, channel_type, count, start, end),
            f.HistoryResult,
        )
        assert result is not None
        kind = ChannelType(channel_type)
        messages = []
        for m in result.messages:
            text = m.message_type == MessageType.STRING
            messages.append(
                HistoryMessage(
                    m.id,
                    m.publisher,
                    channel,
                    kind,
                    m.payload.decode(errors="replace") if text else m.payload,
                    MessageType.STRING if text else MessageType.BINARY,
                    m.custom_type,
                    m.timestamp,
                )
            )
        return messages, result.new_start
