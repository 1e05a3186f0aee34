"""Metadata and locks through the HTTP API (docs/API.md), against a real `rtm2 serve` and SDK
subscribers: the same codes and events as the SDK's calls, the author "server"."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import rtm2
from rtm2 import ChannelType, ErrorCode, LockDetail, LockEvent, MetadataItem
from rtm2 import LockEventType as LockKind
from rtm2 import StorageEventType as Kind
from rtm2 import StorageType as Store

from ..conftest import API_KEY_A, APP_A, ServerProcess
from .util import Users, client_for, fails, uid, unique

MESSAGE = ChannelType.MESSAGE
APP_SERVER = "a6" * 16  # lock_admin = "server": only the HTTP API sets, removes, revokes
API_KEY_SERVER = "key-of-the-server-locks-app"


class StorageServer(ServerProcess):
    """The suite's server with its HTTP API, plus an app whose locks only the server manages."""

    def write_config(self) -> Path:
        path = super().write_config()
        extra = [
            "[[apps]]",
            f'id = "{APP_SERVER}"',
            f'api_keys = ["{API_KEY_SERVER}"]',
            'lock_admin = "server"',
        ]
        path.write_text(path.read_text() + "\n".join(extra) + "\n")
        return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = StorageServer(tmp_path_factory.mktemp("http-storage"), http=True).start()
    yield srv
    srv.stop()


@pytest.fixture
async def api(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=server.http_url, headers={"X-API-Key": API_KEY_A}, timeout=5
    ) as client:
        yield client


def channel_path(channel: str, what: str = "metadata", app: str = APP_A) -> str:
    return f"/v1/apps/{app}/channels/message/{channel}/{what}"


def user_path(user: str) -> str:
    return f"/v1/apps/{APP_A}/users/{user}/metadata"


def body(**kv: Any) -> dict[str, Any]:
    return {"items": [{"key": k, "value": v} for k, v in kv.items()]}


def values(answer: httpx.Response) -> dict[str, str]:
    assert answer.status_code == 200, answer.text
    return {i["key"]: i["value"] for i in answer.json()["items"]}


def error(answer: httpx.Response) -> tuple[int, int]:
    return answer.status_code, answer.json()["code"]


async def metadata_events(client: rtm2.RTMClient, channel: str) -> Any:
    """Subscribe with metadata; the event stream past its SNAPSHOT."""
    await client.subscribe(channel, with_metadata=True, with_presence=False)
    _, events = await client.storage.get_channel_metadata_events(channel, MESSAGE)
    assert (await events.get(timeout=5)).type is Kind.SNAPSHOT
    return events


async def lock_events(client: rtm2.RTMClient, channel: str) -> Any:
    await client.subscribe(channel, with_lock=True, with_presence=False)
    _, events = await client.lock.get_lock_events(channel, MESSAGE)
    assert (await events.get(timeout=5)).type is LockKind.SNAPSHOT
    return events


# --- channel and user metadata ------------------------------------------------------------


async def test_an_http_channel_metadata_write_reaches_sdk_subscribers_with_the_author_server(
    api: httpx.AsyncClient, users: Users
) -> None:
    channel = unique("meta")
    alice = await users.login("alice")
    events = await metadata_events(alice, channel)

    answer = await api.put(channel_path(channel), json=body(topic="news") | {"record_author": True})
    assert values(answer) == {"topic": "news"}
    event = await events.get(timeout=5)
    assert (event.type, event.storage_type, event.channel) == (Kind.UPDATE, Store.CHANNEL, channel)
    item = event.items["topic"]
    assert (item.value, item.author, item.revision) == ("news", "server", 1)
    assert answer.json()["items"][0]["author"] == "server"

    # the SDK reads what the API wrote, and the API what the SDK wrote
    assert (await alice.storage.get_channel_metadata(channel, MESSAGE)).items["topic"].author == (
        "server"
    )
    await alice.storage.update_channel_metadata(channel, MESSAGE, [MetadataItem("topic", "b")])
    assert values(await api.get(channel_path(channel))) == {"topic": "b"}
    assert (await events.get(timeout=5)).items["topic"].value == "b"


