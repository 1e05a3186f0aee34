"""A stateful fuzz of the session, against one real ``rtm2 serve`` for the module: a few raw
connections send frames and batches of every type, in every state, with hostile values; every
request must get exactly one reply with a code of the official table, the server must log no
error, and a fresh client must still be served after each run.

Seeded (``derandomize``), so ``make test`` runs the same cases every time; the long campaign
is ``bench/fuzz_server.py``.
"""

from __future__ import annotations

import re
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from rtm2.errors import ErrorCode
from rtm2.protocol.codec import decode_server, encode
from rtm2.protocol.codes import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TOO_BIG,
)
from rtm2.protocol.frames import AcquireLock, Batch, Hello, Login, Ping, Pong, Reply

from ..conftest import ServerProcess
from ..fuzz_strategies import GOOD_NAMES, OPEN_APP, client_frames, friendly_names

OFFICIAL_CODES = frozenset(int(code) for code in ErrorCode)
# How the server may end a connection a fuzzer abuses; 1011 (internal error) is not among them.
EXPECTED_CLOSES = frozenset(
    {CLOSE_NORMAL, CLOSE_GOING_AWAY, CLOSE_PROTOCOL_ERROR, CLOSE_POLICY, CLOSE_TOO_BIG}
)
# Where each connection numbers its requests from: rids at the edges of int64 and uint64.
RID_BASES = (1, -(2**63), 2**63 - 2**20, 2**64 - 2**20)
REPLY_DEADLINE = 5.0
# What an unhandled exception leaves in the server's log (its format: "time LEVEL logger: ...").
UNHANDLED = re.compile(r"\b(ERROR|CRITICAL)\b|Traceback|exception was never retrieved")
MAX_CONNECTIONS = 3

# The frames of a session's life, so that fuzzed requests meet every state: Hello and Login
# (to the open app, as one of a few users) often, any frame at all as often.
frames = st.one_of(
    st.builds(Hello, st.just(0)),
    st.builds(
        Login,
        st.just(0),
        st.just(OPEN_APP),
        friendly_names,
        st.just(""),
        st.sampled_from((5, 30, 300)),
    ),
    client_frames(rids=st.just(0), text=friendly_names),
    client_frames(rids=st.just(0), text=friendly_names),
    client_frames(rids=st.just(0), text=friendly_names),
)


@dataclass
class RawClient:
    ws: ClientConnection
    rid_base: int
    sent: int = 0
    answered: set[int] = field(default_factory=set)
    closed: int | None = None

    def next_rid(self) -> int:
        self.sent += 1
        return self.rid_base + self.sent


