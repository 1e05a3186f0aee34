"""rtm2.sync without a server: the event-loop thread, blocking streams, errors and closing."""

from __future__ import annotations

import _thread
import asyncio
import functools
import inspect
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import rtm2
import rtm2.sync
from rtm2 import ChannelType, ErrorCode, RTMError
from rtm2.client.sync_loop import EventStream, LoopThread

WAIT = 2.0  # upper bound for anything that should happen at once; keeps a bug from hanging
APP = "a" * 32


def sync_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("rtm2-sync-")]


@pytest.fixture
def client() -> Iterator[rtm2.sync.RTMClient]:
    with rtm2.sync.RTMClient(rtm2.RTMConfig(app_id=APP, user_id="alice")) as client:
        yield client


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    thread = LoopThread("rtm2-sync-test")
    yield thread
    thread.stop()


def code_of(info: pytest.ExceptionInfo[RTMError]) -> ErrorCode:
    return ErrorCode(info.value.code)


def test_a_call_before_login_raises_not_login_through_the_facade(
    client: rtm2.sync.RTMClient,
) -> None:
    calls: list[Callable[[], object]] = [
        lambda: client.publish("lobby", "hi"),
        lambda: client.subscribe("lobby"),
        lambda: client.renew_token("t"),
        lambda: client.presence.who_now("lobby", ChannelType.MESSAGE),
        lambda: client.storage.get_user_metadata("bob"),
        lambda: client.lock.acquire("room", ChannelType.STREAM, "editor", retry=True),
        lambda: client.stream_channel("room").join(),
    ]
    for call in calls:
        with pytest.raises(RTMError) as info:
            call()
        assert code_of(info) is ErrorCode.NOT_LOGIN
    assert not client.logged_in


def test_errors_come_through_unchanged(client: rtm2.sync.RTMClient) -> None:
    with pytest.raises(RTMError) as info:
        client.set_parameters({rtm2.PARAM_ENDPOINT: "http://not-a-websocket"})
    assert type(info.value) is RTMError
    assert code_of(info) is ErrorCode.INVALID_PARAMETER
    with pytest.raises(RTMError) as info:
        client.stream_channel("")
    assert code_of(info) is ErrorCode.INVALID_CHANNEL_NAME


def test_parameters_set_are_read_back(client: rtm2.sync.RTMClient) -> None:
    client.set_parameters({rtm2.PARAM_ENDPOINT: "ws://127.0.0.1:1"})
    assert client.get_parameters()[rtm2.PARAM_ENDPOINT] == "ws://127.0.0.1:1"


def test_a_stream_channel_is_the_same_object_for_the_same_name(
    client: rtm2.sync.RTMClient,
) -> None:
    channel = client.stream_channel("room")
    assert client.stream_channel("room") is channel
    assert channel.channel_name == "room"
    assert not channel.joined
    assert channel.topics == {}


def test_close_is_idempotent_and_the_loop_thread_is_gone_afterwards() -> None:
    client = rtm2.sync.RTMClient(rtm2.RTMConfig(app_id=APP, user_id="closer"))
    assert [t.name for t in sync_threads()] == ["rtm2-sync-closer"]
    client.close()
    assert sync_threads() == []
    assert client.closed
    client.close()
    assert sync_threads() == []


def test_a_call_after_close_raises_not_initialized() -> None:
    client = rtm2.sync.RTMClient(rtm2.RTMConfig(app_id=APP, user_id="alice"))
    client.close()
    with pytest.raises(RTMError) as info:
        client.publish("lobby", "hi")
    assert code_of(info) is ErrorCode.NOT_INITIALIZED
    with pytest.raises(RTMError) as info:
        client.login()
    assert code_of(info) is ErrorCode.NOT_INITIALIZED


