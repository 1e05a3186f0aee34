"""The bus's kinds and their routing: numbers that travel between nodes never change, every
kind has its own method, and a node routes each event to the one service it concerns."""

from __future__ import annotations

import asyncio
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtm2.server.config import ServerConfig
from rtm2.server.engines import base
from rtm2.server.engines.base import BusEvent, BusKind, BusListener, bus_routes
from rtm2.server.engines.memory import MemoryEngine
from rtm2.server.hub import Hub
from rtm2.server.interest import Interest
from rtm2.server.subjects import (
    SubjectKind,
    session_subject,
    subject_kind,
    user_subject,
)

APP = "a" * 32


def test_the_kinds_keep_the_numbers_other_nodes_send() -> None:
    assert {k.name: int(k) for k in BusKind} == {
        "MESSAGE": 1,
        "TOPIC_EVENT": 2,
        "PRESENCE": 3,
        "STORAGE": 4,
        "LOCK": 5,
        "PEER": 6,
        "LOGIN": 7,
        "LOCK_QUEUE": 8,
        "KICK": 9,
        "PROBE": 10,
    }


def test_the_old_bus_names_are_the_kinds_themselves() -> None:
    for kind in BusKind:
        assert getattr(base, f"BUS_{kind.name}") is kind


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> typing.Any:
        if not name.startswith("on_"):
            raise AttributeError(name)
        return lambda subject, event: self.calls.append((name, subject))


def test_every_kind_is_routed_to_the_listener_method_of_its_name() -> None:
    methods = {n for n in dir(BusListener) if n.startswith("on_")}
    assert methods == {f"on_{k.name.lower()}" for k in BusKind}
    listener = Recorder()
    routes = bus_routes(typing.cast(BusListener, listener))
    assert set(routes) == set(BusKind)
    for kind in BusKind:
        routes[int(kind)]("subj", BusEvent(kind, "", "", b""))  # ints, as decoded off the wire
    assert listener.calls == [(f"on_{k.name.lower()}", "subj") for k in BusKind]


@pytest.mark.parametrize(
    ("subject", "kind"),
    [
        (f"msg:{APP}:a:b", SubjectKind.MESSAGE),
        (f"stream:{APP}:room", SubjectKind.STREAM),
        (session_subject(APP, "alice"), SubjectKind.SESSION),
        (user_subject(APP, "alice"), SubjectKind.USER),
    ],
)
def test_a_subject_is_parsed_into_its_kind(subject: str, kind: SubjectKind) -> None:
    assert subject_kind(subject) is kind


class FakeBroker:
    def __init__(self) -> None:
        self.subscribed: set[str] = set()

    def subscribe(self, subject: str) -> None:
        self.subscribed.add(subject)

    def unsubscribe(self, subject: str) -> None:
        self.subscribed.discard(subject)


def test_interest_knows_the_kind_of_exactly_the_subjects_it_listens_to() -> None:
    broker = FakeBroker()
    interest = Interest(typing.cast(base.Broker, broker))
    stream = f"stream:{APP}:room"
    interest.add(stream)
    interest.add(stream)
    interest.add(user_subject(APP, "bob"))
    assert interest.kinds == {stream: SubjectKind.STREAM, f"user:{APP}:bob": SubjectKind.USER}
    interest.remove(stream)
    assert stream in interest.kinds
    interest.remove(stream)
    assert set(interest.kinds) == set(broker.subscribed) == {f"user:{APP}:bob"}


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    loop = asyncio.new_event_loop()
    yield Hub(ServerConfig(data_dir=tmp_path), loop, MemoryEngine(tmp_path))
    loop.close()


def test_a_node_routes_messages_by_the_kind_of_their_subject(hub: Hub) -> None:
    got: list[str] = []
    hub.stream.on_message = lambda subject, event: got.append(f"stream {subject}")  # type: ignore[method-assign]
    hub.messages.on_message = lambda subject, event: got.append(f"msg {subject}")  # type: ignore[method-assign]
    stream, channel = f"stream:{APP}:room", f"msg:{APP}:room"
    hub.interest.add(stream)
    hub.interest.add(channel)
    for subject in (stream, channel, f"msg:{APP}:nobody-here"):
        hub._on_bus(subject, BusEvent(BusKind.MESSAGE, "", "alice", b""))
    assert got == [f"stream {stream}", f"msg {channel}"]


def test_a_node_ignores_a_kind_it_does_not_know(hub: Hub) -> None:
    hub._on_bus(f"msg:{APP}:room", BusEvent(99, "", "alice", b""))
