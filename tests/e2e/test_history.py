"""Message history end to end (docs/HISTORY.md): stored publishes and peer messages read back
page by page through the SDK, the sync facade and both HTTP shapes, against a real
`rtm2 serve` on the embedded engine (SQLite)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

import rtm2
import rtm2.sync
from rtm2 import ChannelType, ErrorCode, HistoryMessage, MessageType
from rtm2.tokens import build_rtm_token

from ..conftest import APP_OPEN, ServerProcess
from .util import Users, fails, unique

APP_H = "a5" * 16  # history on, anyone reads
APP_SUBS = "a6" * 16  # history on, only subscribers read
APP_SHORT = "a7" * 16  # history kept 2 s
APP_RATE_SDK = "a8" * 16  # history on: only stored publishes from the SDK, for /v1/info
APP_RATE_HTTP = "a9" * 16  # history on: only stored publishes through the HTTP API
KEY_H = "key-of-history"
RETENTION = 4.0


class HistoryServer(ServerProcess):
    """The suite's apps, plus three that keep history (no certificate: token "")."""

    def write_config(self) -> Path:
        path = super().write_config()
        lines = []
        for app, extra in (
            (APP_H, ""),
            (APP_SUBS, 'history_read = "subscribers"'),
            (APP_SHORT, f'retention = "{RETENTION}s"'),
            (APP_RATE_SDK, ""),
            (APP_RATE_HTTP, ""),
        ):
            lines += [
                "[[apps]]",
                f'id = "{app}"',
                f'api_keys = ["{KEY_H}-{app}"]',
                "[apps.limits]",
                "message_rate = 1000000",
                "[apps.history]",
                "enabled = true",
                extra,
            ]
        path.write_text(path.read_text() + "\n".join(lines) + "\n")
        return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = HistoryServer(tmp_path_factory.mktemp("history"), http=True).start()
    yield srv
    srv.stop()


@pytest.fixture
async def api(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=server.http_url, headers={"X-API-Key": f"{KEY_H}-{APP_H}"}, timeout=10
    ) as client:
        yield client


async def login(users: Users, app: str = APP_H, prefix: str = "u") -> rtm2.RTMClient:
    return await users.login(prefix, app_id=app, token="")


async def read_all(
    client: rtm2.RTMClient, channel: str, ctype: ChannelType, count: int, start: int = 0
) -> tuple[list[HistoryMessage], list[int]]:
    """Every page from ``start`` on; the messages and each page's size."""
    found: list[HistoryMessage] = []
    sizes: list[int] = []
    while True:
        page, start = await client.history.get_messages(channel, ctype, count=count, start=start)
        found += page
        sizes.append(len(page))
        if not start:
            return found, sizes


async def test_250_stored_messages_come_back_in_pages_of_100_newest_first_without_dups_or_gaps(
    users: Users,
) -> None:
    alice, bob = await login(users), await login(users)
    channel = unique("room")
    texts = [f"m{i:03d}" for i in range(250)]
    # Concurrent publishes share a commit, and many a millisecond.
    await asyncio.gather(*(alice.publish(channel, t, store_in_history=True) for t in texts[:125]))
    for i in range(5):  # not stored: never in history
        await alice.publish(channel, f"loose{i}")
    await asyncio.gather(*(alice.publish(channel, t, store_in_history=True) for t in texts[125:]))
    found, sizes = await read_all(bob, channel, ChannelType.MESSAGE, 100)
    assert sizes == [100, 100, 50]
    assert [m.message for m in found] == texts[::-1]
    ids = [m.id for m in found]
    assert ids == sorted(ids, reverse=True)
    assert len(set(ids)) == 250
    stamps = [m.timestamp for m in found]
    assert stamps == sorted(stamps, reverse=True)
    assert len(set(stamps)) < 250, "some messages share a millisecond"
    first = found[0]
    assert (first.user_id, first.channel, first.channel_type) == (
        alice.config.user_id,
        channel,
        ChannelType.MESSAGE,
    )
    assert first.message_type is MessageType.STRING
    assert abs(first.timestamp - time.time() * 1000) < 60_000