def test_leaving_the_with_block_by_an_exception_closes_the_client() -> None:
    with (
        pytest.raises(ZeroDivisionError),
        rtm2.sync.RTMClient(rtm2.RTMConfig(app_id=APP, user_id="alice")) as client,
    ):
        1 / 0  # noqa: B018
    assert client.closed
    assert sync_threads() == []


async def test_using_the_facade_inside_a_running_event_loop_raises() -> None:
    with pytest.raises(RuntimeError, match="running event loop"):
        rtm2.sync.RTMClient(rtm2.RTMConfig(app_id=APP, user_id="alice"))
    assert sync_threads() == []
    # A client made elsewhere is refused too, and nothing was left waiting on its loop.
    client = await asyncio.to_thread(rtm2.sync.RTMClient, rtm2.RTMConfig(APP, "bob"))
    try:
        with pytest.raises(RuntimeError, match="running event loop"):
            client.publish("lobby", "hi")
        with pytest.raises(RuntimeError, match="running event loop"):
            client.peer_messages.get(timeout=1)
        with pytest.raises(RuntimeError, match="running event loop"):
            client.close()
    finally:
        await asyncio.to_thread(client.close)
    assert sync_threads() == []


def test_a_streams_get_with_a_timeout_raises_timeout_error(client: rtm2.sync.RTMClient) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        client.peer_messages.get(timeout=0.1)
    assert time.monotonic() - started < WAIT


def test_a_blocking_stream_gives_its_events_in_order_and_ends_when_closed(
    loop: LoopThread,
) -> None:
    stream = loop.call(lambda: rtm2.EventStream[int]("numbers"))
    for i in range(3):
        loop.call(functools.partial(stream.put, i))
    view = EventStream(stream, loop)
    assert len(view) == 3
    assert view.get(timeout=WAIT) == 0
    view.close()
    assert view.closed
    assert list(view) == [1, 2]
    with pytest.raises(RTMError) as info:
        view.get(timeout=WAIT)
    assert code_of(info) is ErrorCode.NOT_LOGIN
    assert view.get_nowait() is None


def test_a_blocked_iteration_ends_when_another_thread_closes_the_client() -> None:
    client = rtm2.sync.RTMClient(rtm2.RTMConfig(app_id=APP, user_id="alice"))
    received: list[object] = []
    reader = threading.Thread(target=lambda: received.extend(client.peer_messages))
    reader.start()
    time.sleep(0.1)  # the reader is waiting
    client.close()
    reader.join(WAIT)
    assert not reader.is_alive()
    assert received == []


def test_events_left_in_a_closed_stream_are_read_after_the_loop_thread_ended() -> None:
    loop = LoopThread("rtm2-sync-test")
    stream = loop.call(lambda: rtm2.EventStream[str]("letters"))
    loop.call(lambda: stream.put("a"))
    loop.call(lambda: stream.put("b"))
    view = EventStream(stream, loop)
    view.close()
    loop.stop()
    assert loop.finished
    assert view.get() == "a"
    assert list(view) == ["b"]
    with pytest.raises(RTMError) as info:
        view.get()
    assert code_of(info) is ErrorCode.NOT_INITIALIZED


def test_a_call_waiting_when_the_loop_thread_dies_raises_instead_of_hanging(
    loop: LoopThread,
) -> None:
    stream = loop.call(lambda: rtm2.EventStream[int]("never"))
    aio = loop.call(asyncio.get_running_loop)
    threading.Timer(0.1, lambda: aio.call_soon_threadsafe(aio.stop)).start()
    started = time.monotonic()
    with pytest.raises(RTMError) as info:
        EventStream(stream, loop).get()  # no timeout: only the thread's end can stop it
    assert code_of(info) is ErrorCode.NOT_INITIALIZED
    assert time.monotonic() - started < WAIT
    with pytest.raises(RTMError) as info:
        loop.call(lambda: None)
    assert code_of(info) is ErrorCode.NOT_INITIALIZED


