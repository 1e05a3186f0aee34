"""Start a local ``rtm2 serve`` as a child process (for ``rtm2 demo`` and ``rtm2 bench``)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["LocalServer", "local_server"]


class LocalServer:
    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})


@contextlib.contextmanager
def local_server(
    args: list[str],
    *,
    cwd: Path | None = None,
    cpu: int | None = None,
    quiet: bool = True,
    env: dict[str, str] | None = None,
) -> Iterator[LocalServer]:
    """Run ``rtm2 serve --port 0 ARGS`` until the block ends; yields its URL and pid.

    ``env`` adds to this process's environment: the place for secrets (``RTM2_SERVE_ENGINE``
    with a Redis password, ``RTM2_APP_CERTIFICATE``), which ARGS would show to every local user.
    """
    proc = subprocess.Popen(
        # No HTTP API: a demo or a benchmark needs none, and two nodes would clash on its port.
        [
            *(sys.executable, "-m", "rtm2", "serve", "--port", "0", "--no-http"),
            *("--log-level", "warning", *args),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL if quiet else None,
        text=True,
        cwd=cwd,
        env={**os.environ, **env} if env else None,
        preexec_fn=(lambda: _pin(cpu)) if cpu is not None else None,
    )
    server: LocalServer | None = None
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        for line in proc.stdout:  # the banner; its last line starts with "Stop with"
            match = re.search(r"serving on (ws://\S+)", line)
            if match:
                server = LocalServer(proc, match.group(1))
            if line.startswith("Stop with") or time.monotonic() > deadline:
                break
        if server is None:
            raise RuntimeError("the rtm2 server did not start")
        proc.stdout.close()
        yield server
    finally:
        if server is not None:
            server.stop()
        elif proc.poll() is None:
            proc.kill()
            proc.wait(5)
