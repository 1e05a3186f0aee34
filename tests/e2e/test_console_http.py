"""The console's login and the live routes (issue 18) over plain HTTP, against a real
`rtm2 serve`: the session cookie's flags, CSRF refusals, what a session opens, the live feed,
the message tail (on one node, and across two nodes sharing a Redis), app settings and topic
publishers. The browser tests are in test_console.py."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

import rtm2
from rtm2 import ChannelType

from ..conftest import (
    API_KEY_A,
    API_KEY_B,
    APP_A,
    APP_B,
    APP_SMALL,
    CERT_A,
    CERT_SMALL,
    ServerProcess,
)
from .util import Users, client_for, uid, unique

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("console-http"), http=True).start()
    yield srv
    srv.stop()


@pytest.fixture
async def http(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=5) as client:
        yield client


async def login(http: httpx.AsyncClient, key: str, **headers: str) -> tuple[httpx.Response, str]:
    """Log in; the response, and the CSRF token it gave (the client keeps the cookie)."""
    response = await http.post("/console/login", json={"key": key}, headers=headers)
    csrf = response.json().get("csrf", "") if response.status_code == 200 else ""
    return response, csrf


async def events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event, data) of a text/event-stream, as they come."""
    kind, data = "message", ""
    async for line in response.aiter_lines():
        if line == "":
            yield kind, data
            kind, data = "message", ""
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data = line[5:].strip()


# --- the login and its cookie ---------------------------------------------------------------


async def test_a_login_sets_an_httponly_samesite_strict_cookie_that_is_not_the_key(
    http: httpx.AsyncClient, server: ServerProcess
) -> None:
    response, csrf = await login(http, server.admin_key)
    assert response.status_code == 200
    assert response.json()["owner"] == "*"
    assert APP_A in response.json()["apps"]
    cookie = response.headers["set-cookie"]
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags
    assert "samesite=strict" in flags
    assert "path=/" in flags
    assert "secure" not in flags  # plain HTTP: a Secure cookie would never come back
    assert server.admin_key not in cookie
    assert server.admin_key not in response.text
    assert len(csrf) >= 32


async def test_the_cookie_is_secure_when_the_browser_came_over_tls(
    http: httpx.AsyncClient, server: ServerProcess
) -> None:
    response, _ = await login(http, server.admin_key, **{"X-Forwarded-Proto": "https"})
    flags = [part.strip().lower() for part in response.headers["set-cookie"].split(";")]
    assert "secure" in flags


@pytest.mark.parametrize("key", ["", "wrong", API_KEY_A + "x"])
async def test_a_wrong_key_gets_no_session(http: httpx.AsyncClient, key: str) -> None:
    response, _ = await login(http, key)
    assert (response.status_code, response.json()["code"]) == (401, 10005)
    assert "set-cookie" not in response.headers
    assert (await http.get("/console/session")).status_code == 401
    assert (await http.get(f"/v1/apps/{APP_A}/channels")).status_code == 401


async def test_a_login_body_with_an_unknown_field_is_refused(http: httpx.AsyncClient) -> None:
    response = await http.post("/console/login", json={"key": API_KEY_A, "admin": True})
    assert response.status_code == 400
    assert "set-cookie" not in response.headers


# --- what a session opens ---------------------------------------------------------------------


async def test_an_app_keys_session_opens_its_app_only_and_an_admin_session_every_app(
    http: httpx.AsyncClient, server: ServerProcess
) -> None:
    response, _ = await login(http, API_KEY_A)
    assert response.json() == {"owner": APP_A, "apps": [APP_A], "csrf": response.json()["csrf"]}
    assert (await http.get(f"/v1/apps/{APP_A}/channels")).status_code == 200
    other = await http.get(f"/v1/apps/{APP_B}/channels")
    assert (other.status_code, other.json()["code"]) == (403, 10015)
    assert (await http.get("/v1/info")).status_code == 403
    assert (await http.get("/metrics")).status_code == 403

    await login(http, server.admin_key)  # the new cookie replaces the old one
    assert (await http.get(f"/v1/apps/{APP_B}/channels")).status_code == 200
    assert (await http.get("/v1/info")).status_code == 200


async def test_a_key_given_wins_over_the_cookie(
    http: httpx.AsyncClient, server: ServerProcess
) -> None:
    await login(http, server.admin_key)
    response = await http.get(f"/v1/apps/{APP_A}/channels", headers={"X-API-Key": API_KEY_B})
    assert response.status_code == 403  # B's key on app A, whatever the cookie opens


