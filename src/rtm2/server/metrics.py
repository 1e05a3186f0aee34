"""The node's Prometheus metrics: what ``GET /metrics`` serves.

The hot path never touches ``prometheus_client``: a ``Counter.inc`` is several Python calls
and a lock, paid per message. Instead the services bump plain integers in :class:`Counts`
(an attribute ``+=`` is no call at all), deliveries once per fan-out (``len(recipients)``),
bytes once per flush (the outbox already knows the size), and a request's duration is one
:class:`Timing` observation per request. Gauges (connections, sessions, channels) are not kept
up to date on every change either: :class:`Metrics` reads the hub's own dicts when scraped.

Every server gets its own ``CollectorRegistry`` (tests run several servers in one process),
and labels are low-cardinality only: app id, frame type, error code, channel type, never a
channel or a user.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.metrics_core import Metric

from ..errors import ErrorCode
from .subjects import SubjectKind, subject_kind

if TYPE_CHECKING:
    from .hub import Hub

__all__ = ["BUCKETS", "RATE_LIMIT_CODES", "Counts", "Metrics", "Timing"]

# Request duration buckets, in seconds: most requests finish within the loop pass (well under
# a millisecond); the ones that wait for the engine take milliseconds, for Redis more.
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

# The refusals that say "too fast" (request rate, publish rate, subscribe rate).
RATE_LIMIT_CODES = frozenset(
    {
        ErrorCode.OPERATION_RATE_EXCEED_LIMITATION,
        ErrorCode.CHANNEL_PUBLISH_MESSAGE_TOO_FREQUENT,
        ErrorCode.CHANNEL_SUBSCRIBE_TOO_FREQUENT,
    }
)


class Timing:
    """One frame type's request durations: bucket counts (``BUCKETS``, then +Inf) and a sum."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        # bisect_left: a duration equal to a bound belongs to that bound's bucket (le).
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds


class Counts:
    """The counters services bump in-process; read only when scraped."""

    __slots__ = (
        "bus_lag",
        "delivered_by_app",
        "delivered_message",
        "delivered_stream",
        "delivered_user",
        "dropped_pings",
        "errors",
        "http",
        "published_by_app",
        "published_message",
        "published_stream",
        "published_user",
        "timings",
    )

    def __init__(self) -> None:
        self.published_stream = 0
        self.published_message = 0
        self.published_user = 0
        # The same three together, by app id (for /v1/info's rate per app).
        self.published_by_app: defaultdict[str, int] = defaultdict(int)
        # Deliveries per app, counted once per fan-out (for /v1/info and the console).
        self.delivered_by_app: defaultdict[str, int] = defaultdict(int)
        # Frames queued for local recipients (a fan-out to N sessions counts N).
        self.delivered_stream = 0
        self.delivered_message = 0
        self.delivered_user = 0
        # Error replies by code (rare: a dict is fine there).
        self.errors: dict[int, int] = {}
        # Pings over the request rate: dropped without a reply, so not among the errors.
        self.dropped_pings = 0
        # By frame class; a defaultdict is a plain C lookup once the type has its Timing.
        self.timings: defaultdict[type, Timing] = defaultdict(Timing)
        # HTTP API requests by (route template, method): a few dozen routes at most.
        self.http: defaultdict[tuple[str, str], Timing] = defaultdict(Timing)
        # Seconds from another node's publish of a timestamped event to its arrival here.
        self.bus_lag = Timing()

    def observe_http(self, route: str, method: str, seconds: float) -> None:
        self.http[route, method].observe(seconds)

    def error(self, code: int) -> None:
        code = int(code)
        self.errors[code] = self.errors.get(code, 0) + 1


