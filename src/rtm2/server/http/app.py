"""The API's routes (docs/API.md): Litestar builds the OpenAPI 3.1 document from the types.

The app gets the narrow roles it uses: the apps, their keys, a publisher (the message service)
and a directory of the users (``ApiBackend``), never the whole Hub.
"""

import base64
import binascii
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import msgspec
from litestar import Litestar, Request, Response, delete, get, post
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_401_UNAUTHORIZED,
    HTTP_403_FORBIDDEN,
    HTTP_404_NOT_FOUND,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from ..._version import __version__
from ...errors import ErrorCode, RTMError
from ...protocol.names import is_valid_user_id
from ...types import MessageType
from ..config import AppConfig
from ..engines.base import EngineUnavailable
from .events import EventsBackend, events_routes
from .history import HistoryBackend, history_routes
from .keys import Keyring
from .listing import ListingBackend, listing_routes
from .live import live_routes
from .storage import StorageBackend, storage_routes

if TYPE_CHECKING:
    from .console import Console

__all__ = [
    "ApiBackend",
    "ApiError",
    "BanInfo",
    "Bans",
    "ChannelRef",
    "Presence",
    "PresentUser",
    "Unbanned",
    "UserInfo",
    "make_app",
]

API_KEY_HEADER = "X-API-Key"

log = logging.getLogger("rtm2.http")

# Either header carries an API key (OpenAPI: one of the two schemes).
_KEYS: list[dict[str, list[str]]] = [{"apiKey": []}, {"bearer": []}]


class ApiBackend(StorageBackend, ListingBackend, HistoryBackend, EventsBackend, Protocol):
    """What the API asks of the node: it publishes, delivers and knows whether it is ready;
    metadata and locks as ``StorageBackend``, listings as ``ListingBackend``, stored messages
    as ``HistoryBackend``, pull queues as ``EventsBackend``."""

    async def publish_stored_from_server(
        self,
        app: AppConfig,
        channel: str,
        payload: bytes,
        message_type: int,
        custom_type: str,
        publisher: str,
    ) -> None: ...

    async def send_stored_from_server(
        self,
        app: AppConfig,
        user: str,
        payload: bytes,
        message_type: int,
        custom_type: str,
        publisher: str,
    ) -> None: ...

    def publish_from_server(
        self,
        app: AppConfig,
        channel: str,
        payload: bytes,
        message_type: int,
        custom_type: str,
        publisher: str,
    ) -> None: ...

    async def send_from_server(
        self,
        app: AppConfig,
        user: str,
        payload: bytes,
        message_type: int,
        custom_type: str,
        publisher: str,
    ) -> None: ...

    async def ready(self) -> bool:
        """Whether the engine answers."""

    async def kick(self, app: AppConfig, user: str, reason: str, ban_seconds: float) -> bool:
        """End the user's session wherever it is; whether there was one."""

    async def unban(self, app: AppConfig, user: str) -> bool:
        """Lift the user's ban on every node; whether there was one."""

    async def bans(self, app: AppConfig, limit: int) -> "Bans":
        """The app's current bans, soonest end first, at most ``limit``."""

    async def user_info(self, app: AppConfig, user: str) -> "UserInfo": ...

    async def who_now(
        self, app: AppConfig, channel_type: str, channel: str, include_state: bool, page: str
    ) -> "Presence": ...

    def metrics(self) -> tuple[bytes, str]:
        """This node's metrics in the Prometheus text format, and its content type."""


# --- bodies and answers -------------------------------------------------------------------


class Error(msgspec.Struct):
    """Every error: an RTM 2 error code (docs/API.md) and why."""

    code: int
    reason: str


class Health(msgspec.Struct):
    status: str


class MessageBody(msgspec.Struct, forbid_unknown_fields=True):
    """A message: text in ``message``, or binary as base64 in ``message_b64`` (one of them)."""

    message: str | None = None
    message_b64: str | None = None
    custom_type: str = ""
    publisher: str = "server"  # the publisher subscribers see (a valid user id)
    store_in_history: bool = False  # also keep it in history (docs/HISTORY.md)


