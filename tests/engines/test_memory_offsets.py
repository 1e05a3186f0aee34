"""The embedded engine's message counters: idle ones are forgotten, offsets still only grow."""

from __future__ import annotations

from rtm2.server.engines.base import BusEvent, BusKind
from rtm2.server.engines.memory import MemoryBroker, MemoryRecoveryStore, Offsets


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_counters_of_channels_idle_longer_than_the_idle_time_are_forgotten() -> None:
    clock = Clock()
    offsets = Offsets(idle=10.0, clock=clock)
    for i in range(1000):
        offsets.next((f"ch:{i}", ""))
    assert len(offsets) == 1000
    clock.now += 5
    offsets.next(("busy", ""))
    clock.now += 6  # the 1000 are idle for 11 s, "busy" for 6
    offsets.next(("new", ""))
    assert len(offsets) == 2
    assert offsets.get(("busy", "")) == 1
    assert offsets.get(("ch:1", "")) == 0  # forgotten: no position


def test_a_forgotten_counter_starts_above_every_offset_it_reached() -> None:
    clock = Clock()
    offsets = Offsets(idle=10.0, clock=clock)
    last = [offsets.next(("old", "t")) for _ in range(500)][-1]
    offsets.next(("small", "t"))
    clock.now += 11
    offsets.next(("other", "t"))  # prunes both
    assert offsets.get(("old", "t")) == 0
    again = offsets.next(("old", "t"))
    assert again > last  # a client's position 500 is never taken for a newer message


def test_a_busy_counter_is_kept_and_counts_on() -> None:
    clock = Clock()
    offsets = Offsets(idle=10.0, clock=clock)
    for step in range(1, 50):
        clock.now += 1
        assert offsets.next(("busy", "")) == step
    assert len(offsets) == 1


def test_the_memory_broker_numbers_messages_with_the_stores_counters() -> None:
    store = MemoryRecoveryStore(offsets_idle=3600)
    got: list[BusEvent] = []
    broker = MemoryBroker(lambda subject, event: got.append(event), store.offsets)
    broker.subscribe("s")
    for _ in range(3):
        broker.publish_message("s", BusEvent(BusKind.MESSAGE, "t", "u", b"\x00" * 9), 10, 10)
    assert store.offsets.get(("s", "t")) == 3
    assert len(got) == 3
