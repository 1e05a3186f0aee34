"""LoginCore: the client's login, reconnection and handshake decisions, without I/O."""

from __future__ import annotations

import pytest

from rtm2.client.config import PARAM_ENDPOINT, RTMConfig
from rtm2.client.core import Failure, LoginCore, Phase, endpoints, failure_reason, unreachable
from rtm2.errors import ErrorCode, RTMError
from rtm2.protocol.frames import LoginResult, Position, ResumeResult
from rtm2.types import ChannelType
from rtm2.types import ConnectionChangeReason as Reason

CONFIG = RTMConfig(app_id="a" * 32, user_id="alice")
CHAT = (ChannelType.MESSAGE, "chat", "")


def logged_in(epoch: str = "e1") -> LoginCore:
    core = LoginCore()
    core.begin_login(CONFIG)
    core.new_session(LoginResult("s1", 0, 99, "resume-1", epoch))
    core.login_done("tok")
    return core


def code_of(call: object, *args: object) -> int:
    with pytest.raises(RTMError) as info:
        call(*args)  # type: ignore[operator]
    return int(info.value.code)


# --- logging in and out ----------------------------------------------------------------------


def test_a_login_moves_from_idle_through_logging_in_to_logged_in() -> None:
    core = LoginCore()
    assert core.phase is Phase.IDLE
    core.begin_login(CONFIG)
    assert core.phase is Phase.LOGGING_IN
    core.new_session(LoginResult("s1", 0, 99, "resume-1", "e1"))
    core.login_done("tok")
    assert (core.phase, core.session_id, core.login_token, core.expires_at) == (
        Phase.LOGGED_IN,
        "s1",
        "tok",
        99,
    )


def test_a_second_login_is_refused_while_logging_in_or_logged_in() -> None:
    core = LoginCore()
    core.begin_login(CONFIG)
    assert code_of(core.begin_login, CONFIG) == ErrorCode.DUPLICATE_OPERATION
    assert code_of(logged_in().begin_login, CONFIG) == ErrorCode.DUPLICATE_OPERATION


def test_a_bad_user_id_or_an_empty_app_id_is_refused_before_anything_is_sent() -> None:
    core = LoginCore()
    bad_user = RTMConfig(app_id="a" * 32, user_id="")
    assert code_of(core.begin_login, bad_user) == ErrorCode.INVALID_USER_ID
    no_app = RTMConfig(app_id="", user_id="alice")
    assert code_of(core.begin_login, no_app) == ErrorCode.INVALID_APP_ID
    assert core.phase is Phase.IDLE


def test_a_failed_login_leaves_the_client_idle_and_ready_to_try_again() -> None:
    core = LoginCore()
    core.begin_login(CONFIG)
    core.login_failed()
    assert core.phase is Phase.IDLE
    core.begin_login(CONFIG)


def test_calls_need_a_session_connected_or_reconnecting() -> None:
    core = LoginCore()
    assert code_of(core.require_login) == ErrorCode.NOT_LOGIN
    core = logged_in()
    core.require_login()
    assert core.connection_lost(Reason.LOST, "cut", auto_reconnect=True) is True
    core.require_login()
    assert code_of(core.require_connected, False) == ErrorCode.NOT_LOGIN


def test_logout_is_refused_during_a_login_and_says_whether_a_session_was_on() -> None:
    core = LoginCore()
    core.begin_login(CONFIG)
    assert code_of(core.begin_logout) == ErrorCode.DUPLICATE_OPERATION
    assert logged_in().begin_logout() is True
    assert LoginCore().begin_logout() is False


def test_a_refused_login_is_reported_with_its_reason_and_unreachable_endpoints_are_skipped() -> (
    None
):
    assert failure_reason(ErrorCode.INVALID_TOKEN) is Reason.INVALID_TOKEN
    assert failure_reason(ErrorCode.NOT_CONNECTED) is Reason.LOST
    assert failure_reason(ErrorCode.INVALID_PARAMETER) is Reason.REJECTED_BY_SERVER
    assert unreachable(ErrorCode.LOGIN_TIMEOUT)
    assert not unreachable(ErrorCode.INVALID_TOKEN)


def test_endpoints_are_the_configured_ones_or_else_the_sidecar() -> None:
    assert endpoints({PARAM_ENDPOINT: "ws://a"}, "ws://side") == ["ws://a"]
    assert endpoints({PARAM_ENDPOINT: ["ws://a", "ws://b"]}, "") == ["ws://a", "ws://b"]
    assert endpoints({}, "ws://side") == ["ws://side"]
    assert endpoints({}, "") == []


# --- losing the connection -------------------------------------------------------------------


def test_a_lost_connection_is_reconnected_when_auto_reconnect_is_on() -> None:
    core = logged_in()
    assert core.connection_lost(Reason.KEEP_ALIVE_TIMEOUT, "silent", auto_reconnect=True) is True
    assert core.phase is Phase.RECONNECTING
    assert core.reconnectable(has_link=False)