class Sent(msgspec.Struct):
    ok: bool


class KickBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=256)] = ""  # what the client is told
    # Logins of the user are refused this long (0: none), on every node, through restarts.
    ban_seconds: Annotated[float, msgspec.Meta(ge=0, le=30 * 86400)] = 0


class Kicked(msgspec.Struct):
    kicked: bool  # whether a session was found and ended (a ban applies either way)


class Unbanned(msgspec.Struct):
    unbanned: bool  # whether the user was banned


class BanInfo(msgspec.Struct):
    user_id: str
    until: float  # Unix time the ban ends
    reason: str


class Bans(msgspec.Struct):
    bans: list[BanInfo]  # soonest end first


class ChannelRef(msgspec.Struct):
    channel: str
    type: str  # "message" or "stream"


class UserInfo(msgspec.Struct):
    online: bool
    since: float | None  # Unix time of the login (null when offline)
    node: str | None  # the id of the node that holds the session (null when offline)
    channels: list[ChannelRef]  # where the user is present


class PresentUser(msgspec.Struct):
    user_id: str
    state: dict[str, str]


class Presence(msgspec.Struct):
    users: list[PresentUser]
    total: int
    next_page: str  # pass as ?page= for the next 100; "" on the last page


class ApiError(Exception):
    def __init__(self, status: int, code: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason = status, code, reason


# --- errors as JSON -----------------------------------------------------------------------


def _status_of(code: int) -> int:
    if code == ErrorCode.CHANNEL_RECEIVER_OFFLINE:
        return HTTP_404_NOT_FOUND
    if code == ErrorCode.INVALID_APP_ID:
        return HTTP_404_NOT_FOUND
    if code == ErrorCode.CHANNEL_RECEIVER_OFFLINE_BUT_STORE_SUCCEEDED:
        return HTTP_404_NOT_FOUND  # offline, as 11033, but the message is in history
    if "TOO_FREQUENT" in ErrorCode(code).name:
        return HTTP_429_TOO_MANY_REQUESTS
    return HTTP_400_BAD_REQUEST


def _error(status: int, code: int, reason: str) -> Response[Error]:
    return Response(Error(int(code), reason), status_code=status)


def _on_api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[Error]:
    return _error(exc.status, exc.code, exc.reason)


def _on_rtm_error(_: Request[Any, Any, Any], exc: RTMError) -> Response[Error]:
    return _error(_status_of(exc.code), exc.code, exc.reason)


def _on_engine_down(_: Request[Any, Any, Any], exc: EngineUnavailable) -> Response[Error]:
    return _error(HTTP_503_SERVICE_UNAVAILABLE, ErrorCode.INIT_SERVICE_FAILED, str(exc))


def _on_bug(request: Request[Any, Any, Any], exc: Exception) -> Response[Error]:
    # The path only: headers hold the key, and bodies what the app's users wrote.
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _error(500, ErrorCode.INIT_SERVICE_FAILED, "internal error (see the server log)")


def _on_http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Error]:
    reason = exc.detail
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list) and exc.extra:
        reason = f"{reason}: {exc.extra[0]}"
    return _error(exc.status_code, ErrorCode.INVALID_PARAMETER, str(reason))


def _errors(*statuses: int) -> dict[int, ResponseSpec]:
    descriptions = {
        400: "Invalid request: code says what (docs/API.md)",
        401: "No API key, or an unknown one",
        403: "The key is another app's",
        404: "Unknown app, or (peer messages) the user is offline: code 11033",
        429: "Over a rate limit",
        503: "The engine does not answer",
    }
    return {s: ResponseSpec(Error, description=descriptions[s]) for s in statuses}


# --- the app ------------------------------------------------------------------------------


