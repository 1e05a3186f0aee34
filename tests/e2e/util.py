"""Helpers for end-to-end tests: clients pointed at a test server, and event waits."""

from __future__ import annotations

import time
from typing import Any

import rtm2
from rtm2.tokens import build_rtm_token

from ..conftest import APP_A, CERT_A, ServerProcess


def client_for(
    server: ServerProcess, user: str, app_id: str = APP_A, **config: Any
) -> rtm2.RTMClient:
    client = rtm2.RTMClient(rtm2.RTMConfig(app_id=app_id, user_id=user, **config))
    client.set_parameters({rtm2.PARAM_ENDPOINT: server.url})
    return client


def token_for(
    user: str, expire: int = 3600, app_id: str = APP_A, cert: str = CERT_A, **kw: Any
) -> str:
    return build_rtm_token(app_id, cert, user, expire, **kw)


async def next_event(
    events: rtm2.EventStream[rtm2.ConnectionEvent], timeout: float = 5.0
) -> tuple[rtm2.ConnectionState, rtm2.ConnectionChangeReason]:
    event = await events.get(timeout=timeout)
    return event.state, event.reason


def unique(prefix: str) -> str:
    return f"{prefix}{time.monotonic_ns() % 10**9}"
