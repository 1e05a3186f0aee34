"""The session's state table, checked without sockets: every client frame has a row, each state
allows what the protocol documents, refusals carry the documented codes, and only the listed
state changes happen."""

from __future__ import annotations

import typing
from types import SimpleNamespace
from typing import Any

import pytest

from rtm2.errors import ErrorCode
from rtm2.protocol.codec import decode_server
from rtm2.protocol.codes import CLOSE_PROTOCOL_ERROR
from rtm2.protocol.frames import (
    AcquireLock,
    Batch,
    ClientFrame,
    GetHistory,
    Hello,
    Login,
    Logout,
    Ping,
    Pong,
    Publish,
    PublishTopic,
    RenewToken,
    Reply,
    Resume,
    ServerFrame,
    StreamJoin,
    WhoNow,
)
from rtm2.server.metrics import Counts
from rtm2.server.session import Session
from rtm2.server.table import (
    ANY,
    TABLE,
    TRANSITIONS,
    IllegalTransition,
    SessionState,
    allowed,
    bind,
    check_transition,
    refusal,
)

NEW, OPEN, LOGGED_IN, DETACHED, CLOSED = SessionState

CLIENT_FRAMES = set(typing.get_args(ClientFrame))
# Everything but the handshake and ping: the requests of a logged-in user.
USER_REQUESTS = CLIENT_FRAMES - {Hello, Login, Resume, Ping}


def test_every_client_frame_type_has_exactly_one_row() -> None:
    assert set(TABLE) == CLIENT_FRAMES
    assert Batch not in TABLE  # a batch is unpacked before the table is asked


def test_a_new_session_handles_only_hello() -> None:
    assert allowed(NEW) == {Hello}


def test_an_open_session_handles_login_resume_and_ping() -> None:
    assert allowed(OPEN) == {Login, Resume, Ping}


def test_a_logged_in_session_handles_every_user_request_but_no_handshake() -> None:
    assert allowed(LOGGED_IN) == USER_REQUESTS | {Ping}
    assert {Logout, RenewToken, Publish, PublishTopic} <= allowed(LOGGED_IN)


def test_a_detached_session_only_answers_pings_and_a_closed_one_nothing() -> None:
    assert allowed(DETACHED) == {Ping}
    assert allowed(CLOSED) == set()


def test_ping_is_answered_in_every_state_after_hello_until_the_session_ends() -> None:
    assert TABLE[Ping].states == ANY - {NEW, CLOSED}


@pytest.mark.parametrize("frame", sorted(CLIENT_FRAMES - {Hello}, key=lambda t: t.__name__))
def test_a_new_session_refuses_everything_but_hello_with_invalid_parameter_and_closes(
    frame: type[ClientFrame],
) -> None:
    assert refusal(NEW, frame) == (ErrorCode.INVALID_PARAMETER, "send hello first", True)


@pytest.mark.parametrize("state", [OPEN, LOGGED_IN, DETACHED, CLOSED])
def test_a_second_hello_is_a_duplicate_operation(state: SessionState) -> None:
    assert refusal(state, Hello).code == ErrorCode.DUPLICATE_OPERATION
    assert not refusal(state, Hello).close


@pytest.mark.parametrize("state", [LOGGED_IN, DETACHED])
def test_login_while_logged_in_is_a_duplicate_operation(state: SessionState) -> None:
    assert refusal(state, Login) == (ErrorCode.DUPLICATE_OPERATION, "already logged in", False)


@pytest.mark.parametrize("state", [LOGGED_IN, DETACHED, CLOSED])
def test_resume_anywhere_but_open_is_a_duplicate_operation(state: SessionState) -> None:
    assert refusal(state, Resume) == (ErrorCode.DUPLICATE_OPERATION, "already logged in", False)


@pytest.mark.parametrize("frame", sorted(USER_REQUESTS, key=lambda t: t.__name__))
@pytest.mark.parametrize("state", [OPEN, DETACHED, CLOSED])
def test_user_requests_before_login_or_after_the_connection_went_are_not_login(
    state: SessionState, frame: type[ClientFrame]
) -> None:
    assert refusal(state, frame) == (ErrorCode.NOT_LOGIN, "log in first", False)


@pytest.mark.parametrize(
    ("current", "to"),
    [
        (NEW, OPEN),
        (OPEN, LOGGED_IN),
        (LOGGED_IN, DETACHED),
        (DETACHED, LOGGED_IN),
        (NEW, CLOSED),
        (OPEN, CLOSED),
        (LOGGED_IN, CLOSED),
        (DETACHED, CLOSED),
    ],
)
def test_the_documented_state_changes_are_legal(current: SessionState, to: SessionState) -> None:
    assert check_transition(current, to) is to


def test_every_other_state_change_is_refused() -> None:
    legal = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    assert len(legal) == 8
    for current in SessionState:
        for to in SessionState:
            if (current, to) not in legal:
                with pytest.raises(IllegalTransition):
                    check_transition(current, to)


