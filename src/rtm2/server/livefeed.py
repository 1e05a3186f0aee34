"""The node's side of the live routes (``http/live.py``): counters, taps and publishers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from typing import TYPE_CHECKING

from .config import AppConfig
from .http.live import AppSample, Sample
from .subjects import channel_subject
from .taps import Tap, Taps

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["NodeLive"]


class NodeLive:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self.taps = Taps(hub)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """End every live stream now: the node is going away, and its HTTP listener waits for
        open responses to end."""
        self._stopping.set()
        self.taps.end_all()

    def node_id(self) -> str:
        return self._hub.node_id

    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def sample(self, app_id: str | None) -> Sample:
        hub = self._hub
        n = hub.counts
        online: Counter[str] = Counter()
        for (app, _), session in hub.users.items():
            if session.attached:
                online[app] += 1
        apps = [app_id] if app_id is not None else sorted(hub.apps)
        return Sample(
            time.time(),
            hub.node_id,
            sum(1 for s in hub.sessions if s.attached),
            n.published_message + n.published_stream + n.published_user,
            n.delivered_message + n.delivered_stream + n.delivered_user,
            sum(n.errors.values()),
            [AppSample(a, online[a]) for a in apps],
        )

    async def open_tail(self, app: AppConfig, channel_type: int, channel: str, size: int) -> Tap:
        return await self.taps.open(channel_subject(app.app_id, channel, channel_type), size)

    def close_tail(self, tap: Tap) -> None:
        self.taps.close(tap)

    def lock_waiters(self, app: AppConfig, channel_type: int, channel: str) -> dict[str, list[str]]:
        subj = channel_subject(app.app_id, channel, channel_type)
        found: dict[str, list[str]] = {}
        for (scope, name), queue in self._hub.locks.waiters.items():
            if scope == subj and queue:
                found[name] = [w.session.user_id for w in queue]
        return found

    async def publishers(self, app: AppConfig, channel: str, topic: str) -> list[str]:
        return await self._hub.engine.stream_store.publishers(app.app_id, channel, topic)
