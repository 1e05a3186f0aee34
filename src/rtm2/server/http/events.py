"""The API's pull queues of events (docs/WEBHOOKS.md, "Pull queues").

An app with ``event_queue_size`` keeps two queues: its users' events and its channels' events,
the same events its webhooks get. A GET takes the oldest events and deletes them (pull and
delete, as Agora Signaling's ``/rtm/vendor/user_events`` and ``channel_events``, whose JSON
shapes the ``/dev/v2/project/{app_id}/rtm/vendor/...`` routes answer with, so a backend that
pulled from Agora changes only its base URL and its key).
"""

import secrets
from collections.abc import Callable
from typing import Annotated, Any, Protocol

import msgspec
from litestar import Request, get
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, QueryParameter

from ...errors import ErrorCode, RTMError
from ..config import AppConfig

__all__ = ["EventsBackend", "events_routes"]

# At most this many events per pull, as Agora's queues answer.
PULL_LIMIT = 1000


class EventsBackend(Protocol):
    """What these routes ask of the node."""

    async def pull_events(self, app: AppConfig, queue: str, limit: int) -> list[dict[str, Any]]:
        """Take up to ``limit`` events of the app's queue ``users`` or ``channels``; raise
        RTMError SERVICE_NOT_SUPPORTED when the app keeps no queues."""


class Event(msgspec.Struct):
    """An event, as webhooks get it (docs/WEBHOOKS.md has every type's ``data``)."""

    id: str
    type: str
    app_id: str
    ts_ms: int
    node: str
    data: dict[str, Any]


class Events(msgspec.Struct):
    events: list[Event]


class AgoraUserEvent(msgspec.Struct):
    user_id: str
    type: str  # "Login" or "Logout"
    ts: int  # Unix ms


class AgoraUserEvents(msgspec.Struct):
    result: str
    request_id: str
    events: list[AgoraUserEvent]


class AgoraChannelEvent(msgspec.Struct):
    channel_id: str
    user_id: str
    type: str  # "Join" or "Leave"
    ts: int  # Unix ms


class AgoraChannelEvents(msgspec.Struct):
    result: str
    request_id: str
    events: list[AgoraChannelEvent]


_LOGIN_TYPES = {"user.login": "Login", "user.logout": "Logout", "user.timeout": "Logout"}
_LOGIN_TYPES["user.kicked"] = "Logout"
_JOIN_TYPES = {"channel.join": "Join", "channel.leave": "Leave", "channel.timeout": "Leave"}

Limit = Annotated[
    int, QueryParameter(ge=1, le=PULL_LIMIT, description=f"At most this many (1..{PULL_LIMIT})")
]


def events_routes(
    authorized: Callable[[Request[Any, Any, Any], str], AppConfig],
    backend: EventsBackend,
    security: list[dict[str, list[str]]],
    errors: dict[int, ResponseSpec],
) -> list[HTTPRouteHandler]:
    async def pull(request: Request[Any, Any, Any], app_id: str, queue: str, limit: int) -> Any:
        app = authorized(request, app_id)
        if not app.event_queue_size:
            raise RTMError(
                ErrorCode.SERVICE_NOT_SUPPORTED,
                "the app keeps no event queues: set its event_queue_size",
            )
        return await backend.pull_events(app, queue, limit)

    description = (
        "The oldest events first; they are deleted as they are returned (at least once: "
        "events pulled by a request that fails are gone). 400 with code 10022 "
        "(SERVICE_NOT_SUPPORTED) when the app has no `event_queue_size`."
    )

    @get(
        "/v1/apps/{app_id:str}/events/users",
        summary="Take the app's user events (login, logout, disconnected, timeout, kicked)",
        description=description,
        tags=["events"],
        security=security,
        responses=errors,
    )
    async def user_events(
        request: Request[Any, Any, Any], app_id: FromPath[str], limit: Limit = PULL_LIMIT
    ) -> Events:
        return msgspec.convert({"events": await pull(request, app_id, "users", limit)}, Events)

    @get(
        "/v1/apps/{app_id:str}/events/channels",
        summary="Take the app's channel events (join, leave, timeout)",
        description=description,
        tags=["events"],
        security=security,
        responses=errors,
    )
    async def channel_events(
        request: Request[Any, Any, Any], app_id: FromPath[str], limit: Limit = PULL_LIMIT
    ) -> Events:
        return msgspec.convert({"events": await pull(request, app_id, "channels", limit)}, Events)

    @get(
        "/dev/v2/project/{app_id:str}/rtm/vendor/user_events",
        summary="Agora Signaling's user events: Login and Logout (pull and delete)",
        description="The users queue in the JSON shape of Agora Signaling's REST API. A "
        "session that ended (logout, timeout, kick) is a Logout; a lost connection that the "
        "session outlived is not reported here.",
        tags=["events"],
        security=security,
        responses=errors,
    )
    async def agora_user_events(
        request: Request[Any, Any, Any], app_id: FromPath[str]
    ) -> AgoraUserEvents:
        events = await pull(request, app_id, "users", PULL_LIMIT)
        return AgoraUserEvents(
            "success",
            _request_id(events),
            [
                AgoraUserEvent(e["data"]["user_id"], _LOGIN_TYPES[e["type"]], e["ts_ms"])
                for e in events
                if e["type"] in _LOGIN_TYPES
            ],
        )

    @get(
        "/dev/v2/project/{app_id:str}/rtm/vendor/channel_events",
        summary="Agora Signaling's channel events: Join and Leave (pull and delete)",
        description="The channels queue in the JSON shape of Agora Signaling's REST API "
        "(a timeout is a Leave). Stream channels' events are included too.",
        tags=["events"],
        security=security,
        responses=errors,
    )
    async def agora_channel_events(
        request: Request[Any, Any, Any], app_id: FromPath[str]
    ) -> AgoraChannelEvents:
        events = await pull(request, app_id, "channels", PULL_LIMIT)
        return AgoraChannelEvents(
            "success",
            _request_id(events),
            [
                AgoraChannelEvent(
                    e["data"]["channel"], e["data"]["user_id"], _JOIN_TYPES[e["type"]], e["ts_ms"]
                )
                for e in events
                if e["type"] in _JOIN_TYPES
            ],
        )

    return [user_events, channel_events, agora_user_events, agora_channel_events]


def _request_id(events: list[dict[str, Any]]) -> str:
    return secrets.token_hex(8)
