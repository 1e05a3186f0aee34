"""Services depend on narrow roles, not on the Hub; entering and leaving a channel is written
once, for stream and message channels alike."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import Any

import pytest

import rtm2.server
from rtm2.protocol.frames import StreamJoin, Subscribe
from rtm2.server.features import Features
from rtm2.server.roles import Entered

SERVER = Path(rtm2.server.__file__).parent


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", ["stream", "messages", "handshake", "session", "features"])
def test_services_do_not_know_the_hub(module: str) -> None:
    assert "hub" not in imported_modules(SERVER / f"{module}.py")


class Fake:
    def __init__(self, calls: list[str], name: str, answer: Any = None) -> None:
        self.calls, self.name, self.answer = calls, name, answer

    def __getattr__(self, method: str) -> Any:
        async def called_async(*args: object) -> Any:
            self.calls.append(f"{self.name}.{method}{args[1:]}")
            return self.answer

        def called(*args: object) -> None:
            self.calls.append(f"{self.name}.{method}{args[1:]}")

        return called_async if method in ("join", "member_joined") else called


@pytest.mark.parametrize(
    "frame",
    [
        StreamJoin(1, "room", with_metadata=True, be_quiet=True, state={"k": "v"}),
        Subscribe(1, "room", with_metadata=True, be_quiet=True, state={"k": "v"}),
    ],
)
def test_entering_a_channel_joins_presence_then_metadata_then_locks(
    frame: StreamJoin | Subscribe,
) -> None:
    calls: list[str] = []
    features = Features(
        Fake(calls, "presence", {"u": {}}),  # type: ignore[arg-type]
        Fake(calls, "storage"),  # type: ignore[arg-type]
        Fake(calls, "locks", []),  # type: ignore[arg-type]
    )
    entered = asyncio.run(features.enter(object(), "subj", frame))  # type: ignore[arg-type]
    assert entered == Entered({"u": {}}, None, [])
    assert calls == [
        "presence.join('subj', {'k': 'v'}, True, True)",
        "storage.member_joined('subj', True)",
        "locks.member_joined('subj', False)",
    ]


def test_leaving_a_channel_leaves_presence_metadata_and_locks() -> None:
    calls: list[str] = []
    features = Features(
        Fake(calls, "presence"),  # type: ignore[arg-type]
        Fake(calls, "storage"),  # type: ignore[arg-type]
        Fake(calls, "locks"),  # type: ignore[arg-type]
    )
    features.leave(object(), "subj", timed_out=True)  # type: ignore[arg-type]
    assert calls == [
        "presence.leave('subj', True)",
        "storage.member_left('subj',)",
        "locks.member_left('subj',)",
    ]
