"""``rtm2 api`` as an operator runs it (a subprocess), against a real `rtm2 serve` and SDK
clients."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

import rtm2
from rtm2 import ChannelType, ConnectionState, ErrorCode

from ..conftest import API_KEY_A, APP_A, ServerProcess
from .util import Users, enter, uid, unique


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("cli-api"), http=True).start()
    yield srv
    srv.stop()


async def rtm2_api(
    server: ServerProcess, *args: str, key: str = API_KEY_A
) -> subprocess.CompletedProcess[str]:
    """``rtm2 api --url ... --app APP_A ARGS`` with the key in RTM2_API_KEY; off the loop, so
    the SDK clients of the test keep running meanwhile."""
    env = {**os.environ, "RTM2_API_KEY": key}
    command = [sys.executable, "-m", "rtm2", "api", "--url", server.http_url, "--app", APP_A]
    return await asyncio.to_thread(
        subprocess.run, [*command, *args], capture_output=True, text=True, env=env, timeout=30
    )


async def test_publish_reaches_the_subscribers(server: ServerProcess, users: Users) -> None:
    channel = unique("news")
    alice = await users.login("alice")
    stream = await alice.subscribe(channel)
    out = await rtm2_api(server, "publish", channel, "héllo", "--custom-type", "note")
    assert (out.returncode, out.stdout.strip()) == (0, f"published to {channel}")
    got = await stream.get(timeout=5)
    assert (got.user_id, got.message, got.custom_type) == ("server", "héllo", "note")


async def test_send_delivers_to_an_online_user_and_fails_for_an_offline_one(
    server: ServerProcess, users: Users
) -> None:
    bob = await users.login("bob")
    out = await rtm2_api(server, "send", uid(bob), "psst", "--publisher", "support")
    assert (out.returncode, out.stdout.strip()) == (0, f"delivered to {uid(bob)}")
    got = await bob.peer_messages.get(timeout=5)
    assert (got.user_id, got.message) == ("support", "psst")
    out = await rtm2_api(server, "send", unique("nobody"), "hello?")
    assert out.returncode == 1
    assert f"code {int(ErrorCode.CHANNEL_RECEIVER_OFFLINE)}" in out.stderr
    out = await rtm2_api(server, "--json", "send", unique("nobody"), "hello?")
    assert out.returncode == 1
    assert json.loads(out.stdout)["code"] == ErrorCode.CHANNEL_RECEIVER_OFFLINE


async def test_channels_prints_a_table_and_follows_the_pages_with_all(
    server: ServerProcess, users: Users
) -> None:
    prefix = unique("c") + "-"
    alice, bob = await users.login("alice"), await users.login("bob")
    for name in ("a", "b", "c"):
        await enter(alice, prefix + name, ChannelType.MESSAGE)
    await enter(bob, prefix + "a", ChannelType.MESSAGE)
    out = await rtm2_api(server, "channels", "--prefix", prefix, "--limit", "2")
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["CHANNEL", "TYPE", "USERS"]
    assert [line.split() for line in lines[1:3]] == [
        [prefix + "a", "message", "2"],
        [prefix + "b", "message", "1"],
    ]
    assert lines[3].startswith("more: --cursor ")
    cursor = lines[3].split()[-1]
    rest = await rtm2_api(server, "channels", "--prefix", prefix, "--cursor", cursor)
    assert [line.split()[0] for line in rest.stdout.splitlines()[1:]] == [prefix + "c"]
    every = await rtm2_api(
        server, "--json", "channels", "--prefix", prefix, "--limit", "1", "--all"
    )
    body = json.loads(every.stdout)
    assert [c["channel"] for c in body["channels"]] == [prefix + n for n in "abc"]
    assert body["next_cursor"] == ""
    none = await rtm2_api(server, "channels", "--prefix", unique("void"), "--type", "stream")
    assert none.stdout.strip() == "no channels"


async def test_who_and_user_show_presence(server: ServerProcess, users: Users) -> None:
    channel = unique("room")
    alice = await users.login("alice")
    await alice.subscribe(channel, with_presence=True)
    await alice.presence.set_state(channel, ChannelType.MESSAGE, {"mood": "calm"})
    out = await rtm2_api(server, "who", channel, "--state")
    assert out.stdout.splitlines() == [
        f"1 user(s) in message channel {channel}",
        f'  {uid(alice)}  {{"mood": "calm"}}',
    ]
    out = await rtm2_api(server, "user", uid(alice))
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"{uid(alice)}: online on node ")
    assert lines[1:] == [f"  message channel {channel}"]
    body = json.loads((await rtm2_api(server, "--json", "user", unique("ghost"))).stdout)
    assert body == {"online": False, "since": None, "node": None, "channels": []}


async def test_kick_ends_the_session_and_bans_it(server: ServerProcess, users: Users) -> None:
    eve = await users.login("eve")
    events = users.conn_events(eve)
    out = await rtm2_api(server, "kick", uid(eve), "--reason", "spam", "--ban", "60")
    assert (out.returncode, out.stdout.strip()) == (0, f"kicked {uid(eve)}; banned for 60 s")
    while (await events.get(timeout=5)).state is not ConnectionState.FAILED:
        pass
    again = await rtm2_api(server, "kick", uid(eve))
    assert again.stdout.strip() == f"{uid(eve)} had no session"
    with pytest.raises(rtm2.RTMError):
        await users.login(user=uid(eve))


async def test_unban_lets_a_banned_user_log_in_again(server: ServerProcess, users: Users) -> None:
    user = unique("mallory")
    out = await rtm2_api(server, "kick", user, "--ban", "600")
    assert out.stdout.strip() == f"{user} had no session; banned for 600 s"
    with pytest.raises(rtm2.RTMError) as refused:
        await users.login(user=user)
    assert refused.value.code == ErrorCode.LOGIN_REJECTED
    listed = await rtm2_api(server, "bans")
    assert any(line.split()[:1] == [user] for line in listed.stdout.splitlines()[1:])
    out = await rtm2_api(server, "unban", user)
    assert (out.returncode, out.stdout.strip()) == (0, f"unbanned {user}")
    await users.login(user=user)
    again = await rtm2_api(server, "--json", "unban", user)
    assert json.loads(again.stdout) == {"unbanned": False}


async def test_info_needs_the_admin_key(server: ServerProcess, users: Users) -> None:
    await users.login("alice")
    refused = await rtm2_api(server, "info")
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: 403:")
    out = await rtm2_api(server, "info", key=server.admin_key)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"rtm2 {rtm2.__version__}"
    assert f"at {server.url}, up since " in lines[1]
    assert lines[2] == "live nodes: 1"
    node_row = next(line for line in lines if line.startswith(body_id := lines[1].split()[1]))
    assert node_row.split()[:3] == [body_id, server.url, server.http_url]
    assert rtm2.__version__ in node_row.split()
    assert any(line.split()[:1] == [APP_A] for line in lines)
    body = json.loads((await rtm2_api(server, "--json", "info", key=server.admin_key)).stdout)
    assert body["node"]["address"] == server.url


async def test_no_key_or_no_server_is_a_clear_error(server: ServerProcess) -> None:
    out = await rtm2_api(server, "channels", key="")
    assert (out.returncode, out.stderr.strip()) == (
        1,
        "error: no API key: give --key or RTM2_API_KEY",
    )
    env = {**os.environ, "RTM2_API_KEY": "k"}
    down = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "rtm2", "api", "--url", "http://127.0.0.1:9", "info"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert down.returncode == 1
    assert down.stderr.startswith("error: cannot reach http://127.0.0.1:9")


async def test_metadata_set_get_and_remove_go_through_the_storage_service(
    server: ServerProcess, users: Users
) -> None:
    channel = unique("board")
    out = await rtm2_api(
        server, "metadata", "set", channel, "topic=release", "owner=ops", "--author"
    )
    assert out.returncode == 0, out.stderr
    assert "major revision 1" in out.stdout
    alice = await users.login("alice")
    _, items = await alice.storage.get_channel_metadata(channel, ChannelType.MESSAGE)
    assert {k: (i.value, i.author) for k, i in items.items()} == {
        "topic": ("release", "server"),
        "owner": ("ops", "server"),
    }
    stale = await rtm2_api(server, "metadata", "set", channel, "topic=x", "--major-revision", "7")
    assert stale.returncode == 1
    assert f"code {int(ErrorCode.STORAGE_OUTDATED_REVISION)}" in stale.stderr
    out = await rtm2_api(server, "metadata", "remove", channel, "owner")
    assert out.returncode == 0, out.stderr
    shown = await rtm2_api(server, "--json", "metadata", "get", channel)
    assert [i["key"] for i in json.loads(shown.stdout)["items"]] == ["topic"]


async def test_locks_are_set_listed_revoked_and_removed(
    server: ServerProcess, users: Users
) -> None:
    channel = unique("locked")
    assert (
        await rtm2_api(server, "locks", "set", channel, "editor", "--ttl", "30")
    ).returncode == 0
    listed = await rtm2_api(server, "--json", "locks", "list", channel)
    assert [(x["name"], x["owner"]) for x in json.loads(listed.stdout)["locks"]] == [("editor", "")]
    assert "editor" in (await rtm2_api(server, "locks", "list", channel)).stdout
    alice = await users.login("alice")
    await enter(alice, channel, ChannelType.MESSAGE)
    await alice.lock.acquire(channel, ChannelType.MESSAGE, "editor")
    out = await rtm2_api(server, "locks", "revoke", channel, "editor", "--owner", uid(alice))
    assert out.returncode == 0, out.stderr
    out = await rtm2_api(server, "locks", "remove", channel, "editor")
    assert out.returncode == 0, out.stderr
    listed = await rtm2_api(server, "--json", "locks", "list", channel)
    assert json.loads(listed.stdout)["locks"] == []
