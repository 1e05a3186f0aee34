"""Taps: copies of one channel's messages for an HTTP stream (the console's live tail).

A tap listens the way a session does: the node takes an interest in the channel's subject, so
the broker (the memory one, Redis, Redis Cluster) delivers the channel's messages here,
wherever they were published. The node's bus route for messages is wrapped only while some tap
is open: with none, the hot path is exactly the one without this module.

A tap holds at most ``size`` messages; a reader that falls further behind loses its tap (it is
closed and marked ``overflowed``), so a slow browser never makes the node hold more.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import TYPE_CHECKING

from .engines.base import BusEvent, BusHandler, BusKind

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["Tap", "Taps"]


class Tap:
    """One reader's copy of a subject's message frames (as clients receive them)."""

    __slots__ = ("_wake", "closed", "frames", "overflowed", "size", "subject")

    def __init__(self, subject: str, size: int) -> None:
        self.subject = subject
        self.size = size
        self.frames: deque[bytes] = deque()
        self.closed = False
        self.overflowed = False
        self._wake = asyncio.Event()

    def put(self, frame: bytes) -> None:
        if self.closed:
            return
        if len(self.frames) >= self.size:
            self.overflowed = self.closed = True
            self.frames.clear()
        else:
            self.frames.append(frame)
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def wait(self, timeout: float) -> None:
        """Until a frame comes (or the tap ends), at most ``timeout`` seconds."""
        if self.frames or self.closed:
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    def take(self) -> list[bytes]:
        frames = list(self.frames)
        self.frames.clear()
        return frames


class Taps:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._by_subject: dict[str, set[Tap]] = {}
        self._route: BusHandler | None = None  # the hub's own, while wrapped

    @property
    def open_count(self) -> int:
        return sum(len(taps) for taps in self._by_subject.values())

    async def open(self, subject: str, size: int) -> Tap:
        tap = Tap(subject, size)
        if self._route is None:
            # The hub's table of bus routes (engines.base.bus_routes): wrapped, not edited, so
            # the hub's code and its cost stay the same while no tap is open.
            routes = self._hub._bus
            self._route = routes[BusKind.MESSAGE]
            routes[BusKind.MESSAGE] = self._on_message
        self._by_subject.setdefault(subject, set()).add(tap)
        self._hub.interest.add(subject)
        await self._hub.broker.ready(subject)
        return tap

    def close(self, tap: Tap) -> None:
        taps = self._by_subject.get(tap.subject)
        if taps is None or tap not in taps:
            return
        tap.closed = True
        taps.discard(tap)
        if not taps:
            del self._by_subject[tap.subject]
        self._hub.interest.remove(tap.subject)
        if not self._by_subject and self._route is not None:
            self._hub._bus[BusKind.MESSAGE] = self._route
            self._route = None

    def end_all(self) -> None:
        """End every tap now (the node is stopping): their readers return at once."""
        for taps in self._by_subject.values():
            for tap in taps:
                tap.closed = True
                tap.wake()

    def _on_message(self, subject: str, event: BusEvent) -> None:
        route = self._route
        if route is not None:
            route(subject, event)
        taps = self._by_subject.get(subject)
        if taps:
            for tap in tuple(taps):
                tap.put(event.frame)