def test_a_lost_connection_fails_the_session_without_auto_reconnect() -> None:
    core = logged_in()
    failure = core.connection_lost(Reason.LOST, "cut", auto_reconnect=False)
    assert failure == Failure(Reason.LOST, ErrorCode.NOT_CONNECTED, "cut")
    assert core.phase is Phase.FAILED
    assert code_of(core.require_login) == ErrorCode.NOT_LOGIN


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        (Reason.SAME_UID_LOGIN, ErrorCode.LOGIN_ABORTED),
        (Reason.TOKEN_EXPIRED, ErrorCode.TOKEN_EXPIRED),
        (Reason.BANNED_BY_SERVER, ErrorCode.NOT_CONNECTED),
    ],
)
def test_a_terminal_kick_fails_the_session_with_its_code(reason: Reason, code: ErrorCode) -> None:
    core = logged_in()
    failure = core.connection_lost(reason, "kicked", auto_reconnect=True)
    assert failure == Failure(reason, code, "kicked")


def test_a_connection_lost_when_not_logged_in_changes_nothing() -> None:
    core = LoginCore()
    assert core.connection_lost(Reason.LOST, "cut", auto_reconnect=True) is False
    assert core.phase is Phase.IDLE


def test_a_failed_reconnection_attempt_is_retried_until_a_fatal_code_or_the_time_limit() -> None:
    core = logged_in()
    core.connection_lost(Reason.LOST, "cut", auto_reconnect=True)
    down = RTMError(ErrorCode.NOT_CONNECTED, "refused")
    assert core.attempt_failed(down, elapsed=5.0, give_up_after=0.0) is None
    assert core.attempt_failed(down, elapsed=5.0, give_up_after=10.0) is None
    assert core.phase is Phase.RECONNECTING
    assert core.attempt_failed(down, elapsed=11.0, give_up_after=10.0) == Failure(
        Reason.LOST, ErrorCode.NOT_CONNECTED, "gave up reconnecting"
    )
    assert core.phase is Phase.FAILED


def test_a_reconnection_refused_for_the_token_fails_at_once_with_that_code() -> None:
    core = logged_in()
    core.connection_lost(Reason.LOST, "cut", auto_reconnect=True)
    refused = RTMError(ErrorCode.TOKEN_EXPIRED, "expired")
    assert core.attempt_failed(refused, elapsed=0.0, give_up_after=0.0) == Failure(
        Reason.TOKEN_EXPIRED, ErrorCode.TOKEN_EXPIRED, "expired"
    )


def test_a_reconnection_that_succeeds_after_a_logout_is_dropped() -> None:
    core = logged_in()
    core.connection_lost(Reason.LOST, "cut", auto_reconnect=True)
    core.begin_logout()
    assert core.reconnected() is False
    assert core.phase is Phase.IDLE
    core = logged_in()
    core.connection_lost(Reason.LOST, "cut", auto_reconnect=True)
    assert core.reconnected() is True
    assert core.phase is Phase.LOGGED_IN


# --- the handshake ---------------------------------------------------------------------------


def test_a_resume_presents_the_session_and_every_position_in_the_current_epoch() -> None:
    core = logged_in("e1")
    core.offsets.start(CHAT, 7)
    frame = core.resume_frame(3, CONFIG)
    assert (frame.rid, frame.session_id, frame.resume_token) == (3, "s1", "resume-1")
    assert frame.positions == [Position(ChannelType.MESSAGE, "chat", "", 7, "e1")]


def test_only_a_refused_resume_falls_back_to_a_login() -> None:
    assert LoginCore.resume_refused(ErrorCode.LOGIN_REJECTED)
    assert not LoginCore.resume_refused(ErrorCode.LOGIN_TIMEOUT)


def test_a_resumed_session_reports_the_positions_it_could_not_recover() -> None:
    core = logged_in()
    lost = [Position(ChannelType.MESSAGE, "chat", "", 7, "e1")]
    assert core.resumed(ResumeResult("s1", 0, 123, lost)) == lost
    assert core.expires_at == 123


def test_the_next_resume_presents_the_token_the_last_resume_handed_out() -> None:
    core = logged_in()
    core.resumed(ResumeResult("s1", 0, 123, [], "resume-2"))
    assert core.resume_frame(4, CONFIG).resume_token == "resume-2"


def test_a_new_session_recovers_from_the_offsets_of_the_old_epoch() -> None:
    core = logged_in("e1")
    core.offsets.start(CHAT, 7)
    core.new_session(LoginResult("s2", 0, 99, "resume-2", "e2"))
    assert core.session_id == "s2"
    assert core.offsets.recovering_from(CHAT) == (7, "e1")


@pytest.mark.parametrize(("asked", "sent"), [(1, 5), (60, 60), (1000, 300)])
def test_the_login_frame_clamps_the_presence_timeout_to_5_300_s(asked: int, sent: int) -> None:
    config = RTMConfig(app_id="a" * 32, user_id="alice", presence_timeout=asked)
    frame = LoginCore().login_frame(1, config, "tok")
    assert (frame.token, frame.presence_timeout) == ("tok", sent)
