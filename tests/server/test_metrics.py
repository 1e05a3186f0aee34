"""The node's metrics as Prometheus scrapes them: names, labels, and a body that parses."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from rtm2.errors import ErrorCode
from rtm2.protocol.frames import Ping, PublishTopic
from rtm2.server.config import AppConfig, ServerConfig
from rtm2.server.engines.memory import MemoryEngine
from rtm2.server.hub import Hub
from rtm2.server.metrics import BUCKETS, Timing

APP = "ab" * 16


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    loop = asyncio.new_event_loop()
    config = ServerConfig(data_dir=tmp_path, apps=(AppConfig(APP),))
    yield Hub(config, loop, MemoryEngine(tmp_path))
    loop.close()


def scrape(hub: Hub) -> dict[str, list[Sample]]:
    body, content_type = hub.metrics.render()
    assert content_type.startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(body.decode())}


def value(samples: list[Sample], name: str, **labels: str) -> float:
    return next(s.value for s in samples if s.name == name and s.labels == labels)


def test_a_fresh_node_exposes_every_metric_at_zero_under_the_rtm2_prefix(hub: Hub) -> None:
    families = scrape(hub)
    assert set(families) == {
        "rtm2_connections",
        "rtm2_connections_pending",
        "rtm2_connections_accepted",
        "rtm2_slow_consumer_disconnects",
        "rtm2_received_bytes",
        "rtm2_sent_bytes",
        "rtm2_sessions",
        "rtm2_channels",
        "rtm2_messages_published",
        "rtm2_messages_delivered",
        "rtm2_recovery_replays",
        "rtm2_request_duration_seconds",
        "rtm2_errors",
        "rtm2_rate_limited",
        "rtm2_bus_gaps",
        "rtm2_bus_lag_seconds",
        "rtm2_http_request_duration_seconds",
    }  # and, on the Redis engine only, rtm2_redis_command_duration_seconds, rtm2_redis_reconnects
    assert value(families["rtm2_connections"], "rtm2_connections") == 0
    assert value(families["rtm2_sent_bytes"], "rtm2_sent_bytes_total") == 0
    published = families["rtm2_messages_published"]
    assert {s.labels["channel_type"] for s in published} == {"stream", "message", "user"}


def test_labels_name_apps_frame_types_codes_and_channel_types_never_channels_or_users(
    hub: Hub,
) -> None:
    hub.stream.local["stream:" + APP + ":room-42"] = set()
    hub.counts.timings[PublishTopic].observe(0.0002)
    hub.counts.error(ErrorCode.CHANNEL_NOT_JOINED)
    body, _ = hub.metrics.render()
    assert b"room-42" not in body
    allowed = {"app", "state", "channel_type", "frame_type", "code", "error", "scope", "le"}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            assert set(sample.labels) <= allowed, sample


def test_gauges_are_read_from_the_hub_when_scraped(hub: Hub) -> None:
    hub.stream.local["stream:" + APP + ":a"] = set()
    hub.stream.local["stream:" + APP + ":b"] = set()
    hub.messages.receivers["msg:" + APP + ":c"] = set()
    hub.admission.open = 3
    channels = scrape(hub)["rtm2_channels"]
    assert value(channels, "rtm2_channels", app=APP, channel_type="stream") == 2
    assert value(channels, "rtm2_channels", app=APP, channel_type="message") == 1
    assert value(scrape(hub)["rtm2_connections"], "rtm2_connections") == 3


def test_counts_bumped_in_process_show_as_counters(hub: Hub) -> None:
    n = hub.counts
    n.published_stream += 2
    n.delivered_stream += 20
    hub.outbox.bytes_out += 1234
    n.error(ErrorCode.CHANNEL_PUBLISH_MESSAGE_TOO_FREQUENT)
    n.error(ErrorCode.CHANNEL_NOT_JOINED)
    n.dropped_pings += 1
    f = scrape(hub)
    published = f["rtm2_messages_published"]
    assert value(published, "rtm2_messages_published_total", channel_type="stream") == 2
    delivered = f["rtm2_messages_delivered"]
    assert value(delivered, "rtm2_messages_delivered_total", channel_type="stream") == 20
    assert value(f["rtm2_sent_bytes"], "rtm2_sent_bytes_total") == 1234
    code = str(int(ErrorCode.CHANNEL_NOT_JOINED))
    errors = f["rtm2_errors"]
    assert value(errors, "rtm2_errors_total", code=code, error="CHANNEL_NOT_JOINED") == 1
    # The publish-rate refusal and the dropped ping; not the other error.
    assert value(f["rtm2_rate_limited"], "rtm2_rate_limited_total") == 2


def test_request_durations_form_a_cumulative_histogram_per_frame_type(hub: Hub) -> None:
    timings = hub.counts.timings
    timings[Ping].observe(0.00005)
    timings[Ping].observe(BUCKETS[1])  # on a bound: counted in that bound's bucket
    timings[Ping].observe(99.0)
    h = scrape(hub)["rtm2_request_duration_seconds"]
    name = "rtm2_request_duration_seconds_bucket"
    assert value(h, name, frame_type="Ping", le=repr(BUCKETS[0])) == 1
    assert value(h, name, frame_type="Ping", le=repr(BUCKETS[1])) == 2
    assert value(h, name, frame_type="Ping", le=repr(BUCKETS[-1])) == 2
    assert value(h, name, frame_type="Ping", le="+Inf") == 3
    assert value(h, "rtm2_request_duration_seconds_count", frame_type="Ping") == 3
    total = value(h, "rtm2_request_duration_seconds_sum", frame_type="Ping")
    assert total == pytest.approx(99.00030)


def test_a_timing_puts_a_duration_past_the_last_bound_in_the_overflow_bucket() -> None:
    t = Timing()
    t.observe(BUCKETS[-1] * 2)
    assert t.counts[-1] == 1
    assert sum(t.counts) == 1


def test_two_nodes_in_one_process_keep_separate_registries(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    try:
        a = Hub(ServerConfig(data_dir=tmp_path / "a"), loop, MemoryEngine(tmp_path / "a"))
        b = Hub(ServerConfig(data_dir=tmp_path / "b"), loop, MemoryEngine(tmp_path / "b"))
        a.counts.published_message += 5
        assert a.metrics.registry is not b.metrics.registry
        pa = scrape(a)["rtm2_messages_published"]
        pb = scrape(b)["rtm2_messages_published"]
        assert value(pa, "rtm2_messages_published_total", channel_type="message") == 5
        assert value(pb, "rtm2_messages_published_total", channel_type="message") == 0
    finally:
        loop.close()
