"""``client.lock``: distributed locks per channel (RTM 2 locks, with a fair wait and fencing).

``acquire`` returns the lock's fencing number, which grows by one with every acquisition:
pass it along with the writes the lock protects, so a resource can refuse writes from a holder
that lost the lock meanwhile. ``acquire(retry=True)`` waits until the lock is held, in the
order the waiters asked; cancelling the coroutine withdraws the wait, and if the lock was
granted at that very moment it is released again, so no waiter is ever forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from ..errors import ErrorCode, RTMError
from ..protocol import frames as f
from ..types import ChannelType, LockDetail, LockEvent, LockEventType
from .common import not_in_channel_code
from .streams import EventStream
from .views import ChannelViews

if TYPE_CHECKING:
    from .connection import Link
    from .session import Session

__all__ = ["Lock"]

ChannelKey = tuple[ChannelType, str]


Locks = dict[str, LockDetail]  # by lock name


def _details(locks: list[f.LockDetail]) -> Locks:
    return {d.name: LockDetail(d.name, d.owner, d.ttl) for d in locks}


class Lock:
    def __init__(self, session: Session) -> None:
        self._session = session
        self._views: ChannelViews[ChannelKey, Locks, LockEvent] = ChannelViews(
            lambda key: f"{key[1]}/locks"
        )
        self._cleanups: set[asyncio.Task[None]] = set()

    async def set(self, channel: str, channel_type: ChannelType, name: str, ttl: int = 10) -> None:
        """Define a lock (LOCK_ALREADY_EXIST if it exists). ``ttl`` (clamped to 10-300 s) is how
        long the lock outlives its owner's connection or presence in the channel."""
        await self._session.request(
            lambda rid: f.SetLock(rid, channel, channel_type, name, ttl), None
        )

    async def remove(self, channel: str, channel_type: ChannelType, name: str) -> None:
        """Delete a lock; anyone waiting for it gets LOCK_NOT_EXIST."""
        await self._session.request(
            lambda rid: f.RemoveLock(rid, channel, channel_type, name), None
        )

    async def acquire(
        self, channel: str, channel_type: ChannelType, name: str, retry: bool = False
    ) -> int:
        """Acquire a lock and return its fencing number.

        Without ``retry`` a held lock fails at once (LOCK_ACQUIRE_FAILED). With ``retry`` the
        call returns when the lock is held, however long that takes; it ends early with
        LOCK_ACQUIRE_FAILED if this client leaves the channel, and with NOT_LOGIN / a FAILED
        session. If the connection is lost meanwhile, the wait is asked for again once the
        client is back (behind those who waited meanwhile). Cancel the coroutine to stop.
        """
        if not retry:
            result = await self._session.request(
                lambda rid: f.AcquireLock(rid, channel, channel_type, name, False), f.Acquired
            )
            assert result is not None
            return result.fence
        while True:
            link = await self._session.live_link()
            frame, future = link.begin(
                lambda rid: f.AcquireLock(rid, channel, channel_type, name, True), f.Acquired
            )
            try:
                # Shielded: cancelling this call must not cancel the request, whose answer
                # (possibly "granted") ``_withdraw`` still has to see.
                result = await asyncio.shield(future)
            except asyncio.CancelledError:
                task = asyncio.get_running_loop().create_task(
                    self._withdraw(link, frame.rid, future, channel, channel_type, name)
                )
                self._cleanups.add(task)
                task.add_done_callback(self._cleanups.discard)
                raise
            except RTMError as exc:
                link.forget(frame.rid)
                if exc.code == ErrorCode.NOT_CONNECTED and self._session.reconnectable():
                    continue  # the wait goes on once the client is back
                raise
            link.forget(frame.rid)
            assert result is not None
            return result.fence

    async def _withdraw(
        self,
        link: Link,
        rid: int,
        future: asyncio.Future[f.Acquired | None],
        channel: str,
        channel_type: ChannelType,
        name: str,
    ) -> None:
        """A waiting acquire was cancelled: withdraw it; if it won the lock meanwhile, give
        the lock back."""
        try:
            with contextlib.suppress(RTMError):
                await self._session.request(lambda r: f.CancelAcquire(r, rid), None)
            async with asyncio.timeout(self._session.config.request_timeout):
                await future
        except (RTMError, TimeoutError):
            return  # not granted (or the connection is gone, which ends the wait anyway)
        finally:
            link.forget(rid)
        with contextlib.suppress(RTMError):
            await self.release(channel, channel_type, name)

    async def release(self, channel: str, channel_type: ChannelType, name: str) -> None:
        """Release a lock this user holds (LOCK_NOT_ACQUIRED otherwise)."""
        await self._session.request(
            lambda rid: f.ReleaseLock(rid, channel, channel_type, name), None
        )

    async def revoke(self, channel: str, channel_type: ChannelType, name: str, owner: str) -> None:
        """Free a lock held by ``owner`` (LOCK_NOT_ACQUIRED if not held by them); who may ask
        is the app's ``lock_admin`` policy (by default, members of the channel)."""
        await self._session.request(
            lambda rid: f.RevokeLock(rid, channel, channel_type, name, owner), None
        )

    async def get(self, channel: str, channel_type: ChannelType) -> dict[str, LockDetail]:
        """The channel's locks by name: owner ("" if free) and TTL."""
        result = await self._session.request(
            lambda rid: f.GetLocks(rid, channel, channel_type), list[f.LockDetail]
        )
        assert result is not None
        return _details(result)

    async def get_lock_events(
        self, channel: str, channel_type: ChannelType
    ) -> tuple[dict[str, LockDetail], EventStream[LockEvent]]:
        """The channel's locks now and its lock-event stream (SNAPSHOT first).

        Needs the channel joined or subscribed with ``with_lock=True``.
        """
        self._session.require_login()
        view = self._views.get((ChannelType(channel_type), channel))
        if view is None:
            raise RTMError(
                not_in_channel_code(channel_type),
                f"{channel!r} is not joined or subscribed with locks",
            )
        return dict(view.snapshot), view.stream

    # --- views --------------------------------------------------------------------------------

    def open_view(self, key: ChannelKey, locks: list[f.LockDetail]) -> None:
        snapshot = _details(locks)
        self._views.open(
            key, snapshot, LockEvent(LockEventType.SNAPSHOT, key[1], key[0], dict(snapshot))
        )

    def close_view(self, key: ChannelKey, code: ErrorCode) -> None:
        self._views.close(key, code)

    def _on_event(self, frame: f.LockEvent) -> None:
        key = (ChannelType(frame.channel_type), frame.channel)
        view = self._views.get(key)
        if view is None:
            return
        kind = LockEventType(frame.kind)
        changed = _details(frame.locks)
        if kind is LockEventType.REMOVED:
            for name in changed:
                view.snapshot.pop(name, None)
        else:
            view.snapshot.update(changed)
        view.stream.put(LockEvent(kind, key[1], key[0], changed))

    def reset(self) -> None:
        self._views.reset()
