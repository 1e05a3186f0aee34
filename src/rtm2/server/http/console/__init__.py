"""The web console (issue 18, docs/CONSOLE.md): static pages at ``/console/``, and the login
that turns a key into a session cookie.

The console has no powers of its own: its pages call the HTTP API with the cookie, which
``make_app``'s key checks take as they take the key it was exchanged for (writes also need the
session's CSRF token). Its files (HTML, CSS, ES modules) ship inside the package; no build step.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import CacheControlHeader, Cookie
from litestar.handlers import HTTPRouteHandler
from litestar.params import JSONBody
from litestar.response import File
from litestar.static_files import create_static_files_router
from litestar.status_codes import HTTP_401_UNAUTHORIZED
from litestar.types import ControllerRouterHandler

from ....errors import ErrorCode
from ...config import AppConfig
from ..keys import Keyring
from ..live import LiveBackend
from .sessions import COOKIE, CSRF_HEADER, ConsoleSession, ConsoleSessions

__all__ = ["COOKIE", "CSRF_HEADER", "STATIC_DIR", "Console", "ConsoleSessions"]

STATIC_DIR = Path(__file__).parent / "static"

# The pages load their own scripts and styles only, and talk to this origin only: a payload
# that got into the page as markup still could not run (the pages never insert data as markup).
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class LoginBody(msgspec.Struct, forbid_unknown_fields=True):
    key: Annotated[str, msgspec.Meta(max_length=512)]


class Me(msgspec.Struct):
    owner: str  # "*" (admin) or the app id the key opens
    apps: list[str]  # the apps the console may show
    csrf: str  # echo in X-CSRF-Token on every write


class _Refused(msgspec.Struct):
    code: int
    reason: str


def _secure(request: Request[Any, Any, Any]) -> bool:
    """Whether the browser reached us over TLS: directly, or through a proxy that says so."""
    if request.url.scheme == "https":
        return True
    return request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower() == "https"


class Console:
    def __init__(self, live: LiveBackend, sessions: ConsoleSessions | None = None) -> None:
        self.live = live
        self.sessions = sessions or ConsoleSessions()

    def owner(self, request: Request[Any, Any, Any]) -> tuple[str | None, bool]:
        """The owner of the request's console session (None: no live session), and whether
        its CSRF check passes."""
        session = self.sessions.get(request.cookies.get(COOKIE, ""))
        if session is None:
            return None, True
        given = request.headers.get(CSRF_HEADER, "")
        return session.owner, self.sessions.csrf_ok(session, request.method, given)

    def routes(
        self, apps: Mapping[str, AppConfig], keyring: Keyring
    ) -> list[ControllerRouterHandler]:
        sessions = self.sessions

        def me(session: ConsoleSession) -> Me:
            shown = sorted(apps) if session.owner == "*" else [session.owner]
            return Me(session.owner, shown, session.csrf)

        def refused(reason: str) -> Response[_Refused]:
            return Response(
                _Refused(int(ErrorCode.INVALID_TOKEN), reason), status_code=HTTP_401_UNAUTHORIZED
            )

        @post("/console/login", status_code=200, include_in_schema=False)
        async def login(
            request: Request[Any, Any, Any], data: JSONBody[LoginBody]
        ) -> Response[Any]:
            owner = keyring.app_of(data.key) if data.key else None
            if owner is None or (owner != "*" and owner not in apps):
                return refused("unknown key")
            token, session = sessions.open(owner)
            cookie = Cookie(
                key=COOKIE,
                value=token,
                path="/",
                httponly=True,
                samesite="strict",
                secure=_secure(request),
                max_age=int(sessions.lifetime),
            )
            return Response(me(session), cookies=[cookie], headers={"Cache-Control": "no-store"})

        @post("/console/logout", status_code=200, include_in_schema=False)
        async def logout(request: Request[Any, Any, Any]) -> Response[Any]:
            token = request.cookies.get(COOKIE, "")
            session = sessions.get(token)
            if session is not None:
                if not sessions.csrf_ok(session, "POST", request.headers.get(CSRF_HEADER, "")):
                    return Response(
                        _Refused(
                            int(ErrorCode.LOGIN_NOT_AUTHORIZED), "CSRF token missing or wrong"
                        ),
                        status_code=403,
                    )
                sessions.close(token)
            gone = Cookie(
                key=COOKIE,
                value="",
                path="/",
                httponly=True,
                samesite="strict",
                secure=_secure(request),
                max_age=0,
            )
            return Response({"ok": True}, cookies=[gone])

        @get("/console/session", include_in_schema=False)
        async def current(request: Request[Any, Any, Any]) -> Response[Any]:
            session = sessions.get(request.cookies.get(COOKIE, ""))
            if session is None:
                return refused("not logged in")
            return Response(me(session), headers={"Cache-Control": "no-store"})

        @get("/console/", include_in_schema=False)  # also /console: Litestar takes both
        async def index() -> File:
            return File(
                STATIC_DIR / "index.html",
                content_disposition_type="inline",
                media_type="text/html",
                headers=_PAGE_HEADERS,
            )

        static = create_static_files_router(
            "/console/static",
            directories=[STATIC_DIR],
            include_in_schema=False,
            cache_control=CacheControlHeader(no_cache=True),
        )
        handlers: list[HTTPRouteHandler] = [login, logout, current, index]
        return [*handlers, static]