def test_a_closed_session_never_changes_state_again() -> None:
    assert TRANSITIONS[CLOSED] == frozenset()


# --- a session driven through the table, with fake services and a fake connection -----------


class FakeConnection:
    def __init__(self) -> None:
        self.sent: list[ServerFrame] = []
        self.closed: tuple[int, str] | None = None
        self.last_seen = 0.0
        self.peer = "test"
        self.closing = False

    def send(self, data: bytes) -> None:
        length = data[1] & 0x7F
        header = 2 + {126: 2, 127: 8}.get(length, 0)
        self.sent.append(decode_server(data[header:]))

    def close(self, code: int, reason: str, *, flush: bool = True) -> None:
        self.closed = (code, reason)


class Recorder:
    """Any service: every method records its call and answers nothing."""

    def __init__(self, calls: list[str], name: str) -> None:
        self._calls = calls
        self._name = name

    def __getattr__(self, method: str) -> Any:
        def handler(s: Session, f: object) -> None:
            self._calls.append(f"{self._name}.{method}")

        return handler


def fake_session(state: SessionState) -> tuple[Session, FakeConnection, list[str]]:
    calls: list[str] = []
    services = SimpleNamespace(
        **{n: Recorder(calls, n) for n in ("handshake", "stream", "messages", "presence")},
        storage=Recorder(calls, "storage"),
        locks=Recorder(calls, "locks"),
        history=Recorder(calls, "history"),
    )
    hub = SimpleNamespace(routes=bind(services), clock=lambda: 0.0, counts=Counts())
    conn = FakeConnection()
    session = Session(hub, conn)  # type: ignore[arg-type]
    session.state = state
    return session, conn, calls


def test_the_bound_table_routes_each_request_to_its_service() -> None:
    session, conn, calls = fake_session(LOGGED_IN)
    for frame in (
        PublishTopic(1, "c", "t", b""),
        Publish(2, "c", b""),
        WhoNow(3, "c", 1),
        AcquireLock(4, "c", 1, "l"),
        GetHistory(6, "c", 1),
        Logout(5),
    ):
        session._handle(frame)
    assert calls == [
        "stream.publish",
        "messages.publish",
        "presence.who_now",
        "locks.acquire",
        "history.get",
        "handshake.logout",
    ]
    assert conn.sent == []


def test_a_refused_request_gets_its_code_and_reaches_no_service() -> None:
    session, conn, calls = fake_session(OPEN)
    session._handle(StreamJoin(7, "c"))
    assert calls == []
    assert conn.sent == [Reply(7, ErrorCode.NOT_LOGIN, "log in first")]
    assert conn.closed is None


def test_a_request_before_hello_is_refused_and_the_connection_closed() -> None:
    session, conn, calls = fake_session(NEW)
    session._handle(Login(1, "a" * 32, "u"))
    assert calls == []
    assert conn.sent == [Reply(1, ErrorCode.INVALID_PARAMETER, "send hello first")]
    assert conn.closed == (CLOSE_PROTOCOL_ERROR, "no hello")


def test_a_ping_reaches_its_handler_in_any_state_after_hello_until_the_end() -> None:
    for state in (OPEN, LOGGED_IN, DETACHED):
        session, _, calls = fake_session(state)
        session._handle(Ping(1.5))
        assert calls == ["handshake.ping"]


@pytest.mark.parametrize(
    "frame",
    [Hello(1), Login(2, "a" * 32, "u"), StreamJoin(3, "c"), Logout(4), Ping(1.5)],
    ids=lambda f: type(f).__name__,
)
def test_a_closed_session_drops_every_frame_unanswered(frame: ClientFrame) -> None:
    session, conn, calls = fake_session(CLOSED)
    session._handle(frame)
    assert calls == []
    assert conn.sent == []
    assert conn.closed is None


def test_the_real_ping_handler_answers_with_a_pong() -> None:
    from rtm2.server.handshake import Handshake

    session, conn, _ = fake_session(CLOSED)
    Handshake.ping(session, Ping(2.5))
    assert conn.sent == [Pong(2.5)]


def test_a_handler_failure_becomes_one_reply_with_its_code() -> None:
    from rtm2.errors import RTMError

    session, conn, _ = fake_session(LOGGED_IN)

    def fails(s: Session, f: object) -> None:
        raise RTMError(ErrorCode.CHANNEL_NOT_JOINED, "nope")

    def breaks(s: Session, f: object) -> None:
        raise ValueError("bug")

    session._routes = {**session._routes, StreamJoin: (ANY, fails), WhoNow: (ANY, breaks)}
    session._handle(StreamJoin(1, "c"))
    session._handle(WhoNow(2, "c", 1))
    assert conn.sent == [
        Reply(1, ErrorCode.CHANNEL_NOT_JOINED, "nope"),
        Reply(2, ErrorCode.INIT_SERVICE_FAILED, "internal server error"),
    ]
