"""The HTTP API's channel listing and /v1/info (docs/API.md, "Operators"), against a real
`rtm2 serve` (in memory, then two nodes sharing a Redis) and SDK clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import rtm2
from rtm2 import ChannelType, ErrorCode

from ..conftest import API_KEY_A, APP_A, APP_B, APP_SMALL, CERT_SMALL, ServerProcess
from .nodes import redis_nodes
from .util import Users, client_for, enter, unique

LIST = f"/v1/apps/{APP_A}/channels"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("listing"), http=True).start()
    yield srv
    srv.stop()


@pytest.fixture
async def api(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=server.http_url, headers={"X-API-Key": API_KEY_A}, timeout=10
    ) as client:
        yield client


async def every_page(api: httpx.AsyncClient, **params: Any) -> list[list[dict[str, Any]]]:
    pages, cursor = [], ""
    while True:
        response = await api.get(LIST, params={**params, "cursor": cursor})
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["channels"])
        cursor = body["next_cursor"]
        if not cursor:
            return pages


async def test_a_thousand_channels_page_by_37_without_duplicates_or_gaps(
    api: httpx.AsyncClient, users: Users
) -> None:
    prefix = unique("k") + "-"
    names = [f"{prefix}{i:04d}" for i in range(1000)]
    # 50 subscriptions a client (the default limit): 20 clients.
    clients = await users.login_many(20, "lister")
    await asyncio.gather(
        *(
            client.subscribe(name)
            for c, client in enumerate(clients)
            for name in names[c * 50 : (c + 1) * 50]
        )
    )
    pages = await every_page(api, prefix=prefix, limit=37)
    assert [len(p) for p in pages] == [37] * 27 + [1]
    listed = [(ch["channel"], ch["type"], ch["users"]) for page in pages for ch in page]
    assert listed == [(name, "message", 1) for name in names]


async def test_the_prefix_and_type_filters_and_the_user_counts(
    api: httpx.AsyncClient, users: Users
) -> None:
    prefix = unique("f") + "-"
    alice, bob = await users.login("alice"), await users.login("bob")
    for client in (alice, bob):
        await enter(client, f"{prefix}room", ChannelType.MESSAGE)
    await enter(alice, f"{prefix}river", ChannelType.STREAM)
    await enter(alice, f"other{prefix}", ChannelType.MESSAGE)
    both = (await api.get(LIST, params={"prefix": prefix})).json()
    assert both == {
        "channels": [
            {"channel": f"{prefix}river", "type": "stream", "users": 1},
            {"channel": f"{prefix}room", "type": "message", "users": 2},
        ],
        "next_cursor": "",
    }
    streams = (await api.get(LIST, params={"prefix": prefix, "type": "stream"})).json()
    assert [c["channel"] for c in streams["channels"]] == [f"{prefix}river"]
    await bob.unsubscribe(f"{prefix}room")
    expected = [{"channel": f"{prefix}room", "type": "message", "users": 1}]
    for _ in range(50):  # the server drops bob's presence once it handled the unsubscribe
        rooms = (await api.get(LIST, params={"prefix": prefix, "type": "message"})).json()
        if rooms["channels"] == expected:
            break
        await asyncio.sleep(0.1)
    assert rooms["channels"] == expected


async def test_the_openapi_document_describes_the_listing_and_info(
    api: httpx.AsyncClient,
) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    listing = paths["/v1/apps/{app_id}/channels"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"type", "prefix", "limit", "cursor"}
    assert paths["/v1/info"]["get"]["security"] == [{"apiKey": []}, {"bearer": []}]


async def test_bad_listing_parameters_are_refused_with_400(api: httpx.AsyncClient) -> None:
    for params, code in [
        ({"type": "peer"}, ErrorCode.INVALID_CHANNEL_TYPE),
        ({"cursor": "not a cursor"}, ErrorCode.INVALID_PARAMETER),
        ({"limit": "0"}, ErrorCode.INVALID_PARAMETER),
        ({"limit": "1001"}, ErrorCode.INVALID_PARAMETER),
    ]:
        response = await api.get(LIST, params=params)
        assert (response.status_code, response.json()["code"]) == (400, code), params
    other = await api.get("/v1/apps/" + APP_SMALL + "/channels")
    assert other.status_code == 403


async def test_info_needs_the_admin_key_and_tells_the_node_and_each_app(
    api: httpx.AsyncClient, server: ServerProcess, users: Users
) -> None:
    assert (await api.get("/v1/info")).status_code == 403
    assert (await api.get("/v1/info", headers={"X-API-Key": ""})).status_code == 401
    alice, bob = await users.login("alice"), await users.login("bob")
    channel = unique("info")
    await alice.subscribe(channel)
    heard = await bob.subscribe(channel)
    await alice.publish(channel, "hello")
    await heard.get(timeout=5)
    info = (await api.get("/v1/info", headers={"X-API-Key": server.admin_key})).json()
    assert info["version"]
    assert info["node"]["address"] == server.url
    assert info["node"]["connections"] >= 1
    assert info["nodes"] == [info["node"]]  # the memory engine knows only this node
    assert info["node"]["version"] == rtm2.__version__
    assert info["node"]["http_address"] == server.http_url
    apps = {a["app_id"]: a for a in info["apps"]}
    assert apps[APP_A]["users_online"] >= 1
    assert apps[APP_A]["channels"] >= 1
    assert info["messages_per_second"] > 0
    assert apps[APP_A]["messages_per_second"] > 0  # alice's message, counted for her app
    assert apps[APP_B]["messages_per_second"] == 0  # nobody published in app B
    assert apps[APP_A]["delivered_per_second"] > 0  # to alice and bob, counted for their app
    assert apps[APP_B]["delivered_per_second"] == 0


# --- two nodes sharing a Redis -----------------------------------------------------------------


@pytest.mark.redis
async def test_the_listing_on_one_node_shows_the_channels_of_every_node(
    nodes: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = nodes
    on_a, on_b = client_for(a, "ua", app_id=APP_SMALL), client_for(b, "ub", app_id=APP_SMALL)
    for client in (on_a, on_b):
        await client.login(rtm2.build_rtm_token(APP_SMALL, CERT_SMALL, client.config.user_id))
    try:
        await on_a.subscribe("here")
        await on_b.subscribe("there")
        await on_b.subscribe("here")
        async with httpx.AsyncClient(
            base_url=a.http_url, headers={"X-API-Key": a.admin_key}
        ) as api:
            body = (await api.get(f"/v1/apps/{APP_SMALL}/channels")).json()
            assert body["channels"] == [
                {"channel": "here", "type": "message", "users": 2},
                {"channel": "there", "type": "message", "users": 1},
            ]
            info = (await api.get("/v1/info")).json()
            assert {x["app_id"]: x["channels"] for x in info["apps"]}[APP_SMALL] == 2
            assert len(info["nodes"]) == 2  # node b too, known from its heartbeats in Redis
            assert info["node"] in info["nodes"]
    finally:
        await asyncio.gather(on_a.logout(), on_b.logout())


async def info_of(api: httpx.AsyncClient) -> dict[str, Any]:
    response = await api.get("/v1/info")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def until(check: Any, api: httpx.AsyncClient, seconds: float = 10.0) -> dict[str, Any]:
    """Poll node ``api``'s /v1/info until ``check(info)`` holds; the last info."""
    deadline = time.monotonic() + seconds
    while not check(info := await info_of(api)):
        assert time.monotonic() < deadline, f"not in {seconds} s: {info}"
        await asyncio.sleep(0.05)
    return info


