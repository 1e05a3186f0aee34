"""The operator's routes (issue 14, slice D): an app's live channels, page by page, and
``/v1/info`` about the node and its apps.

Kept apart from ``app.py``: ``make_app`` passes its key checks in, so this module imports
nothing from it (``app.py``'s ``ApiBackend`` names the answers defined here).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Protocol

import msgspec
from litestar import Request, get
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, FromQuery, QueryParameter

from ...errors import ErrorCode, RTMError
from ..config import AppConfig

__all__ = [
    "AppInfo",
    "ChannelCount",
    "ChannelPage",
    "Info",
    "ListingBackend",
    "NodeAppInfo",
    "NodeInfo",
    "listing_routes",
    "page_of",
]

CHANNEL_TYPES = ("message", "stream")
MAX_LIMIT = 1000


class ChannelCount(msgspec.Struct):
    channel: str
    type: str  # "message" or "stream"
    users: int  # present users, quiet subscribers included, on every node


class ChannelPage(msgspec.Struct):
    channels: list[ChannelCount]
    next_cursor: str  # pass as ?cursor= for the next page; "" on the last page


class NodeAppInfo(msgspec.Struct):
    app_id: str
    users_online: int  # attached sessions of the app on the node
    messages_per_second: float = 0.0  # messages of the app published on the node
    delivered_per_second: float = 0.0  # the app's messages queued for the node's recipients


class NodeInfo(msgspec.Struct):
    """A node, as it describes itself (every sweep, into the engine: the defaults let a node
    read what an older or newer node wrote)."""

    id: str
    address: str  # the WebSocket URL clients connect to
    started: float  # Unix time
    connections: int  # attached sessions
    http_address: str = ""  # the HTTP API's URL; "" when the node serves none
    version: str = ""
    # Messages published on the node (channels and peers) per second.
    messages_per_second: float = 0.0
    apps: list[NodeAppInfo] = msgspec.field(default_factory=list)  # apps with users or traffic
    # Messages queued for the node's recipients per second (a fan-out to N counts N).
    delivered_per_second: float = 0.0
    # The hot modules the node runs compiled by the optional mypyc build (`make compile`).
    compiled: list[str] = msgspec.field(default_factory=list)


class AppInfo(msgspec.Struct):
    app_id: str
    users_online: int  # attached sessions of the app, on every live node
    channels: int  # live channels of the app, on every node
    # Messages of the app published per second, on every live node (``NodeInfo``'s rates).
    messages_per_second: float = 0.0
    # The app's messages delivered per second, on every live node (a fan-out to N counts N).
    delivered_per_second: float = 0.0


class Info(msgspec.Struct):
    version: str
    node: NodeInfo  # the node that answers (also in ``nodes``)
    # Every live node, this one included, by id. Other nodes' figures are as of their last
    # sweep; this node's rates are since the previous /v1/info call (or the start).
    nodes: list[NodeInfo]
    apps: list[AppInfo]
    # Messages published per second (channels and peers), on every live node.
    messages_per_second: float


class ListingBackend(Protocol):
    async def channels(self, app: AppConfig, channel_type: str, prefix: str) -> dict[str, int]:
        """Every live channel of ``app`` of that type whose name starts with ``prefix``."""

    async def info(self) -> Info: ...


def _cursor(name: str, kind: str) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode([name, kind])).decode()


def _after(cursor: str) -> tuple[str, str]:
    try:
        name, kind = msgspec.json.decode(base64.urlsafe_b64decode(cursor.encode()))
        if isinstance(name, str) and isinstance(kind, str):
            return name, kind
    except (binascii.Error, msgspec.DecodeError, ValueError, TypeError):
        pass
    raise RTMError(ErrorCode.INVALID_PARAMETER, "invalid cursor")


def page_of(found: Mapping[tuple[str, str], int], cursor: str, limit: int) -> ChannelPage:
    """The ``limit`` channels after ``cursor`` in (name, type) order. The cursor holds the
    last name given, not a position: channels coming or going between pages shift nothing,
    so a channel live throughout is listed exactly once."""
    keys = sorted(found)
    if cursor:
        after = _after(cursor)
        keys = [k for k in keys if k > after]
    page = keys[:limit]
    more = len(keys) > limit
    return ChannelPage(
        [ChannelCount(name, kind, found[name, kind]) for name, kind in page],
        _cursor(*page[-1]) if more else "",
    )


def listing_routes(
    authorized: Callable[[Request[Any, Any, Any], str], AppConfig],
    admin: Callable[[Request[Any, Any, Any]], None],
    backend: ListingBackend,
    security: list[dict[str, list[str]]],
    errors: Callable[..., dict[int, ResponseSpec]],
) -> list[HTTPRouteHandler]:
    @get(
        "/v1/apps/{app_id:str}/channels",
        summary="The app's live channels with their user counts, on every node",
        description="Ordered by name (then type); `limit` a page (at most 1000), then "
        "`cursor` from `next_cursor` for the next page. `type`: `message` or `stream` "
        "(both when absent); `prefix`: names starting with it.",
        tags=["channels"],
        security=security,
        responses=errors(400, 401, 403, 404),
    )
    async def channels(
        request: Request[Any, Any, Any],
        app_id: FromPath[str],
        type: FromQuery[str] = "",
        prefix: FromQuery[str] = "",
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_LIMIT)] = 100,
        cursor: FromQuery[str] = "",
    ) -> ChannelPage:
        app = authorized(request, app_id)
        if type and type not in CHANNEL_TYPES:
            raise RTMError(ErrorCode.INVALID_CHANNEL_TYPE, "type: message or stream")
        found: dict[tuple[str, str], int] = {}
        for kind in (type,) if type else CHANNEL_TYPES:
            for name, users in (await backend.channels(app, kind, prefix)).items():
                found[name, kind] = users
        return page_of(found, cursor, limit)

    @get(
        "/v1/info",
        summary="Every live node and each app's figures, on every node (admin key)",
        tags=["health"],
        security=security,
        responses=errors(401, 403),
    )
    async def info(request: Request[Any, Any, Any]) -> Info:
        admin(request)
        return await backend.info()

    return [channels, info]
