"""The ``rtm2`` command: ``serve`` and ``token``. The only place that reads flags and the
environment (every option can also be given as ``RTM2_<COMMAND>_<OPTION>``)."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import click

from .. import _compiled, _version, tokens
from ..errors import RTMError
from ..server import (
    AppConfig,
    ConfigError,
    HttpConfig,
    Server,
    ServerConfig,
    ensure_admin_key,
    ensure_dev_app,
    load_config,
)
from ..server.engines.base import EngineUnavailable
from .api import api
from .api_history import history as _api_history  # noqa: F401 (registers `rtm2 api history`)
from .bench import bench
from .bench_history import history as _bench_history  # noqa: F401 (`rtm2 bench history`)
from .demo import demo
from .sidecar import sidecar

__all__ = ["main"]

_DEFAULT_DATA_DIR = Path("rtm2-data")
_F = TypeVar("_F", bound=Callable[..., Any])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version.__version__, "--version", prog_name="rtm2")
def cli() -> None:
    """rtm2: self-hosted real-time messaging with the Agora RTM 2 model."""


def _parse_app(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[AppConfig, ...]:
    try:
        return tuple(AppConfig.parse(v) for v in values)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.command()
@click.option("--host", default=None, help="Address to listen on.  [default: 127.0.0.1]")
@click.option(
    "--port", type=int, default=None, help="Port to listen on (0 = any free).  [default: 7001]"
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the server keeps its data: the development app and rtm2.db (metadata and "
    "locks).  "
    "[default: ./rtm2-data]",
)
@click.option(
    "--app",
    "apps",
    multiple=True,
    callback=_parse_app,
    metavar="APP_ID[:CERT[,CERT2]]",
    help="Serve this app (repeatable). With a certificate, logins need tokens signed by it; "
    "without one, the token must be empty or the app id. With no app at all, a development "
    "app is created once in the data dir and printed.",
)
@click.option(
    "--engine",
    default=None,
    metavar="memory|redis[s]://[USER:PASSWORD@]HOST:PORT/DB|redis-cluster://H:P,H:P,...",
    help="Where shared state lives: 'memory' (one node; metadata and locks in SQLite under "
    "--data-dir) or a Redis (or Redis Cluster) URL, so several nodes on it behave as one.  "
    "[default: memory]",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="PEM certificate chain: with --tls-key, serve wss:// (TLS) instead of ws://.",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="PEM private key of --tls-cert.",
)
@click.option(
    "--access-key",
    default=None,
    envvar="RTM2_ACCESS_KEY",
    metavar="KEY",
    help="Accept only WebSocket upgrades carrying KEY in the X-RTM2-Access-Key header (env "
    "RTM2_ACCESS_KEY, which keeps it out of the process list). The SDK's sidecar mode sets "
    "a fresh one per launch.",
)
@click.option(
    "--app-certificate",
    default=None,
    envvar="RTM2_APP_CERTIFICATE",
    metavar="CERT",
    help="Certificate for the --app apps given without one (env RTM2_APP_CERTIFICATE). "
    "The SDK's sidecar mode relies on this to check tokens when asked to.",
)
@click.option(
    "--http/--no-http",
    "http_enabled",
    default=None,
    envvar="RTM2_SERVE_HTTP",
    help="Serve the HTTP API for app backends (docs/API.md).  [default: on]",
)
@click.option("--http-host", default=None, help="HTTP API address.  [default: 127.0.0.1]")
@click.option(
    "--http-port", type=int, default=None, help="HTTP API port (0 = any free).  [default: 7002]"
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="TOML file with [server], [timers] and [[apps]] sections (see docs/CONFIG.md). "
    "Flags given on the command line win over the file.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="Server log verbosity (logs go to stderr).",
)
def serve(
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    apps: tuple[AppConfig, ...],
    engine: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    access_key: str | None,
    app_certificate: str | None,
    http_enabled: bool | None,
    http_host: str | None,
    http_port: int | None,
    config_file: Path | None,
    log_level: str,
) -> None:
    """Run an rtm2 server (embedded engine unless --engine says otherwise) until SIGTERM or
    Ctrl-C."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if app_certificate:
            apps = tuple(
                replace(a, certificates=(app_certificate,)) if not a.certificates else a
                for a in apps
            )
        # `rtm2 serve` has the HTTP API on by default; code that builds a Server has it off.
        base = ServerConfig(http=HttpConfig())
        config = load_config(config_file, base) if config_file else base
        config = replace(
            config,
            host=host if host is not None else config.host,
            port=port if port is not None else config.port,
            data_dir=data_dir if data_dir is not None else config.data_dir,
            engine=engine if engine is not None else config.engine,
            tls_cert=tls_cert if tls_cert is not None else config.tls_cert,
            tls_key=tls_key if tls_key is not None else config.tls_key,
            access_key=access_key if access_key is not None else config.access_key,
            http=replace(
                config.http,
                enabled=http_enabled if http_enabled is not None else config.http.enabled,
                host=http_host if http_host is not None else config.http.host,
                port=http_port if http_port is not None else config.http.port,
            ),
        ).with_apps(config.apps + apps)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    dev_app: AppConfig | None = None
    if not config.apps:
        dev_app, _ = ensure_dev_app(config.data_dir)
        config = config.with_apps((dev_app,))
    new_admin_key = ""
    if config.http.enabled and not config.http.admin_key:
        admin_key, created = ensure_admin_key(config.data_dir)
        new_admin_key = admin_key if created else ""
        config = replace(config, http=replace(config.http, admin_key=admin_key))
    try:
        server = Server(config)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        _run(_serve(server, dev_app, new_admin_key))
    except OSError as exc:
        if "(HTTP API)" in str(exc.strerror):
            raise click.ClickException(str(exc.strerror)) from None
        raise click.ClickException(f"cannot listen on {config.host}:{config.port}: {exc}") from None
    except EngineUnavailable as exc:
        raise click.ClickException(str(exc)) from None