@pytest.mark.redis
async def test_info_on_one_node_tells_every_live_node_until_it_stops(tmp_path: Path) -> None:
    mortal = {"node_timeout": 2.0}  # silent for 2 s: dead
    with redis_nodes(tmp_path) as started:
        a = started.start("a", http=True, timers=mortal)
        # b's rates are over its sweep: half a second, for a poll to catch them
        b = started.start("b", http=True, timers=mortal | {"sweep_interval": 0.5})
        here = client_for(a, "here", app_id=APP_SMALL)
        there = [client_for(b, f"there{i}", app_id=APP_SMALL) for i in range(2)]
        for client in (here, *there):
            await client.login(rtm2.build_rtm_token(APP_SMALL, CERT_SMALL, client.config.user_id))
        async with (
            httpx.AsyncClient(base_url=a.http_url, headers={"X-API-Key": a.admin_key}) as on_a,
            httpx.AsyncClient(base_url=b.http_url, headers={"X-API-Key": b.admin_key}) as on_b,
        ):
            b_itself = (await info_of(on_b))["node"]

            def b_with_two(info: dict[str, Any]) -> bool:
                return {"id": b_itself["id"], "connections": 2} in [
                    {"id": n["id"], "connections": n["connections"]} for n in info["nodes"]
                ]

            try:
                info = await until(b_with_two, on_a)
                by_id = {n["id"]: n for n in info["nodes"]}
                assert sorted(by_id) == sorted([info["node"]["id"], b_itself["id"]])
                seen = by_id[b_itself["id"]]
                assert seen["address"] == b.url
                assert seen["http_address"] == b.http_url
                assert seen["started"] == b_itself["started"]
                assert seen["version"] == rtm2.__version__
                assert {x["app_id"]: x["users_online"] for x in seen["apps"]} == {APP_SMALL: 2}
                apps = {x["app_id"]: x for x in info["apps"]}
                assert apps[APP_SMALL]["users_online"] == 3  # one on a, two on b

                for i in range(20):  # on b: a's figures per app add b's rate to a's own
                    await there[0].publish("rates", f"m{i}")
                info = await until(
                    lambda i: any(
                        n["id"] == b_itself["id"] and n["messages_per_second"] > 0
                        for n in i["nodes"]
                    ),
                    on_a,
                )
                rates = [a["messages_per_second"] for n in info["nodes"] for a in n["apps"]]
                apps = {x["app_id"]: x for x in info["apps"]}
                assert apps[APP_SMALL]["messages_per_second"] == pytest.approx(sum(rates), abs=1e-3)
                assert apps[APP_SMALL]["messages_per_second"] > 0
                out = [a["delivered_per_second"] for n in info["nodes"] for a in n["apps"]]
                assert apps[APP_SMALL]["delivered_per_second"] == pytest.approx(sum(out), abs=1e-3)
                assert info["messages_per_second"] == pytest.approx(
                    sum(n["messages_per_second"] for n in info["nodes"]), abs=1e-3
                )
            finally:
                await asyncio.gather(*(c.logout() for c in (here, *there)))

            b.stop()
            stopped = time.monotonic()
            info = await until(lambda i: b_itself["id"] not in [n["id"] for n in i["nodes"]], on_a)
            assert time.monotonic() - stopped < 6  # node_timeout 2 s (+ 1 s)
            assert [n["id"] for n in info["nodes"]] == [info["node"]["id"]]