async def test_a_stored_message_reaches_subscribers_as_any_other_and_keeps_its_fields(
    users: Users,
) -> None:
    alice, bob = await login(users), await login(users)
    channel = unique("room")
    messages = await bob.subscribe(channel)
    await alice.publish(channel, b"\x00\x01", custom_type="bin", store_in_history=True)
    live = await messages.get(timeout=5)
    assert (live.message, live.custom_type) == (b"\x00\x01", "bin")
    [stored], new_start = await bob.history.get_messages(channel, ChannelType.MESSAGE)
    assert new_start == 0
    assert (stored.message, stored.message_type, stored.custom_type) == (
        b"\x00\x01",
        MessageType.BINARY,
        "bin",
    )
    assert stored.user_id == alice.config.user_id


async def test_start_excludes_and_end_includes_their_millisecond(users: Users) -> None:
    alice = await login(users)
    channel = unique("room")
    for i in range(3):
        await alice.publish(channel, f"m{i}", store_in_history=True)
        await asyncio.sleep(0.005)  # three distinct milliseconds
    everything, _ = await alice.history.get_messages(channel, ChannelType.MESSAGE)
    newest, middle, oldest = everything
    older, _ = await alice.history.get_messages(
        channel, ChannelType.MESSAGE, start=middle.timestamp
    )
    assert [m.message for m in older] == ["m0"]
    newer, _ = await alice.history.get_messages(channel, ChannelType.MESSAGE, end=middle.timestamp)
    assert [m.message for m in newer] == ["m2", "m1"]
    window, _ = await alice.history.get_messages(
        channel, ChannelType.MESSAGE, start=newest.timestamp, end=oldest.timestamp
    )
    assert [m.message for m in window] == ["m1", "m0"]
    # A page's new_start is a position: the next page starts right after its last message.
    page, new_start = await alice.history.get_messages(channel, ChannelType.MESSAGE, count=1)
    assert (page, new_start) == ([newest], newest.id)
    rest, last = await alice.history.get_messages(channel, ChannelType.MESSAGE, start=new_start)
    assert (rest, last) == ([middle, oldest], 0)


async def test_a_peer_conversation_is_read_by_its_two_users_and_nobody_else(
    users: Users,
) -> None:
    alice, bob, carol = [await login(users, prefix=p) for p in ("alice", "bob", "carol")]
    a, b = alice.config.user_id, bob.config.user_id
    await alice.publish(b, "hi bob", channel_type=ChannelType.USER, store_in_history=True)
    await bob.publish(a, "hi alice", channel_type=ChannelType.USER, store_in_history=True)
    await alice.publish(b, "not kept", channel_type=ChannelType.USER)
    for reader, other in ((alice, b), (bob, a)):
        found, _ = await reader.history.get_messages(other, ChannelType.USER)
        assert [(m.user_id, m.message) for m in found] == [(b, "hi alice"), (a, "hi bob")]
    for other in (a, b):  # carol's conversations with them are her own, and empty
        assert await carol.history.get_messages(other, ChannelType.USER) == ([], 0)


async def test_a_stored_peer_message_to_an_offline_user_is_kept_and_says_so(
    users: Users,
) -> None:
    alice = await login(users)
    dave = unique("dave")
    await fails(
        alice.publish(dave, "later", channel_type=ChannelType.USER, store_in_history=True),
        ErrorCode.CHANNEL_RECEIVER_OFFLINE_BUT_STORE_SUCCEEDED,
    )
    dave_client = await users.login(app_id=APP_H, user=dave, token="")
    found, _ = await dave_client.history.get_messages(alice.config.user_id, ChannelType.USER)
    assert [m.message for m in found] == ["later"]