async def _serve(server: Server, dev_app: AppConfig | None, new_admin_key: str) -> None:
    def ready(s: Server) -> None:
        _print_banner(s, dev_app, new_admin_key)
        # What start-up made (modules, config, tables) lives as long as the process: frozen,
        # the collector never walks it again, so a full collection is not a latency spike
        # proportional to everything imported (docs/PERFORMANCE.md).
        gc.collect()
        gc.freeze()

    await server.serve_forever(ready)


def _print_banner(server: Server, dev_app: AppConfig | None, new_admin_key: str) -> None:
    cfg = server.config
    if cfg.engine == "memory":
        engine = "embedded engine"
    else:
        from ..server.redisio import redact_url  # only deployments on Redis load its client

        engine = f"engine {redact_url(cfg.engine)}"
    lines = [f"rtm2 {_version.__version__} serving on {server.url} ({engine})"]
    compiled = _compiled.compiled_modules()
    if compiled:  # the optional build (`make compile`); pure Python says nothing
        lines.append(f"{len(compiled)} hot modules compiled (mypyc, {_compiled.BUILD_DIR})")
    elif _compiled.state.problem:
        lines.append(f"warning: {_compiled.state.problem}; running pure Python")
    if server.http is not None:
        lines.append(f"HTTP API on {server.http.url} (port {server.http.port})")
        lines.append(f"Web console on {server.http.url}/console/")
        if new_admin_key:  # shown this once; it stays in the data dir
            lines.append(f"  admin key    {new_admin_key} (kept in {cfg.data_dir / 'admin-key'})")
    lines.append("")
    if dev_app is not None:
        app_id, cert = dev_app.app_id, dev_app.certificates[0]
        lines += [
            f"Development app (kept in {cfg.data_dir / 'dev-app.json'}):",
            f"  app id       {app_id}",
            f"  certificate  {cert}",
            *(f"  API key      {k}" for k in dev_app.api_keys[:1] if server.http is not None),
            "",
            "Make a login token for user alice:",
            f"  rtm2 token rtm --app-id {app_id} --certificate {cert} --user alice",
            "",
        ]
    else:
        app_id = cfg.apps[0].app_id
        lines += [f"Apps: {', '.join(a.app_id for a in cfg.apps)}", ""]
    lines += [
        "Connect from Python:",
        f'  client = rtm2.RTMClient(rtm2.RTMConfig(app_id="{app_id}", user_id="alice"))',
        f'  client.set_parameters({{rtm2.PARAM_ENDPOINT: "{server.url}"}})',
        "  conn_events, token_events = await client.login(token)",
        "",
        "Stop with Ctrl-C (or SIGTERM).",
    ]
    click.echo("\n".join(lines))


def _run(coro: object) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every POSIX platform
        asyncio.run(coro)  # type: ignore[arg-type]
    else:
        uvloop.run(coro)  # type: ignore[arg-type]


# --- tokens ------------------------------------------------------------------------------------


@cli.group()
def token() -> None:
    """Print a token signed with an app's certificate."""


def _credentials(app_id: str | None, certificate: str | None, data_dir: Path) -> tuple[str, str]:
    if app_id and certificate:
        return app_id, certificate
    path = data_dir / "dev-app.json"
    if not path.exists():
        raise click.UsageError(
            "give --app-id and --certificate (or run 'rtm2 serve' once to create a dev app)"
        )
    app, _ = ensure_dev_app(data_dir)
    return app_id or app.app_id, certificate or app.certificates[0]


_app_options = [
    click.option("--app-id", default=None, help="App id [default: the dev app in --data-dir]."),
    click.option("--certificate", default=None, help="App certificate [default: the dev app's]."),
    click.option("--user", "user_id", required=True, help="User id the token is for."),
    click.option(
        "--expire",
        type=int,
        default=3600,
        show_default=True,
        help="Lifetime in seconds (max 86400).",
    ),
    click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=_DEFAULT_DATA_DIR,
        show_default=True,
        help="Where to find the dev app when --app-id/--certificate are not given.",
    ),
]


def _with_app_options(f: _F) -> _F:
    for option in reversed(_app_options):
        f = option(f)
    return f


@token.command("rtm")
@_with_app_options
def token_rtm(
    app_id: str | None, certificate: str | None, user_id: str, expire: int, data_dir: Path
) -> None:
    """A login token (RTM service, LOGIN privilege) for USER."""
    app_id, certificate = _credentials(app_id, certificate, data_dir)
    try:
        click.echo(tokens.build_rtm_token(app_id, certificate, user_id, expire))
    except RTMError as exc:
        raise click.UsageError(str(exc)) from None


@token.command("stream")
@click.option("--channel", required=True, help="Stream channel the token lets USER join.")
@click.option("--with-login", is_flag=True, help="Also grant login (one token for both).")
@_with_app_options
def token_stream(
    channel: str,
    with_login: bool,
    app_id: str | None,
    certificate: str | None,
    user_id: str,
    expire: int,
    data_dir: Path,
) -> None:
    """A stream-channel join token (RTC service, JOIN_CHANNEL privilege) for USER."""
    app_id, certificate = _credentials(app_id, certificate, data_dir)
    build = tokens.build_combined_token if with_login else tokens.build_stream_token
    try:
        click.echo(build(app_id, certificate, channel, user_id, expire))
    except RTMError as exc:
        raise click.UsageError(str(exc)) from None


cli.add_command(api)
cli.add_command(bench)
cli.add_command(demo)
cli.add_command(sidecar)


def main() -> None:
    cli(auto_envvar_prefix="RTM2")
