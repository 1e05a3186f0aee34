"""History's rules without a server: the `[apps.history]` settings, conversation keys, and how
`start`/`end` bounds and `new_start` positions are read (docs/HISTORY.md)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rtm2.errors import ErrorCode, RTMError
from rtm2.server.config import (
    AppConfig,
    ConfigError,
    HistoryConfig,
    ensure_dev_app,
    load_config,
    parse_duration,
)
from rtm2.server.engines.base import HistoryEntry
from rtm2.server.engines.sqlite import SQLiteStore
from rtm2.server.engines.sqlite_history import SQLiteHistoryStore
from rtm2.server.history import POSITION_MIN, HistoryService, conversation_key
from rtm2.types import ChannelType

APP = "ab" * 16


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("7d", 7 * 86400.0),
        ("12h", 43200.0),
        ("30m", 1800.0),
        ("45s", 45.0),
        ("500ms", 0.5),
        ("2.5s", 2.5),
        (90, 90.0),
        ("forever", 0.0),
        ("0", 0.0),
    ],
)
def test_durations_read_as_seconds(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["7 days", "-1s", "d", "", True, "1w"])
def test_bad_durations_are_config_errors(text: object) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text)


def test_configured_apps_keep_no_history_unless_enabled(tmp_path: Path) -> None:
    path = tmp_path / "rtm2.toml"
    path.write_text(
        f'[[apps]]\nid = "{APP}"\n'
        f'[[apps]]\nid = "{"cd" * 16}"\n[apps.history]\nenabled = true\nretention = "1h"\n'
        'max_messages_per_channel = 50\nhistory_read = "subscribers"\n'
    )
    plain, kept = load_config(path).apps
    assert plain.history == HistoryConfig()
    assert not plain.history.enabled
    assert kept.history == HistoryConfig(True, 3600.0, 50, "subscribers")
    assert not AppConfig.parse(APP).history.enabled  # --app too


@pytest.mark.parametrize(
    "history",
    [
        'enabled = "yes"',
        'history_read = "everyone"',
        "max_messages_per_channel = -1",
        'retention = "soon"',
        "keep = 3",
    ],
)
def test_bad_history_settings_are_refused(tmp_path: Path, history: str) -> None:
    path = tmp_path / "rtm2.toml"
    path.write_text(f'[[apps]]\nid = "{APP}"\n[apps.history]\n{history}\n')
    with pytest.raises(ConfigError):
        load_config(path)


def test_the_development_app_keeps_history(tmp_path: Path) -> None:
    created, _ = ensure_dev_app(tmp_path)
    again, _ = ensure_dev_app(tmp_path)
    for app in (created, again):
        assert app.history.enabled
        assert app.history.retention == 7 * 86400


def test_a_conversation_has_one_key_whichever_user_asks_and_no_two_pairs_share_one() -> None:
    assert conversation_key(APP, "alice", "bob") == conversation_key(APP, "bob", "alice")
    # Names that would run together without the length in front.
    assert conversation_key(APP, "a:b", "c") != conversation_key(APP, "a", "b:c")
    assert conversation_key(APP, "ab", "c") != conversation_key(APP, "a", "bc")


async def service(tmp_path: Path) -> tuple[HistoryService, SQLiteStore, SQLiteHistoryStore]:
    store = SQLiteStore(tmp_path / "rtm2.db")
    await store.open()
    history = SQLiteHistoryStore(store)
    await history.open()
    app = AppConfig(APP, history=HistoryConfig(enabled=True))
    return HistoryService(history, {APP: app}.get), store, history


async def test_pages_of_one_millisecond_neither_repeat_nor_skip(tmp_path: Path) -> None:
    svc, store, history = await service(tmp_path)
    app = AppConfig(APP, history=HistoryConfig(enabled=True))
    ts = 1_800_000_000_000
    key = f"msg:{APP}:room"
    await asyncio.gather(
        *(history.append(key, HistoryEntry("u", str(i).encode()), ts, 0, 0) for i in range(25))
    )
    seen: list[bytes] = []
    start = 0
    while True:
        page = await svc.page(app, ChannelType.MESSAGE, "room", "reader", 10, start, 0)
        assert all(m.timestamp == ts for m in page.messages)
        seen += [m.payload for m in page.messages]
        start = page.new_start
        if not start:
            break
        assert start >= POSITION_MIN
    assert seen == [str(i).encode() for i in range(24, -1, -1)]
    # In ms, start excludes its whole millisecond and end includes it.
    older = await svc.page(app, ChannelType.MESSAGE, "room", "reader", 100, ts, 0)
    assert older.messages == []
    newer = await svc.page(app, ChannelType.MESSAGE, "room", "reader", 100, 0, ts)
    assert len(newer.messages) == 25
    await history.close()
    await store.close()


@pytest.mark.parametrize(
    ("ctype", "count", "start", "end", "code"),
    [
        (ChannelType.STREAM, 10, 0, 0, ErrorCode.INVALID_PARAMETER),
        (ChannelType.MESSAGE, 0, 0, 0, ErrorCode.INVALID_PARAMETER),
        (ChannelType.MESSAGE, 101, 0, 0, ErrorCode.INVALID_PARAMETER),
        (ChannelType.MESSAGE, 10, -1, 0, ErrorCode.HISTORY_INVALID_TIMESTAMP),
        (ChannelType.MESSAGE, 10, 0, 2**63, ErrorCode.HISTORY_INVALID_TIMESTAMP),
        (ChannelType.MESSAGE, 10, 5, 5, ErrorCode.HISTORY_INVALID_TIMESTAMP),
        (7, 10, 0, 0, ErrorCode.INVALID_CHANNEL_TYPE),
    ],
)
async def test_bad_reads_get_their_codes(
    tmp_path: Path, ctype: int, count: int, start: int, end: int, code: ErrorCode
) -> None:
    svc, store, history = await service(tmp_path)
    app = AppConfig(APP, history=HistoryConfig(enabled=True))
    with pytest.raises(RTMError) as info:
        await svc.page(app, ctype, "room", "reader", count, start, end)
    assert info.value.code == code
    await history.close()
    await store.close()


async def test_an_app_without_history_is_refused_reading_and_storing(tmp_path: Path) -> None:
    svc, store, history = await service(tmp_path)
    off = AppConfig(APP)
    with pytest.raises(RTMError) as info:
        await svc.page(off, ChannelType.MESSAGE, "room", "reader", 10, 0, 0)
    assert info.value.code == ErrorCode.HISTORY_OPERATION_NOT_PERMITTED
    with pytest.raises(RTMError) as info:
        svc.store(off, f"msg:{APP}:room", HistoryEntry("u", b"x"), 1)
    assert info.value.code == ErrorCode.HISTORY_OPERATION_NOT_PERMITTED
    await history.close()
    await store.close()
