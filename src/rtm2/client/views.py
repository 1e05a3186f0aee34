"""ChannelViews: what the SDK follows per channel (or user), kept current by server events.

Presence, channel metadata, user metadata and locks all work the same way: entering a channel
(or following a user) opens a view from the server's snapshot, with a stream that starts with a
SNAPSHOT event; pushes change the snapshot and add events; leaving ends the stream with a code.
After a reconnection the same stream goes on with a fresh snapshot, so the application keeps
reading from the stream it has.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

from ..errors import ErrorCode
from .streams import EventStream

__all__ = ["ChannelViews", "View"]

K = TypeVar("K", bound=Hashable)
S = TypeVar("S")
E = TypeVar("E")


class View(Generic[S, E]):
    """One followed channel (or user): its state now and its event stream."""

    __slots__ = ("snapshot", "stream")

    def __init__(self, snapshot: S, stream: EventStream[E]) -> None:
        self.snapshot = snapshot
        self.stream = stream


class ChannelViews(Generic[K, S, E]):
    """The views of one kind (presence, metadata, locks), by channel (or user)."""

    __slots__ = ("_name", "_views")

    def __init__(self, stream_name: Callable[[K], str]) -> None:
        self._name = stream_name
        self._views: dict[K, View[S, E]] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._views

    def __iter__(self) -> Iterator[K]:
        return iter(self._views)

    def get(self, key: K) -> View[S, E] | None:
        return self._views.get(key)

    def open(self, key: K, snapshot: S, event: E) -> View[S, E]:
        """Follow ``key`` from ``snapshot``; ``event`` (its SNAPSHOT event) comes first. A view
        open already (back after a reconnection) keeps its stream and takes the new snapshot."""
        view = self._views.get(key)
        if view is None:
            view = self._views[key] = View(snapshot, EventStream(self._name(key)))
        else:
            view.snapshot = snapshot
        view.stream.put(event)
        return view

    def close(self, key: K, code: ErrorCode) -> None:
        """Stop following ``key``: its stream ends with ``code``."""
        view = self._views.pop(key, None)
        if view is not None:
            view.stream.close(code)

    def reset(self) -> None:
        """Logged out: every view ends with NOT_LOGIN."""
        for key in list(self._views):
            self.close(key, ErrorCode.NOT_LOGIN)
