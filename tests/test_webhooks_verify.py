"""rtm2.webhooks.verify: a receiver accepts rtm2's signed requests and refuses anything else."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from rtm2 import ErrorCode, RTMError
from rtm2.webhooks import WebhookSignatureError, sign, verify

SECRET = "backend-secret"
BODY = json.dumps({"id": "n1-1", "type": "user.login", "data": {"user_id": "u"}}).encode()
NOW = 1_700_000_000


def test_a_signed_request_verifies_and_returns_its_event() -> None:
    headers = sign(BODY, SECRET, NOW)
    assert verify(BODY, headers, SECRET, now=NOW + 10)["type"] == "user.login"
    lowered = {k.lower(): v for k, v in headers.items()}  # header names in any case
    assert verify(BODY.decode(), lowered, SECRET, now=NOW)["id"] == "n1-1"


def test_the_signatures_are_the_documented_hmacs() -> None:
    headers = sign(BODY, SECRET, NOW)
    v1 = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert headers["RTM2-Signature"] == f"t={NOW},v1={v1}"
    agora = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert headers["Agora-Signature-V2"] == agora


@pytest.mark.parametrize(
    ("body", "headers", "secret", "now", "why"),
    [
        (BODY + b" ", sign(BODY, SECRET, NOW), SECRET, NOW, "does not match"),
        (BODY, sign(BODY, "other", NOW), SECRET, NOW, "does not match"),
        (BODY, sign(BODY, SECRET, NOW), SECRET, NOW + 301, "away from now"),
        (BODY, sign(BODY, SECRET, NOW), SECRET, NOW - 301, "away from now"),
        (BODY, {}, SECRET, NOW, "no RTM2-Signature"),
        (BODY, {"RTM2-Signature": "v1=00"}, SECRET, NOW, "no valid t="),
        (b"[1]", sign(b"[1]", SECRET, NOW), SECRET, NOW, "not a JSON object"),
    ],
)
def test_a_request_that_is_not_rtm2s_or_is_too_old_is_refused(
    body: bytes, headers: dict[str, str], secret: str, now: int, why: str
) -> None:
    with pytest.raises(WebhookSignatureError, match=why) as refused:
        verify(body, headers, secret, now=now)
    assert isinstance(refused.value, RTMError)
    assert refused.value.code == ErrorCode.INVALID_PARAMETER


def test_the_agora_signature_alone_is_accepted_only_without_a_time_check() -> None:
    agora = {"Agora-Signature-V2": sign(BODY, SECRET)["Agora-Signature-V2"]}
    with pytest.raises(WebhookSignatureError, match="cannot be checked"):
        verify(BODY, agora, SECRET)
    assert verify(BODY, agora, SECRET, tolerance=0)["type"] == "user.login"
    with pytest.raises(WebhookSignatureError, match="Agora-Signature-V2 does not match"):
        verify(BODY + b"x", agora, SECRET, tolerance=0)
