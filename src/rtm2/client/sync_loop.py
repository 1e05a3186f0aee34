"""The machinery of ``rtm2.sync``: an event-loop thread, and blocking views of event streams.

A sync client owns one daemon thread that runs an asyncio loop; the asyncio ``RTMClient``
lives on that loop, and every blocking call submits a coroutine to it and waits. The waits
are built so that none can hang:

* a call from a thread that is running an event loop is refused at once, since blocking
  that loop could stall the very work the call waits for;
* a call to a closed client, or one whose loop thread has ended, raises RTMError
  NOT_INITIALIZED (RTM 2's code for a call after ``release``);
* while waiting, the caller looks at the loop thread every ``POLL`` seconds, so a thread that
  died in the middle of a call is noticed; and an interrupted caller (Ctrl-C) cancels the
  coroutine it was waiting for, which withdraws a lock wait like an asyncio cancellation.

Only the public async API is used, so the SDK's internals can change beneath this module.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, Generic, TypeVar

from ..errors import ErrorCode, RTMError
from . import EventStream as AsyncEventStream

__all__ = ["POLL", "EventStream", "LoopThread", "refuse_in_event_loop"]

T = TypeVar("T")

_log = logging.getLogger("rtm2.sync")

POLL = 0.25  # seconds between checks that the loop thread still runs, while a call waits


def refuse_in_event_loop() -> None:
    """Raise RuntimeError if the calling thread runs an event loop (like ``asyncio.run``)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        "rtm2.sync.RTMClient blocks, so it cannot be called from a running event loop "
        "(it would stall that loop); use rtm2.RTMClient with await there"
    )


class LoopThread:
    """A daemon thread running an asyncio loop, and blocking calls into it."""

    def __init__(self, name: str) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._closed = False
        self._ended = False
        self._closing = threading.Lock()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()
        while not self._ready.wait(POLL):
            if not self._thread.is_alive():
                raise self.gone_error()
        if self._loop is None:  # the thread ended before its loop ran
            raise self.gone_error()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self.running else "dead"
        return f"<LoopThread {self._thread.name} {state}>"

    @property
    def name(self) -> str:
        return self._thread.name

    @property
    def running(self) -> bool:
        """The loop thread is alive and the client not closed: calls can be made."""
        return not self._closed and not self._ended and self._thread.is_alive()

    @property
    def closed(self) -> bool:
        """``stop`` was called."""
        return self._closed

    @property
    def finished(self) -> bool:
        """The loop thread has ended: nothing else touches the client's objects any more."""
        return not self._thread.is_alive()

    def _main(self) -> None:
        runner = asyncio.Runner()
        try:
            runner.run(self._serve())
        except BaseException:
            # Nobody joins this thread to see its exception: log it where the app looks.
            _log.exception("the event-loop thread %s ended unexpectedly", self.name)
        finally:
            # No new calls from here on. Closing the Runner cancels what is still pending,
            # which fails the waits of every caller with NOT_INITIALIZED.
            self._ended = True
            try:
                runner.close()
            finally:
                self._ready.set()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._ready.set()
        await self._stop.wait()

    # --- blocking calls ------------------------------------------------------------------------

    def run(self, factory: Callable[[], Awaitable[T]]) -> T:
        """Await ``factory()`` on the loop and return its result (or raise its exception).

        ``factory`` itself runs on the loop thread too, so it may touch the client freely.
        """

        async def call() -> T:
            return await factory()

        return self._wait(call())

    def call(self, function: Callable[[], T]) -> T:
        """Run a plain function on the loop thread and return its result."""

        async def call() -> T:
            return function()

        return self._wait(call())

    def _wait(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            refuse_in_event_loop()
            loop = self._loop
            if not self.running or loop is None:
                raise self.gone_error()
            try:
                future = asyncio.run_coroutine_threadsafe(coro, loop)
            except RuntimeError:  # the loop closed between the check and the call
                raise self.gone_error() from None
        except BaseException:
            coro.close()  # never scheduled: no "coroutine was never awaited" warning
            raise
        try:
            while not concurrent.futures.wait((future,), timeout=POLL).done:
                if not self._thread.is_alive():
                    raise self.gone_error()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt: stop the coroutine as well
            raise
        if future.cancelled():  # the loop ended under it (close, or the thread stopped)
            raise self.gone_error()
        return future.result()

    def gone_error(self) -> RTMError:
        """The error of a call that can no longer reach the loop."""
        why = "is closed" if self._closed else "has no running event-loop thread"
        return RTMError(ErrorCode.NOT_INITIALIZED, f"the sync client ({self.name}) {why}")

    def stop(self, timeout: float = 10.0) -> None:
        """End the loop (pending calls fail with NOT_INITIALIZED) and join the thread.

        Idempotent; the thread is gone when this returns, unless the loop is stuck longer
        than ``timeout`` (it is a daemon thread, so it cannot keep the process alive).
        """
        with self._closing:
            if self._closed:
                return
            self._closed = True
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(stop.set)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)


class EventStream(Generic[T]):
    """A blocking view of an ``rtm2.EventStream``: ``for event in stream``,
    ``stream.get(timeout=…)`` (TimeoutError when nothing arrives) and ``stream.close()``.

    Iteration ends when the stream does (on logout, leave, unsubscribe, or ``close``). After
    the client was closed, the events still pending can be read; then iteration ends.
    """

    __slots__ = ("_loop", "_stream")

    def __init__(self, stream: AsyncEventStream[T], loop: LoopThread) -> None:
        self._stream = stream
        self._loop = loop

    def __repr__(self) -> str:
        return f"<sync {self._stream!r}>"

    @property
    def name(self) -> str:
        return self._stream.name

    @property
    def closed(self) -> bool:
        return self._stream.closed

    @property
    def dropped(self) -> int:
        """Events dropped because the stream was full (the application did not keep up)."""
        return self._stream.dropped

    def __len__(self) -> int:
        return len(self._stream)

    def get(self, timeout: float | None = None) -> T:
        """Wait for the next event.

        Raises:
            TimeoutError: nothing arrived within ``timeout`` seconds.
            RTMError: the stream is closed and drained (code says why, e.g. NOT_LOGIN);
                NOT_INITIALIZED once the client is closed and nothing is left.
        """
        if self._loop.finished:
            item = self._stream.get_nowait()
            if item is None:
                raise self._loop.gone_error()
            return item
        stream = self._stream
        return self._loop.run(lambda: stream.get(timeout))

    def get_nowait(self) -> T | None:
        """The next event, or None when there is none right now."""
        if self._loop.finished:
            return self._stream.get_nowait()
        return self._loop.call(self._stream.get_nowait)

    def close(self, code: ErrorCode = ErrorCode.NOT_LOGIN) -> None:
        """End the stream: pending events can still be read, then iteration stops."""
        if self._loop.finished:
            self._stream.close(code)
            return
        stream = self._stream
        self._loop.call(lambda: stream.close(code))

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._loop.finished:
            item = self._stream.get_nowait()
            if item is not None:
                return item
            if self._loop.closed and self._stream.closed:
                raise StopIteration
            raise self._loop.gone_error()
        found = self._loop.run(self._next)
        if not found:
            raise StopIteration
        return found[0]

    async def _next(self) -> list[T]:
        """The next event as a one-item list, or [] when the stream has ended. (A
        StopAsyncIteration is kept inside the loop rather than sent through a future.)"""
        try:
            return [await anext(self._stream)]
        except StopAsyncIteration:
            return []
