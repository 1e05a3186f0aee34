"""Where a subscription starts, and the replay of what a client missed (``roles.Replayer``).

A client that resumes, or subscribes again with the position it last saw, gets what it missed
before anything live: from this node's ``Recovery`` buffers when they go back far enough, else
from the engine's ``RecoveryStore`` (while the connection holds live frames back). When the
broker says events may have passed the node by, the buffers are emptied or caught up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING

import msgspec

from ..protocol.codec import encode_result, ws_binary_frame
from ..protocol.frames import Position
from ..types import ChannelType
from .engines.base import Broker, BusEvent, EngineUnavailable, RecoveryStore
from .recovery import Recovery
from .session import reply_frame

if TYPE_CHECKING:
    from .session import Session

__all__ = ["Replay"]

log = logging.getLogger("rtm2.server")

# How long a replay may wait for the engine before the client is told it was not recovered.
_REPLAY_TIMEOUT = 5.0

# (channel subject, topic, publishers picked or None for all) of a position a session holds.
_Target = tuple[str, str, set[str] | None]


class Replay:
    def __init__(
        self,
        recovery: Recovery,
        store: RecoveryStore,
        broker: Broker,
        limits: Callable[[str], tuple[int, float]],
    ) -> None:
        self.recovery = recovery
        self.store = store
        self.broker = broker
        self._limits = limits  # (recovery_messages, recovery_seconds) of a subject's app
        self._tasks: set[asyncio.Task[None]] = set()
        # Replays asked for (positions to catch up from), for the metrics.
        self.replays = 0

    def on_gap(self, subject: str | None) -> None:
        """The broker may have dropped events: of every subject (its link to the engine
        broke: what this node kept no longer says what it missed), or of one subject (its
        channel moved between Redis Cluster masters: catch up from the engine)."""
        if subject is None:
            self.recovery.clear()
            return
        task = asyncio.get_running_loop().create_task(self._catch_up(subject))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _catch_up(self, subject: str) -> None:
        missed: list[BusEvent] = []
        try:
            for topic, last in self.recovery.lasts(subject).items():
                events = await self._missed(subject, topic, last)
                if events is None:
                    log.warning("messages of %s %s may have been lost", subject, topic)
                else:
                    missed += events
        except Exception as exc:
            log.warning("cannot catch up on %s: %r", subject, exc)
        finally:
            self.broker.release(subject, missed)

    async def _missed(self, subject: str, topic: str, offset: int) -> list[BusEvent] | None:
        """What the engine kept of (subject, topic) after ``offset`` (None: not all of it),
        read once this node is subscribed, so nothing published later can slip by."""
        limit, seconds = self._limits(subject)
        async with asyncio.timeout(_REPLAY_TIMEOUT):
            await self.broker.ready(subject)
            return await self.store.since(subject, topic, offset, limit, seconds)

    async def answer_recovering(
        self,
        s: Session,
        rid: int,
        since: Position | None,
        result: Callable[[bool], msgspec.Struct],
    ) -> None:
        """Reply to a subscription with ``result(recovered)``; when the client asked to
        recover from ``since``, what it missed follows the reply, before anything live."""
        if since is None:
            s.reply(rid, result=encode_result(result(False)))
            return

        def answer(lost: list[Position]) -> bytes:
            return reply_frame(rid, result=encode_result(result(not lost)))

        pending = self.replay(s, [since], answer)
        if pending is not None:
            await pending

    async def position(self, subject: str, topic: str) -> int:
        """Where (subject, topic) is now: messages after it are a new subscriber's. The node
        listens to ``subject`` by then, and remembers the position as the last message it has
        (unless one came meanwhile): a catch-up after the channel moves (``on_gap``) starts
        there, even if no message of that topic reached this node before the move."""
        known = self.recovery.position((subject, topic))
        if known:
            return known
        offset = await self.store.position(subject, topic)
        self.recovery.mark(subject, topic, offset)
        return offset

    def replay(
        self, s: Session, positions: list[Position], answer: Callable[[list[Position]], bytes]
    ) -> Coroutine[None, None, None] | None:
        """Send ``answer(lost)`` (a reply frame), then what ``s`` missed after each position,
        in order and before anything live; ``lost`` lists the positions whose messages are
        no longer all kept. Returns a coroutine when the engine must be asked (the session's
        connection holds live frames meanwhile), None when this node had everything."""
        if positions:
            self.replays += 1
        frames: list[bytes] = []
        lost: list[Position] = []
        remote: list[tuple[Position, _Target]] = []
        for p in positions:
            target = _target(s, p)
            if target is None:
                continue
            if p.epoch != self.store.epoch:
                lost.append(p)
                continue
            subject, topic, picks = target
            entries = self.recovery.since((subject, topic), p.offset)
            if entries is None:
                remote.append((p, target))
                continue
            frames += [ws_binary_frame(e[3]) for e in entries if picks is None or e[2] in picks]
        if not remote:
            s.conn.send(answer(lost))
            for data in frames:
                s.conn.send(data)
            return None
        return self._replay_remote(s, s.conn.hold(), frames, lost, remote, answer)

    async def _replay_remote(
        self,
        s: Session,
        slot: list[bytes],
        frames: list[bytes],
        lost: list[Position],
        remote: list[tuple[Position, _Target]],
        answer: Callable[[list[Position]], bytes],
    ) -> None:
        conn = s.conn
        try:
            for p, (subject, topic, picks) in remote:
                events = None
                try:
                    events = await self._missed(subject, topic, p.offset)
                except (EngineUnavailable, TimeoutError) as exc:
                    log.warning("%r: cannot read missed messages of %s: %s", s, subject, exc)
                except Exception:
                    log.exception("%r: reading missed messages of %s failed", s, subject)
                if events is None:
                    lost.append(p)
                    continue
                frames += [
                    ws_binary_frame(e.frame) for e in events if picks is None or e.user in picks
                ]
        finally:
            slot.append(answer(lost))
            slot.extend(frames)
            conn.release(slot)


def _target(s: Session, p: Position) -> _Target | None:
    """What a position names among the session's subscriptions (None: nothing now)."""
    if p.channel_type == ChannelType.MESSAGE:
        sub = s.subscriptions.get(p.channel)
        if sub is None:
            return None
        return sub.subject, "", None if sub.with_message else set()
    member = s.stream.get(p.channel)
    if member is None or p.topic not in member.subs:
        return None
    return member.subject, p.topic, member.subs[p.topic]
