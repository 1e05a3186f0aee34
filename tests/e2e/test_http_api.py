"""The HTTP API for app backends (docs/API.md), against a real `rtm2 serve` and SDK clients."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

import rtm2
from rtm2 import ChannelType, ErrorCode, MessageType

from ..conftest import API_KEY_A, API_KEY_B, APP_A, APP_B, APP_OPEN, ServerProcess
from .util import Users, client_for, next_event, token_for, uid, unique


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The module's server, with its HTTP API on a free port."""
    srv = ServerProcess(tmp_path_factory.mktemp("http"), http=True).start()
    yield srv
    srv.stop()


@pytest.fixture
async def api(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=server.http_url, headers={"X-API-Key": API_KEY_A}, timeout=5
    ) as client:
        yield client


def messages(channel: str, app: str = APP_A) -> str:
    return f"/v1/apps/{app}/channels/{channel}/messages"


def peer(user: str, app: str = APP_A) -> str:
    return f"/v1/apps/{app}/users/{user}/messages"


# --- health and the description -------------------------------------------------------------


async def test_health_and_ready_answer_without_a_key(api: httpx.AsyncClient) -> None:
    for path in ("/health", "/ready"):
        response = await api.get(path, headers={"X-API-Key": ""})
        assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_the_openapi_document_is_openapi_3_1_and_lists_every_endpoint(
    api: httpx.AsyncClient,
) -> None:
    response = await api.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.1")
    paths = doc["paths"]
    for path in (
        "/health",
        "/ready",
        "/v1/apps/{app_id}/channels/{channel}/messages",
        "/v1/apps/{app_id}/users/{user_id}/messages",
        "/v1/apps/{app_id}/users/{user_id}/kick",
        "/v1/apps/{app_id}/users/{user_id}",
        "/v1/apps/{app_id}/channels/{channel_type}/{channel}/presence",
    ):
        assert path in paths, path
    publish = paths["/v1/apps/{app_id}/channels/{channel}/messages"]["post"]
    assert {"400", "401", "403"} <= set(publish["responses"])
    assert publish["security"] == [{"apiKey": []}, {"bearer": []}]
    assert doc["components"]["securitySchemes"]["apiKey"]["name"] == "X-API-Key"


def test_the_banner_tells_the_http_port_chosen(server: ServerProcess) -> None:
    assert server.http_url.startswith("http://127.0.0.1:")
    assert not server.http_url.endswith(":0")


# --- keys -----------------------------------------------------------------------------------


async def test_a_request_without_a_key_or_with_an_unknown_one_is_refused_with_401(
    api: httpx.AsyncClient,
) -> None:
    path = messages(unique("keys"))
    for headers in ({"X-API-Key": ""}, {"X-API-Key": "not-a-key"}):
        response = await api.post(path, json={"message": "hi"}, headers=headers)
        assert response.status_code == 401
        assert response.json()["code"] == ErrorCode.INVALID_TOKEN
    assert "not-a-key" not in (await api.get("/health")).text


async def test_a_key_of_one_app_is_refused_with_403_on_another(api: httpx.AsyncClient) -> None:
    response = await api.post(messages(unique("keys"), APP_B), json={"message": "hi"})
    assert response.status_code == 403
    assert response.json()["code"] == ErrorCode.LOGIN_NOT_AUTHORIZED
    # app B's key, configured as its SHA-256, opens app B
    response = await api.post(
        messages(unique("keys"), APP_B), json={"message": "hi"}, headers={"X-API-Key": API_KEY_B}
    )
    assert response.status_code == 200


async def test_a_key_may_come_as_an_authorization_bearer_header(api: httpx.AsyncClient) -> None:
    path = messages(unique("bearer"))
    good = await api.post(
        path,
        json={"message": "hi"},
        headers={"X-API-Key": "", "Authorization": f"Bearer {API_KEY_A}"},
    )
    assert good.status_code == 200
    bad = await api.post(
        path, json={"message": "hi"}, headers={"X-API-Key": "", "Authorization": "Bearer nope"}
    )
    assert (bad.status_code, bad.json()["code"]) == (401, ErrorCode.INVALID_TOKEN)


async def test_the_admin_key_opens_every_app(api: httpx.AsyncClient, server: ServerProcess) -> None:
    for app in (APP_A, APP_B, APP_OPEN):
        response = await api.post(
            messages(unique("admin"), app),
            json={"message": "hi"},
            headers={"X-API-Key": server.admin_key},
        )
        assert response.status_code == 200, response.text
    assert (server.workdir / "data" / "admin-key").stat().st_mode & 0o777 == 0o600