class SessionFuzz(RuleBasedStateMachine):
    server: ServerProcess  # set by the test before the machine runs

    def __init__(self) -> None:
        super().__init__()
        self.clients: list[RawClient] = []
        self.opened = 0
        self.connections = ExitStack()

    # What is drawn never depends on the server's behaviour (which connections it has closed by
    # then): a rule draws the same values whatever state it meets, and does nothing when the
    # state does not fit, or hypothesis finds the generation flaky when it replays a case.
    @rule(handshake=st.sampled_from(("none", "hello", "login")), user=st.sampled_from(GOOD_NAMES))
    def open_connection(self, handshake: str, user: str) -> None:
        """A new connection, fresh, after Hello, or logged in (most fuzzed frames need one)."""
        if len(self.clients) >= MAX_CONNECTIONS:
            return
        ws = self.connections.enter_context(
            connect(self.server.url, max_size=None, open_timeout=10)
        )
        client = RawClient(ws, RID_BASES[self.opened % len(RID_BASES)])
        self.opened += 1
        self.clients.append(client)
        steps: list[Any] = []
        if handshake != "none":
            steps.append(Hello(client.next_rid()))
        if handshake == "login":
            steps.append(Login(client.next_rid(), OPEN_APP, user, "", 30))
        for step in steps:
            ws.send(encode(step))
            self._collect(client, {step.rid}, 0)

    @rule(data=st.data(), batched=st.booleans(), which=st.integers(0, MAX_CONNECTIONS - 1))
    def send(self, data: st.DataObject, batched: bool, which: int) -> None:
        drawn = data.draw(st.lists(frames, min_size=1, max_size=6))
        if not self.clients:
            return
        client = self.clients[which % len(self.clients)]
        out: list[Any] = []
        for frame in drawn:
            if isinstance(frame, AcquireLock):  # a waiting acquire is answered only later
                frame = msgspec.structs.replace(frame, retry=False)
            if not isinstance(frame, Ping):
                frame = msgspec.structs.replace(frame, rid=client.next_rid())
            out.append(frame)
        message = Batch(out) if batched or len(out) > 1 else out[0]
        expected = {f.rid for f in out if not isinstance(f, Ping)}
        pongs = sum(isinstance(f, Ping) for f in out)
        try:
            client.ws.send(encode(message))
        except ConnectionClosed as exc:
            self._closed(client, exc)
            return
        self._collect(client, expected, pongs)

    def _collect(self, client: RawClient, expected: set[int], pongs: int) -> None:
        """Read until every request sent has its reply, or the server closed the connection."""
        while expected or pongs:
            try:
                data = client.ws.recv(timeout=REPLY_DEADLINE)
            except TimeoutError:
                pytest.fail(f"no reply within {REPLY_DEADLINE} s to rids {sorted(expected)}")
            except ConnectionClosed as exc:
                self._closed(client, exc)
                return
            assert isinstance(data, bytes)
            frame = decode_server(data)
            if isinstance(frame, Pong):
                pongs -= 1
            elif isinstance(frame, Reply):
                assert frame.rid not in client.answered, f"a second reply to rid {frame.rid}"
                assert frame.rid in expected, f"a reply to rid {frame.rid}, never sent"
                assert frame.code in OFFICIAL_CODES, f"code {frame.code} is not RTM 2's"
                client.answered.add(frame.rid)
                expected.discard(frame.rid)

    def _closed(self, client: RawClient, exc: ConnectionClosed) -> None:
        code = exc.rcvd.code if exc.rcvd is not None else None
        assert code is None or code in EXPECTED_CLOSES, f"server closed with {code}"
        client.closed = code
        self.clients.remove(client)

    @rule(which=st.integers(0, MAX_CONNECTIONS - 1))
    def hang_up(self, which: int) -> None:
        if not self.clients:
            return
        client = self.clients[which % len(self.clients)]
        client.ws.close()
        self.clients.remove(client)

    @invariant()
    def server_is_alive(self) -> None:
        assert self.server.proc is not None
        assert self.server.proc.poll() is None, "the server died"

    def teardown(self) -> None:
        self.connections.close()
        with connect(self.server.url, open_timeout=10) as ws:
            ws.send(encode(Hello(7)))
            reply = decode_server(ws.recv(timeout=REPLY_DEADLINE))
            assert isinstance(reply, Reply)
            assert (reply.rid, reply.code) == (7, 0), "a fresh client is no longer served"


def test_fuzzed_sessions_get_one_official_reply_per_request_and_leave_the_server_healthy(
    server: ServerProcess,
) -> None:
    SessionFuzz.server = server
    run_state_machine_as_test(
        SessionFuzz,
        settings=settings(
            derandomize=True,
            database=None,
            deadline=None,
            max_examples=120,
            stateful_step_count=30,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )
    errors = [line for line in server.log().splitlines() if UNHANDLED.search(line)]
    assert not errors, "\n".join(errors[:20])


def test_a_peer_breaking_the_websocket_protocol_is_logged_as_a_warning_not_an_error(
    server: ServerProcess,
) -> None:
    start = len(server.log())
    with connect(server.url, max_size=None, open_timeout=10) as ws:
        ws.send(encode(Hello(1)))
        ws.recv(timeout=REPLY_DEADLINE)
        ws.send(b"\xc0" * 70_000)  # over the 64 KiB frame limit
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=REPLY_DEADLINE)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CLOSE_TOO_BIG
    logged = [line for line in server.log()[start:].splitlines() if "WS parser error" in line]
    assert logged
    assert all(" WARNING " in line for line in logged), logged
