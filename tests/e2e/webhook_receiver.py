"""A real HTTP receiver for webhook tests: uvicorn serving a bare ASGI app in the test's loop.

It verifies both signatures of every request with ``rtm2.webhooks.verify`` and keeps the
events in arrival order. It can answer 500 for a while, or stop listening altogether and
come back on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import socket
import time
from collections.abc import Callable
from typing import Any

import uvicorn

from rtm2.webhooks import verify

__all__ = ["Receiver"]


class Receiver:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.events: list[dict[str, Any]] = []  # every verified request, duplicates included
        self.requests: list[float] = []  # when each request came (monotonic)
        self.refusals = 0  # requests answered 500 on purpose
        self.fail_next = 0  # answer 500 to this many requests
        self.slow_next = 0  # answer this many requests only after ``slow`` seconds
        self.slow = 2.0
        self.bad_signatures = 0
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self._app, log_level="warning", lifespan="off", interface="asgi3")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop listening: the server's requests are refused until ``start`` again."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            self._server.force_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._server = None

    async def _app(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Any],
        send: Callable[[dict[str, Any]], Any],
    ) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.requests.append(time.monotonic())
        status = 200
        try:
            event = verify(body, headers, self.secret)
            agora = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            assert headers["agora-signature-v2"] == agora
        except Exception:
            self.bad_signatures += 1
            status = 401
        else:
            if self.slow_next > 0:
                self.slow_next -= 1
                self.refusals += 1
                await asyncio.sleep(self.slow)
            elif self.fail_next > 0:
                self.fail_next -= 1
                self.refusals += 1
                status = 500
            else:
                self.events.append(event)
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    async def wait_for(
        self, check: Callable[[list[dict[str, Any]]], bool], timeout: float = 15.0
    ) -> None:
        deadline = time.monotonic() + timeout
        while not check(self.events):
            if time.monotonic() > deadline:
                kinds = [(e["type"], e["data"]) for e in self.events]
                raise AssertionError(f"webhook events did not arrive; got {kinds}")
            await asyncio.sleep(0.05)