async def test_a_stale_revision_over_http_gets_the_code_the_sdk_gets(
    api: httpx.AsyncClient, users: Users
) -> None:
    channel = unique("stale")
    alice = await users.login("alice")
    first = await api.put(channel_path(channel), json=body(a="1"))
    major = first.json()["major_revision"]
    await api.put(channel_path(channel), json=body(b="2"))  # the set moves on

    stale = await api.put(channel_path(channel), json=body(c="3") | {"major_revision": major})
    await fails(
        alice.storage.set_channel_metadata(
            channel, MESSAGE, [MetadataItem("c", "3")], major_revision=major
        ),
        ErrorCode.STORAGE_OUTDATED_REVISION,
    )
    assert error(stale) == (400, ErrorCode.STORAGE_OUTDATED_REVISION)

    item_stale = {"items": [{"key": "a", "value": "x", "revision": 7}]}
    assert error(await api.patch(channel_path(channel), json=item_stale)) == (
        400,
        ErrorCode.STORAGE_OUTDATED_REVISION,
    )
    missing = await api.patch(channel_path(channel), json=body(nothere="1"))
    assert error(missing) == (400, ErrorCode.STORAGE_INVALID_METADATA_ITEM)
    assert values(await api.get(channel_path(channel))) == {"a": "1", "b": "2"}  # all or nothing


async def test_delete_removes_the_items_given_or_else_the_whole_set(
    api: httpx.AsyncClient, users: Users
) -> None:
    channel = unique("remove")
    alice = await users.login("alice")
    await api.put(channel_path(channel), json=body(a="1", b="2", c="3"))
    events = await metadata_events(alice, channel)

    answer = await api.request("DELETE", channel_path(channel), json=body(a=""))
    assert values(answer) == {"b": "2", "c": "3"}
    assert set((await events.get(timeout=5)).items) == {"b", "c"}
    assert values(await api.delete(channel_path(channel))) == {}
    assert (await events.get(timeout=5)).items == {}


async def test_user_metadata_over_http_reaches_the_users_metadata_subscribers(
    api: httpx.AsyncClient, users: Users
) -> None:
    alice, bob = await users.login("alice"), await users.login("bob")
    me = uid(alice)
    _, events = await bob.storage.subscribe_user_metadata(me)
    assert (await events.get(timeout=5)).type is Kind.SNAPSHOT

    put = await api.put(user_path(me), json=body(mood="calm") | {"record_author": True})
    assert values(put) == {"mood": "calm"}
    event = await events.get(timeout=5)
    assert (event.type, event.storage_type, event.user_id) == (Kind.UPDATE, Store.USER, me)
    assert event.items["mood"].author == "server"
    assert values(await api.patch(user_path(me), json=body(mood="busy"))) == {"mood": "busy"}
    assert values(await api.get(user_path(me))) == {"mood": "busy"}
    assert (await alice.storage.get_user_metadata(me)).items["mood"].value == "busy"
    assert values(await api.delete(user_path(me))) == {}
    assert [(await events.get(timeout=5)).items.keys() for _ in range(2)][1] == set()


async def test_a_lock_bound_write_goes_through_only_while_the_named_user_holds_the_lock(
    api: httpx.AsyncClient, users: Users
) -> None:
    channel = unique("bound")
    alice, bob = await users.login("alice"), await users.login("bob")
    assert (await api.put(channel_path(channel, "locks/editor"), json={"ttl": 30})).is_success
    await alice.lock.acquire(channel, MESSAGE, "editor")

    bound = body(a="1") | {"lock_name": "editor", "lock_owner": uid(alice)}
    assert values(await api.put(channel_path(channel), json=bound)) == {"a": "1"}
    others = bound | {"lock_owner": uid(bob)}
    assert error(await api.put(channel_path(channel), json=others)) == (
        400,
        ErrorCode.STORAGE_LOCK_NOT_ACQUIRED,
    )
    no_owner = body(a="2") | {"lock_name": "editor"}
    assert error(await api.put(channel_path(channel), json=no_owner)) == (
        400,
        ErrorCode.INVALID_PARAMETER,
    )


async def test_bad_writes_get_the_sdks_codes(api: httpx.AsyncClient) -> None:
    channel = unique("bad")
    twice = {"items": [{"key": "a"}, {"key": "a"}]}
    assert error(await api.put(channel_path(channel), json=twice)) == (
        400,
        ErrorCode.STORAGE_DUPLICATE_KEY,
    )
    assert error(await api.put(channel_path(channel), json=body(**{"": "x"}))) == (
        400,
        ErrorCode.STORAGE_INVALID_KEY,
    )
    too_big = body(big="x" * (16 * 1024))  # key + value over metadata_item_size
    assert error(await api.put(channel_path(channel), json=too_big)) == (
        400,
        ErrorCode.STORAGE_VALUE_LENGTH_OVERFLOW,
    )
    wrong_type = f"/v1/apps/{APP_A}/channels/video/{channel}/metadata"
    assert error(await api.get(wrong_type)) == (400, ErrorCode.INVALID_CHANNEL_TYPE)
    assert error(await api.get(user_path("_reserved"))) == (400, ErrorCode.INVALID_USER_ID)
    no_key = await api.get(channel_path(channel), headers={"X-API-Key": ""})
    assert error(no_key) == (401, ErrorCode.INVALID_TOKEN)


