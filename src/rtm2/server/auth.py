"""Token checks for one app, trying each of its certificates."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ErrorCode, RTMError
from ..tokens import (
    SIGNATURE_MISMATCH,
    accepts_without_certificate,
    verify_rtm_token,
    verify_stream_token,
)
from .config import AppConfig

__all__ = ["NEVER", "check_login_token", "check_stream_token"]

# expires_at value of a right that does not expire (an app without certificate, or a stream
# channel under the "login" join policy).
NEVER = 0


def _check(app: AppConfig, token: str, verify: Callable[[str], int]) -> int:
    if not app.certificates:
        if accepts_without_certificate(token, app.app_id):
            return NEVER
        raise RTMError(ErrorCode.INVALID_TOKEN, "this app has no certificate: use '' or the app id")
    error: RTMError | None = None
    for certificate in app.certificates:
        try:
            return verify(certificate)
        except RTMError as exc:
            # A signature made with the other certificate is a mismatch here; the verdict of
            # the certificate that did sign it (expired, other app, refused privilege) is the
            # one worth reporting.
            if error is None or error.reason == SIGNATURE_MISMATCH:
                error = exc
    assert error is not None
    raise error


def check_login_token(app: AppConfig, token: str, user_id: str, now: int) -> int:
    """Check ``token`` for logging ``user_id`` into ``app``; return when the right ends.

    Raises RTMError with INVALID_TOKEN, TOKEN_EXPIRED or INCONSISTENT_APPID.
    """
    return _check(
        app,
        token,
        lambda cert: verify_rtm_token(
            token, app_id=app.app_id, app_certificate=cert, user_id=user_id, now=now
        ),
    )


def check_stream_token(app: AppConfig, token: str, channel: str, user_id: str, now: int) -> int:
    """Check ``token`` for ``user_id`` joining stream ``channel``; return when the right ends.

    Under the "login" policy any logged-in user may join and the right never ends. A combined
    RTM + RTC token counts as a stream token.
    """
    if app.stream_join_policy == "login":
        return NEVER
    return _check(
        app,
        token,
        lambda cert: verify_stream_token(
            token,
            app_id=app.app_id,
            app_certificate=cert,
            channel=channel,
            user_id=user_id,
            now=now,
        ),
    )
