"""The sidecar's TCP listener: one ``GoSession`` per connection, and the parent-process watch."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os

from .session import GoSession, Limits

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "SidecarServer", "watch_parent"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7001  # the Go SDK's default golang_sidecar_port


class SidecarServer:
    """Listens for the Go SDK; each connection becomes one rtm2 client session."""

    def __init__(
        self,
        endpoint: str | None,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        limits: Limits | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.host = host
        self.port = port
        self.limits = limits or Limits()
        self.log = log or logging.getLogger("rtm2.sidecar")
        self._server: asyncio.Server | None = None
        self._ids = itertools.count(1)
        self._sessions: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]
        where = self.endpoint or "the endpoint each Go client names at login"
        self.log.info("rtm2 sidecar on %s:%d, serving %s", self.host, self.port, where)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._sessions):
            task.cancel()
        await asyncio.gather(*self._sessions, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        log = self.log.getChild(f"conn{next(self._ids)}")
        log.info("Go SDK connected from %s", writer.get_extra_info("peername"))
        session = GoSession(reader, writer, self.endpoint, self.limits, log)
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            await session.run()
        finally:
            self._sessions.discard(task)


async def watch_parent(interval: float = 0.5) -> None:
    """Return when the process that started this one is gone (the Go SDK leaves its sidecar
    running when it dies; this one follows it instead of keeping the port)."""
    parent = os.getppid()
    while True:
        await asyncio.sleep(interval)
        with contextlib.suppress(OSError):
            if os.getppid() != parent:
                return
