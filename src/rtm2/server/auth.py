"""Token checks for one app, trying each of its certificates."""

from __future__ import annotations

from ..errors import ErrorCode, RTMError
from ..tokens import accepts_without_certificate, verify_rtm_token
from .config import AppConfig

__all__ = ["NEVER", "check_login_token"]

# expires_at value of a session whose app has no certificate.
NEVER = 0


def check_login_token(app: AppConfig, token: str, user_id: str, now: int) -> int:
    """Check ``token`` for logging ``user_id`` into ``app``; return when the right ends.

    Raises RTMError with INVALID_TOKEN, TOKEN_EXPIRED or INCONSISTENT_APPID.
    """
    if not app.certificates:
        if accepts_without_certificate(token, app.app_id):
            return NEVER
        raise RTMError(ErrorCode.INVALID_TOKEN, "this app has no certificate: use '' or the app id")
    error: RTMError | None = None
    for certificate in app.certificates:
        try:
            return verify_rtm_token(
                token, app_id=app.app_id, app_certificate=certificate, user_id=user_id, now=now
            )
        except RTMError as exc:
            # A signature made with the other certificate is INVALID_TOKEN here; any more
            # specific verdict (expired, other app) is the one worth reporting.
            if error is None or error.code == ErrorCode.INVALID_TOKEN:
                error = exc
    assert error is not None
    raise error
