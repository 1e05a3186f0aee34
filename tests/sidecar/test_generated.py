"""The committed protobuf code is what the committed .proto files generate (``make proto``)."""

from __future__ import annotations

from pathlib import Path

from rtm2.sidecar.proto import generate


def test_the_committed_generated_code_matches_a_fresh_generation(tmp_path: Path) -> None:
    fresh = generate.generate(tmp_path)
    assert {p.name for p in fresh} == {"gosdk_pb2.py", "gosdk_pb2.pyi"}
    for path in fresh:
        committed = generate.HERE / path.name
        assert committed.read_bytes() == path.read_bytes(), f"run `make proto`: {path.name}"


def test_the_wire_field_numbers_are_those_of_the_go_sdk() -> None:
    from rtm2.sidecar.proto import gosdk_pb2 as pb

    def numbers(message: type) -> dict[str, int]:
        return {f.name: f.number for f in message.DESCRIPTOR.fields}  # type: ignore[attr-defined]

    assert numbers(pb.Header) == {
        "seqId": 1,
        "uri": 2,
        "connIndex": 3,
        "message": 4,
        "ack": 5,
        "errCode": 6,
    }
    assert numbers(pb.StorageChannelEvent)["items"] == 4  # there is no field 3
    assert numbers(pb.PresenceWhereNowResp)["channels"] == 3  # there is no field 2
    assert numbers(pb.LoginReq)["params"] == 16
    assert numbers(pb.MessageEvent)["channelType"] == 7
    assert numbers(pb.MessagePublishReq)["channelType"] == 6
