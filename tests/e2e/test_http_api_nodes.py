"""The HTTP API on two nodes sharing a Redis: a call on one node reaches users on the other."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import rtm2
from rtm2 import ConnectionChangeReason as Reason
from rtm2 import ConnectionState as State
from rtm2 import ErrorCode

from ..conftest import APP_SMALL, CERT_SMALL, ServerProcess
from .proxy import TcpProxy
from .util import client_for, next_event, unique

pytestmark = pytest.mark.redis


@pytest.fixture
async def api(nodes: tuple[ServerProcess, ServerProcess]) -> AsyncIterator[httpx.AsyncClient]:
    a, _ = nodes
    async with httpx.AsyncClient(
        base_url=f"{a.http_url}/v1/apps/{APP_SMALL}", headers={"X-API-Key": a.admin_key}
    ) as client:
        yield client


async def login(node: ServerProcess) -> tuple[rtm2.RTMClient, rtm2.LoginStreams]:
    client = client_for(node, unique("u"), app_id=APP_SMALL)
    token = rtm2.build_rtm_token(APP_SMALL, CERT_SMALL, client.config.user_id)
    return client, await client.login(token)


async def test_an_http_publish_and_peer_message_on_one_node_reach_users_on_the_other(
    nodes: tuple[ServerProcess, ServerProcess], api: httpx.AsyncClient
) -> None:
    _, b = nodes
    logged_in = time.time()
    bob, _ = await login(b)
    try:
        channel = unique("news")
        stream = await bob.subscribe(channel)
        response = await api.post(f"/channels/{channel}/messages", json={"message": "hi all"})
        assert response.status_code == 200, response.text
        got = await stream.get(timeout=5)
        assert (got.user_id, got.message) == ("server", "hi all")

        user = bob.config.user_id
        response = await api.post(f"/users/{user}/messages", json={"message": "psst"})
        assert response.status_code == 200, response.text
        assert (await bob.peer_messages.get(timeout=5)).message == "psst"

        info = (await api.get(f"/users/{user}")).json()
        assert info["online"] is True
        a, _ = nodes
        on_a = (await api.get(f"{a.http_url}/v1/info")).json()
        [node_b] = [n["id"] for n in on_a["nodes"] if n["id"] != on_a["node"]["id"]]
        assert info["node"] == node_b  # the session is on node b, not on the node asked
        assert logged_in - 1 < info["since"] < time.time()
    finally:
        await bob.logout()


async def test_an_http_kick_on_one_node_ends_a_session_on_the_other_and_bans_it_there(
    nodes: tuple[ServerProcess, ServerProcess], api: httpx.AsyncClient
) -> None:
    _, b = nodes
    bob, streams = await login(b)
    user = bob.config.user_id
    response = await api.post(f"/users/{user}/kick", json={"reason": "bye", "ban_seconds": 60})
    assert response.json() == {"kicked": True}
    state, reason = await next_event(streams.conn_events)
    while state is not State.FAILED:
        state, reason = await next_event(streams.conn_events)
    assert reason is Reason.BANNED_BY_SERVER

    again = client_for(b, user, app_id=APP_SMALL)
    with pytest.raises(rtm2.RTMError) as info:
        await again.login(rtm2.build_rtm_token(APP_SMALL, CERT_SMALL, user))
    assert info.value.code == ErrorCode.LOGIN_REJECTED
    await again.logout()
    offline = await api.post(f"/users/{user}/messages", json={"message": "gone?"})
    assert (offline.status_code, offline.json()["code"]) == (404, 11033)


async def test_ready_is_503_while_the_engine_does_not_answer(tmp_path: Path) -> None:
    async with TcpProxy(6379) as proxy:
        prefix = f"rtm2test:{uuid.uuid4().hex[:12]}:"
        engine = f'"redis://127.0.0.1:{proxy.port}/0?prefix={prefix}"'
        node = ServerProcess(tmp_path, server={"engine": engine}, http=True)
        await asyncio.to_thread(node.start)  # the proxy must keep accepting meanwhile
        try:
            async with httpx.AsyncClient(base_url=node.http_url, timeout=10) as api:
                assert (await api.get("/ready")).status_code == 200
                await proxy.close()  # Redis is gone for this node
                response = await api.get("/ready")
                assert response.status_code == 503
                assert response.json()["code"] == ErrorCode.INIT_SERVICE_FAILED
                assert (await api.get("/health")).status_code == 200
        finally:
            await asyncio.to_thread(node.stop)
