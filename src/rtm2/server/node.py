"""A server node: the hub, the WebSocket listener and the sweeper, started and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from typing import Any

from picows import ws_create_server

from .config import ServerConfig
from .engines.base import Engine
from .engines.memory import MemoryEngine
from .gateway import listener_factory
from .hub import Hub

__all__ = ["Server"]

log = logging.getLogger("rtm2.server")


class _PeerFaultsAsWarnings(logging.LoggerAdapter[logging.Logger]):
    """picows logs a peer's WebSocket protocol violation (an oversized frame, a bad opcode) at
    ERROR. It is the peer's fault, not the server's, and the connection is closed anyway: at
    ERROR, any peer could fill an operator's error log and page someone at will."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if level == logging.ERROR and str(msg).startswith("WS parser error"):
            level = logging.WARNING
        super().log(level, msg, *args, **kwargs)


# picows reads into a buffer of this size per connection; its 16 KiB default doubles the memory
# of an idle connection, and the buffer grows by itself for larger frames.
_READ_BUFFER = 2048


class Server:
    """An rtm2 server. ``await start()``, then ``await stop()`` (or ``serve_forever()``)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._hub: Hub | None = None
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self.port = config.port

    @property
    def hub(self) -> Hub:
        assert self._hub is not None, "server not started"
        return self._hub

    @property
    def url(self) -> str:
        return f"ws://{self.config.host}:{self.port}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        engine: Engine
        if self.config.engine.startswith(("redis://", "redis-cluster://")):
            from .engines.redis.engine import RedisEngine  # only deployments that use it

            engine = RedisEngine(self.config.engine)
        else:
            engine = MemoryEngine(self.config.data_dir)
        hub = self._hub = Hub(self.config, loop, engine)
        await engine.start()
        # Alive before any session exists: a node that dies at once still gets swept.
        await engine.heartbeat(hub.node_id)
        if not engine.shared:  # other nodes' locks are theirs: a dead node's are adopted
            await hub.locks.start()
        self._server = await ws_create_server(
            listener_factory(hub.outbox, hub.new_session),
            self.config.host,
            self.config.port,
            max_frame_size=self.config.max_frame_size,
            read_buffer_init_size=_READ_BUFFER,
            websocket_handshake_timeout=self.config.timers.login_timeout,
            enable_auto_pong=False,
            logger_name=_PeerFaultsAsWarnings(logging.getLogger("picows.server")),
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._sweeper = loop.create_task(hub.run_sweeper(), name="rtm2-sweeper")
        log.info("listening on %s", self.url)

    async def stop(self, message: str = "server shutting down") -> None:
        """Stop accepting, tell every client why, and close all connections."""
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._hub is not None:
            self._hub.shutdown(message)
            self._hub.outbox.flush()
            # Give close frames a moment to leave before the process goes away.
            await asyncio.sleep(0.05)
        if self._server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
        if self._hub is not None:
            await self._hub.engine.close()
        log.info("stopped")

    async def serve_forever(self, on_ready: Callable[[Server], None] | None = None) -> None:
        """Start, run until SIGTERM or SIGINT, then stop cleanly.

        The signal handlers are in place before the server starts, so a signal that arrives
        while it starts still stops it cleanly. ``on_ready`` runs once it listens.
        """
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        try:
            await self.start()
            if on_ready is not None:
                on_ready(self)
            await done.wait()
            log.info("signal received, shutting down")
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self.stop()