async def test_a_write_with_the_cookie_needs_the_csrf_token_and_without_it_changes_nothing(
    http: httpx.AsyncClient, server: ServerProcess, users: Users
) -> None:
    _, csrf = await login(http, API_KEY_A)
    channel = unique("csrf")
    path = f"/v1/apps/{APP_A}/channels/message/{channel}/metadata"
    body = {"items": [{"key": "k", "value": "v"}]}
    for headers in ({}, {"X-CSRF-Token": "forged"}, {"X-CSRF-Token": csrf[:-1]}):
        response = await http.put(path, json=body, headers=headers)
        assert (response.status_code, response.json()["code"]) == (403, 10015)
    assert (await http.get(path)).json()["items"] == []

    bob = await users.login("bob")
    stream = await bob.subscribe(channel)
    refused = await http.post(
        f"/v1/apps/{APP_A}/channels/{channel}/messages", json={"message": "x"}
    )
    assert refused.status_code == 403
    kicked = await http.post(f"/v1/apps/{APP_A}/users/{uid(bob)}/kick", json={})
    assert kicked.status_code == 403

    response = await http.put(path, json=body, headers={"X-CSRF-Token": csrf})
    assert response.status_code == 200
    assert [i["value"] for i in (await http.get(path)).json()["items"]] == ["v"]
    sent = await http.post(
        f"/v1/apps/{APP_A}/channels/{channel}/messages",
        json={"message": "with the token"},
        headers={"X-CSRF-Token": csrf},
    )
    assert sent.status_code == 200
    assert (await stream.get(timeout=5)).message == "with the token"  # the refused one never came


