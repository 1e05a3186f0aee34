"""The HTTP API for the apps' backends (docs/API.md): Litestar served by uvicorn in the
server's own event loop, so its handlers call the node's services directly."""

from .app import ApiBackend, make_app
from .listener import HttpListener

__all__ = ["ApiBackend", "HttpListener", "make_app"]