async def test_bad_arguments_get_their_codes_and_store_nothing(users: Users) -> None:
    alice = await login(users)
    channel = unique("room")
    history = alice.history
    for count in (0, 101):
        await fails(
            history.get_messages(channel, ChannelType.MESSAGE, count), ErrorCode.INVALID_PARAMETER
        )
    await fails(history.get_messages(channel, ChannelType.STREAM), ErrorCode.INVALID_PARAMETER)
    await fails(
        alice.publish(channel, "x", channel_type=ChannelType.STREAM, store_in_history=True),
        ErrorCode.INVALID_PARAMETER,
    )
    stream = alice.stream_channel(unique("river"))
    await fails(stream.publish_topic("t", "x", store_in_history=True), ErrorCode.INVALID_PARAMETER)
    # These the server checks.
    await fails(
        history.get_messages(channel, ChannelType.MESSAGE, start=-1),
        ErrorCode.HISTORY_INVALID_TIMESTAMP,
    )
    await fails(
        history.get_messages(channel, ChannelType.MESSAGE, start=1000, end=1000),
        ErrorCode.HISTORY_INVALID_TIMESTAMP,
    )
    await fails(
        history.get_messages("bad name\n", ChannelType.MESSAGE), ErrorCode.INVALID_CHANNEL_NAME
    )
    await fails(
        alice.publish("bad name\n", "x", store_in_history=True), ErrorCode.INVALID_CHANNEL_NAME
    )
    await fails(
        alice.publish(channel, "x" * 40000, store_in_history=True),
        ErrorCode.CHANNEL_MESSAGE_LENGTH_EXCEED_LIMITATION,
    )
    assert await history.get_messages(channel, ChannelType.MESSAGE) == ([], 0)


async def test_an_app_without_history_refuses_storing_and_reading_and_delivers_nothing(
    users: Users,
) -> None:
    alice, bob = await login(users, APP_OPEN), await login(users, APP_OPEN)
    channel = unique("room")
    messages = await bob.subscribe(channel)
    await fails(
        alice.publish(channel, "kept?", store_in_history=True),
        ErrorCode.HISTORY_OPERATION_NOT_PERMITTED,
    )
    await fails(
        alice.history.get_messages(channel, ChannelType.MESSAGE),
        ErrorCode.HISTORY_OPERATION_NOT_PERMITTED,
    )
    await alice.publish(channel, "plain")
    assert (await messages.get(timeout=5)).message == "plain"  # the refused one never came


async def test_the_subscribers_policy_lets_only_subscribers_read_a_channel(users: Users) -> None:
    alice, bob = await login(users, APP_SUBS), await login(users, APP_SUBS)
    channel = unique("room")
    await alice.publish(channel, "kept", store_in_history=True)
    await fails(
        bob.history.get_messages(channel, ChannelType.MESSAGE),
        ErrorCode.HISTORY_OPERATION_NOT_PERMITTED,
    )
    await bob.subscribe(channel)
    found, _ = await bob.history.get_messages(channel, ChannelType.MESSAGE)
    assert [m.message for m in found] == ["kept"]


def rows(server: ServerProcess, app: str, channel: str) -> int:
    with sqlite3.connect(server.workdir / "data" / "rtm2.db") as db:
        count: int = db.execute(
            "SELECT COUNT(*) FROM history WHERE key = ?", (f"msg:{app}:{channel}",)
        ).fetchone()[0]
    return count


async def test_retention_removes_old_messages_and_paging_goes_on_across_the_cut(
    users: Users, server: ServerProcess
) -> None:
    alice = await login(users, APP_SHORT)
    channel = unique("room")
    await asyncio.gather(
        *(alice.publish(channel, f"old{i}", store_in_history=True) for i in range(20))
    )
    expires = time.monotonic() + RETENTION
    # The new ones expire 2 s after the old: room for a slow, shared machine.
    await asyncio.sleep(2.0)
    await asyncio.gather(
        *(alice.publish(channel, f"new{i}", store_in_history=True) for i in range(20))
    )
    page, new_start = await alice.history.get_messages(channel, ChannelType.MESSAGE, count=15)
    assert [m.message for m in page] == [f"new{i}" for i in range(19, 4, -1)]
    await asyncio.sleep(max(0.0, expires - time.monotonic()) + 0.1)
    rest, _ = await read_all(alice, channel, ChannelType.MESSAGE, 15, new_start)
    assert [m.message for m in rest] == [f"new{i}" for i in range(4, -1, -1)]
    # And the background sweep removes them from the database, too.
    deadline = time.monotonic() + 10
    while rows(server, APP_SHORT, channel) > 20:
        assert time.monotonic() < deadline, "the sweep never removed the old messages"
        await asyncio.sleep(0.1)
    assert rows(server, APP_SHORT, channel) == 20


