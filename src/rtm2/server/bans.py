"""Users the app's backend kicked with a ban: their logins are refused until it ends.

Kept by the node that took the kick and by the node that held the session (``Hub.kick``);
other nodes of a cluster do not know of it (docs/API.md).
"""

from __future__ import annotations

import time

__all__ = ["Bans"]


class Bans:
    def __init__(self) -> None:
        self._until: dict[tuple[str, str], float] = {}  # (app, user) -> end, in time.time()

    def ban(self, app: str, user: str, seconds: float) -> None:
        if seconds > 0:
            self._until[(app, user)] = max(self._until.get((app, user), 0.0), time.time() + seconds)

    def remaining(self, app: str, user: str) -> float:
        """Seconds the user's ban still lasts (0: not banned)."""
        until = self._until.get((app, user))
        if until is None:
            return 0.0
        left = until - time.time()
        if left <= 0:
            del self._until[(app, user)]
            return 0.0
        return left

    def prune(self) -> None:
        now = time.time()
        for key in [k for k, until in self._until.items() if until <= now]:
            del self._until[key]
