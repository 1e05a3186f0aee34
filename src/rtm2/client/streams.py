"""Bounded event streams: what the SDK hands to applications instead of Go channels.

A stream is filled by the connection's read loop, which must never block, and drained by the
application with ``async for``, ``await stream.get(timeout=...)`` or ``get_nowait()``. A full
stream never blocks the read loop (the Go SDK's worst bug): the event is dropped, counted in
``dropped`` and reported through ``on_overflow`` so the application learns about it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from ..errors import ErrorCode, RTMError

__all__ = ["DEFAULT_STREAM_SIZE", "EventStream"]

T = TypeVar("T")

DEFAULT_STREAM_SIZE = 10_000


class EventStream(Generic[T]):
    """An async-iterable, bounded queue of events that ends when closed."""

    __slots__ = (
        "_closed",
        "_closed_code",
        "_items",
        "_maxsize",
        "_on_overflow",
        "_waiters",
        "dropped",
        "name",
    )

    def __init__(
        self,
        name: str,
        maxsize: int = DEFAULT_STREAM_SIZE,
        on_overflow: Callable[[EventStream[T]], None] | None = None,
    ) -> None:
        self.name = name
        self.dropped = 0
        self._items: deque[T] = deque()
        self._maxsize = maxsize
        self._on_overflow = on_overflow
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False
        self._closed_code = ErrorCode.NOT_LOGIN

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<EventStream {self.name} {state} pending={len(self._items)}>"

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    # --- producer side (the SDK) -----------------------------------------------------------

    def put(self, item: T) -> bool:
        """Append ``item``; False if the stream is closed or full (then the item is dropped)."""
        if self._closed:
            return False
        if len(self._items) >= self._maxsize:
            self.dropped += 1
            if self._on_overflow is not None:
                self._on_overflow(self)
            return False
        self._items.append(item)
        self._wake_one()
        return True

    def close(self, code: ErrorCode = ErrorCode.NOT_LOGIN) -> None:
        """End the stream. Pending items can still be read; then iteration stops."""
        if self._closed:
            return
        self._closed = True
        self._closed_code = code
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    # --- consumer side (the application) ---------------------------------------------------

    def get_nowait(self) -> T | None:
        """The next event, or None when there is none right now."""
        return self._items.popleft() if self._items else None

    async def get(self, timeout: float | None = None) -> T:
        """Wait for the next event.

        Raises:
            TimeoutError: nothing arrived within ``timeout`` seconds.
            RTMError: the stream is closed and drained (code says why, e.g. NOT_LOGIN).
        """
        if timeout is None:
            return await self._get()
        async with asyncio.timeout(timeout):
            return await self._get()

    async def _get(self) -> T:
        while not self._items:
            if self._closed:
                raise RTMError(self._closed_code, f"event stream {self.name} is closed")
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # Pass a wake-up we consumed on to the next waiter, so no event is stranded.
                if waiter.done() and not waiter.cancelled() and self._items:
                    self._wake_one()
                raise
        item = self._items.popleft()
        if self._items:
            self._wake_one()
        return item

    def __aiter__(self) -> EventStream[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self._get()
        except RTMError:
            if self._closed and not self._items:
                raise StopAsyncIteration from None
            raise