def test_an_interrupted_wait_cancels_the_call_on_the_loop(loop: LoopThread) -> None:
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    threading.Timer(0.1, _thread.interrupt_main).start()  # Ctrl-C while the call waits
    with pytest.raises(KeyboardInterrupt):
        loop.run(forever)
    assert cancelled.wait(WAIT)
    assert loop.call(lambda: "still running") == "still running"


def test_one_client_may_be_called_from_several_threads_at_once(
    client: rtm2.sync.RTMClient,
) -> None:
    failures: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(50):
                client.set_parameters({f"p{n}": i})
                assert client.get_parameters()[f"p{n}"] == i
        except BaseException as exc:
            failures.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(WAIT * 5)
    assert failures == []
    assert {f"p{n}" for n in range(4)} <= set(client.get_parameters())


def test_two_clients_run_on_two_threads_and_close_independently() -> None:
    alice = rtm2.sync.RTMClient(rtm2.RTMConfig(app_id=APP, user_id="alice"))
    bob = rtm2.sync.RTMClient(rtm2.RTMConfig(app_id=APP, user_id="bob"))
    assert sorted(t.name for t in sync_threads()) == ["rtm2-sync-alice", "rtm2-sync-bob"]
    alice.close()
    assert [t.name for t in sync_threads()] == ["rtm2-sync-bob"]
    with pytest.raises(RTMError) as info:
        bob.publish("lobby", "hi")
    assert code_of(info) is ErrorCode.NOT_LOGIN
    bob.close()
    assert sync_threads() == []


def public_members(cls: type) -> dict[str, object]:
    return {
        name: member
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and (callable(member) or isinstance(member, property))
    }


def parameters(function: object) -> list[tuple[str, object, object]]:
    assert callable(function)
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


# The one addition: a bound on a lock wait, which asyncio code gets by cancelling the task.
EXTRA = {("Lock", "acquire"): "timeout"}

# Hooks the SDK itself calls on its sub-APIs (through the client's narrow channel-features
# role) when channels are entered, left or restored; applications never call them.
SDK_HOOKS = (
    {("Presence", name) for name in ("entered", "left", "reset", "state_for")}
    | {("Storage", name) for name in ("open_view", "close_view", "reset", "restore")}
    | {("Lock", name) for name in ("open_view", "close_view", "reset")}
)


@pytest.mark.parametrize(
    ("async_cls", "sync_cls"),
    [
        (rtm2.RTMClient, rtm2.sync.RTMClient),
        (rtm2.Presence, rtm2.sync.Presence),
        (rtm2.Storage, rtm2.sync.Storage),
        (rtm2.Lock, rtm2.sync.Lock),
        (rtm2.History, rtm2.sync.History),
        (rtm2.StreamChannel, rtm2.sync.StreamChannel),
        (rtm2.EventStream, rtm2.sync.EventStream),
    ],
    ids=lambda cls: cls.__name__,
)
def test_every_public_method_of_the_async_api_has_a_blocking_twin_with_its_parameters(
    async_cls: type, sync_cls: type
) -> None:
    twins = public_members(sync_cls)
    for name, member in public_members(async_cls).items():
        if async_cls is rtm2.EventStream and name == "put":
            continue  # the producer side belongs to the SDK
        if (async_cls.__name__, name) in SDK_HOOKS:
            continue
        assert name in twins, f"rtm2.sync.{sync_cls.__name__} lacks {name}"
        if isinstance(member, property):
            assert isinstance(twins[name], property), name
            continue
        extra = EXTRA.get((async_cls.__name__, name))
        sync_parameters = [p for p in parameters(twins[name]) if p[0] != extra]
        assert sync_parameters == parameters(member), f"{sync_cls.__name__}.{name}"


def test_rtm2_sync_exports_exactly_its_public_names() -> None:
    assert sorted(rtm2.sync.__all__) == sorted(set(rtm2.sync.__all__))
    for name in rtm2.sync.__all__:
        assert getattr(rtm2.sync, name).__module__.startswith("rtm2.client.sync"), name
