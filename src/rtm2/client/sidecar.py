"""Sidecar mode: with no endpoint set, the SDK runs a local ``rtm2 serve`` (one per port and
process: other clients of the process share it).

This is how the RTM 2 Go SDK works (it starts its C++ sidecar on login); here the sidecar is
rtm2's own server, started for the client's app with zero setup. A sidecar the SDK started is
stopped on logout; one that dies on its own is reported on ``client.errors``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import ErrorCode, RTMError
from ..protocol.codes import ACCESS_KEY_HEADER

__all__ = ["Sidecar", "access_headers"]

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


# Sidecars this process started, by port, with their access keys. Other clients of this
# process use them too; a listener this process did not start is never trusted: it could be
# anyone's, waiting for a token.
_launched: dict[int, str] = {}


def access_headers(url: str) -> dict[str, str] | None:
    """The access-key header for ``url`` when it is a sidecar this process started."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return None
    if parts.scheme != "ws" or parts.hostname not in ("127.0.0.1", "localhost"):
        return None
    key = _launched.get(port or 0)
    return {ACCESS_KEY_HEADER: key} if key else None


class Sidecar:
    def __init__(self, log: logging.Logger, on_exit: Callable[[RTMError], None]) -> None:
        self._log = log
        self._on_exit = on_exit
        self._proc: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task[None] | None = None
        self._data_dir: str | None = None
        self._port = 0
        self._stopping = False

    @property
    def started(self) -> bool:
        """Whether this client started the sidecar (and so will stop it)."""
        return self._proc is not None

    async def ensure(self, port: int, path: str | None, app_id: str, certificate: str) -> str:
        """The sidecar's URL, starting it unless this process already runs one on ``port``.

        The certificate and a fresh access key go to the child in its environment, never on
        its command line (anyone on the machine can read that in /proc). The sidecar is
        trusted once its own banner says it listens: whatever else held the port makes it
        exit instead.
        """
        url = f"ws://127.0.0.1:{port}"
        if self._proc is not None and self._proc.returncode is None:
            return url
        if port in _launched:
            self._log.info("using the sidecar this process started at %s", url)
            return url
        key = secrets.token_urlsafe(32)
        # No HTTP API: its one client needs none, and several sidecars would fight over its
        # port. By environment, which an rtm2 older than the API ignores.
        env = {**os.environ, "RTM2_ACCESS_KEY": key, "RTM2_SERVE_HTTP": "false"}
        if certificate:
            env["RTM2_APP_CERTIFICATE"] = certificate
        self._data_dir = tempfile.mkdtemp(prefix="rtm2-sidecar-")
        command = [
            *_command(path),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--app",
            app_id,
            "--data-dir",
            self._data_dir,
            "--log-level",
            "warning",
        ]
        self._log.info("starting a sidecar rtm2 server on port %d", port)
        self._stopping = False
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *command,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                env=env,
            )
        except OSError as exc:
            raise RTMError(
                ErrorCode.INIT_SERVICE_FAILED, f"cannot start the sidecar: {exc}"
            ) from None
        if not await self._banner(url):
            code = self._proc.returncode
            await self.stop()
            raise RTMError(
                ErrorCode.INIT_SERVICE_FAILED,
                f"the sidecar did not start (exit code {code}); is port {port} free?",
            )
        _launched[port] = key
        self._port = port
        self._watch = asyncio.get_running_loop().create_task(self._watch_exit())
        return url

    async def _banner(self, url: str) -> bool:
        """Whether the child says it serves on ``url`` before it exits or times out."""
        assert self._proc is not None
        assert self._proc.stdout is not None
        try:
            async with asyncio.timeout(_START_TIMEOUT):
                while line := await self._proc.stdout.readline():
                    if f"serving on {url} " in line.decode(errors="replace"):
                        return True
                await self._proc.wait()
        except TimeoutError:
            pass
        return False

    async def _watch_exit(self) -> None:
        assert self._proc is not None
        code = await self._proc.wait()
        _launched.pop(self._port, None)
        if not self._stopping:
            self._log.error("the sidecar exited unexpectedly (code %s)", code)
            self._on_exit(
                RTMError(ErrorCode.NOT_CONNECTED, f"the sidecar exited unexpectedly (code {code})")
            )

    async def stop(self) -> None:
        """Stop a sidecar this client started (SIGTERM, then SIGKILL after 5 s)."""
        proc, self._proc = self._proc, None
        self._stopping = True
        _launched.pop(self._port, None)
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
