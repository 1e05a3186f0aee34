"""Sidecar mode: with no endpoint set, the SDK runs (or reuses) a local ``rtm2 serve``.

This is how the RTM 2 Go SDK works (it starts its C++ sidecar on login); here the sidecar is
rtm2's own server, started for the client's app with zero setup. A sidecar the SDK started is
stopped on logout; one that dies on its own is reported on ``client.errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import ErrorCode, RTMError

__all__ = ["Sidecar"]

_START_TIMEOUT = 15.0


def _command(path: str | None) -> list[str]:
    """How to run ``rtm2``: the given executable (or the ``rtm2`` in the given directory), or
    this Python's ``-m rtm2``."""
    if not path:
        return [sys.executable, "-m", "rtm2"]
    p = Path(path)
    if p.is_dir():
        p = p / "rtm2"
    if not os.access(p, os.X_OK):
        raise RTMError(ErrorCode.INIT_SERVICE_FAILED, f"no rtm2 executable at {p}")
    return [str(p)]


async def _listening(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


class Sidecar:
    def __init__(self, log: logging.Logger, on_exit: Callable[[RTMError], None]) -> None:
        self._log = log
        self._on_exit = on_exit
        self._proc: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task[None] | None = None
        self._data_dir: str | None = None
        self._stopping = False

    @property
    def started(self) -> bool:
        """Whether this client started the sidecar (and so will stop it)."""
        return self._proc is not None

    async def ensure(self, port: int, path: str | None, app_id: str, certificate: str) -> str:
        """The sidecar's URL, starting it unless something already listens on ``port``."""
        url = f"ws://127.0.0.1:{port}"
        if self._proc is not None and self._proc.returncode is None:
            return url
        if await _listening(port):
            self._log.info("using the sidecar already listening at %s", url)
            return url
        app = f"{app_id}:{certificate}" if certificate else app_id
        self._data_dir = tempfile.mkdtemp(prefix="rtm2-sidecar-")
        command = [
            *_command(path),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--app",
            app,
            "--data-dir",
            self._data_dir,
            "--log-level",
            "warning",
        ]
        self._log.info("starting a sidecar rtm2 server on port %d", port)
        self._stopping = False
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
            )
        except OSError as exc:
            raise RTMError(
                ErrorCode.INIT_SERVICE_FAILED, f"cannot start the sidecar: {exc}"
            ) from None
        deadline = asyncio.get_running_loop().time() + _START_TIMEOUT
        while not await _listening(port):
            if self._proc.returncode is not None or asyncio.get_running_loop().time() > deadline:
                code = self._proc.returncode
                await self.stop()
                raise RTMError(
                    ErrorCode.INIT_SERVICE_FAILED,
                    f"the sidecar did not start (exit code {code}); is port {port} free?",
                )
            await asyncio.sleep(0.05)
        self._watch = asyncio.get_running_loop().create_task(self._watch_exit())
        return url

    async def _watch_exit(self) -> None:
        assert self._proc is not None
        code = await self._proc.wait()
        if not self._stopping:
            self._log.error("the sidecar exited unexpectedly (code %s)", code)
            self._on_exit(
                RTMError(ErrorCode.NOT_CONNECTED, f"the sidecar exited unexpectedly (code {code})")
            )

    async def stop(self) -> None:
        """Stop a sidecar this client started (SIGTERM, then SIGKILL after 5 s)."""
        proc, self._proc = self._proc, None
        self._stopping = True
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self._data_dir is not None:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None
