"""OffsetBook: positions, epochs and de-duplication of replayed and live messages."""

from __future__ import annotations

from rtm2.client.offsets import OffsetBook
from rtm2.protocol.frames import Position
from rtm2.types import ChannelType

CHAT = (ChannelType.MESSAGE, "chat", "")
TOPIC = (ChannelType.STREAM, "room", "t1")


def test_a_message_above_the_last_offset_is_fresh_and_moves_the_offset() -> None:
    book = OffsetBook()
    book.start(CHAT, 4)
    assert book.fresh(CHAT, 5)
    assert book.get(CHAT) == 5


def test_a_message_at_or_below_the_last_offset_is_a_duplicate_and_changes_nothing() -> None:
    book = OffsetBook()
    book.start(CHAT, 7)
    assert not book.fresh(CHAT, 7)
    assert not book.fresh(CHAT, 3)
    assert book.get(CHAT) == 7


def test_a_message_without_an_offset_is_always_fresh_and_is_not_recorded() -> None:
    book = OffsetBook()
    assert book.fresh(CHAT, 0)
    assert book.fresh(CHAT, 0)
    assert CHAT not in book


def test_replayed_then_live_copies_of_the_same_messages_are_delivered_once() -> None:
    book = OffsetBook()
    book.start(TOPIC, 10)
    arriving = [11, 12, 13, 12, 13, 14]  # a replay of 11-13 overlapping the live 12-14
    assert [o for o in arriving if book.fresh(TOPIC, o)] == [11, 12, 13, 14]


def test_seen_never_moves_an_offset_back_but_start_does() -> None:
    book = OffsetBook()
    book.seen(TOPIC, 9)
    book.seen(TOPIC, 4)
    assert book.get(TOPIC) == 9
    book.start(TOPIC, 2)
    assert book.get(TOPIC) == 2


def test_subscriptions_are_kept_apart_by_channel_type_channel_and_topic() -> None:
    book = OffsetBook()
    book.start(CHAT, 5)
    book.start((ChannelType.STREAM, "chat", ""), 1)
    assert book.fresh((ChannelType.STREAM, "chat", ""), 2)
    assert not book.fresh(CHAT, 5)


def test_positions_name_every_subscription_in_the_current_epoch() -> None:
    book = OffsetBook()
    book.new_epoch("e1")
    book.start(CHAT, 3)
    book.seen(TOPIC, 8)
    assert book.positions() == [
        Position(ChannelType.MESSAGE, "chat", "", 3, "e1"),
        Position(ChannelType.STREAM, "room", "t1", 8, "e1"),
    ]


def test_a_new_session_recovers_from_the_offset_held_in_the_previous_epoch() -> None:
    book = OffsetBook()
    book.new_epoch("e1")
    book.start(CHAT, 3)
    book.new_epoch("e2")
    assert book.recovering_from(CHAT) == (3, "e1")
    assert book.epoch == "e2"


def test_nothing_is_recovered_for_an_unknown_subscription_or_on_the_first_login() -> None:
    book = OffsetBook()
    book.start(CHAT, 3)
    book.new_epoch("e1")  # the first login: no earlier epoch to recover from
    assert book.recovering_from(CHAT) == (0, "")
    book.new_epoch("e2")
    assert book.recovering_from(TOPIC) == (0, "")


def test_a_recovered_subscription_keeps_its_offset_and_an_unrecovered_one_takes_the_servers() -> (
    None
):
    book = OffsetBook()
    book.start(CHAT, 40)
    book.start(TOPIC, 40)
    book.resumed_at(CHAT, 2, recovered=True)
    book.resumed_at(TOPIC, 2, recovered=False)  # e.g. a restarted server numbering from 1
    assert book.get(CHAT) == 40
    assert book.get(TOPIC) == 2
    assert book.fresh(TOPIC, 3)


def test_a_forgotten_subscription_has_no_position_and_takes_any_offset_again() -> None:
    book = OffsetBook()
    book.start(CHAT, 9)
    book.forget(CHAT)
    assert book.positions() == []
    assert book.fresh(CHAT, 1)


def test_clearing_drops_every_offset_but_keeps_the_epoch_for_the_next_login() -> None:
    book = OffsetBook()
    book.new_epoch("e1")
    book.start(CHAT, 9)
    book.clear()
    assert len(book) == 0
    book.new_epoch("e2")
    assert book.recovering_from(CHAT) == (0, "")
    assert "e2" in repr(book)
