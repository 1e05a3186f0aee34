"""A session's life seen from the node: resume takes a connection over, and every service
that keeps per-session state hears of a session's end once, in a fixed order."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from rtm2.protocol.codes import CLOSE_POLICY
from rtm2.server.config import AppConfig, ServerConfig
from rtm2.server.engines.base import LockInfo
from rtm2.server.engines.memory import MemoryEngine
from rtm2.server.hub import Hub
from rtm2.server.metrics import Counts
from rtm2.server.session import Session
from rtm2.server.table import SessionState


class FakeConnection:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed: tuple[int, str] | None = None
        self.session: Session | None = None
        self.last_seen = 0.0
        self.peer = name

    def close(self, code: int, reason: str, *, flush: bool = True) -> None:
        self.closed = (code, reason)

    def send(self, data: bytes) -> None:
        pass


def session_on(name: str, state: SessionState) -> tuple[Session, FakeConnection]:
    conn = FakeConnection(name)
    hub = SimpleNamespace(routes={}, clock=lambda: 0.0, counts=Counts())
    session = Session(hub, conn)  # type: ignore[arg-type]
    conn.session = session
    session.state = state
    return session, conn


def test_a_detached_session_takes_the_fresh_connection_over_and_is_logged_in_again() -> None:
    resumed, old = session_on("old", SessionState.DETACHED)
    fresh, new = session_on("new", SessionState.OPEN)
    assert resumed.take_over(fresh) is False
    assert resumed.state is SessionState.LOGGED_IN
    assert resumed.conn is new
    assert new.session is resumed
    # The throwaway session keeps the old connection: its end concerns nobody else.
    assert fresh.state is SessionState.CLOSED
    assert fresh.conn is old
    assert old.session is fresh
    assert old.closed is None


def test_a_session_whose_old_connection_still_seemed_open_closes_it_on_takeover() -> None:
    resumed, old = session_on("old", SessionState.LOGGED_IN)
    fresh, new = session_on("new", SessionState.OPEN)
    assert resumed.take_over(fresh) is True
    assert resumed.state is SessionState.LOGGED_IN
    assert resumed.conn is new
    assert old.closed == (CLOSE_POLICY, "resumed on another connection")


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    loop = asyncio.new_event_loop()
    yield Hub(ServerConfig(data_dir=tmp_path), loop, MemoryEngine(tmp_path))
    loop.close()


class Listener:
    def __init__(self, name: str, heard: list[tuple[str, bool]]) -> None:
        self.name = name
        self.heard = heard

    def on_session_end(self, s: Session, timed_out: bool) -> None:
        self.heard.append((self.name, timed_out))


def test_the_services_hear_of_a_sessions_end_in_order_locks_first_presence_last(
    hub: Hub,
) -> None:
    assert hub._listeners == [hub.locks, hub.storage, hub.stream, hub.messages, hub.presence]


def test_every_listener_hears_of_a_sessions_end_exactly_once(hub: Hub) -> None:
    heard: list[tuple[str, bool]] = []
    hub._listeners.clear()
    hub.add_listener(Listener("a", heard))
    hub.add_listener(Listener("b", heard))
    session = Session(hub, FakeConnection("c"))  # type: ignore[arg-type]
    hub.attach(session)
    hub.end(session, timed_out=True)
    hub.end(session)
    assert heard == [("a", True), ("b", True)]
    assert session.state is SessionState.CLOSED
    assert session not in hub.sessions


def test_services_forget_what_they_kept_for_a_session_once_it_ends(hub: Hub) -> None:
    app = AppConfig("a" * 32)
    subject = f"msg:{app.app_id}:room"
    session = Session(hub, FakeConnection("c"))  # type: ignore[arg-type]
    session.app, session.user_id, session.session_id = app, "alice", "n-1"
    session.state = SessionState.LOGGED_IN
    hub.attach(session)

    async def live_then_end() -> None:
        await hub.presence.join(session, subject, {}, False, True)
        hub.storage._rate(session)
        hub.locks._granted(session, (subject, "door"), LockInfo("door", 10, "alice"), None)
        assert session in hub.presence.joined
        assert session in hub.storage.buckets
        assert session in hub.locks.held
        hub.end(session)

    hub.loop.run_until_complete(live_then_end())
    assert session not in hub.presence.joined
    assert session not in hub.storage.buckets
    assert session not in hub.locks.held
    assert (subject, "door") in hub.locks.countdowns  # the lock outlives it by its TTL
