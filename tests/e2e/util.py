"""Helpers for end-to-end tests: clients pointed at a test server, and event waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

import rtm2
from rtm2 import ChannelType, ErrorCode
from rtm2.tokens import build_rtm_token, build_stream_token

from ..conftest import APP_A, APP_OPEN, APP_SMALL, CERT_A, CERT_SMALL, ServerProcess


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


def _login_token(app_id: str, user: str) -> str:
    if app_id == APP_OPEN:
        return ""
    if app_id == APP_SMALL:
        return token_for(user, app_id=APP_SMALL, cert=CERT_SMALL)
    return token_for(user, app_id=app_id)


def uid(client: rtm2.RTMClient) -> str:
    return client.config.user_id


class Users:
    """Logs users in for one test (with the right token for each app), and out at its end."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.streams: dict[rtm2.RTMClient, rtm2.LoginStreams] = {}

    async def login(
        self,
        prefix: str = "user",
        app_id: str = APP_A,
        user: str | None = None,
        token: str | None = None,
        **config: Any,
    ) -> rtm2.RTMClient:
        user = user or unique(prefix)
        client = client_for(self.server, user, app_id=app_id, **config)
        presented = _login_token(app_id, user) if token is None else token
        self.streams[client] = await client.login(presented)
        return client

    async def login_many(
        self, count: int, prefix: str, app_id: str = APP_A, batch: int = 50, **config: Any
    ) -> list[rtm2.RTMClient]:
        """``count`` users with distinct ids, logged in ``batch`` at a time."""
        base = unique(prefix)
        clients: list[rtm2.RTMClient] = []
        for start in range(0, count, batch):
            clients += await asyncio.gather(
                *(
                    self.login(app_id=app_id, user=f"{base}-{i:03d}", **config)
                    for i in range(start, min(start + batch, count))
                )
            )
        return clients

    def conn_events(self, client: rtm2.RTMClient) -> rtm2.EventStream[rtm2.ConnectionEvent]:
        return self.streams[client].conn_events

    async def logout_all(self) -> None:
        await asyncio.gather(*(c.logout() for c in self.streams), return_exceptions=True)


async def fails(call: Awaitable[object], code: ErrorCode) -> None:
    """``call`` must raise RTMError with ``code``."""
    with pytest.raises(rtm2.RTMError) as info:
        await call
    assert info.value.code == code, f"expected {code.name}, got {info.value!r}"


async def enter(client: rtm2.RTMClient, channel: str, ctype: ChannelType, **options: bool) -> None:
    """Subscribe to a message channel or join a stream channel (with a stream token)."""
    if ctype is ChannelType.MESSAGE:
        await client.subscribe(channel, **options)
    else:
        token = build_stream_token(APP_A, CERT_A, channel, uid(client))
        await client.stream_channel(channel).join(token, **options)


async def leave(client: rtm2.RTMClient, channel: str, ctype: ChannelType) -> None:
    if ctype is ChannelType.MESSAGE:
        await client.unsubscribe(channel)
    else:
        await client.stream_channel(channel).leave()


async def closed_with(ws: ClientConnection, timeout: float = 5) -> int | None:
    """Read a raw WebSocket until the server closes it; return the close code it sent."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    except websockets.ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else None