async def test_logging_out_ends_the_session(http: httpx.AsyncClient, server: ServerProcess) -> None:
    _, csrf = await login(http, server.admin_key)
    token = http.cookies["rtm2_console"]
    assert (await http.post("/console/logout")).status_code == 403  # no CSRF token
    assert (await http.get("/console/session")).status_code == 200
    response = await http.post("/console/logout", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 200
    async with httpx.AsyncClient(base_url=server.http_url, cookies={"rtm2_console": token}) as old:
        assert (await old.get("/console/session")).status_code == 401
        assert (await old.get("/v1/info")).status_code == 401


async def test_the_console_page_and_its_scripts_are_served_with_a_strict_policy(
    http: httpx.AsyncClient,
) -> None:
    page = await http.get("/console/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "/console/static/js/app.js" in page.text
    script = await http.get("/console/static/js/app.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    for name in ("api", "chart", "dom", "live", "pages", "state"):
        assert (await http.get(f"/console/static/js/{name}.js")).status_code == 200
    assert (await http.get("/console/static/../sessions.py")).status_code == 404


# --- app settings and topic publishers --------------------------------------------------------


async def test_an_apps_settings_show_its_limits_and_policies_never_its_certificates_or_keys(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get(f"/v1/apps/{APP_A}/settings", headers={"X-API-Key": API_KEY_A})
    assert response.status_code == 200
    settings = response.json()
    assert settings["app_id"] == APP_A
    assert settings["stream_join_policy"] == "token"
    assert (settings["certificates"], settings["api_keys"]) == (2, 1)
    assert settings["limits"]["message_size"] == 32 * 1024
    assert CERT_A not in response.text
    assert API_KEY_A not in response.text
    other = await http.get(f"/v1/apps/{APP_B}/settings", headers={"X-API-Key": API_KEY_A})
    assert other.status_code == 403


async def test_a_topics_publishers_are_listed(
    http: httpx.AsyncClient, server: ServerProcess
) -> None:
    channel = unique("stage")
    client = client_for(server, unique("singer"), app_id=APP_SMALL)
    await client.login(rtm2.build_rtm_token(APP_SMALL, CERT_SMALL, uid(client)))
    try:
        stream = client.stream_channel(channel)
        await stream.join()
        await stream.join_topic("song")
        path = f"/v1/apps/{APP_SMALL}/channels/stream/{channel}/topics/song/publishers"
        response = await http.get(path, headers={"X-API-Key": server.admin_key})
        assert response.json() == {"topic": "song", "publishers": [uid(client)]}
        empty = await http.get(
            path.replace("/song/", "/other/"), headers={"X-API-Key": server.admin_key}
        )
        assert empty.json() == {"topic": "other", "publishers": []}
        bad = await http.get(
            path.replace("/song/", "/_hidden/"), headers={"X-API-Key": server.admin_key}
        )
        assert (bad.status_code, bad.json()["code"]) == (400, 11008)
    finally:
        await client.logout()


# --- the live feed and the tail ---------------------------------------------------------------


async def test_the_live_feed_sends_the_nodes_counters_every_second(
    http: httpx.AsyncClient, server: ServerProcess, users: Users
) -> None:
    alice = await users.login("alice")
    channel = unique("feed")
    await alice.subscribe(channel)
    samples = []
    headers = {"X-API-Key": server.admin_key}
    async with http.stream("GET", "/v1/live", headers=headers, timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        async for kind, data in events(response):
            assert kind == "sample"
            samples.append(json.loads(data))
            if len(samples) == 1:
                await alice.publish(channel, "counted")
            if len(samples) == 3:
                break
    assert 0.5 < samples[2]["time"] - samples[1]["time"] < 2.0
    assert samples[0]["connections"] >= 1
    assert samples[2]["published"] >= samples[0]["published"] + 1
    assert samples[2]["delivered"] >= samples[0]["delivered"] + 1
    assert {a["app_id"] for a in samples[0]["apps"]} >= {APP_A, APP_B}
    assert next(a for a in samples[0]["apps"] if a["app_id"] == APP_A)["users_online"] >= 1

    forbidden = await http.get("/v1/live", headers={"X-API-Key": API_KEY_A})
    assert forbidden.status_code == 403
    async with http.stream(
        "GET", f"/v1/apps/{APP_A}/live", headers={"X-API-Key": API_KEY_A}
    ) as response:
        async for _, data in events(response):
            assert [a["app_id"] for a in json.loads(data)["apps"]] == [APP_A]
            break


async def test_the_tail_streams_a_channels_text_and_binary_messages(
    http: httpx.AsyncClient, users: Users
) -> None:
    alice = await users.login("alice")
    channel = unique("tailed")
    got = []
    path = f"/v1/apps/{APP_A}/channels/message/{channel}/tail"
    async with http.stream("GET", path, headers={"X-API-Key": API_KEY_A}, timeout=10) as response:
        assert response.status_code == 200
        async for kind, data in events(response):
            if kind == "ready":  # the node listens: what is published now comes
                await alice.publish(channel, "<b>hi</b>", custom_type="t")
                await alice.publish(channel, b"\x00\xff")
            elif kind == "message":
                got.append(json.loads(data))
                if len(got) == 2:
                    break
    text, blob = got
    assert (text["channel"], text["publisher"], text["text"], text["custom_type"]) == (
        channel,
        uid(alice),
        "<b>hi</b>",
        "t",
    )
    assert (text["message_type"], text["topic"], text["offset"]) == ("string", "", 1)
    assert (blob["message_type"], blob["text"]) == ("binary", None)
    assert base64.b64decode(blob["payload_b64"]) == b"\x00\xff"


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/channels/topic/news/tail", 400, 10019),
        ("/channels/message/_reserved/tail", 400, 10008),
    ],
)
async def test_a_tail_of_a_bad_channel_is_refused(
    http: httpx.AsyncClient, path: str, status: int, code: int
) -> None:
    response = await http.get(f"/v1/apps/{APP_A}{path}", headers={"X-API-Key": API_KEY_A})
    assert (response.status_code, response.json()["code"]) == (status, code)
    no_key = await http.get(f"/v1/apps/{APP_A}/channels/message/news/tail")
    assert no_key.status_code == 401


@pytest.mark.redis
async def test_a_tail_on_one_node_gets_the_messages_published_on_another(
    nodes: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = nodes
    client = client_for(b, unique("far"))
    await client.login(rtm2.build_rtm_token(APP_A, CERT_A, uid(client)))
    try:
        channel = unique("across")
        path = f"{a.http_url}/v1/apps/{APP_A}/channels/message/{channel}/tail"
        async with (
            httpx.AsyncClient(timeout=10) as http,
            http.stream("GET", path, headers={"X-API-Key": API_KEY_A}) as response,
        ):
            async for kind, data in events(response):
                if kind == "ready":
                    await client.publish(channel, "from node b", channel_type=ChannelType.MESSAGE)
                elif kind == "message":
                    message = json.loads(data)
                    assert (message["text"], message["publisher"]) == ("from node b", uid(client))
                    break
    finally:
        await client.logout()


async def test_a_node_with_a_tail_open_stops_promptly(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, http=True).start()
    try:
        path = f"{srv.http_url}/v1/apps/{APP_A}/channels/message/news/tail"
        async with (
            httpx.AsyncClient(timeout=10) as http,
            http.stream("GET", path, headers={"X-API-Key": API_KEY_A}) as response,
        ):
            async for kind, _ in events(response):
                assert kind == "ready"
                break
            started = time.monotonic()
            srv.proc.terminate()  # type: ignore[union-attr]
            srv.wait(10)
            # Not the listener's 2 s wait for open responses: the stream ended at once.
            assert time.monotonic() - started < 2.0
    finally:
        srv.stop()


async def test_the_users_waiting_for_a_lock_through_the_node_are_listed_in_order(
    http: httpx.AsyncClient, server: ServerProcess, users: Users
) -> None:
    channel = unique("locked")
    alice, bob, carol = [await users.login(name) for name in ("alice", "bob", "carol")]
    for u in (alice, bob, carol):
        await u.subscribe(channel)
    headers = {"X-API-Key": API_KEY_A}
    base = f"/v1/apps/{APP_A}/channels/message/{channel}"
    assert (await http.put(f"{base}/locks/editor", json={"ttl": 30}, headers=headers)).is_success
    await alice.lock.acquire(channel, ChannelType.MESSAGE, "editor")
    waits = []
    for u in (bob, carol):
        waits.append(
            asyncio.create_task(u.lock.acquire(channel, ChannelType.MESSAGE, "editor", retry=True))
        )
        expected = [uid(w) for w in (bob, carol)[: len(waits)]]
        deadline = time.monotonic() + 5
        while True:
            found = (await http.get(f"{base}/lock-waiters", headers=headers)).json()
            if (
                found["waiters"] == [{"lock": "editor", "users": expected}]
                or time.monotonic() > deadline
            ):
                break
            await asyncio.sleep(0.05)
        assert found["waiters"] == [{"lock": "editor", "users": expected}]
    info = (await http.get("/v1/info", headers={"X-API-Key": server.admin_key})).json()
    assert found["node"] == info["node"]["id"]
    await alice.lock.release(channel, ChannelType.MESSAGE, "editor")
    await waits[0]
    found = (await http.get(f"{base}/lock-waiters", headers=headers)).json()
    assert found["waiters"] == [{"lock": "editor", "users": [uid(carol)]}]
    for task in waits:
        task.cancel()


async def test_the_tail_of_a_stream_channel_gives_each_messages_topic(
    http: httpx.AsyncClient, server: ServerProcess
) -> None:
    channel = unique("show")
    client = client_for(server, unique("host"), app_id=APP_SMALL)
    await client.login(rtm2.build_rtm_token(APP_SMALL, CERT_SMALL, uid(client)))
    try:
        stream = client.stream_channel(channel)
        await stream.join()
        await stream.join_topic("scores")
        path = f"/v1/apps/{APP_SMALL}/channels/stream/{channel}/tail"
        headers = {"X-API-Key": server.admin_key}
        async with http.stream("GET", path, headers=headers, timeout=10) as response:
            async for kind, data in events(response):
                if kind == "ready":
                    await stream.publish_topic("scores", "2-1")
                elif kind == "message":
                    message = json.loads(data)
                    assert (message["channel"], message["topic"], message["text"]) == (
                        channel,
                        "scores",
                        "2-1",
                    )
                    assert message["publisher"] == uid(client)
                    break
    finally:
        await client.logout()


async def test_every_route_of_a_stream_channel_answers_beside_the_topic_routes(
    http: httpx.AsyncClient,
) -> None:
    """A route with a static "stream" segment would hide the {channel_type} routes from every
    stream channel: Litestar's router does not backtrack."""
    headers = {"X-API-Key": API_KEY_A}
    base = f"/v1/apps/{APP_A}/channels/stream/{unique('stage')}"
    for path in ("presence", "metadata", "locks", "lock-waiters", "topics/t/publishers"):
        response = await http.get(f"{base}/{path}", headers=headers)
        assert response.status_code == 200, (path, response.text)
    message = base.replace("/stream/", "/message/")
    response = await http.get(f"{message}/topics/t/publishers", headers=headers)
    assert (response.status_code, response.json()["code"]) == (400, 10019)
