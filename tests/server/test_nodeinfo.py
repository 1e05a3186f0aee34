"""A node's descriptor (``server/nodeinfo.py``): its rates and how other nodes read it."""

from __future__ import annotations

import time

import msgspec

from rtm2.server.http.listing import NodeAppInfo, NodeInfo
from rtm2.server.metrics import Counts
from rtm2.server.nodeinfo import Rates, decode_descriptor


def test_rates_are_per_second_since_the_previous_sample_in_all_and_per_app() -> None:
    counts = Counts()
    rates = Rates(counts, time.time() - 2.0)  # started two seconds ago
    counts.published_message += 6
    counts.published_by_app["a"] += 4
    counts.published_by_app["b"] += 2
    counts.delivered_message += 20
    counts.delivered_by_app["a"] += 20
    published, delivered, by_app, out_by_app = rates.sample()
    assert 2.9 < published <= 3.0
    assert 9.9 < delivered <= 10.0
    assert by_app.keys() == {"a", "b"}
    assert 1.9 < by_app["a"] <= 2.0
    assert out_by_app.keys() == {"a"}
    assert 9.9 < out_by_app["a"] <= 10.0
    published, delivered, by_app, out_by_app = rates.sample()  # nothing since
    assert (published, delivered, by_app, out_by_app) == (0.0, 0.0, {}, {})


def test_a_descriptor_round_trips_and_an_older_node_one_reads_with_defaults() -> None:
    info = NodeInfo(
        "n1", "ws://h:1", 1.5, 3, "http://h:2", "9.9", 1.0, [NodeAppInfo("a", 3, 1.0)], 4.0
    )
    assert decode_descriptor(msgspec.msgpack.encode(info)) == info
    older = {"id": "n2", "address": "ws://h:3", "started": 2.0, "connections": 0}
    read = decode_descriptor(msgspec.msgpack.encode(older))
    assert read == NodeInfo("n2", "ws://h:3", 2.0, 0)
    newer = {**older, "load": 0.5}  # a field from a newer node is passed over
    assert decode_descriptor(msgspec.msgpack.encode(newer)) == read


def test_an_unreadable_descriptor_is_none() -> None:
    assert decode_descriptor(b"\xc1") is None
    assert decode_descriptor(msgspec.msgpack.encode({"id": 5})) is None
