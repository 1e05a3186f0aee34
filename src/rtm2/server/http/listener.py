"""uvicorn serving the API in the running event loop, started and stopped with the node."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator

import uvicorn
from litestar import Litestar

from .timing import Observe, timed

__all__ = ["HttpListener"]

log = logging.getLogger("rtm2.http")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The node owns SIGTERM and SIGINT (serve_forever): uvicorn taking them would stop
        # the HTTP listener alone and leave the WebSocket one running.
        yield


class HttpListener:
    def __init__(self, app: Litestar, host: str, port: int, observe: Observe | None = None) -> None:
        self._app = app if observe is None else timed(app, observe)
        self.host = host
        self.port = port
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen (on a free port when port is 0; ``port`` then says which)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            # Named as the HTTP port's: the WebSocket port is fine, and the operator must know
            # which of the two to change.
            raise OSError(
                exc.errno, f"cannot listen on {self.host}:{self.port} (HTTP API): {exc.strerror}"
            ) from None
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            lifespan="on",
            log_level="warning",
            access_log=False,  # request lines could carry what a log should not keep
            log_config=None,
        )
        server = self._server = _Server(config)
        task = self._task = asyncio.get_running_loop().create_task(
            server.serve(sockets=[sock]), name="rtm2-http"
        )
        while not server.started:
            if task.done():
                sock.close()
                task.result()  # its exception, if it failed
                raise OSError(f"the HTTP listener on {self.host}:{self.port} did not start")
            await asyncio.sleep(0.01)
        log.info("HTTP API on %s", self.url)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(self._task, 2.0)
