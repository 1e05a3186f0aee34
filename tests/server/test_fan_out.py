"""The outbox's fan-out loop (``Outbox.send_all``) keeps ``Connection.send``'s rules: frames
queue for one flush per pass, a closing connection gets nothing, and a subscriber whose queue
passes its room is cut off as a slow consumer at once, whatever else the connection sends."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from rtm2.protocol.codes import CLOSE_POLICY
from rtm2.server.gateway import Connection, Outbox
from rtm2.server.metrics import Counts
from rtm2.server.session import Session


class FakeRaw:
    """The socket transport, as far as the fan-out loop and ``cut`` look at it."""

    def __init__(self) -> None:
        self.closing = False
        self.aborted = False

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0


class FakeWSTransport:
    def __init__(self) -> None:
        self.is_close_frame_sent = False
        self.closed_with: int | None = None

    def send_close(self, code: int, reason: bytes) -> None:
        self.is_close_frame_sent = True
        self.closed_with = int(code)

    def disconnect(self) -> None:
        pass


def connection(outbox: Outbox) -> tuple[Connection, FakeRaw, FakeWSTransport]:
    # Real sessions: the mypyc build (`make compile-test`) checks the types it was promised.
    registry = SimpleNamespace(routes={}, counts=Counts())
    conn = Connection(outbox, lambda c: Session(registry, c))  # type: ignore[arg-type]
    raw, ws = FakeRaw(), FakeWSTransport()
    conn.raw, conn.transport = raw, ws  # type: ignore[assignment]
    return conn, raw, ws


def subscribers(*conns: Connection) -> list[Session]:
    return [c.session for c in conns]


async def test_a_fan_out_queues_each_frame_once_per_connection_for_one_flush() -> None:
    outbox = Outbox(asyncio.get_running_loop(), max_buffer=1024, max_frame=1024)
    (a, _, _), (b, _, _) = connection(outbox), connection(outbox)
    outbox.send_all(subscribers(a, b), b"x" * 10)
    outbox.send_all(subscribers(a, b), b"y" * 10)
    assert a._out == b._out == [b"x" * 10, b"y" * 10]
    assert a._out_bytes == b._out_bytes == 20
    assert outbox._dirty == [a, b]  # each connection once, flushed together


async def test_a_closing_connection_gets_nothing_from_a_fan_out() -> None:
    outbox = Outbox(asyncio.get_running_loop(), max_buffer=1024, max_frame=1024)
    (a, raw, _), (b, _, _) = connection(outbox), connection(outbox)
    raw.closing = True
    outbox.send_all(subscribers(a, b), b"x" * 10)
    assert a._out == []
    assert b._out == [b"x" * 10]


async def test_a_subscriber_whose_queue_passes_its_room_is_cut_off_by_the_fan_out_itself() -> None:
    outbox = Outbox(asyncio.get_running_loop(), max_buffer=100, max_frame=1024)
    (slow, raw, ws), (fine, fine_raw, _) = connection(outbox), connection(outbox)
    fine._room = 10_000  # as after a flush that found its socket drained
    for _ in range(10):
        outbox.send_all(subscribers(slow, fine), b"z" * 10)
    assert ws.closed_with is None  # 100 bytes: at its room, not over it
    outbox.send_all(subscribers(slow, fine), b"z" * 10)
    assert ws.closed_with == CLOSE_POLICY
    assert raw.aborted  # its queued bytes are dropped at once
    assert slow._out == []
    assert slow._out_bytes == 0
    assert outbox.slow_consumers == 1
    assert not fine_raw.aborted  # the others are not hurt
    assert len(fine._out) == 11
