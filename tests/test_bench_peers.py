"""What ``rtm2 bench peers`` hands the Go load generator: frames it writes as they are, and a
publish frame per system whose payload and request id it patches at the offsets given."""

from __future__ import annotations

import base64
import os

import msgspec
import pytest

from rtm2.cli import loadgen
from rtm2.cli import peers as p
from rtm2.protocol.frames import ClientMessage, Hello, Login, Publish, Subscribe

_client_frame = msgspec.msgpack.Decoder(ClientMessage).decode


def _unmask(frame: bytes) -> bytes:
    """The payload of one client WebSocket binary frame, checking its header on the way."""
    assert frame[0] == 0x82  # final, binary
    assert frame[1] & 0x80  # clients mask
    n, head = frame[1] & 0x7F, 2
    if n == 126:
        n, head = int.from_bytes(frame[2:4], "big"), 4
    elif n == 127:
        n, head = int.from_bytes(frame[2:10], "big"), 10
    key, data = frame[head : head + 4], frame[head + 4 :]
    assert len(data) == n
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def _payload(seq: int, sent_ns: int) -> bytes:
    """What the generator writes into a payload: sequence number and send time, then zeros."""
    return seq.to_bytes(8, "big") + sent_ns.to_bytes(8, "big") + bytes(p.SIZE - 16)


@pytest.mark.parametrize("rid", [0, 10, 127, 128, 2**32, 2**64 - 1])
def test_the_rtm2_publish_template_patched_with_any_request_id_decodes_as_that_publish(
    rid: int,
) -> None:
    tpl = p.publish_template("rtm2")
    data = _payload(7, 123_456_789)
    frame = _client_frame(_unmask(tpl.patch(rid, data)))
    assert frame == Publish(rid, p.CHANNEL, data)


def test_the_rtm2_publish_template_has_a_zero_payload_and_the_same_length_for_every_message() -> (
    None
):
    tpl = p.publish_template("rtm2")
    assert tpl.frame[tpl.payload_offset : tpl.payload_offset + p.SIZE] == bytes(p.SIZE)
    assert tpl.rid_offset >= 0
    assert len(tpl.patch(0, _payload(0, 0))) == len(tpl.patch(2**64 - 1, _payload(2**63, 2**62)))
    assert _client_frame(_unmask(tpl.frame)) == Publish(
        int.from_bytes(tpl.frame[tpl.rid_offset : tpl.rid_offset + 8], "big"),
        p.CHANNEL,
        bytes(p.SIZE),
    )


@pytest.mark.parametrize("system", ["redis", "nats"])
def test_the_redis_and_nats_templates_patched_are_what_their_python_clients_write(
    system: str,
) -> None:
    tpl = p.publish_template(system)
    assert tpl.rid_offset == -1
    data = _payload(3, 99)
    client = p.RedisClient if system == "redis" else p.NATSClient
    assert tpl.patch(5, data) == client.publish_frame(5, data)


def test_an_unknown_system_has_no_template() -> None:
    with pytest.raises(ValueError, match="unknown system"):
        p.publish_template("mqtt")


def test_the_go_spec_for_rtm2_logs_each_subscriber_in_as_its_own_user_and_subscribes_it() -> None:
    server = p.Server("rtm2", 7001, os.getpid())
    spec = p.go_spec(server, "latency", 3, 2.0, "be" * 16, "r1l", rate=1000.0)
    assert (spec["mode"], spec["subscribers"], spec["rate"], spec["seconds"]) == (
        "latency",
        3,
        1000.0,
        2.0,
    )
    assert spec["server_pid"] == os.getpid()
    assert spec["clock_ticks"] > 0

    def frames(encoded: list[str]) -> list[object]:
        return [_client_frame(_unmask(base64.b64decode(f))) for f in encoded]

    subs = [frames(h) for h in spec["subscriber_handshakes"]]
    assert subs == [
        [Hello(1), Login(2, "be" * 16, f"r1ls{i}"), Subscribe(3, p.CHANNEL, with_presence=False)]
        for i in range(3)
    ]
    assert frames(spec["publisher_handshake"]) == [Hello(1), Login(2, "be" * 16, "r1lp")]
    publish = spec["publish"]
    tpl = p.publish_template("rtm2")
    assert base64.b64decode(publish["frame"]) == tpl.frame
    assert (publish["payload_offset"], publish["rid_offset"]) == (
        tpl.payload_offset,
        tpl.rid_offset,
    )


def test_the_go_spec_for_redis_and_nats_carries_no_rtm2_handshakes() -> None:
    for system in ("redis", "nats"):
        spec = p.go_spec(p.Server(system, 6379, 1), "throughput", 10, 1.0, "app", "t")
        assert "subscriber_handshakes" not in spec
        assert (spec["window"], spec["warmup_windows"]) == (p.WINDOW, p.WARMUP_WINDOWS)


def test_the_python_load_is_chosen_when_asked_without_looking_for_go() -> None:
    load, line = loadgen.choose("python")
    assert load is None
    assert line.startswith("load: python")


def test_runqueue_wait_reads_this_process_threads_and_is_zero_for_no_process() -> None:
    assert p.runqueue_wait(os.getpid()) >= 0
    assert p.runqueue_wait(2**22 + 12345) == 0