def test_the_sync_client_stores_and_reads_history(server: ServerProcess) -> None:
    channel = unique("room")
    config = rtm2.RTMConfig(app_id=APP_H, user_id=unique("sync"))
    with rtm2.sync.RTMClient(config) as client:
        client.set_parameters({rtm2.PARAM_ENDPOINT: server.url})
        client.login("")
        client.publish(channel, "from sync", store_in_history=True)
        found, new_start = client.history.get_messages(channel, ChannelType.MESSAGE, count=10)
        assert ([m.message for m in found], new_start) == (["from sync"], 0)


# --- HTTP ----------------------------------------------------------------------------------


def v1(channel: str, ctype: str = "message", app: str = APP_H) -> str:
    return f"/v1/apps/{app}/channels/{ctype}/{channel}/history"


def agora(user: str, ctype: str, channel: str, app: str = APP_H) -> str:
    return f"/rtm/v2/history/{app}/userId/{user}/channelType/{ctype}/channel/{channel}"


async def test_http_publishes_stored_messages_and_both_shapes_page_through_them(
    api: httpx.AsyncClient, users: Users
) -> None:
    channel = unique("room")
    for i in range(5):
        body = {"message": f"m{i}", "publisher": "backend", "store_in_history": True}
        response = await api.post(f"/v1/apps/{APP_H}/channels/{channel}/messages", json=body)
        assert response.json() == {"ok": True}
    await api.post(
        f"/v1/apps/{APP_H}/channels/{channel}/messages",
        json={"message_b64": base64.b64encode(b"\xff").decode(), "store_in_history": True},
    )
    await api.post(f"/v1/apps/{APP_H}/channels/{channel}/messages", json={"message": "loose"})
    page = (await api.get(v1(channel), params={"count": 4})).json()
    assert [m.get("message") for m in page["messages"]] == [None, "m4", "m3", "m2"]
    assert page["messages"][0]["message_b64"] == "/w=="
    assert page["messages"][1]["publisher"] == "backend"
    rest = (await api.get(v1(channel), params={"start": page["new_start"]})).json()
    assert ([m["message"] for m in rest["messages"]], rest["new_start"]) == (["m1", "m0"], 0)
    # Agora's shape: the same messages.
    answer = (await api.get(agora("reader", "message", channel), params={"messageCount": 4})).json()
    assert (answer["errorCode"], answer["error"]) == (0, False)
    data = answer["data"]
    assert [m["message"] for m in data["messageList"]] == ["/w==", "m4", "m3", "m2"]
    assert [m["messageType"] for m in data["messageList"]][:2] == ["BINARY", "STRING"]
    assert data["count"] == 4
    assert data["newStart"] == page["new_start"]
    tail = (
        await api.get(agora("reader", "message", channel), params={"start": data["newStart"]})
    ).json()["data"]
    assert ([m["message"] for m in tail["messageList"]], tail["newStart"]) == (["m1", "m0"], 0)
    # And an SDK client reads what the backend stored.
    client = await login(users)
    found, _ = await client.history.get_messages(channel, ChannelType.MESSAGE)
    assert [m.message for m in found][1:] == ["m4", "m3", "m2", "m1", "m0"]


