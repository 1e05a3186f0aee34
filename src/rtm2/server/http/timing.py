"""Times every HTTP API request by its route's template (``/v1/apps/{app_id}/users/{user_id}``,
never the filled-in path: app ids and names would make a label per user)."""

from __future__ import annotations

import time
from collections.abc import Callable

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

__all__ = ["Observe", "timed"]

# (route template, method, seconds)
Observe = Callable[[str, str, float], None]


def timed(app: ASGIApp, observe: Observe) -> ASGIApp:
    """``app``, reporting each HTTP request's duration to ``observe`` when it ends."""

    async def timed_app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        start = time.perf_counter()
        try:
            await app(scope, receive, send)
        finally:
            # Litestar's router writes the matched route's template into the scope; a path
            # that matched none has none (one label for all of them).
            route = scope.get("path_template") or "unmatched"
            observe(route, str(scope.get("method", "")), time.perf_counter() - start)

    return timed_app
