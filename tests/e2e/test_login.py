"""Login, logout, tokens and sessions against a real ``rtm2 serve`` over real sockets."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

import rtm2
from rtm2 import ConnectionChangeReason as Reason
from rtm2 import ConnectionState as State
from rtm2 import ErrorCode

from ..conftest import APP_A, APP_B, APP_OPEN, CERT_A2, CERT_B, ServerProcess
from .util import client_for, next_event, token_for, unique


async def test_a_good_login_succeeds_with_connecting_then_connected(server: ServerProcess) -> None:
    user = unique("alice")
    client = client_for(server, user)
    conn_events, token_events = await client.login(token_for(user))
    assert client.logged_in
    assert client.session_id
    assert await next_event(conn_events) == (State.CONNECTING, Reason.CONNECTING)
    assert await next_event(conn_events) == (State.CONNECTED, Reason.LOGIN_SUCCESS)
    assert len(token_events) == 0
    await client.logout()


async def test_logout_emits_disconnected_and_ends_every_stream(server: ServerProcess) -> None:
    user = unique("bob")
    client = client_for(server, user)
    conn_events, token_events = await client.login(token_for(user))
    errors = client.errors
    await client.logout()
    seen = [(e.state, e.reason) async for e in conn_events]
    assert seen[-1] == (State.DISCONNECTED, Reason.LOGOUT)
    assert [t async for t in token_events] == []
    assert errors.closed
    with pytest.raises(rtm2.RTMError) as info:
        await token_events.get(timeout=1)
    assert info.value.code == ErrorCode.NOT_LOGIN
    assert not client.logged_in


async def test_a_client_can_log_in_again_after_logout(server: ServerProcess) -> None:
    user = unique("carol")
    client = client_for(server, user)
    for _ in range(3):
        conn_events, _ = await client.login(token_for(user))
        assert client.logged_in
        await client.logout()
        assert (await conn_events.get(timeout=1)).state is State.CONNECTING
    # The streams of each login are new; the old ones stay ended.
    conn_events2, _ = await client.login(token_for(user))
    assert conn_events2 is not conn_events
    assert conn_events.closed
    await client.logout()


async def test_logout_is_idempotent(server: ServerProcess) -> None:
    user = unique("dave")
    client = client_for(server, user)
    await client.logout()  # never logged in: nothing to do, and no error
    assert not client.logged_in

    conn_events, token_events = await client.login(token_for(user))
    assert client.logged_in
    session = client.session_id
    await client.logout()
    assert not client.logged_in
    assert conn_events.closed
    assert token_events.closed
    assert client.errors.closed
    # A second (and third) logout raises nothing and changes nothing: no second DISCONNECTED.
    await client.logout()
    await client.logout()
    assert not client.logged_in
    assert [(e.state, e.reason) async for e in conn_events] == [
        (State.CONNECTING, Reason.CONNECTING),
        (State.CONNECTED, Reason.LOGIN_SUCCESS),
        (State.DISCONNECTED, Reason.LOGOUT),
    ]
    with pytest.raises(rtm2.RTMError) as info:
        await client.renew_token(token_for(user))
    assert info.value.code == ErrorCode.NOT_LOGIN

    # The client is not left in a state of its own: a new login works, with new streams.
    conn_events2, _ = await client.login(token_for(user))
    assert conn_events2 is not conn_events
    assert client.logged_in
    assert client.session_id != session
    assert await next_event(conn_events2) == (State.CONNECTING, Reason.CONNECTING)
    assert await next_event(conn_events2) == (State.CONNECTED, Reason.LOGIN_SUCCESS)
    await client.renew_token(token_for(user))  # the new session answers
    await client.logout()
    assert not client.logged_in


@pytest.mark.parametrize(
    ("token_args", "code", "reason"),
    [
        pytest.param(
            {"user": "mallory"}, ErrorCode.INVALID_TOKEN, Reason.INVALID_TOKEN, id="other-user"
        ),
        pytest.param(
            {"app_id": APP_B, "cert": CERT_B},
            ErrorCode.INCONSISTENT_APPID,
            Reason.INCONSISTENT_APPID,
            id="other-app",
        ),
        pytest.param(
            {"cert": "f" * 32}, ErrorCode.INVALID_TOKEN, Reason.INVALID_TOKEN, id="wrong-cert"
        ),
        pytest.param(
            {"expire": 60, "issued_at": int(time.time()) - 120},
            ErrorCode.TOKEN_EXPIRED,
            Reason.TOKEN_EXPIRED,
            id="expired",
        ),
        pytest.param({"garbage": True}, ErrorCode.INVALID_TOKEN, Reason.INVALID_TOKEN, id="junk"),
    ],
)
async def test_a_bad_token_is_rejected_with_the_right_code(
    server: ServerProcess, token_args: dict[str, object], code: ErrorCode, reason: Reason
) -> None:
    user = unique("erin")
    client = client_for(server, user)
    args = dict(token_args)
    if args.pop("garbage", False):
        token = "007eJxTYJBa+zJifbGU092UC++8tGW"
    else:
        token = token_for(str(args.pop("user", user)), **args)  # type: ignore[arg-type]
    with pytest.raises(rtm2.RTMError) as info:
        await client.login(token)
    assert info.value.code == code
    assert not client.logged_in
    events = client._conn_events
    assert await next_event(events) == (State.CONNECTING, Reason.CONNECTING)
    assert await next_event(events) == (State.FAILED, reason)
    # The refused client is not stuck: a good token works on the same object.
    await client.login(token_for(user))
    await client.logout()


async def test_an_unknown_app_id_is_rejected_with_invalid_app_id(server: ServerProcess) -> None:
    client = client_for(server, "frank", app_id="e" * 32)
    with pytest.raises(rtm2.RTMError) as info:
        await client.login("")
    assert info.value.code == ErrorCode.INVALID_APP_ID


async def test_the_second_certificate_of_an_app_signs_valid_tokens(server: ServerProcess) -> None:
    user = unique("grace")
    client = client_for(server, user)
    await client.login(token_for(user, cert=CERT_A2))
    await client.logout()


async def test_an_app_without_certificate_takes_an_empty_token_or_its_app_id(
    server: ServerProcess,
) -> None:
    client = client_for(server, unique("heidi"), app_id=APP_OPEN)
    await client.login("")
    await client.logout()
    await client.login(APP_OPEN)
    await client.logout()
    with pytest.raises(rtm2.RTMError) as info:
        await client.login("not-a-token")
    assert info.value.code == ErrorCode.INVALID_TOKEN


async def test_apps_are_isolated_the_same_user_id_in_two_apps_does_not_evict(
    server: ServerProcess,
) -> None:
    user = unique("ivan")
    a = client_for(server, user)
    b = client_for(server, user, app_id=APP_B)
    events_a, _ = await a.login(token_for(user))
    await b.login(token_for(user, app_id=APP_B, cert=CERT_B))
    await asyncio.sleep(0.3)
    assert a.logged_in
    assert b.logged_in
    assert [e.state for e in [events_a.get_nowait(), events_a.get_nowait()] if e] == [
        State.CONNECTING,
        State.CONNECTED,
    ]
    assert events_a.get_nowait() is None
    await a.logout()
    await b.logout()


async def test_calls_before_login_raise_not_login(server: ServerProcess) -> None:
    client = client_for(server, unique("judy"))
    with pytest.raises(rtm2.RTMError) as info:
        await client.renew_token(token_for("judy"))
    assert info.value.code == ErrorCode.NOT_LOGIN


async def test_a_second_concurrent_login_is_refused(server: ServerProcess) -> None:
    user = unique("ken")
    client = client_for(server, user)
    results = await asyncio.gather(
        client.login(token_for(user)), client.login(token_for(user)), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, rtm2.RTMError)]
    assert len(errors) == 1
    assert errors[0].code == ErrorCode.DUPLICATE_OPERATION
    assert client.logged_in
    with pytest.raises(rtm2.RTMError) as info:
        await client.login(token_for(user))
    assert info.value.code == ErrorCode.DUPLICATE_OPERATION
    await client.logout()


async def test_an_invalid_user_id_is_refused_before_connecting(server: ServerProcess) -> None:
    for bad in ["", "_hidden", "a.b", "x" * 65, "tab\tchar"]:
        client = client_for(server, bad)
        with pytest.raises(rtm2.RTMError) as info:
            await client.login("")
        assert info.value.code == ErrorCode.INVALID_USER_ID


async def test_a_newer_login_of_the_same_user_evicts_the_older_session(
    server: ServerProcess,
) -> None:
    user = unique("leo")
    old, new = client_for(server, user), client_for(server, user)
    old_events, _ = await old.login(token_for(user))
    await new.login(token_for(user))
    states = [await next_event(old_events) for _ in range(3)]
    assert states[-1] == (State.FAILED, Reason.SAME_UID_LOGIN)
    error = await old.errors.get(timeout=5)
    assert error.code == ErrorCode.LOGIN_ABORTED
    with pytest.raises(rtm2.RTMError) as info:
        await old.renew_token(token_for(user))
    assert info.value.code == ErrorCode.NOT_LOGIN
    # The newer session is unaffected and keeps working.
    await new.renew_token(token_for(user))
    assert new.logged_in
    # The evicted client recovers the usual way: logout, then log in again (evicting `new`).
    await old.logout()
    await new.logout()
    await old.login(token_for(user))
    await old.logout()


async def test_renewing_after_the_warning_keeps_the_session_past_the_first_expiry(
    server: ServerProcess,
) -> None:
    user = unique("mia")
    client = client_for(server, user)
    conn_events, token_events = await client.login(token_for(user, expire=3))
    started = time.time()
    assert await token_events.get(timeout=5) == ""
    assert time.time() - started < 3
    await client.renew_token(token_for(user, expire=600))
    await asyncio.sleep(max(0.0, started + 4.5 - time.time()))
    assert client.logged_in
    await client.renew_token(token_for(user, expire=600))  # the session still answers
    states = []
    while (event := conn_events.get_nowait()) is not None:
        states.append(event.state)
    assert State.FAILED not in states
    await client.logout()


async def test_without_renewal_the_session_ends_failed_token_expired(
    server: ServerProcess,
) -> None:
    user = unique("nina")
    client = client_for(server, user)
    conn_events, token_events = await client.login(token_for(user, expire=2))
    assert await token_events.get(timeout=5) == ""
    events = [await next_event(conn_events, timeout=6) for _ in range(3)]
    assert events[-1] == (State.FAILED, Reason.TOKEN_EXPIRED)
    assert (await client.errors.get(timeout=1)).code == ErrorCode.TOKEN_EXPIRED
    assert not client.logged_in
    await client.logout()


async def test_renewing_with_a_bad_token_is_refused_and_the_session_goes_on(
    server: ServerProcess,
) -> None:
    user = unique("otto")
    client = client_for(server, user)
    await client.login(token_for(user))
    with pytest.raises(rtm2.RTMError) as info:
        await client.renew_token(token_for("someone-else"))
    assert info.value.code == ErrorCode.INVALID_TOKEN
    with pytest.raises(rtm2.RTMError) as info:
        await client.renew_token(token_for(user, expire=10, issued_at=int(time.time()) - 60))
    assert info.value.code == ErrorCode.TOKEN_EXPIRED
    await client.renew_token(token_for(user))
    assert client.logged_in
    await client.logout()


async def test_an_idle_session_is_kept_alive_by_the_sdk_heartbeat(server: ServerProcess) -> None:
    # The test server drops connections silent for 1.5 s; the SDK pings every 0.5 s.
    user = unique("pia")
    client = client_for(server, user)
    conn_events, _ = await client.login(token_for(user))
    await asyncio.sleep(3.0)
    assert client.logged_in
    await client.renew_token(token_for(user))
    assert [e.state for e in [conn_events.get_nowait() for _ in range(3)] if e] == [
        State.CONNECTING,
        State.CONNECTED,
    ]
    await client.logout()


async def test_an_unreachable_endpoint_gives_not_connected_quickly(tmp_path: Path) -> None:
    client = rtm2.RTMClient(rtm2.RTMConfig(app_id=APP_A, user_id="quinn"))
    client.set_parameters({rtm2.PARAM_ENDPOINT: "ws://127.0.0.1:9"})
    with pytest.raises(rtm2.RTMError) as info:
        await client.login("")
    assert info.value.code == ErrorCode.NOT_CONNECTED
    assert "127.0.0.1:9" in info.value.reason


async def test_a_bad_endpoint_parameter_is_refused() -> None:
    client = rtm2.RTMClient(rtm2.RTMConfig(app_id=APP_A, user_id="quinn"))
    with pytest.raises(rtm2.RTMError) as info:
        client.set_parameters({rtm2.PARAM_ENDPOINT: "http://example"})
    assert info.value.code == ErrorCode.INVALID_PARAMETER


def test_get_parameters_returns_a_copy() -> None:
    client = rtm2.RTMClient(rtm2.RTMConfig(app_id=APP_A, user_id="rita"))
    client.set_parameters({rtm2.PARAM_ENDPOINT: "ws://127.0.0.1:1234", "custom": 1})
    params = client.get_parameters()
    params[rtm2.PARAM_ENDPOINT] = "ws://elsewhere:1"
    assert client.get_parameters()[rtm2.PARAM_ENDPOINT] == "ws://127.0.0.1:1234"
    assert client.get_parameters()["custom"] == 1


async def test_log_file_and_logger_receive_the_sdk_log(
    server: ServerProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    user = unique("sam")
    log_file = tmp_path / "sdk.log"
    client = client_for(server, user, log_file=str(log_file))
    await client.login(token_for(user))
    await client.logout()
    text = log_file.read_text()
    assert "logged in as" in text
    assert "logged out" in text

    logger = logging.getLogger("my.app.rtm")
    with caplog.at_level(logging.INFO, logger="my.app.rtm"):
        client2 = client_for(server, user, logger=logger)
        await client2.login(token_for(user))
        await client2.logout()
    assert any(r.name == "my.app.rtm" and "logged in" in r.getMessage() for r in caplog.records)
