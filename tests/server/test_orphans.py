"""A dead node's entries become typed values, and each kind reaches the service that cleans
it up; an entry nobody understands is skipped, not the ones after it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtm2.server.config import ServerConfig
from rtm2.server.engines.memory import MemoryEngine
from rtm2.server.hub import Hub
from rtm2.server.orphans import (
    LockOrphan,
    PresenceOrphan,
    StreamOrphan,
    WaitOrphan,
    parse_orphans,
)

ENTRIES = [
    ["presence", "msg:app:room", "alice", "n1-1"],
    ["stream", "app", "room", "bob", "n1-2"],
    ["lockq", "msg:app:room", "door", "n1-3:7", "n1-3"],
    ["lock", "msg:app:room", "door", "carol", "n1"],
]


def test_each_kind_of_entry_becomes_its_struct() -> None:
    assert parse_orphans(ENTRIES) == [
        PresenceOrphan("msg:app:room", "alice", "n1-1"),
        StreamOrphan("app", "room", "bob", "n1-2"),
        WaitOrphan("msg:app:room", "door", "n1-3:7", "n1-3"),
        LockOrphan("msg:app:room", "door", "carol", "n1"),
    ]


def test_an_entry_of_unknown_kind_or_shape_is_skipped_and_the_rest_kept() -> None:
    entries = [["future-kind", "x"], ["lock", "too", "short"], *ENTRIES[:1]]
    assert parse_orphans(entries) == [PresenceOrphan("msg:app:room", "alice", "n1-1")]


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    loop = asyncio.new_event_loop()
    yield Hub(ServerConfig(data_dir=tmp_path), loop, MemoryEngine(tmp_path))
    loop.close()


def test_the_node_hands_each_orphan_to_the_service_that_cleans_it_up(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    done: list[tuple[str, tuple[str, ...]]] = []

    def record(name: str) -> object:
        async def called(*args: str) -> None:
            done.append((name, args))

        return called

    async def orphans(node: str, timeout: float) -> list[list[str]]:
        return ENTRIES

    monkeypatch.setattr(hub.engine, "orphans", orphans)
    monkeypatch.setattr(hub.presence, "remove_orphan", record("presence"))
    monkeypatch.setattr(hub.stream, "remove_orphan", record("stream"))
    monkeypatch.setattr(hub.locks, "withdraw_orphan", record("withdraw"))
    monkeypatch.setattr(hub.locks, "adopt", record("adopt"))
    hub.loop.run_until_complete(hub._adopt_orphans())
    assert done == [
        ("presence", ("msg:app:room", "alice", "n1-1")),
        ("stream", ("app", "room", "bob", "n1-2")),
        ("withdraw", ("msg:app:room", "door", "n1-3:7")),
        ("adopt", ("msg:app:room", "door", "carol")),
    ]
