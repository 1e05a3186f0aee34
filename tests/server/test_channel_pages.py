"""The channel listing's pages (``server.http.listing.page_of``): the cursor holds the last
name given, so channels that come and go between pages never cause a duplicate or a gap."""

from __future__ import annotations

import pytest

from rtm2.errors import ErrorCode, RTMError
from rtm2.server.http.listing import page_of


def walk(found: dict[tuple[str, str], int], limit: int) -> list[tuple[str, str]]:
    listed, cursor = [], ""
    while True:
        page = page_of(found, cursor, limit)
        listed += [(c.channel, c.type) for c in page.channels]
        cursor = page.next_cursor
        if not cursor:
            return listed


def test_pages_cover_every_channel_once_in_name_then_type_order() -> None:
    found = {(f"c{i:03d}", kind): i for i in range(100) for kind in ("stream", "message")}
    assert walk(found, 7) == sorted(found)
    assert page_of(found, "", 500).next_cursor == ""


def test_channels_that_come_and_go_between_pages_shift_nothing() -> None:
    found = {(f"c{i}", "message"): 1 for i in range(10)}
    first = page_of(found, "", 4)
    assert [c.channel for c in first.channels] == ["c0", "c1", "c2", "c3"]
    del found["c1", "message"], found["c4", "message"]  # one listed, one not yet
    found["c00", "message"] = 1  # before the cursor: for a later listing
    found["c55", "message"] = 1  # after it: listed now
    second = page_of(found, first.next_cursor, 4)
    assert [c.channel for c in second.channels] == ["c5", "c55", "c6", "c7"]


def test_an_empty_app_has_one_empty_last_page() -> None:
    page = page_of({}, "", 10)
    assert (page.channels, page.next_cursor) == ([], "")


@pytest.mark.parametrize("cursor", ["%%%", "bm90IGpzb24=", "WzEsMl0="])
def test_a_cursor_the_api_did_not_give_is_invalid_parameter(cursor: str) -> None:
    with pytest.raises(RTMError) as info:
        page_of({("a", "message"): 1}, cursor, 10)
    assert info.value.code == ErrorCode.INVALID_PARAMETER
