"""``rtm2 sidecar`` and ``rtm2-wrapper.exe``: the Go SDK's sidecar, bridged to an rtm2 server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..sidecar.server import DEFAULT_HOST, DEFAULT_PORT, SidecarServer, watch_parent
from ..sidecar.session import Limits

__all__ = ["sidecar", "wrapper"]

_DEFAULTS = Limits()
_ENDPOINT_HELP = (
    "The rtm2 server, ws://HOST:PORT or wss://... (env RTM2_ENDPOINT). Without it, each Go "
    "client names it at login with the client parameter rtm2_endpoint."
)


def _check_endpoint(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value and not value.startswith(("ws://", "wss://")):
        raise click.BadParameter("must be a ws:// or wss:// URL")
    return value or None


async def _serve(server: SidecarServer, follow_parent: bool) -> None:
    await server.start()
    click.echo(f"rtm2 sidecar listening on {server.host}:{server.port}", err=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    waits: list[asyncio.Task[object]] = [loop.create_task(stop.wait())]
    if follow_parent:
        waits.append(loop.create_task(watch_parent()))
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if follow_parent and waits[1] in done:
            server.log.warning("the parent process is gone: stopping")
    finally:
        for task in waits:
            task.cancel()
        await server.close()


def _run(
    endpoint: str | None,
    host: str,
    port: int,
    max_queued_events: int,
    request_timeout: float,
    follow_parent: bool,
    log_level: str,
) -> None:
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    limits = Limits(max_queued_events=max_queued_events, request_timeout=request_timeout)
    server = SidecarServer(endpoint, host, port, limits)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every POSIX platform
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(_serve(server, follow_parent))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from None


_options = [
    click.option(
        "--endpoint", envvar="RTM2_ENDPOINT", callback=_check_endpoint, help=_ENDPOINT_HELP
    ),
    click.option(
        "--max-queued-events",
        type=click.IntRange(1),
        default=_DEFAULTS.max_queued_events,
        show_default=True,
        help="Events a Go client may leave unread before it is disconnected.",
    ),
    click.option(
        "--request-timeout",
        type=click.FloatRange(0.1),
        default=_DEFAULTS.request_timeout,
        show_default=True,
        help="Seconds a request to the rtm2 server may take (keep it under the Go SDK's "
        "RequestTimeout, 5 s by default, so Go gets our error code, not its own timeout).",
    ),
    click.option(
        "--log-level",
        type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
        default="info",
        show_default=True,
        help="Log verbosity (logs go to stderr; tokens are never logged).",
    ),
]


_F = TypeVar("_F", bound=Callable[..., Any])


def _with_options(f: _F) -> _F:
    for option in reversed(_options):
        f = option(f)
    return f


@click.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=int, default=DEFAULT_PORT, show_default=True, help="Port (0 = any free)."
)
@click.option(
    "--follow-parent/--no-follow-parent",
    default=True,
    show_default=True,
    help="Stop when the process that started this one is gone.",
)
@_with_options
def sidecar(
    host: str,
    port: int,
    follow_parent: bool,
    endpoint: str | None,
    max_queued_events: int,
    request_timeout: float,
    log_level: str,
) -> None:
    """Run the sidecar of the RTM 2 Go SDK (github.com/tomasliu-agora/rtm2-sdk v2.1.8): Go
    services connect to it (golang_sidecar_endpoint) and reach an rtm2 server through it, one
    rtm2 client session per Go client. See docs/GO.md."""
    _run(endpoint, host, port, max_queued_events, request_timeout, follow_parent, log_level)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--port", type=int, default=DEFAULT_PORT, show_default=True, help="Port on 127.0.0.1."
)
@click.option("--mode", type=int, default=1, show_default=True, help="Accepted; only 1 exists.")
@_with_options
def wrapper_command(
    port: int,
    mode: int,
    endpoint: str | None,
    max_queued_events: int,
    request_timeout: float,
    log_level: str,
) -> None:
    """rtm2-wrapper.exe: what the Go SDK starts from golang_sidecar_path on login, as
    ``rtm2-wrapper.exe --port=N --mode=1``. It listens on 127.0.0.1:N and stops when the Go
    process is gone. See docs/GO.md."""
    _run(endpoint, DEFAULT_HOST, port, max_queued_events, request_timeout, True, log_level)


def wrapper() -> None:
    """The ``rtm2-wrapper.exe`` console script."""
    wrapper_command(prog_name="rtm2-wrapper.exe")