async def test_http_reads_and_stores_peer_conversations(
    api: httpx.AsyncClient, users: Users
) -> None:
    bob = await login(users, prefix="bob")
    b = bob.config.user_id
    sent = await api.post(
        f"/v1/apps/{APP_H}/users/{b}/messages",
        json={"message": "from support", "publisher": "support", "store_in_history": True},
    )
    assert sent.json() == {"ok": True}
    offline = await api.post(
        f"/v1/apps/{APP_H}/users/{unique('gone')}/messages",
        json={"message": "x", "publisher": "support", "store_in_history": True},
    )
    assert offline.status_code == 404
    assert offline.json()["code"] == ErrorCode.CHANNEL_RECEIVER_OFFLINE_BUT_STORE_SUCCEEDED
    found, _ = await bob.history.get_messages("support", ChannelType.USER)
    assert [m.message for m in found] == ["from support"]
    page = (await api.get(v1(b, "user"), params={"user": "support"})).json()
    assert [m["message"] for m in page["messages"]] == ["from support"]
    answer = (await api.get(agora("support", "user", b))).json()
    assert [m["message"] for m in answer["data"]["messageList"]] == ["from support"]
    stranger = (await api.get(agora("carol", "user", b))).json()
    assert stranger["data"]["messageList"] == []


async def test_http_history_errors_carry_their_codes(api: httpx.AsyncClient) -> None:
    channel = unique("room")
    cases = [
        (v1(channel, "stream"), {}, 400, ErrorCode.INVALID_PARAMETER),
        (v1(channel, "user"), {}, 400, ErrorCode.INVALID_USER_ID),
        (v1(channel, "nope"), {}, 400, ErrorCode.INVALID_CHANNEL_TYPE),
        (v1(channel), {"count": 101}, 400, ErrorCode.INVALID_PARAMETER),
        (v1(channel), {"start": 5, "end": 9}, 400, ErrorCode.HISTORY_INVALID_TIMESTAMP),
        (v1(channel, app=APP_OPEN), {}, 403, ErrorCode.LOGIN_NOT_AUTHORIZED),
    ]
    for path, params, status, code in cases:
        response = await api.get(path, params=params)
        assert (response.status_code, response.json()["code"]) == (status, code), path
    no_key = await api.get(v1(channel), headers={"X-API-Key": ""})
    assert no_key.status_code == 401
    stream = await api.get(agora("u", "stream", channel))
    assert stream.status_code == 400
    assert stream.json()["errorCode"] == ErrorCode.INVALID_PARAMETER
    assert stream.json()["error"] is True


async def test_an_http_publish_to_an_app_without_history_is_refused(
    server: ServerProcess,
) -> None:
    from ..conftest import API_KEY_A, APP_A

    async with httpx.AsyncClient(base_url=server.http_url, headers={"X-API-Key": API_KEY_A}) as a:
        response = await a.post(
            f"/v1/apps/{APP_A}/channels/{unique('room')}/messages",
            json={"message": "x", "store_in_history": True},
        )
    assert response.status_code == 400
    assert response.json()["code"] == ErrorCode.HISTORY_OPERATION_NOT_PERMITTED


# --- rtm2 api history ----------------------------------------------------------------------


async def rtm2_api(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RTM2_API_KEY": f"{KEY_H}-{APP_H}"}
    command = [sys.executable, "-m", "rtm2", "api", "--url", server.http_url, "--app", APP_H]
    return await asyncio.to_thread(
        subprocess.run, [*command, *args], capture_output=True, text=True, env=env, timeout=30
    )


async def test_rtm2_api_history_prints_the_stored_messages_page_by_page(
    server: ServerProcess, users: Users
) -> None:
    alice = await login(users)
    channel = unique("room")
    for i in range(3):
        await alice.publish(channel, f"m{i}", custom_type="note", store_in_history=True)
    out = await rtm2_api(server, "history", channel, "--count", "2")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].split() == ["TIME", "PUBLISHER", "TYPE", "MESSAGE"]
    assert [line.split()[-1] for line in lines[1:3]] == ["m2", "m1"]
    assert lines[1].split()[3] == alice.config.user_id
    assert lines[3].startswith("more: --start ")
    out = await rtm2_api(server, "--json", "history", channel, "--count", "2", "--all")
    body = json.loads(out.stdout)
    assert ([m["message"] for m in body["messages"]], body["new_start"]) == (["m2", "m1", "m0"], 0)
    out = await rtm2_api(server, "history", channel, "--type", "user")
    assert out.returncode == 1
    assert f"code {ErrorCode.INVALID_USER_ID}" in out.stderr