class Metrics:
    """One server's metrics: ``render()`` is the ``/metrics`` response."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self)

    def render(self) -> tuple[bytes, str]:
        """The body and content type of a scrape (Prometheus text format 0.0.4)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # --- the collector: everything read at scrape time ------------------------------------

    def collect(self) -> Iterator[Metric]:
        yield from self._connections()
        yield from self._sessions_and_channels()
        yield from self._messages()
        yield from self._requests()
        yield from self._engine()

    def _connections(self) -> Iterator[Metric]:
        hub = self._hub
        outbox, admission = hub.outbox, hub.admission
        g = GaugeMetricFamily("rtm2_connections", "Open WebSocket connections.")
        g.add_metric([], admission.open)
        yield g
        g = GaugeMetricFamily("rtm2_connections_pending", "Open connections not logged in yet.")
        g.add_metric([], admission.pending)
        yield g
        c = CounterMetricFamily("rtm2_connections_accepted", "Connections let in.")
        c.add_metric([], outbox.accepted)
        yield c
        c = CounterMetricFamily(
            "rtm2_slow_consumer_disconnects",
            "Connections cut off because their send buffer passed max_send_buffer.",
        )
        c.add_metric([], outbox.slow_consumers)
        yield c
        c = CounterMetricFamily(
            "rtm2_received_bytes", "WebSocket payload bytes received from clients."
        )
        c.add_metric([], outbox.bytes_in)
        yield c
        c = CounterMetricFamily("rtm2_sent_bytes", "WebSocket frame bytes written to clients.")
        c.add_metric([], outbox.bytes_out)
        yield c

    def _sessions_and_channels(self) -> Iterator[Metric]:
        hub = self._hub
        attached: Counter[str] = Counter()
        detached: Counter[str] = Counter()
        for (app, _), session in hub.users.items():
            (attached if session.attached else detached)[app] += 1
        g = GaugeMetricFamily(
            "rtm2_sessions",
            "Logged-in sessions; detached ones lost their connection and wait for a resume.",
            labels=["app", "state"],
        )
        for app in hub.apps:
            g.add_metric([app, "attached"], attached[app])
            g.add_metric([app, "detached"], detached[app])
        yield g
        channels: Counter[tuple[str, str]] = Counter()
        for subject in (*hub.stream.local, *hub.messages.receivers):
            kind = "stream" if subject_kind(subject) is SubjectKind.STREAM else "message"
            channels[subject.split(":", 2)[1], kind] += 1
        g = GaugeMetricFamily(
            "rtm2_channels",
            "Channels with a member (stream) or a subscriber (message) on this node.",
            labels=["app", "channel_type"],
        )
        for app in hub.apps:
            for kind in ("stream", "message"):
                g.add_metric([app, kind], channels[app, kind])
        yield g

    def _messages(self) -> Iterator[Metric]:
        n = self._hub.counts
        c = CounterMetricFamily(
            "rtm2_messages_published",
            "Messages published by clients on this node.",
            labels=["channel_type"],
        )
        c.add_metric(["stream"], n.published_stream)
        c.add_metric(["message"], n.published_message)
        c.add_metric(["user"], n.published_user)
        yield c
        c = CounterMetricFamily(
            "rtm2_messages_delivered",
            "Messages queued for recipients on this node (one per recipient).",
            labels=["channel_type"],
        )
        c.add_metric(["stream"], n.delivered_stream)
        c.add_metric(["message"], n.delivered_message)
        c.add_metric(["user"], n.delivered_user)
        yield c
        c = CounterMetricFamily(
            "rtm2_recovery_replays",
            "Requests that sent a client the messages it missed (resume, join, subscribe).",
        )
        c.add_metric([], self._hub.replayer.replays)
        yield c

    def _requests(self) -> Iterator[Metric]:
        n = self._hub.counts
        h = HistogramMetricFamily(
            "rtm2_request_duration_seconds",
            "Time from a request's arrival to its handler's end, by frame type.",
            labels=["frame_type"],
        )
        for frame_type, timing in sorted(n.timings.items(), key=lambda kv: kv[0].__name__):
            h.add_metric([frame_type.__name__], _buckets(timing), timing.sum)
        yield h
        h = HistogramMetricFamily(
            "rtm2_http_request_duration_seconds",
            "HTTP API requests, from arrival to the answer's end, by route template and method.",
            labels=["route", "method"],
        )
        for (route, method), timing in sorted(n.http.items()):
            h.add_metric([route, method], _buckets(timing), timing.sum)
        yield h
        c = CounterMetricFamily(
            "rtm2_errors", "Requests answered with an error, by code.", labels=["code", "error"]
        )
        limited = n.dropped_pings
        for code, count in sorted(n.errors.items()):
            c.add_metric([str(code), _code_name(code)], count)
            if code in RATE_LIMIT_CODES:
                limited += count
        yield c
        c = CounterMetricFamily(
            "rtm2_rate_limited",
            "Requests refused (or pings dropped) for going over a rate limit.",
        )
        c.add_metric([], limited)
        yield c

    def _engine(self) -> Iterator[Metric]:
        c = CounterMetricFamily(
            "rtm2_bus_gaps",
            "Times the bus may have dropped events: its connection to the engine was lost "
            "(Redis pub/sub reconnects), or one channel moved (Redis Cluster).",
            labels=["scope"],
        )
        c.add_metric(["all"], self._hub.bus_gaps_all)
        c.add_metric(["channel"], self._hub.bus_gaps_channel)
        yield c
        lag = self._hub.counts.bus_lag
        h = HistogramMetricFamily(
            "rtm2_bus_lag_seconds",
            "Time from another node's publish of an event to its arrival here (one timestamped "
            "event per node and sweep; none with the embedded engine).",
        )
        h.add_metric([], _buckets(lag), lag.sum)
        yield h
        if self._hub.engine.shared:  # Redis (imported here: only deployments that use it)
            yield from _redis()


def _redis() -> Iterator[Metric]:
    from .redisio.stats import BUCKETS as REDIS_BUCKETS
    from .redisio.stats import KINDS, SAMPLE, STATS

    h = HistogramMetricFamily(
        "rtm2_redis_command_duration_seconds",
        f"Redis commands from sending to the reply, by kind; one in {SAMPLE} is timed.",
        labels=["command"],
    )
    bounds = (*(repr(b) for b in REDIS_BUCKETS), "+Inf")
    for kind in KINDS:
        counts = STATS.buckets[kind]
        cumulative = [sum(counts[: i + 1]) for i in range(len(counts))]
        h.add_metric([kind], list(zip(bounds, cumulative, strict=True)), STATS.sums[kind])
    yield h
    c = CounterMetricFamily(
        "rtm2_redis_reconnects",
        "Connections to Redis re-established after a loss: command, or pub/sub.",
        labels=["connection"],
    )
    for connection, count in STATS.reconnects.items():
        c.add_metric([connection], count)
    yield c


def _buckets(timing: Timing) -> list[tuple[str, float]]:
    """A Timing's cumulative buckets, as a histogram metric family takes them."""
    buckets: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip((*BUCKETS, float("inf")), timing.counts, strict=True):
        total += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), total))
    return buckets


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return "UNKNOWN"
