"""The client's configuration (``RTMConfig``) and its parameters (``set_parameters``)."""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from typing import Any

from ..errors import ErrorCode, RTMError

__all__ = [
    "DEFAULT_SIDECAR_PORT",
    "PARAM_ENDPOINT",
    "PARAM_SIDECAR_CERTIFICATE",
    "PARAM_SIDECAR_PATH",
    "PARAM_SIDECAR_PORT",
    "RTMConfig",
    "checked_parameters",
    "client_ssl_context",
]

PARAM_ENDPOINT = "endpoint"  # a ws:// or wss:// URL, or a list of them (tried in turn)
PARAM_SIDECAR_PORT = "sidecar_port"  # sidecar mode (no endpoint): its port, default 7001
PARAM_SIDECAR_PATH = "sidecar_path"  # the rtm2 executable (or its folder) to start
PARAM_SIDECAR_CERTIFICATE = "sidecar_certificate"  # makes the sidecar check tokens
# The Go SDK's names, accepted as they are.
_ALIASES = {
    "golang_sidecar_endpoint": PARAM_ENDPOINT,
    "golang_sidecar_port": PARAM_SIDECAR_PORT,
    "golang_sidecar_path": PARAM_SIDECAR_PATH,
}
DEFAULT_SIDECAR_PORT = 7001


@dataclass(frozen=True, slots=True)
class RTMConfig:
    """Client configuration.

    Attributes:
        app_id: the app to log into.
        user_id: this client's user id (1-64 characters, RTM 2 rules).
        request_timeout: seconds any request may take before it fails with a timeout code.
        presence_timeout: seconds the server keeps a lost user present (clamped to 5-300).
        log_file: a file the SDK appends its log to, if given.
        logger: a stdlib logger to log to instead of ``rtm2.client``.
        auto_reconnect: when the connection is lost, reconnect and resume by itself
            (RECONNECTING, then CONNECTED / REJOIN_SUCCESS) instead of ending in FAILED.
        reconnect_min_delay, reconnect_max_delay: the first and the longest wait between
            reconnection attempts (seconds; exponential with jitter in between).
        reconnect_timeout: give up (FAILED) after trying this long; 0 = never give up.
        ssl_context: the TLS settings for ``wss://`` endpoints. Without it (and without
            ``tls_ca_file``) certificates are verified against the system's trusted CAs.
        tls_ca_file: a PEM file of CA certificates to trust instead of the system's, for a
            server whose certificate a private CA signed. Ignored when ``ssl_context`` is given.
    """

    app_id: str
    user_id: str
    request_timeout: float = 10.0
    presence_timeout: int = 300
    log_file: str | None = None
    logger: logging.Logger | None = None
    auto_reconnect: bool = True
    reconnect_min_delay: float = 0.5
    reconnect_max_delay: float = 30.0
    reconnect_timeout: float = 0.0
    ssl_context: ssl.SSLContext | None = None
    tls_ca_file: str | None = None

    def __post_init__(self) -> None:
        if self.request_timeout <= 0:
            raise RTMError(ErrorCode.INVALID_PARAMETER, "request_timeout must be > 0")
        if not 0 < self.reconnect_min_delay <= self.reconnect_max_delay:
            raise RTMError(ErrorCode.INVALID_PARAMETER, "need 0 < reconnect_min_delay <= max")


def client_ssl_context(config: RTMConfig) -> ssl.SSLContext:
    """The TLS context for ``wss://`` endpoints: the given one, one trusting ``tls_ca_file``,
    or the default one (system CAs, host name checked).

    Raises:
        RTMError: INVALID_PARAMETER when ``tls_ca_file`` cannot be read as PEM certificates.
    """
    if config.ssl_context is not None:
        return config.ssl_context
    try:
        return ssl.create_default_context(cafile=config.tls_ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise RTMError(
            ErrorCode.INVALID_PARAMETER, f"cannot read tls_ca_file {config.tls_ca_file}: {exc}"
        ) from None


def checked_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` under rtm2's own names, with Go's "host:port" endpoint made a URL.

    Raises:
        RTMError: INVALID_PARAMETER for a bad endpoint (list) or sidecar port.
    """
    normalised = {_ALIASES.get(k, k): v for k, v in params.items()}
    endpoint = normalised.get(PARAM_ENDPOINT)
    if isinstance(endpoint, str) and endpoint and "://" not in endpoint:
        endpoint = normalised[PARAM_ENDPOINT] = f"ws://{endpoint}"  # Go's "host:port"
    if endpoint is not None:
        urls = [endpoint] if isinstance(endpoint, str) else endpoint
        if (
            not isinstance(urls, list | tuple)
            or not urls
            or not all(isinstance(u, str) and u.startswith(("ws://", "wss://")) for u in urls)
        ):
            raise RTMError(ErrorCode.INVALID_PARAMETER, f"bad endpoint {endpoint!r}")
    port = normalised.get(PARAM_SIDECAR_PORT)
    if port is not None and (not isinstance(port, int) or not 0 < port < 65536):
        raise RTMError(ErrorCode.INVALID_PARAMETER, f"bad sidecar port {port!r}")
    return normalised