def _payload(body: MessageBody) -> tuple[bytes, int]:
    if (body.message is None) == (body.message_b64 is None):
        raise ApiError(
            HTTP_400_BAD_REQUEST, ErrorCode.INVALID_PARAMETER, "give message or message_b64"
        )
    if body.message is not None:
        return body.message.encode(), MessageType.STRING
    try:
        return base64.b64decode(body.message_b64 or "", validate=True), MessageType.BINARY
    except binascii.Error:
        raise ApiError(
            HTTP_400_BAD_REQUEST, ErrorCode.INVALID_PARAMETER, "message_b64 is not base64"
        ) from None


def _publisher(body: MessageBody) -> str:
    if not is_valid_user_id(body.publisher):
        raise RTMError(ErrorCode.INVALID_USER_ID, f"invalid publisher {body.publisher!r}")
    return body.publisher


def _presented_key(request: Request[Any, Any, Any]) -> str:
    """The key in X-API-Key, or else in ``Authorization: Bearer`` (as issue 14 and most HTTP
    clients' auth helpers put it)."""
    key = request.headers.get(API_KEY_HEADER, "")
    if key:
        return key
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _user(user_id: str) -> None:
    if not is_valid_user_id(user_id):
        raise RTMError(ErrorCode.INVALID_USER_ID, f"invalid user id {user_id!r}")


def _structs(base: type[msgspec.Struct]) -> Iterator[type[msgspec.Struct]]:
    for sub in base.__subclasses__():
        yield sub
        yield from _structs(sub)


def _strict_bodies(document: dict[str, Any]) -> dict[str, Any]:
    """Say in the document what the server does: a body with a field it does not know is refused
    (400), so clients learn of a typo instead of having a field ignored. Litestar leaves
    ``additionalProperties`` out for msgspec's ``forbid_unknown_fields``."""
    schemas = document.get("components", {}).get("schemas", {})
    for struct in _structs(msgspec.Struct):
        if struct.__struct_config__.forbid_unknown_fields and struct.__name__ in schemas:
            schemas[struct.__name__]["additionalProperties"] = False
    return document


