"""Signing and verifying rtm2 webhook requests (docs/WEBHOOKS.md).

A receiver written in Python checks each request with :func:`verify`; it needs nothing else of
rtm2 (no server, no client, no event loop)::

    from rtm2.webhooks import verify, WebhookSignatureError

    try:
        event = verify(body, request.headers, SECRET)
    except WebhookSignatureError:
        return 401

Every request carries two signatures over the exact body bytes:

- ``RTM2-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``: signed
  with its time, so a receiver can refuse a request replayed later (``tolerance``);
- ``Agora-Signature-V2: <hex HMAC-SHA256(secret, body)>``, as Agora's notification service
  signs, so a receiver written for it verifies rtm2's requests unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from .errors import ErrorCode, RTMError

__all__ = [
    "AGORA_SIGNATURE_HEADER",
    "EVENT_TYPES",
    "SIGNATURE_HEADER",
    "WebhookSignatureError",
    "sign",
    "verify",
]

SIGNATURE_HEADER = "RTM2-Signature"
AGORA_SIGNATURE_HEADER = "Agora-Signature-V2"

# Every event type a webhook may ask for (docs/WEBHOOKS.md has their payloads).
EVENT_TYPES = (
    "user.login",
    "user.logout",
    "user.disconnected",
    "user.timeout",
    "user.kicked",
    "channel.join",
    "channel.leave",
    "channel.timeout",
    "topic.join",
    "topic.leave",
    "presence.state_changed",
    "storage.channel_updated",
    "storage.user_updated",
    "lock.set",
    "lock.acquired",
    "lock.released",
    "lock.expired",
    "lock.revoked",
    "lock.removed",
    "message.published",
)


class WebhookSignatureError(RTMError):
    """A webhook request whose signature is missing, wrong, or outside the time tolerance.

    Its code is ``ErrorCode.INVALID_PARAMETER``; ``reason`` says which check failed.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(ErrorCode.INVALID_PARAMETER, reason)

    def __reduce__(self) -> tuple[type[RTMError], tuple[int, str]]:
        return (RTMError, (int(self.code), self.reason))


def _hmac(secret: str | bytes, data: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str | bytes, timestamp: int | None = None) -> dict[str, str]:
    """The signature headers of a request with ``body``, signed at ``timestamp`` (now)."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return {
        SIGNATURE_HEADER: f"t={t},v1={_hmac(secret, str(t).encode() + b'.' + body)}",
        AGORA_SIGNATURE_HEADER: _hmac(secret, body),
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, found in headers.items():  # a plain dict is not case-insensitive
        if key.lower() == lowered:
            return found
    return None


def verify(
    body: bytes | str,
    headers: Mapping[str, str],
    secret: str | bytes,
    tolerance: float = 300,
    now: float | None = None,
) -> dict[str, Any]:
    """Check a webhook request and return its event, parsed from the JSON body.

    ``headers`` is any mapping of the request's headers (names in any case). With an
    ``RTM2-Signature`` header, its HMAC must match and its time be within ``tolerance``
    seconds of ``now`` (0: any time). A request with only ``Agora-Signature-V2`` (no time to
    check) is accepted when ``tolerance`` is 0. Raises :class:`WebhookSignatureError` (an
    ``RTMError``) otherwise, or when the body is not a JSON object.
    """
    raw = body.encode() if isinstance(body, str) else bytes(body)
    stamped = _header(headers, SIGNATURE_HEADER)
    if stamped is not None:
        fields: dict[str, list[str]] = {}
        for part in stamped.split(","):
            name, sep, value = part.strip().partition("=")
            if sep:
                fields.setdefault(name, []).append(value)
        try:
            t = int(fields["t"][0])
        except (KeyError, ValueError):
            raise WebhookSignatureError(f"{SIGNATURE_HEADER} has no valid t=") from None
        expected = _hmac(secret, str(t).encode() + b"." + raw)
        if not any(hmac.compare_digest(expected, v) for v in fields.get("v1", ())):
            raise WebhookSignatureError(f"{SIGNATURE_HEADER} does not match the body")
        clock = time.time() if now is None else now
        if tolerance and abs(clock - t) > tolerance:
            raise WebhookSignatureError(
                f"{SIGNATURE_HEADER} is {abs(clock - t):.0f} s away from now "
                f"(tolerance {tolerance:g} s)"
            )
    else:
        agora = _header(headers, AGORA_SIGNATURE_HEADER)
        if agora is None:
            raise WebhookSignatureError(f"no {SIGNATURE_HEADER} header")
        if tolerance:
            raise WebhookSignatureError(
                f"no {SIGNATURE_HEADER} header: its time cannot be checked (tolerance=0 "
                f"accepts {AGORA_SIGNATURE_HEADER} alone)"
            )
        if not hmac.compare_digest(_hmac(secret, raw), agora.strip()):
            raise WebhookSignatureError(f"{AGORA_SIGNATURE_HEADER} does not match the body")
    try:
        event = json.loads(raw)
    except ValueError:
        raise WebhookSignatureError("the body is not JSON") from None
    if not isinstance(event, dict):
        raise WebhookSignatureError("the body is not a JSON object")
    return event
