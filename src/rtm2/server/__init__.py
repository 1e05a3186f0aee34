"""The rtm2 server: ``Server(ServerConfig(...))``; run from the command line as ``rtm2 serve``."""

from .config import (
    AppConfig,
    ConfigError,
    HttpConfig,
    ServerConfig,
    Timers,
    ensure_admin_key,
    ensure_dev_app,
    load_config,
)
from .node import Server

__all__ = [
    "AppConfig",
    "ConfigError",
    "HttpConfig",
    "Server",
    "ServerConfig",
    "Timers",
    "ensure_admin_key",
    "ensure_dev_app",
    "load_config",
]