async def test_the_backend_is_not_held_to_a_clients_storage_rate(api: httpx.AsyncClient) -> None:
    channel = unique("burst")
    for n in range(60):  # three times a client's 20 storage calls a second, at once
        answer = await api.put(channel_path(channel), json=body(n=str(n)))
        assert answer.status_code == 200, answer.text
    assert values(await api.get(channel_path(channel))) == {"n": "59"}


# --- locks --------------------------------------------------------------------------------


async def test_locks_set_listed_revoked_and_removed_over_http_are_seen_by_sdk_subscribers(
    server: ServerProcess,
) -> None:
    """On an app where only the server manages locks: the SDK may not, the API may."""
    channel = unique("locks")
    carol = client_for(server, unique("carol"), app_id=APP_SERVER)
    dave = client_for(server, unique("dave"), app_id=APP_SERVER)
    async with httpx.AsyncClient(
        base_url=server.http_url, headers={"X-API-Key": API_KEY_SERVER}, timeout=5
    ) as api:
        await carol.login("")
        await dave.login("")
        try:
            events = await lock_events(carol, channel)
            await fails(dave.lock.set(channel, MESSAGE, "editor"), ErrorCode.LOCK_OPERATION_FAILED)
            lock = channel_path(channel, "locks/editor", APP_SERVER)

            def event(kind: LockKind, owner: str = "") -> LockEvent:
                return LockEvent(
                    kind, channel, MESSAGE, {"editor": LockDetail("editor", owner, 30)}
                )

            assert (await api.put(lock, json={"ttl": 30})).json() == {"ok": True}
            assert await events.get(timeout=5) == event(LockKind.SET)
            listed = await api.get(channel_path(channel, "locks", APP_SERVER))
            assert listed.json() == {"locks": [{"name": "editor", "owner": "", "ttl": 30}]}

            await dave.lock.acquire(channel, MESSAGE, "editor")
            assert await events.get(timeout=5) == event(LockKind.ACQUIRED, uid(dave))
            listed = await api.get(channel_path(channel, "locks", APP_SERVER))
            assert listed.json()["locks"][0]["owner"] == uid(dave)

            revoked = await api.post(lock + "/revoke", json={"owner": uid(dave)})
            assert revoked.json() == {"ok": True}
            assert await events.get(timeout=5) == event(LockKind.RELEASED)
            # not the owner any more, and a lock set twice: the SDK's codes
            again = await api.post(lock + "/revoke", json={"owner": uid(dave)})
            assert error(again) == (400, ErrorCode.LOCK_NOT_ACQUIRED)
            twice = await api.put(lock, json={"ttl": 30})
            assert error(twice) == (400, ErrorCode.LOCK_ALREADY_EXIST)

            assert (await api.delete(lock)).json() == {"ok": True}
            assert await events.get(timeout=5) == event(LockKind.REMOVED)
            assert (await api.get(channel_path(channel, "locks", APP_SERVER))).json() == {
                "locks": []
            }
            assert error(await api.delete(lock)) == (400, ErrorCode.LOCK_NOT_EXIST)
        finally:
            await carol.logout()
            await dave.logout()


async def test_lock_names_are_checked_as_for_the_sdk(api: httpx.AsyncClient) -> None:
    lock = channel_path(unique("names"), "locks/" + "x" * 65)
    assert error(await api.put(lock, json={"ttl": 30})) == (400, ErrorCode.LOCK_INVALID_NAME)


async def test_the_openapi_document_lists_the_metadata_and_lock_endpoints(
    api: httpx.AsyncClient,
) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    channel = "/v1/apps/{app_id}/channels/{channel_type}/{channel}"
    assert {"get", "put", "patch", "delete"} <= set(paths[channel + "/metadata"])
    assert {"get", "put", "patch", "delete"} <= set(
        paths["/v1/apps/{app_id}/users/{user_id}/metadata"]
    )
    assert "get" in paths[channel + "/locks"]
    assert {"put", "delete"} <= set(paths[channel + "/locks/{name}"])
    assert "post" in paths[channel + "/locks/{name}/revoke"]
