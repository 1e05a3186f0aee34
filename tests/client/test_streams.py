"""EventStream: the bounded, closable queue the SDK hands to applications."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from rtm2.client.streams import EventStream
from rtm2.errors import ErrorCode, RTMError

WAIT = 1.0  # upper bound for anything that should happen at once; keeps a bug from hanging


async def _settle() -> None:
    """Let every ready task run until it blocks."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_items_put_are_got_in_order() -> None:
    stream: EventStream[int] = EventStream("s")
    for i in range(5):
        assert stream.put(i)
    assert len(stream) == 5
    assert [await stream.get() for _ in range(5)] == [0, 1, 2, 3, 4]


async def test_async_for_delivers_items_put_before_close_then_ends() -> None:
    stream: EventStream[str] = EventStream("s")
    stream.put("a")
    stream.put("b")
    stream.close()

    async def drain() -> list[str]:
        return [item async for item in stream]

    assert await asyncio.wait_for(drain(), WAIT) == ["a", "b"]


async def test_async_for_waiting_for_an_item_ends_when_the_stream_closes() -> None:
    stream: EventStream[str] = EventStream("s")

    async def drain() -> list[str]:
        return [item async for item in stream]

    task = asyncio.create_task(drain())
    stream.put("a")
    await _settle()
    stream.close()
    assert await asyncio.wait_for(task, WAIT) == ["a"]


async def test_get_with_a_timeout_on_an_empty_stream_raises_the_builtin_timeout_error() -> None:
    stream: EventStream[int] = EventStream("s")
    with pytest.raises(TimeoutError):
        await stream.get(timeout=0.05)
    stream.put(1)  # the timed-out getter left nothing behind that would swallow this
    assert await stream.get(timeout=WAIT) == 1


async def test_get_on_a_closed_drained_stream_raises_not_login_by_default() -> None:
    stream: EventStream[int] = EventStream("s")
    stream.put(1)
    stream.close()
    assert stream.closed
    assert await stream.get() == 1
    with pytest.raises(RTMError) as info:
        await stream.get()
    assert info.value.code == ErrorCode.NOT_LOGIN


async def test_get_on_a_stream_closed_with_a_code_raises_that_code() -> None:
    stream: EventStream[int] = EventStream("s")
    stream.close(ErrorCode.CHANNEL_NOT_JOINED)
    with pytest.raises(RTMError) as info:
        await stream.get(timeout=WAIT)
    assert info.value.code == ErrorCode.CHANNEL_NOT_JOINED


async def test_a_getter_waiting_when_the_stream_closes_gets_the_close_code() -> None:
    stream: EventStream[int] = EventStream("s")
    task = asyncio.create_task(stream.get())
    await _settle()
    stream.close(ErrorCode.CHANNEL_NOT_JOINED)
    with pytest.raises(RTMError) as info:
        await asyncio.wait_for(task, WAIT)
    assert info.value.code == ErrorCode.CHANNEL_NOT_JOINED


async def test_a_full_stream_drops_the_item_counts_it_and_reports_the_overflow() -> None:
    overflowed: list[EventStream[int]] = []
    stream: EventStream[int] = EventStream("s", maxsize=3, on_overflow=overflowed.append)
    assert [stream.put(i) for i in range(3)] == [True, True, True]
    assert stream.put(3) is False
    assert stream.dropped == 1
    assert overflowed == [stream]
    assert [stream.get_nowait() for _ in range(4)] == [0, 1, 2, None]


async def test_put_after_close_returns_false_and_is_not_delivered() -> None:
    stream: EventStream[int] = EventStream("s")
    stream.close()
    assert stream.put(1) is False
    assert len(stream) == 0
    assert stream.dropped == 0


async def test_get_nowait_returns_none_when_empty() -> None:
    stream: EventStream[int] = EventStream("s")
    assert stream.get_nowait() is None
    stream.put(7)
    assert stream.get_nowait() == 7
    assert stream.get_nowait() is None


async def test_two_concurrent_getters_each_receive_one_of_two_items() -> None:
    stream: EventStream[str] = EventStream("s")
    getters = [asyncio.create_task(stream.get()) for _ in range(2)]
    await _settle()
    stream.put("x")
    stream.put("y")
    results = await asyncio.wait_for(asyncio.gather(*getters), WAIT)
    assert sorted(results) == ["x", "y"]


async def test_two_getters_both_receive_items_put_before_they_ran() -> None:
    stream: EventStream[str] = EventStream("s")
    getters = [asyncio.create_task(stream.get()) for _ in range(2)]
    stream.put("x")
    stream.put("y")
    results = await asyncio.wait_for(asyncio.gather(*getters), WAIT)
    assert sorted(results) == ["x", "y"]


async def test_a_cancelled_getter_does_not_swallow_a_later_item() -> None:
    stream: EventStream[str] = EventStream("s")
    cancelled = asyncio.create_task(stream.get())
    await _settle()
    cancelled.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await cancelled
    stream.put("x")
    assert await asyncio.wait_for(stream.get(), WAIT) == "x"


async def test_a_getter_cancelled_after_being_woken_passes_the_item_to_the_next_getter() -> None:
    stream: EventStream[str] = EventStream("s")
    first = asyncio.create_task(stream.get())
    await _settle()
    second = asyncio.create_task(stream.get())
    await _settle()
    stream.put("x")  # wakes `first`...
    first.cancel()  # ...which is cancelled before it runs
    with contextlib.suppress(asyncio.CancelledError):
        await first
    assert first.cancelled()
    assert await asyncio.wait_for(second, WAIT) == "x"