async def test_the_development_app_keeps_history_for_make_run_users(tmp_path: Path) -> None:
    server = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "rtm2", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert server.stdout is not None
        url = ""
        while not url:
            line = await asyncio.to_thread(server.stdout.readline)
            assert line, "rtm2 serve did not start"
            if "serving on " in line:
                url = line.split("serving on ", 1)[1].split()[0]
        app = json.loads((tmp_path / "rtm2-data" / "dev-app.json").read_text())
        client = rtm2.RTMClient(rtm2.RTMConfig(app_id=app["app_id"], user_id="alice"))
        client.set_parameters({rtm2.PARAM_ENDPOINT: url})
        await client.login(rtm2.build_rtm_token(app["app_id"], app["certificate"], "alice", 600))
        await client.publish("lobby", "kept", store_in_history=True)
        found, _ = await client.history.get_messages("lobby", ChannelType.MESSAGE)
        assert [m.message for m in found] == ["kept"]
        await client.logout()
    finally:
        server.terminate()
        await asyncio.to_thread(server.wait, 10)


async def test_the_agora_route_also_takes_agoras_token_header_for_its_user(
    api: httpx.AsyncClient, users: Users
) -> None:
    from ..conftest import APP_A, CERT_A
    from .util import token_for

    channel = unique("room")
    alice = await users.login("alice")  # app A: certificates, no history
    path = agora(alice.config.user_id, "message", channel, app=APP_A)
    good = {"Authorization": f"agora token={token_for(alice.config.user_id)}", "X-API-Key": ""}
    answer = await api.get(path, headers=good)
    assert answer.status_code == 400  # authenticated; app A keeps no history
    assert answer.json()["errorCode"] == ErrorCode.HISTORY_OPERATION_NOT_PERMITTED
    other = build_rtm_token(APP_A, CERT_A, "mallory", 600)
    wrong = await api.get(path, headers={"Authorization": f"agora token={other}", "X-API-Key": ""})
    assert (wrong.status_code, wrong.json()["code"]) == (401, ErrorCode.INVALID_TOKEN)
    # On a history app (no certificate: the token is ""), the user reads as with a key.
    bob = await login(users)
    await bob.publish(channel, "hi", store_in_history=True)
    mine = agora(bob.config.user_id, "message", channel)
    data = (await api.get(mine, headers={"Authorization": "agora token=", "X-API-Key": ""})).json()
    assert [m["message"] for m in data["data"]["messageList"]] == ["hi"]


async def test_stored_publishes_count_in_their_apps_messages_per_second(
    users: Users, server: ServerProcess
) -> None:
    alice = await login(users, APP_RATE_SDK)
    await alice.publish(unique("rate"), "kept", store_in_history=True)
    async with httpx.AsyncClient(base_url=server.http_url, timeout=10) as http:
        sent = await http.post(
            f"/v1/apps/{APP_RATE_HTTP}/channels/{unique('rate')}/messages",
            json={"message": "kept", "store_in_history": True},
            headers={"X-API-Key": f"{KEY_H}-{APP_RATE_HTTP}"},
        )
        assert sent.status_code == 200, sent.text
        info = (await http.get("/v1/info", headers={"X-API-Key": server.admin_key})).json()
    rates = {a["app_id"]: a["messages_per_second"] for a in info["apps"]}
    assert rates[APP_RATE_SDK] > 0
    assert rates[APP_RATE_HTTP] > 0
