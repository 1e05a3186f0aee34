"""Distributed locks per channel: set, remove, acquire (with a fair wait), release, revoke.

The lock table (owner, TTL, fencing number) lives in the engine's ``LockStore``. This service
adds what happens over time:

- **Fair waiting.** ``acquire(retry=True)`` on a held lock queues the request with a ticket in
  the engine's queue for that lock, shared by all nodes; when the lock is freed, the first
  ticket gets it (FIFO across nodes). While anyone waits, a plain acquire by someone else
  fails, so nobody overtakes the queue. A wait ends when the lock is granted, when the client
  cancels it, or when the waiter leaves the channel or its connection or session ends; every
  waiting request is answered either way. Each node keeps its own waiters in queue order and
  tries for its first one whenever the lock may have become free: on RELEASED and EXPIRED
  events, on a nudge when a first ticket is withdrawn, and on every sweep (in case an event
  was missed).
- **TTL.** A lock outlives its owner's presence by its TTL: when the owner's connection is
  lost, or it leaves the channel, a countdown starts; if the owner comes back into the channel
  in time it keeps the lock, otherwise the lock is freed and members get EXPIRED. After a
  server restart every held lock starts its countdown afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING

import msgspec

from ..errors import ErrorCode, RTMError
from ..protocol.codec import encode, encode_result, ws_binary_frame
from ..protocol.frames import (
    Acquired,
    AcquireLock,
    CancelAcquire,
    GetLocks,
    LockDetail,
    LockEvent,
    ReleaseLock,
    RemoveLock,
    RevokeLock,
    SetLock,
)
from ..types import ChannelType, LockEventType
from .engines.base import Broker, BusEvent, BusKind, EngineUnavailable, LockInfo, LockStore
from .interest import Interest
from .ratelimit import RateBucket
from .subjects import channel_subject, parse_subject

if TYPE_CHECKING:
    from .config import AppConfig
    from .session import Session

__all__ = ["LockService"]

_decode_lock_event = msgspec.msgpack.Decoder(LockEvent).decode

MAX_LOCK_NAME = 64
TTL_RANGE = (10, 300)

LockKey = tuple[str, str]  # (scope = channel subject, lock name)


class _Waiter:
    __slots__ = ("rid", "session", "ticket")

    def __init__(self, session: Session, rid: int) -> None:
        self.session = session
        self.rid = rid
        self.ticket = f"{session.session_id}:{rid}"  # unique across nodes and sessions


def _detail(info: LockInfo) -> LockDetail:
    return LockDetail(info.name, info.owner, info.ttl)


class LockService:
    def __init__(
        self,
        store: LockStore,
        broker: Broker,
        interest: Interest,
        present: Callable[[str, str], Awaitable[bool]],
        note: Callable[[list[str]], None],
        unnote: Callable[[list[str]], None],
    ) -> None:
        self.store = store
        self._present = present  # (channel subject, user): is the user in the channel now?
        # The engine's record of the locks this node answers for (held by its sessions, or
        # counting down here), so that another node counts them down if this one dies.
        self._note, self._unnote = note, unnote
        self._noted: dict[LockKey, str] = {}  # key -> owner noted
        self.broker = broker
        self.interest = interest
        self._granting: set[LockKey] = set()  # locks being handed to a waiter right now
        self._again: set[LockKey] = set()  # ... and asked to try again once that is done
        self.listeners: dict[str, set[Session]] = {}  # subject -> with_lock members
        # Local session -> the locks its user holds through it -> their TTL.
        self.held: dict[Session, dict[LockKey, int]] = {}
        self.waiters: dict[LockKey, deque[_Waiter]] = {}
        # Locks whose owner is away: key -> (owner, monotonic deadline, ttl, why). ``why`` is
        # "connection" (its connection was lost), "left" (it left the channel) or "orphan"
        # (its node died): only the first ends when the connection comes back; the last
        # ends if the owner is in the channel again when the TTL is over.
        self.countdowns: dict[LockKey, tuple[str, float, int, str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._clock = time.monotonic
        # Each session's rate of lock calls, every one a durable commit; release and cancel
        # are not counted: refusing them would only keep locks held and queues long.
        self.buckets: dict[Session, RateBucket] = {}
        # The lock being freed while its event is published: its owner until now, and
        # whether it was revoked (the webhooks tell lock.revoked apart, and name the owner).
        self.freeing: dict[LockKey, tuple[str, bool]] = {}

    async def start(self) -> None:
        """After a restart nobody is connected: every held lock starts its TTL countdown."""
        now = self._clock()
        for scope, info in await self.store.held():
            self.countdowns[(scope, info.name)] = (info.owner, now + info.ttl, info.ttl, "left")

    # --- requests -------------------------------------------------------------------------

    async def set(self, s: Session, f: SetLock) -> None:
        self._rate(s)
        scope = self._scope(s.app_config, f.channel, f.channel_type, f.name)
        await self._may_administer(s, scope, f.channel_type)
        await self._set(s.app_config, scope, f.name, f.ttl)
        s.reply(f.rid)

    async def _set(self, app: AppConfig, scope: str, name: str, ttl: int) -> None:
        ttl = min(max(ttl, TTL_RANGE[0]), TTL_RANGE[1])
        limits = app.limits
        outcome = await self.store.set(scope, name, ttl, limits.locks_per_channel, limits.lock_rows)
        if outcome.code:
            raise RTMError(outcome.code, outcome.reason)
        assert outcome.lock is not None
        self._event(scope, LockEventType.SET, outcome.lock)

    async def remove(self, s: Session, f: RemoveLock) -> None:
        self._rate(s)
        scope = self._scope(s.app_config, f.channel, f.channel_type, f.name)
        await self._may_administer(s, scope, f.channel_type)
        await self._remove(scope, f.name)
        s.reply(f.rid)

    async def _remove(self, scope: str, name: str) -> None:
        outcome = await self.store.remove(scope, name)
        if outcome.code:
            raise RTMError(outcome.code, outcome.reason)
        assert outcome.lock is not None
        key = (scope, name)
        self.countdowns.pop(key, None)
        self._answer_for(key, "")
        self._event(scope, LockEventType.REMOVED, outcome.lock)
        for waiter in self._drop_queue(key):
            waiter.session.reply(waiter.rid, ErrorCode.LOCK_NOT_EXIST, f"lock {name!r} removed")

    # The app's backend (the HTTP API) is what lock_admin = "server" means: it may always
    # set, remove and revoke, and no per-session rate applies; quotas and codes do.

    async def set_from_server(
        self, app: AppConfig, channel: str, channel_type: int, name: str, ttl: int
    ) -> None:
        await self._set(app, self._scope(app, channel, channel_type, name), name, ttl)

    async def remove_from_server(
        self, app: AppConfig, channel: str, channel_type: int, name: str
    ) -> None:
        await self._remove(self._scope(app, channel, channel_type, name), name)

    async def revoke_from_server(
        self, app: AppConfig, channel: str, channel_type: int, name: str, owner: str
    ) -> None:
        scope = self._scope(app, channel, channel_type, name)
        await self._free(scope, name, owner, LockEventType.RELEASED, revoke=True)

    async def locks_of(self, app: AppConfig, channel: str, channel_type: int) -> list[LockDetail]:
        scope = channel_subject(app.app_id, channel, channel_type)
        return [_detail(info) for _, info in sorted((await self.store.locks(scope)).items())]

    async def acquire(self, s: Session, f: AcquireLock) -> None:
        self._rate(s)
        scope = self._scope(s.app_config, f.channel, f.channel_type, f.name)
        key = (scope, f.name)
        if f.retry and any(w.session is s for w in self.waiters.get(key, ())):
            raise RTMError(
                ErrorCode.LOCK_OPERATION_PERFORMING,
                f"this session already waits for lock {f.name!r}",
            )
        waiter = _Waiter(s, f.rid)
        before = (await self.store.locks(scope)).get(f.name)
        outcome = await self.store.acquire(scope, f.name, s.user_id, waiter.ticket, f.retry)
        if outcome.code == ErrorCode.LOCK_ACQUIRE_FAILED and f.retry:
            if s.attached:
                self._queue(key).append(waiter)
            else:  # gone while we asked: its ticket must not hold the queue up
                self._spawn(self._withdraw(key, waiter.ticket))
            return
        if outcome.code:
            raise RTMError(outcome.code, outcome.reason)
        assert outcome.lock is not None
        self._granted(s, key, outcome.lock, before)
        s.reply(f.rid, result=encode_result(Acquired(outcome.lock.fence)))

    def _granted(self, s: Session, key: LockKey, info: LockInfo, before: LockInfo | None) -> None:
        self.held.setdefault(s, {})[key] = info.ttl
        self.countdowns.pop(key, None)
        self._answer_for(key, info.owner)
        if before is None or before.owner != info.owner:
            self._event(key[0], LockEventType.ACQUIRED, info)

    async def release(self, s: Session, f: ReleaseLock) -> None:
        scope = self._scope(s.app_config, f.channel, f.channel_type, f.name)
        await self._free(scope, f.name, s.user_id, LockEventType.RELEASED)
        held = self.held.get(s)
        if held is not None:
            held.pop((scope, f.name), None)
            if not held:
                del self.held[s]
        s.reply(f.rid)

    async def revoke(self, s: Session, f: RevokeLock) -> None:
        self._rate(s)
        scope = self._scope(s.app_config, f.channel, f.channel_type, f.name)
        await self._may_administer(s, scope, f.channel_type)
        await self._free(scope, f.name, f.owner, LockEventType.RELEASED, revoke=True)
        s.reply(f.rid)

    async def _free(
        self, scope: str, name: str, owner: str, kind: LockEventType, revoke: bool = False
    ) -> None:
        outcome = await self.store.revoke(scope, name, owner)
        if outcome.code:
            raise RTMError(outcome.code, outcome.reason)
        assert outcome.lock is not None
        self.countdowns.pop((scope, name), None)
        self._answer_for((scope, name), "")
        self.freeing[(scope, name)] = (owner, revoke)
        try:
            self._event(scope, kind, outcome.lock)
        finally:
            del self.freeing[(scope, name)]
        await self._grant_next(scope, name)

    def _answer_for(self, key: LockKey, owner: str) -> None:
        """Note that this node answers for ``key`` held by ``owner`` ("": no longer)."""
        noted = self._noted.get(key)
        if noted == owner:
            return
        if noted is not None:
            self._unnote(["lock", key[0], key[1], noted])
            del self._noted[key]
        if owner:
            self._noted[key] = owner
            self._note(["lock", key[0], key[1], owner])

    async def _grant_next(self, scope: str, name: str) -> None:
        """Try to give the lock to this node's first waiter (one attempt at a time per lock;
        a call during an attempt makes it try once more after)."""
        key = (scope, name)
        if key in self._granting:
            self._again.add(key)
            return
        self._granting.add(key)
        try:
            while True:
                self._again.discard(key)
                await self._grant_first(key)
                if key not in self._again:
                    break
        finally:
            self._granting.discard(key)
            if not self.waiters.get(key, True):
                self._drop_queue(key)

    async def _grant_first(self, key: LockKey) -> None:
        scope, name = key
        while queue := self.waiters.get(key):
            waiter = queue[0]
            if not waiter.session.attached:
                queue.popleft()
                await self._withdraw(key, waiter.ticket)
                continue
            user = waiter.session.user_id
            before = (await self.store.locks(scope)).get(name)
            outcome = await self.store.acquire(scope, name, user, waiter.ticket)
            if outcome.code == ErrorCode.LOCK_ACQUIRE_FAILED:
                return  # held, or another ticket is first (maybe on another node): wait on
            if waiter not in queue:  # withdrawn while we asked: give back what it got
                if outcome.code == 0 and (before is None or before.owner != user):
                    await self.store.revoke(scope, name, user)
                    self._nudge(key)
                continue
            queue.remove(waiter)
            if outcome.code:
                waiter.session.reply(waiter.rid, outcome.code, outcome.reason)
                continue
            assert outcome.lock is not None
            self._granted(waiter.session, key, outcome.lock, before)
            fence = outcome.lock.fence
            waiter.session.reply(waiter.rid, result=encode_result(Acquired(fence)))
            return

    async def _withdraw(self, key: LockKey, ticket: str) -> None:
        """Take a ticket out of the lock's queue; if it was first, the next may go now."""
        if await self.store.withdraw(key[0], key[1], ticket):
            self._nudge(key)

    def _nudge(self, key: LockKey) -> None:
        """Tell every node's waiters of this lock to try again."""
        with contextlib.suppress(EngineUnavailable):  # the sweep retries later
            self.broker.publish(key[0], BusEvent(BusKind.LOCK_QUEUE, key[1], "", b""))

    async def withdraw_orphan(self, scope: str, name: str, ticket: str) -> None:
        """A dead node's waiting ticket: out of the queue, so the others move up."""
        await self._withdraw((scope, name), ticket)

    def _queue(self, key: LockKey) -> deque[_Waiter]:
        """The waiters of a lock; while there are any, this node hears the lock's channel,
        so it learns when another node frees the lock."""
        queue = self.waiters.get(key)
        if queue is None:
            queue = self.waiters[key] = deque()
            self.interest.add(key[0])
        return queue

    def _drop_queue(self, key: LockKey) -> deque[_Waiter]:
        queue = self.waiters.pop(key, None)
        if queue is None:
            return deque()
        self.interest.remove(key[0])
        return queue

    async def get(self, s: Session, f: GetLocks) -> None:
        self._rate(s)
        scope = channel_subject(s.app_config.app_id, f.channel, f.channel_type)
        locks = await self.store.locks(scope)
        details = [_detail(info) for _, info in sorted(locks.items())]
        s.reply(f.rid, result=encode_result(details))

    def cancel(self, s: Session, f: CancelAcquire) -> None:
        for key, queue in list(self.waiters.items()):
            for waiter in queue:
                if waiter.session is s and waiter.rid == f.acquire_rid:
                    queue.remove(waiter)
                    self._spawn(self._withdraw(key, waiter.ticket))
                    if not queue:
                        self._drop_queue(key)
                    s.reply(waiter.rid, ErrorCode.LOCK_ACQUIRE_FAILED, "the wait was cancelled")
                    s.reply(f.rid)
                    return
        s.reply(f.rid)  # already answered (granted or failed): nothing to withdraw

    # --- membership and session hooks -------------------------------------------------------

    async def member_joined(self, s: Session, subj: str, listen: bool) -> list[LockDetail] | None:
        """The session's user is in the channel: it keeps locks it held there (TTL stops)."""
        locks = await self.store.locks(subj)
        for name, info in locks.items():
            key = (subj, name)
            if info.owner == s.user_id and key in self.countdowns:
                del self.countdowns[key]
                self.held.setdefault(s, {})[key] = info.ttl
                self._answer_for(key, info.owner)
        if not listen:
            return None
        self.listeners.setdefault(subj, set()).add(s)
        return [_detail(info) for _, info in sorted(locks.items())]

    def member_left(self, s: Session, subj: str) -> None:
        listeners = self.listeners.get(subj)
        if listeners is not None:
            listeners.discard(s)
            if not listeners:
                del self.listeners[subj]
        self._stop_waiting(s, subj, "left the channel")
        held = self.held.get(s)
        if held is None:
            return
        for key in [k for k in held if k[0] == subj]:
            self._start_countdown(key, s.user_id, held.pop(key), "left")
        if not held:
            del self.held[s]

    def connection_lost(self, s: Session) -> None:
        """The session's connection is gone: its waits end, its locks' TTL countdowns start."""
        self._stop_waiting(s, None, "")
        for key, ttl in self.held.pop(s, {}).items():
            self._start_countdown(key, s.user_id, ttl, "connection")

    def connection_back(self, s: Session) -> None:
        """The session resumed on a new connection: it keeps the locks still counting down."""
        for key, (owner, _, ttl, why) in list(self.countdowns.items()):
            if owner == s.user_id and why == "connection":
                del self.countdowns[key]
                self.held.setdefault(s, {})[key] = ttl

    def on_session_end(self, s: Session, timed_out: bool) -> None:
        """The session ended: as a lost connection, and it stops listening."""
        self.connection_lost(s)
        self.buckets.pop(s, None)
        for subj in [k for k, v in self.listeners.items() if s in v]:
            self.listeners[subj].discard(s)
            if not self.listeners[subj]:
                del self.listeners[subj]

    async def adopt(self, scope: str, name: str, owner: str) -> None:
        """A dead node answered for this lock: if ``owner`` still holds it, its TTL counts
        down here (and it stays the owner's if by then the owner is back in the channel)."""
        info = (await self.store.locks(scope)).get(name)
        if info is not None and info.owner == owner and (scope, name) not in self.countdowns:
            self._start_countdown((scope, name), owner, info.ttl, "orphan")

    def _stop_waiting(self, s: Session, subj: str | None, why: str) -> None:
        for key, queue in list(self.waiters.items()):
            if subj is not None and key[0] != subj:
                continue
            for waiter in [w for w in queue if w.session is s]:
                queue.remove(waiter)
                self._spawn(self._withdraw(key, waiter.ticket))
                if why:
                    s.reply(waiter.rid, ErrorCode.LOCK_ACQUIRE_FAILED, f"the waiter {why}")
            if not queue:
                self._drop_queue(key)

    def _start_countdown(self, key: LockKey, owner: str, ttl: int, why: str) -> None:
        self.countdowns[key] = (owner, self._clock() + ttl, ttl, why)
        self._answer_for(key, owner)

    def sweep(self) -> None:
        """Free the locks whose owner stayed away longer than their TTL; let waiters try
        again (an event that would have woken them may have been lost with the engine)."""
        for key in list(self.waiters):
            self._spawn(self._grant_next(*key))
        now = self._clock()
        for key, (owner, deadline, _, why) in list(self.countdowns.items()):
            if now >= deadline:
                del self.countdowns[key]
                self._spawn(self._expire(key, owner, why))

    async def _expire(self, key: LockKey, owner: str, why: str) -> None:
        # Removed or taken over meanwhile, or the engine is down: nothing to do.
        with contextlib.suppress(RTMError, EngineUnavailable):
            if why == "orphan" and await self._present(key[0], owner):
                return  # its node died, but the owner came back through another node
            await self._free(key[0], key[1], owner, LockEventType.EXPIRED)

    # --- events -----------------------------------------------------------------------------

    def _event(self, scope: str, kind: LockEventType, info: LockInfo) -> None:
        _, channel_type, channel = parse_subject(scope)
        frame = encode(LockEvent(kind, channel, channel_type, [_detail(info)]))
        self.broker.publish(scope, BusEvent(BusKind.LOCK, info.name, info.owner, frame))

    def on_queue(self, subj: str, name: str) -> None:
        """A nudge: the first ticket of the lock's queue was withdrawn."""
        if (subj, name) in self.waiters:
            self._spawn(self._grant_next(subj, name))

    def on_bus(self, subj: str, event: BusEvent) -> None:
        listeners = self.listeners.get(subj)
        if listeners:
            data = ws_binary_frame(event.frame)
            for s in listeners:
                s.conn.send(data)
        key = (subj, event.topic)
        if key in self.waiters:  # a lock someone here waits for changed (maybe on another node)
            kind = _decode_lock_event(event.frame).kind
            if kind in (LockEventType.RELEASED, LockEventType.EXPIRED):
                self._spawn(self._grant_next(*key))
            elif kind == LockEventType.REMOVED:
                for waiter in self._drop_queue(key):
                    waiter.session.reply(waiter.rid, ErrorCode.LOCK_NOT_EXIST, "lock removed")

    # --- helpers ----------------------------------------------------------------------------

    async def _may_administer(self, s: Session, scope: str, channel_type: int) -> None:
        """Setting, removing and revoking follow the app's ``lock_admin`` policy."""
        policy = s.app_config.lock_admin
        if policy == "anyone":
            return
        if policy == "server":
            raise RTMError(
                ErrorCode.LOCK_OPERATION_FAILED,
                "in this app only the server may set, remove or revoke locks",
            )
        if not await self._present(scope, s.user_id):
            code = (
                ErrorCode.CHANNEL_NOT_JOINED
                if channel_type == ChannelType.STREAM
                else ErrorCode.CHANNEL_NOT_SUBSCRIBED
            )
            raise RTMError(code, "only members of the channel may set, remove or revoke its locks")

    def _rate(self, s: Session) -> None:
        rate = s.app_config.limits.lock_rate
        now = self._clock()
        bucket = self.buckets.get(s)
        if bucket is None:
            bucket = self.buckets[s] = RateBucket(rate, now)
        if not bucket.allow(now, rate):
            raise RTMError(
                ErrorCode.OPERATION_RATE_EXCEED_LIMITATION, f"over {rate:g} lock calls/s"
            )

    @staticmethod
    def _scope(app: AppConfig, channel: str, channel_type: int, name: str) -> str:
        if not name or len(name) > MAX_LOCK_NAME:
            raise RTMError(
                ErrorCode.LOCK_INVALID_NAME, f"lock name must be 1-{MAX_LOCK_NAME} chars"
            )
        return channel_subject(app.app_id, channel, channel_type)

    def _spawn(self, coro: Coroutine[None, None, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
