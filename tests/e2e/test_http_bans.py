"""Bans set through the HTTP API's kick hold on every node, one started after the ban too,
outlive a restart of the embedded server, end by themselves, and can be lifted."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

import rtm2
from rtm2 import ErrorCode

from ..conftest import APP_SMALL, CERT_SMALL, ServerProcess
from .nodes import redis_nodes
from .util import client_for, unique


def api_of(node: ServerProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"{node.http_url}/v1/apps/{APP_SMALL}",
        headers={"X-API-Key": node.admin_key},
        timeout=10,
    )


async def login(node: ServerProcess, user: str) -> rtm2.RTMClient:
    client = client_for(node, user, app_id=APP_SMALL)
    await client.login(rtm2.build_rtm_token(APP_SMALL, CERT_SMALL, user))
    return client


async def refused(node: ServerProcess, user: str) -> None:
    client = client_for(node, user, app_id=APP_SMALL)
    with pytest.raises(rtm2.RTMError) as info:
        await client.login(rtm2.build_rtm_token(APP_SMALL, CERT_SMALL, user))
    await client.logout()
    assert info.value.code == ErrorCode.LOGIN_REJECTED
    assert "banned by the server" in info.value.reason


async def ban(node: ServerProcess, user: str, seconds: float) -> None:
    async with api_of(node) as api:
        response = await api.post(f"/users/{user}/kick", json={"ban_seconds": seconds})
        assert response.json() == {"kicked": False}


async def logs_in_within(node: ServerProcess, user: str, seconds: float) -> None:
    """Log in as soon as the ban ends (it must within ``seconds``), then out."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            client = await login(node, user)
        except rtm2.RTMError as exc:
            if exc.code != ErrorCode.LOGIN_REJECTED or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
        else:
            await client.logout()
            return


@pytest.mark.redis
async def test_a_ban_set_through_one_node_refuses_logins_on_a_node_started_after_it(
    tmp_path: Path,
) -> None:
    with redis_nodes(tmp_path) as nodes:
        a = await asyncio.to_thread(nodes.start, "a", True)
        user, brief = unique("troll"), unique("brief")
        await ban(a, user, 600)
        c = await asyncio.to_thread(nodes.start, "c")
        await refused(c, user)
        await ban(a, brief, 2)
        await refused(c, brief)
        await logs_in_within(c, brief, 10)  # it ended by itself, for node c too

        async with api_of(a) as api:
            lifted = await api.delete(f"/users/{user}/ban")
            assert lifted.json() == {"unbanned": True}
        client = await login(c, user)
        await client.logout()


@pytest.mark.redis
async def test_a_ban_lifted_through_one_node_lets_the_user_in_on_another_at_once(
    tmp_path: Path,
) -> None:
    with redis_nodes(tmp_path) as nodes:
        a = await asyncio.to_thread(nodes.start, "a", True)
        b = await asyncio.to_thread(nodes.start, "b")
        user = unique("troll")
        client = await login(b, user)
        await client.logout()
        await ban(a, user, 600)
        await refused(b, user)  # b knew the user as never banned: the ban's notice reached it
        async with api_of(a) as api:
            assert (await api.delete(f"/users/{user}/ban")).json() == {"unbanned": True}
        client = await login(b, user)  # no wait: b asks Redis about a user it heard of
        await client.logout()
        await ban(a, user, 600)
        await refused(b, user)


async def test_a_ban_outlives_a_restart_of_the_embedded_server(tmp_path: Path) -> None:
    server = await asyncio.to_thread(ServerProcess(tmp_path, http=True).start)
    try:
        user, brief = unique("troll"), unique("brief")
        await ban(server, user, 600)
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)
        await refused(server, user)
        await ban(server, brief, 2)
        await refused(server, brief)
        async with api_of(server) as api:
            listed = (await api.get("/bans")).json()["bans"]
            assert [b["user_id"] for b in listed] == [brief, user]  # soonest end first
            assert 595 < listed[1]["until"] - time.time() <= 600
            one = (await api.get("/bans", params={"limit": 1})).json()["bans"]
            assert [b["user_id"] for b in one] == [brief]
        await logs_in_within(server, brief, 10)

        async with api_of(server) as api:
            assert (await api.delete(f"/users/{user}/ban")).json() == {"unbanned": True}
            assert (await api.delete(f"/users/{user}/ban")).json() == {"unbanned": False}
            bad = await api.delete("/users/_bad/ban")
            assert (bad.status_code, bad.json()["code"]) == (400, ErrorCode.INVALID_USER_ID)
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)
        client = await login(server, user)  # the lifted ban stays lifted
        await client.logout()
    finally:
        await asyncio.to_thread(server.stop)
