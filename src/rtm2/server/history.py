"""Message history: storing published messages, paging back through them, removing old ones.

A publish with ``store_in_history`` takes one branch off ``MessageService.publish`` to
``HistoryService.publish``: it goes to the subscribers as any other (through the message
service's broker), and its reply waits until the ``HistoryStore`` has the message durably. A
message channel's history is keyed by its subject; a peer conversation's by its two users
(``conversation_key``), so both users read the same one. Each app says whether it keeps
history, how long and how much (``HistoryConfig``); the hub's sweep calls ``sweep`` and the
store removes what is over, a bounded number of messages per pass. docs/HISTORY.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import ErrorCode, RTMError
from ..protocol.codec import encode, encode_result
from ..protocol.frames import ChannelMessage, GetHistory, HistoryMessage, HistoryResult, Publish
from ..protocol.names import is_valid_channel_name, is_valid_user_id
from ..types import ChannelType
from .checks import check_message, check_server_publish
from .engines.base import (
    HISTORY_IDS_PER_MS,
    UNNUMBERED,
    BusEvent,
    BusKind,
    HistoryEntry,
    HistoryStore,
    subject_app,
)
from .subjects import subject as make_subject

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from .config import AppConfig, HistoryConfig
    from .messages import MessageService
    from .session import Session

__all__ = [
    "BOUND_MAX",
    "MAX_COUNT",
    "POSITION_MIN",
    "HistoryService",
    "conversation_key",
]

log = logging.getLogger("rtm2.server")

MAX_COUNT = 100  # messages a page, at most (RTM 2's limit)
# ``start``/``end`` at or above this are positions (a ``new_start``, a message id), below it
# times in ms (10**15 ms is the year 33658; positions of today are above 1.7 * 10**15).
POSITION_MIN = 10**15
SWEEP_EVERY = 1.0  # seconds between history sweeps
SWEEP_BUDGET = 5000  # messages removed per sweep, at most (about)


def conversation_key(app: str, a: str, b: str) -> str:
    """The history key of the peer conversation of users ``a`` and ``b`` (either order)."""
    first, second = sorted((a, b))
    # The length keeps the pair unambiguous whatever characters user ids hold.
    return f"peer:{app}:{len(first)}:{first}:{second}"


# Above any position before the year 2255, and exact in JSON and JavaScript.
BOUND_MAX = 2**53 - 1


def _bound(value: int, name: str) -> int:
    if not 0 <= value <= BOUND_MAX:
        raise RTMError(ErrorCode.HISTORY_INVALID_TIMESTAMP, f"{name} must be 0 to {BOUND_MAX}")
    if value >= POSITION_MIN:
        return value
    return value * HISTORY_IDS_PER_MS


class HistoryService:
    def __init__(self, store: HistoryStore, app_of: Callable[[str], AppConfig | None]) -> None:
        self.engine = store
        self._app_of = app_of
        self._clock = time.monotonic
        self._last_sweep = 0.0
        self._sweeping: asyncio.Task[None] | None = None

    # --- storing ---------------------------------------------------------------------------

    def config(self, app: AppConfig) -> HistoryConfig:
        """The app's history settings; HISTORY_OPERATION_NOT_PERMITTED when it keeps none."""
        history = app.history
        if not history.enabled:
            raise RTMError(
                ErrorCode.HISTORY_OPERATION_NOT_PERMITTED,
                "message history is not enabled for this app ([apps.history] enabled)",
            )
        return history

    def store(self, app: AppConfig, key: str, entry: HistoryEntry, ts: int) -> asyncio.Future[int]:
        """Hand the message to the store now; the future is done once it is durable."""
        history = self.config(app)
        return self.engine.append(
            key, entry, ts, history.max_messages_per_channel, int(history.retention * 1000)
        )

    # --- stored publishes (one branch off MessageService.publish) ---------------------------

    def publish(
        self, messages: MessageService, s: Session, f: Publish, timestamp: int
    ) -> Coroutine[None, None, None] | None:
        """Deliver as usual, and reply once the history store has the message durably; the
        reply does not hold the session's later requests (many stored publishes of one
        client share a commit)."""
        app = s.app_config
        entry = HistoryEntry(s.user_id, f.payload, f.message_type, f.custom_type)
        if f.channel_type == ChannelType.USER:
            self.config(app)
            return self._to_peer(messages, s, f, timestamp, entry)
        subj = make_subject(app.app_id, ChannelType.MESSAGE, f.channel)
        stored = self.store(app, subj, entry, timestamp)
        frame = encode(
            ChannelMessage(
                f.channel,
                ChannelType.MESSAGE,
                s.user_id,
                f.payload,
                f.message_type,
                f.custom_type,
                timestamp,
                UNNUMBERED,
            )
        )
        messages.broker.publish_message(
            subj,
            BusEvent(BusKind.MESSAGE, "", s.user_id, frame),
            app.limits.recovery_messages,
            app.limits.recovery_seconds,
        )
        messages.counts.published_message += 1
        messages.counts.published_by_app[app.app_id] += 1
        rid = f.rid

        def answer(done: asyncio.Future[int]) -> None:
            error = done.exception()
            if error is None:
                s.reply(rid)
            else:
                log.error("%r: storing a message in history failed: %s", s, error)
                s.reply(
                    rid,
                    ErrorCode.CHANNEL_MESSAGE_DELIVERED_BUT_STORE_FAILED,
                    f"delivered, but storing it failed: {error}",
                )

        stored.add_done_callback(answer)
        return None

    async def _to_peer(
        self, messages: MessageService, s: Session, f: Publish, timestamp: int, entry: HistoryEntry
    ) -> None:
        app = s.app_config
        stored = self.store(
            app, conversation_key(app.app_id, s.user_id, f.channel), entry, timestamp
        )
        frame = encode(
            ChannelMessage(
                s.user_id,
                ChannelType.USER,
                s.user_id,
                f.payload,
                f.message_type,
                f.custom_type,
                timestamp,
            )
        )
        await self._settle_peer(
            stored, messages._deliver(app.app_id, f.channel, s.user_id, frame), f.channel
        )
        s.reply(f.rid)

    async def _settle_peer(
        self, stored: asyncio.Future[int], delivery: Coroutine[None, None, None], user: str
    ) -> None:
        """Deliver and store a peer message; RTM 2's codes when one of them fails."""
        offline = False
        try:
            await delivery
        except RTMError as exc:
            if exc.code != ErrorCode.CHANNEL_RECEIVER_OFFLINE:
                stored.add_done_callback(lambda d: d.exception())
                raise
            offline = True
        try:
            await stored
        except Exception as exc:
            log.error("storing a peer message in history failed: %s", exc)
            if offline:
                raise RTMError(
                    ErrorCode.CHANNEL_RECEIVER_OFFLINE_AND_STORE_FAILED,
                    f"{user!r} is not online, and storing the message failed",
                ) from None
            raise RTMError(
                ErrorCode.CHANNEL_MESSAGE_DELIVERED_BUT_STORE_FAILED,
                f"delivered, but storing it failed: {exc}",
            ) from None
        if offline:
            raise RTMError(
                ErrorCode.CHANNEL_RECEIVER_OFFLINE_BUT_STORE_SUCCEEDED,
                f"{user!r} is not online; the message is stored in history",
            )

    async def publish_from_server(
        self,
        messages: MessageService,
        app: AppConfig,
        channel: str,
        payload: bytes,
        message_type: int,
        custom_type: str,
        publisher: str,
    ) -> None:
        """``publish_from_server``, stored in history; returns once durable."""
        subj = check_server_publish(app, channel, payload, message_type, custom_type)
        timestamp = int(time.time() * 1000)
        stored = self.store(
            app, subj, HistoryEntry(publisher, payload, message_type, custom_type), timestamp
        )
        frame = encode(
            ChannelMessage(
                channel,
                ChannelType.MESSAGE,
                publisher,
                payload,
                message_type,
                custom_type,
                timestamp,
                UNNUMBERED,
            )
        )
        messages.broker.publish_message(
            subj,
            BusEvent(BusKind.MESSAGE, "", publisher, frame),
            app.limits.recovery_messages,
            app.limits.recovery_seconds,
        )
        messages.counts.published_message += 1
        messages.counts.published_by_app[app.app_id] += 1
        try:
            await stored
        except Exception as exc:
            raise RTMError(
                ErrorCode.CHANNEL_MESSAGE_DELIVERED_BUT_STORE_FAILED,
                f"delivered, but storing it failed: {exc}",
            ) from None

    async def send_from_server(
        self,
        messages: MessageService,
        app: AppConfig,
        user: str,
        payload: bytes,
        message_type: int,
        custom_type: str,
        publisher: str,
    ) -> None:
        """``send_from_server``, stored in the conversation's history (kept also when the
        user is offline: CHANNEL_RECEIVER_OFFLINE_BUT_STORE_SUCCEEDED)."""
        check_message(payload, message_type, custom_type, app.limits.message_size)
        for name in (user, publisher):
            if not is_valid_user_id(name):
                raise RTMError(ErrorCode.INVALID_USER_ID, f"invalid user id {name!r}")
        timestamp = int(time.time() * 1000)
        stored = self.store(
            app,
            conversation_key(app.app_id, publisher, user),
            HistoryEntry(publisher, payload, message_type, custom_type),
            timestamp,
        )
        frame = encode(
            ChannelMessage(
                publisher,
                ChannelType.USER,
                publisher,
                payload,
                message_type,
                custom_type,
                timestamp,
            )
        )
        await self._settle_peer(stored, messages._deliver(app.app_id, user, publisher, frame), user)

    # --- reading -----------------------------------------------------------------------------

    async def get(self, s: Session, f: GetHistory) -> None:
        """A client's GetHistory."""
        app = s.app_config
        if (
            f.channel_type == ChannelType.MESSAGE
            and app.history.history_read == "subscribers"
            and f.channel not in s.subscriptions
        ):
            self.config(app)  # a disabled app says so first
            raise RTMError(
                ErrorCode.HISTORY_OPERATION_NOT_PERMITTED,
                f"subscribe to {f.channel!r} to read its history",
            )
        result = await self.page(app, f.channel_type, f.channel, s.user_id, f.count, f.start, f.end)
        s.reply(f.rid, result=encode_result(result))

    async def page(
        self,
        app: AppConfig,
        channel_type: int,
        channel: str,
        user: str,
        count: int,
        start: int,
        end: int,
    ) -> HistoryResult:
        """One page of a message channel's history, or (USER) of the conversation between
        ``user`` and the user ``channel``: the same checks and codes for every caller."""
        if channel_type == ChannelType.STREAM:
            raise RTMError(
                ErrorCode.INVALID_PARAMETER, "stream channels keep no history (as in RTM 2)"
            )
        if channel_type == ChannelType.MESSAGE:
            if not is_valid_channel_name(channel):
                raise RTMError(ErrorCode.INVALID_CHANNEL_NAME, f"invalid channel name {channel!r}")
            key = make_subject(app.app_id, ChannelType.MESSAGE, channel)
        elif channel_type == ChannelType.USER:
            for name in (channel, user):
                if not is_valid_user_id(name):
                    raise RTMError(ErrorCode.INVALID_USER_ID, f"invalid user id {name!r}")
            key = conversation_key(app.app_id, user, channel)
        else:
            raise RTMError(ErrorCode.INVALID_CHANNEL_TYPE, "history of a message or user channel")
        if not 0 < count <= MAX_COUNT:
            raise RTMError(
                ErrorCode.INVALID_PARAMETER, f"count must be 1 to {MAX_COUNT}, not {count}"
            )
        before = _bound(start, "start")
        after = _bound(end, "end")
        if before and after >= before:
            raise RTMError(ErrorCode.HISTORY_INVALID_TIMESTAMP, "end must be before start")
        history = self.config(app)
        if history.retention > 0:
            oldest = int(time.time() * 1000 - history.retention * 1000) * HISTORY_IDS_PER_MS
            after = max(after, oldest)
        found = await self.engine.read(key, before, after, count + 1)
        more = len(found) > count
        found = found[:count]
        messages = [
            HistoryMessage(
                ident,
                e.publisher,
                e.payload,
                e.message_type,
                e.custom_type,
                ident // HISTORY_IDS_PER_MS,
            )
            for ident, e in found
        ]
        return HistoryResult(messages, found[-1][0] if more else 0)

    # --- removing --------------------------------------------------------------------------

    def sweep(self) -> None:
        """Called by the hub's sweep: start a bounded removal pass now and then."""
        now = self._clock()
        if now - self._last_sweep < SWEEP_EVERY:
            return
        if self._sweeping is not None and not self._sweeping.done():
            return
        self._last_sweep = now
        self._sweeping = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        try:
            removed = await self.engine.sweep(self._limits, SWEEP_BUDGET)
        except Exception:  # a failed pass is retried by the next one
            log.exception("history sweep failed")
            return
        if removed:
            log.debug("history: removed %d old messages", removed)

    def _limits(self, key: str) -> tuple[int, int]:
        app = self._app_of(subject_app(key))
        if app is None:  # an app no longer configured: keep its messages, bounded in time
            return 0, 0
        history = app.history
        return history.max_messages_per_channel, int(history.retention * 1000)
