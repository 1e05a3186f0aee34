"""Requests that wait (for the engine, say) hold the ones behind them in one queue: in order,
with the connection unread meanwhile, and never more than the connection's cap."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from rtm2.protocol.codec import encode, encode_batch
from rtm2.protocol.codes import CLOSE_POLICY
from rtm2.protocol.frames import GetLocks
from rtm2.server.metrics import Counts
from rtm2.server.session import Session
from rtm2.server.table import SessionState


class FakeConnection:
    def __init__(self, max_queued: int) -> None:
        self.max_queued = max_queued
        self.paused = False  # as a transport's, pausing twice is pausing
        self.cut_with: tuple[int, str] | None = None
        self.last_seen = 0.0
        self.peer = "test"

    @property
    def closing(self) -> bool:
        return self.cut_with is not None

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def cut(self, code: int, reason: str, grace: float = 1.0) -> None:
        self.cut_with = (code, reason)

    def send(self, data: bytes) -> None:
        pass


def waiting_session(max_queued: int) -> tuple[Session, FakeConnection, list[int], list[Any]]:
    """A logged-in session whose every GetLocks waits on a future the test resolves."""
    handled: list[int] = []
    waits: list[asyncio.Future[None]] = []

    def get(s: Session, f: GetLocks) -> asyncio.Future[None]:
        handled.append(f.rid)
        waits.append(asyncio.get_running_loop().create_future())
        return waits[-1]

    hub = SimpleNamespace(
        routes={GetLocks: (frozenset(SessionState), get)}, clock=lambda: 0.0, counts=Counts()
    )
    conn = FakeConnection(max_queued)
    session = Session(hub, conn)  # type: ignore[arg-type]
    session.state = SessionState.LOGGED_IN
    return session, conn, handled, waits


def batch(rids: range) -> bytes:
    return encode_batch([encode(GetLocks(rid, "c", 1)) for rid in rids])


async def test_waiting_requests_run_one_after_the_other_in_order_with_reading_paused() -> None:
    session, conn, handled, waits = waiting_session(max_queued=1000)
    session.on_data(batch(range(500)))
    assert handled == [0]
    assert conn.paused
    for i in range(500):
        waits[i].set_result(None)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert handled == list(range(min(i + 2, 500)))
        assert conn.paused == (i < 499)
    assert not conn.paused  # read again once nothing waits
    assert conn.cut_with is None


async def test_one_queue_serves_the_whole_backlog() -> None:
    session, _, _, waits = waiting_session(max_queued=1000)
    session.on_data(batch(range(50)))
    first = session._backlog
    waits[0].set_result(None)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert session._backlog is first  # popped in place, never copied
    assert first is not None
    assert len(first) == 48


async def test_more_requests_queued_than_the_cap_cut_the_connection_with_1008() -> None:
    session, conn, handled, _ = waiting_session(max_queued=10)
    session.on_data(batch(range(100)))
    assert conn.cut_with == (CLOSE_POLICY, "too many requests queued")
    assert session._backlog is not None
    assert len(session._backlog) == 10
    assert handled == [0]