async def test_keys_never_reach_the_server_log(
    api: httpx.AsyncClient, server: ServerProcess
) -> None:
    await api.post(messages(unique("log")), json={"message": "hi"})
    await api.post(messages(unique("log")), json={"message": "hi"}, headers={"X-API-Key": "x" * 9})
    log = server.log()
    assert API_KEY_A not in log
    assert "x" * 9 not in log
    assert server.admin_key not in log


# --- publishing -----------------------------------------------------------------------------


async def test_an_http_publish_reaches_every_subscriber_as_an_ordinary_message(
    api: httpx.AsyncClient, users: Users
) -> None:
    channel = unique("news")
    alice, bob = await users.login("alice"), await users.login("bob")
    streams = [await u.subscribe(channel) for u in (alice, bob)]

    response = await api.post(messages(channel), json={"message": "héllo ✓"})
    assert (response.status_code, response.json()) == (200, {"ok": True})
    binary = base64.b64encode(b"\x00\xff").decode()
    response = await api.post(
        messages(channel),
        json={"message_b64": binary, "custom_type": "blob", "publisher": "backend"},
    )
    assert response.status_code == 200

    for stream in streams:
        text, blob = await stream.get(timeout=5), await stream.get(timeout=5)
        assert (text.user_id, text.channel, text.channel_type) == (
            "server",
            channel,
            ChannelType.MESSAGE,
        )
        assert (text.message, text.message_type) == ("héllo ✓", MessageType.STRING)
        assert (blob.user_id, blob.message, blob.message_type, blob.custom_type) == (
            "backend",
            b"\x00\xff",
            MessageType.BINARY,
            "blob",
        )


async def test_an_http_publish_has_the_sdk_limits_and_codes(api: httpx.AsyncClient) -> None:
    too_big = await api.post(messages(unique("big")), json={"message": "x" * (32 * 1024 + 1)})
    assert too_big.status_code == 400
    assert too_big.json()["code"] == ErrorCode.CHANNEL_MESSAGE_LENGTH_EXCEED_LIMITATION
    bad_name = await api.post(messages("c" * 65), json={"message": "hi"})  # over 64 characters
    assert bad_name.status_code == 400
    assert bad_name.json()["code"] == ErrorCode.INVALID_CHANNEL_NAME
    for body in ({}, {"message": "a", "message_b64": "YQ=="}, {"message_b64": "%%%"}):
        response = await api.post(messages(unique("bad")), json=body)
        assert response.status_code == 400, body
        assert response.json()["code"] == ErrorCode.INVALID_PARAMETER
    unknown_field = await api.post(messages(unique("bad")), json={"text": "hi"})
    assert unknown_field.status_code == 400
    assert set(unknown_field.json()) == {"code", "reason"}


# --- peer messages --------------------------------------------------------------------------


async def test_a_peer_message_reaches_an_online_user(api: httpx.AsyncClient, users: Users) -> None:
    bob = await users.login("bob")
    response = await api.post(peer(uid(bob)), json={"message": "psst", "publisher": "support"})
    assert (response.status_code, response.json()) == (200, {"ok": True})
    got = await bob.peer_messages.get(timeout=5)
    assert (got.user_id, got.channel_type, got.message) == ("support", ChannelType.USER, "psst")


async def test_a_peer_message_to_an_offline_user_is_404_with_receiver_offline(
    api: httpx.AsyncClient, users: Users
) -> None:
    response = await api.post(peer(unique("nobody")), json={"message": "hello?"})
    assert response.status_code == 404
    assert response.json()["code"] == ErrorCode.CHANNEL_RECEIVER_OFFLINE

    bob = await users.login("bob")
    await bob.logout()
    response = await api.post(peer(uid(bob)), json={"message": "gone?"})
    assert response.status_code == 404
    assert response.json()["code"] == ErrorCode.CHANNEL_RECEIVER_OFFLINE