def make_app(
    apps: Mapping[str, AppConfig],
    keyring: Keyring,
    backend: ApiBackend,
    console: "Console | None" = None,  # the web console and its live routes (issue 18)
) -> Litestar:
    def owner_of(request: Request[Any, Any, Any]) -> str | None:
        """What the request's key opens ('*': all), or its console session cookie; None for
        neither. A key given wins over a cookie."""
        key = _presented_key(request)
        if key:
            return keyring.app_of(key)
        if console is None:
            return None
        owner, csrf_ok = console.owner(request)
        if owner is not None and not csrf_ok:
            raise ApiError(
                HTTP_403_FORBIDDEN, ErrorCode.LOGIN_NOT_AUTHORIZED, "CSRF token missing or wrong"
            )
        return owner

    def authorized(request: Request[Any, Any, Any], app_id: str) -> AppConfig:
        key = _presented_key(request)
        owner = owner_of(request)
        if not key and owner is None:
            raise ApiError(
                HTTP_401_UNAUTHORIZED,
                ErrorCode.INVALID_TOKEN,
                f"no key: give {API_KEY_HEADER} or Authorization: Bearer",
            )
        if owner is None:
            raise ApiError(HTTP_401_UNAUTHORIZED, ErrorCode.INVALID_TOKEN, "unknown API key")
        if owner not in ("*", app_id):
            raise ApiError(
                HTTP_403_FORBIDDEN, ErrorCode.LOGIN_NOT_AUTHORIZED, "the key is another app's"
            )
        app = apps.get(app_id)
        if app is None:
            raise ApiError(HTTP_404_NOT_FOUND, ErrorCode.INVALID_APP_ID, "unknown app id")
        return app

    def admin(request: Request[Any, Any, Any]) -> None:
        owner = owner_of(request)
        if owner is None:
            raise ApiError(HTTP_401_UNAUTHORIZED, ErrorCode.INVALID_TOKEN, "admin key needed")
        if owner != "*":
            raise ApiError(
                HTTP_403_FORBIDDEN, ErrorCode.LOGIN_NOT_AUTHORIZED, "an app's key: admin key needed"
            )

    @get(
        "/metrics",
        summary="This node's metrics, in the Prometheus text format (admin key)",
        tags=["health"],
        security=_KEYS,
        responses=_errors(401, 403),
        media_type="text/plain",
    )
    async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
        admin(request)
        body, content_type = backend.metrics()
        return Response(body, media_type=content_type)

    @get("/health", summary="The process is up", tags=["health"])
    async def health() -> Health:
        return Health("ok")

    @get(
        "/ready",
        summary="The node can serve: its engine answers",
        tags=["health"],
        responses=_errors(503),
    )
    async def ready() -> Health:
        if not await backend.ready():
            raise ApiError(
                HTTP_503_SERVICE_UNAVAILABLE,
                ErrorCode.INIT_SERVICE_FAILED,
                "the engine does not answer",
            )
        return Health("ok")

    @get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request[Any, Any, Any]) -> dict[str, Any]:
        return _strict_bodies(request.app.openapi_schema.to_schema())

    @post(
        "/v1/apps/{app_id:str}/channels/{channel:str}/messages",
        status_code=200,
        summary="Publish to a message channel",
        description="Every subscriber on every node gets an ordinary message from `publisher`.",
        tags=["messages"],
        security=_KEYS,
        responses=_errors(400, 401, 403, 404),
    )
    async def publish(
        request: Request[Any, Any, Any],
        app_id: FromPath[str],
        channel: FromPath[str],
        data: JSONBody[MessageBody],
    ) -> Sent:
        app = authorized(request, app_id)
        payload, message_type = _payload(data)
        if data.store_in_history:
            await backend.publish_stored_from_server(
                app, channel, payload, message_type, data.custom_type, _publisher(data)
            )
            return Sent(True)
        backend.publish_from_server(
            app, channel, payload, message_type, data.custom_type, _publisher(data)
        )
        return Sent(True)

    @post(
        "/v1/apps/{app_id:str}/users/{user_id:str}/messages",
        status_code=200,
        summary="Send a peer message to a user",
        description="200 once delivered to the user's session; 404 with code 11033 "
        "(CHANNEL_RECEIVER_OFFLINE) when the user is not online.",
        tags=["messages"],
        security=_KEYS,
        responses=_errors(400, 401, 403, 404),
    )
    async def send(
        request: Request[Any, Any, Any],
        app_id: FromPath[str],
        user_id: FromPath[str],
        data: JSONBody[MessageBody],
    ) -> Sent:
        app = authorized(request, app_id)
        payload, message_type = _payload(data)
        if data.store_in_history:
            await backend.send_stored_from_server(
                app, user_id, payload, message_type, data.custom_type, _publisher(data)
            )
            return Sent(True)
        await backend.send_from_server(
            app, user_id, payload, message_type, data.custom_type, _publisher(data)
        )
        return Sent(True)

    @post(
        "/v1/apps/{app_id:str}/users/{user_id:str}/kick",
        status_code=200,
        summary="End a user's session",
        description="The client sees FAILED with reason BANNED_BY_SERVER (3); with "
        "`ban_seconds`, its logins on every node fail with code 10012 (LOGIN_REJECTED) "
        "until the ban ends (a restart does not end it) or `DELETE .../ban` lifts it. "
        "The answer comes once the ban is stored.",
        tags=["users"],
        security=_KEYS,
        responses=_errors(400, 401, 403, 404, 503),
    )
    async def kick(
        request: Request[Any, Any, Any],
        app_id: FromPath[str],
        user_id: FromPath[str],
        data: JSONBody[KickBody],
    ) -> Kicked:
        app = authorized(request, app_id)
        _user(user_id)
        return Kicked(await backend.kick(app, user_id, data.reason, data.ban_seconds))

    @delete(
        "/v1/apps/{app_id:str}/users/{user_id:str}/ban",
        status_code=200,
        summary="Lift a user's ban",
        description="The user may log in again at once, on every node. 200 whether or not "
        "the user was banned: `unbanned` says which.",
        tags=["users"],
        security=_KEYS,
        responses=_errors(400, 401, 403, 404, 503),
    )
    async def unban(
        request: Request[Any, Any, Any], app_id: FromPath[str], user_id: FromPath[str]
    ) -> Unbanned:
        app = authorized(request, app_id)
        _user(user_id)
        return Unbanned(await backend.unban(app, user_id))

    @get(
        "/v1/apps/{app_id:str}/bans",
        summary="The app's banned users",
        description="Soonest end first, at most `limit` (1-1000). On Redis a SCAN of the "
        "app's ban keys: for operators, not for a hot path.",
        tags=["users"],
        security=_KEYS,
        responses=_errors(400, 401, 403, 404, 503),
    )
    async def bans(
        request: Request[Any, Any, Any],
        app_id: FromPath[str],
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> Bans:
        app = authorized(request, app_id)
        return await backend.bans(app, limit)

    @get(
        "/v1/apps/{app_id:str}/users/{user_id:str}",
        summary="Whether a user is online, and where it is present",
        tags=["users"],
        security=_KEYS,
        responses=_errors(400, 401, 403, 404),
    )
    async def user(
        request: Request[Any, Any, Any], app_id: FromPath[str], user_id: FromPath[str]
    ) -> UserInfo:
        app = authorized(request, app_id)
        _user(user_id)
        return await backend.user_info(app, user_id)

    @get(
        "/v1/apps/{app_id:str}/channels/{channel_type:str}/{channel:str}/presence",
        summary="Who is in a channel (as the SDK's who_now)",
        description="`channel_type` is `message` or `stream`; 100 users a page.",
        tags=["presence"],
        security=_KEYS,
        responses=_errors(400, 401, 403, 404),
    )
    async def presence(
        request: Request[Any, Any, Any],
        app_id: FromPath[str],
        channel_type: FromPath[str],
        channel: FromPath[str],
        include_state: FromQuery[bool] = False,
        page: FromQuery[str] = "",
    ) -> Presence:
        app = authorized(request, app_id)
        if channel_type not in ("message", "stream"):
            raise RTMError(ErrorCode.INVALID_CHANNEL_TYPE, "channel type: message or stream")
        return await backend.who_now(app, channel_type, channel, include_state, page)

    storage = storage_routes(authorized, backend, _KEYS, _errors(400, 401, 403, 404))
    listing = listing_routes(authorized, admin, backend, _KEYS, _errors)
    history = history_routes(
        authorized, backend, _KEYS, _errors(400, 401, 403, 404), _status_of, apps
    )
    listing += events_routes(authorized, backend, _KEYS, _errors(400, 401, 403, 404))
    app = Litestar(
        [
            health,
            ready,
            openapi,
            metrics,
            publish,
            send,
            kick,
            unban,
            bans,
            user,
            presence,
            *storage,
            *listing,
            *history,
        ],
        exception_handlers={
            ApiError: _on_api_error,
            RTMError: _on_rtm_error,
            EngineUnavailable: _on_engine_down,
            HTTPException: _on_http_error,
            Exception: _on_bug,
        },
        openapi_config=OpenAPIConfig(
            title="rtm2 HTTP API",
            version=__version__,
            description="Publish, send and manage users from an app's backend (docs/API.md).",
            components=Components(
                security_schemes={
                    "apiKey": SecurityScheme(
                        type="apiKey", name=API_KEY_HEADER, security_scheme_in="header"
                    ),
                    "bearer": SecurityScheme(type="http", scheme="bearer"),
                }
            ),
            # JSON only (also at /schema/openapi.json): no HTML pages that load scripts.
            render_plugins=[JsonRenderPlugin()],
        ),
        # The largest message (32 KiB by default) as base64 in JSON fits with room to spare.
        request_max_body_size=256 * 1024,
        # The CLI configures logging; Litestar's own would reformat every rtm2 log line.
        logging_config=None,
        debug=False,
    )
    if console is not None:
        for handler in [
            *live_routes(authorized, admin, console.live, _KEYS, _errors),
            *console.routes(apps, keyring),
        ]:
            app.register(handler)
    return app
