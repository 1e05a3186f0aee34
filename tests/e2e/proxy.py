"""A TCP proxy for fault tests: forwards 127.0.0.1:<free port> to an upstream address and can
cut every live connection abruptly (both sides reset) while it keeps accepting new ones."""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["TcpProxy"]


class _Pipe:
    """One proxied connection: the client side and the upstream side."""

    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream = upstream

    def cut(self) -> None:
        for writer in (self.client, self.upstream):
            writer.transport.abort()  # RST, no FIN: nothing pending gets through


class TcpProxy:
    """``async with TcpProxy(port) as proxy``: clients use ``proxy.url``; ``proxy.cut()``
    resets every live connection. Counts what it did in ``accepted``, ``cut_connections``
    and ``cuts``."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.accepted = 0  # client connections accepted (reconnection attempts included)
        self.refused = 0  # accepted, but the upstream could not be reached
        self.cuts = 0  # calls to cut()
        self.cut_connections = 0  # live connections those calls reset
        self._pipes: set[_Pipe] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def live(self) -> int:
        return len(self._pipes)

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pipe in list(self._pipes):
            pipe.cut()
        self._pipes.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def __aenter__(self) -> TcpProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def cut(self) -> int:
        """Reset every live connection (both sides) at once; return how many there were."""
        pipes, self._pipes = self._pipes, set()
        for pipe in pipes:
            pipe.cut()
        self.cuts += 1
        self.cut_connections += len(pipes)
        return len(pipes)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            self.refused += 1
            writer.transport.abort()
            return
        pipe = _Pipe(writer, up_writer)
        self._pipes.add(pipe)
        loop = asyncio.get_running_loop()
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = loop.create_task(self._pump(src, dst, pipe))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, pipe: _Pipe
    ) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, ConnectionError):
            # A reset on one side (a cut, or a peer that went away): reset the other too.
            self._pipes.discard(pipe)
            pipe.cut()
            return
        # A clean end of one side: pass it on (after what is pending) and forget the pipe.
        self._pipes.discard(pipe)
        with contextlib.suppress(Exception):
            dst.close()