def test_the_dev_app_gets_an_api_key_kept_private_and_printed(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rtm2",
            "serve",
            "--port",
            "0",
            "--http",
            "--http-port",
            "0",
            "--data-dir",
            str(tmp_path / "d"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = "".join(proc.stdout.readline() for _ in range(9))
    finally:
        proc.terminate()
        proc.wait(10)
    saved = json.loads((tmp_path / "d" / "dev-app.json").read_text())
    assert f"API key      {saved['api_key']}" in banner
    assert (tmp_path / "d" / "dev-app.json").stat().st_mode & 0o777 == 0o600
    admin = (tmp_path / "d" / "admin-key").read_text().strip()
    assert f"admin key    {admin}" in banner


def test_the_banner_prints_the_web_consoles_url_next_to_the_http_apis(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, http=True).start()
    try:
        assert srv.proc is not None
        assert srv.proc.stdout is not None
        line = srv.proc.stdout.readline()  # the line after "HTTP API on ..."
    finally:
        srv.stop()
    assert line == f"Web console on {srv.http_url}/console/\n"


# --- kicks, users and presence --------------------------------------------------------------


async def test_a_kick_ends_a_live_session_with_banned_by_server_and_the_ban_refuses_logins(
    api: httpx.AsyncClient, users: Users
) -> None:
    bob = await users.login("bob")
    events = users.conn_events(bob)
    response = await api.post(
        f"/v1/apps/{APP_A}/users/{uid(bob)}/kick", json={"reason": "spam", "ban_seconds": 60}
    )
    assert (response.status_code, response.json()) == (200, {"kicked": True})
    state, reason = await next_event(events)
    while state is not rtm2.ConnectionState.FAILED:
        state, reason = await next_event(events)
    assert reason is rtm2.ConnectionChangeReason.BANNED_BY_SERVER

    again = client_for(users.server, uid(bob))
    with pytest.raises(rtm2.RTMError) as info:
        await again.login(token_for(uid(bob)))
    assert info.value.code == ErrorCode.LOGIN_REJECTED
    assert "banned" in str(info.value)
    await again.logout()

    offline = await api.post(f"/v1/apps/{APP_A}/users/{unique('nobody')}/kick", json={})
    assert (offline.status_code, offline.json()) == (200, {"kicked": False})


async def test_a_kick_without_a_ban_lets_the_user_log_in_again(
    api: httpx.AsyncClient, users: Users
) -> None:
    bob = await users.login("bob")
    response = await api.post(f"/v1/apps/{APP_A}/users/{uid(bob)}/kick", json={})
    assert response.json() == {"kicked": True}
    await users.login(user=uid(bob))


async def test_a_user_s_page_says_whether_it_is_online_and_where_it_is_present(
    api: httpx.AsyncClient, users: Users
) -> None:
    channel = unique("room")
    bob = await users.login("bob")
    await bob.subscribe(channel, with_presence=True)
    info = (await api.get(f"/v1/apps/{APP_A}/users/{uid(bob)}")).json()
    assert info["online"] is True
    assert isinstance(info["since"], float)
    assert info["node"]
    assert info["channels"] == [{"channel": channel, "type": "message"}]

    nobody = (await api.get(f"/v1/apps/{APP_A}/users/{unique('nobody')}")).json()
    assert nobody == {"online": False, "since": None, "node": None, "channels": []}


async def test_presence_lists_who_is_in_a_channel_with_their_state(
    api: httpx.AsyncClient, users: Users
) -> None:
    channel = unique("room")
    alice, bob = await users.login("alice"), await users.login("bob")
    for u in (alice, bob):
        await u.subscribe(channel, with_presence=True)
    await alice.presence.set_state(channel, ChannelType.MESSAGE, {"mood": "calm"})
    path = f"/v1/apps/{APP_A}/channels/message/{channel}/presence"
    plain = (await api.get(path)).json()
    assert plain["total"] == 2
    assert sorted(u["user_id"] for u in plain["users"]) == sorted([uid(alice), uid(bob)])
    assert all(u["state"] == {} for u in plain["users"])
    with_state = (await api.get(path, params={"include_state": "true"})).json()
    states = {u["user_id"]: u["state"] for u in with_state["users"]}
    assert states[uid(alice)] == {"mood": "calm"}
    bad = await api.get(f"/v1/apps/{APP_A}/channels/nope/{channel}/presence")
    assert (bad.status_code, bad.json()["code"]) == (400, ErrorCode.INVALID_CHANNEL_TYPE)


async def test_a_body_over_256_kib_is_refused_with_413(api: httpx.AsyncClient) -> None:
    response = await api.post(messages(unique("huge")), json={"message": "x" * (300 * 1024)})
    assert response.status_code == 413
    assert set(response.json()) == {"code", "reason"}


def scrape(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_need_the_admin_key_parse_as_prometheus_and_count_http_publishes(
    api: httpx.AsyncClient, server: ServerProcess
) -> None:
    assert (await api.get("/metrics", headers={"X-API-Key": ""})).status_code == 401
    refused = await api.get("/metrics")  # an app's key
    assert refused.status_code == 403
    assert refused.json()["code"] == ErrorCode.LOGIN_NOT_AUTHORIZED
    admin = {"X-API-Key": server.admin_key}
    published = ("rtm2_messages_published_total", frozenset({("channel_type", "message")}))
    before = await api.get("/metrics", headers=admin)
    assert before.status_code == 200
    assert before.headers["content-type"].startswith("text/plain")
    count = scrape(before.text).get(published, 0.0)
    for i in range(3):
        sent = await api.post(messages(unique("metered")), json={"message": f"m{i}"})
        assert sent.status_code == 200
    after = scrape((await api.get("/metrics", headers=admin)).text)
    assert after[published] == count + 3
    assert ("rtm2_connections", frozenset()) in after
