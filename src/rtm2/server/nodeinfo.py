"""What a node tells of itself: its ``NodeInfo`` (issues 14 and 18).

Every sweep, the node hands its descriptor to the engine with its heartbeat (``Engine
.heartbeat``), so that ``/v1/info`` on any node lists every live node with its figures. The
figures come from what the hub already keeps (its sessions, ``metrics.Counts``): building a
descriptor costs one pass over the sessions per sweep, nothing on the message path.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING

import msgspec

from .._compiled import compiled_modules
from .._version import __version__
from .http.listing import NodeAppInfo, NodeInfo

if TYPE_CHECKING:
    from .hub import Hub
    from .metrics import Counts

__all__ = ["NodeDescriber", "Rates", "decode_descriptor"]

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(NodeInfo).decode


def decode_descriptor(raw: bytes) -> NodeInfo | None:
    """A descriptor from the engine; None when it cannot be read (a node of another kind)."""
    try:
        return _decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


class Rates:
    """Messages published per second (in all, and per app) and delivered per second, each
    between two calls of ``sample``: the counters only count."""

    def __init__(self, counts: Counts, since: float) -> None:
        self._counts = counts
        self._then = since
        self._published = self._delivered = 0
        self._by_app: dict[str, int] = {}
        self._out_by_app: dict[str, int] = {}

    def sample(self) -> tuple[float, float, dict[str, float], dict[str, float]]:
        """(published/s, delivered/s, published/s by app id, delivered/s by app id) since the
        previous call."""
        n = self._counts
        now = time.time()
        published = n.published_message + n.published_stream + n.published_user
        delivered = n.delivered_message + n.delivered_stream + n.delivered_user
        by_app, out_by_app = dict(n.published_by_app), dict(n.delivered_by_app)
        elapsed = max(now - self._then, 1e-3)
        rates = (
            round((published - self._published) / elapsed, 3),
            round((delivered - self._delivered) / elapsed, 3),
            _per_second(by_app, self._by_app, elapsed),
            _per_second(out_by_app, self._out_by_app, elapsed),
        )
        self._then, self._published, self._delivered = now, published, delivered
        self._by_app, self._out_by_app = by_app, out_by_app
        return rates


def _per_second(now: dict[str, int], then: dict[str, int], elapsed: float) -> dict[str, float]:
    return {
        app: round((count - then.get(app, 0)) / elapsed, 3)
        for app, count in now.items()
        if count != then.get(app, 0)
    }


class NodeDescriber:
    """Builds this node's ``NodeInfo``; ``descriptor`` is the sweep's (its own rates)."""

    def __init__(self, hub: Hub, address: str, http_address: str, started: float) -> None:
        self._hub = hub
        self.address = address
        self.http_address = http_address
        self.started = started
        self._sweep_rates = Rates(hub.counts, started)

    def describe(self, rates: Rates) -> NodeInfo:
        """The node now, with rates since ``rates``' previous sample."""
        hub = self._hub
        online: Counter[str] = Counter()
        for (app_id, _), session in hub.users.items():
            if session.attached:
                online[app_id] += 1
        published, delivered, by_app, out_by_app = rates.sample()
        apps = [
            NodeAppInfo(
                app_id, online[app_id], by_app.get(app_id, 0.0), out_by_app.get(app_id, 0.0)
            )
            for app_id in sorted(online.keys() | by_app.keys() | out_by_app.keys())
        ]
        return NodeInfo(
            hub.node_id,
            self.address,
            self.started,
            sum(1 for s in hub.sessions if s.attached),
            self.http_address,
            __version__,
            published,
            apps,
            delivered,
            compiled_modules(),
        )

    def descriptor(self) -> bytes:
        """What the sweep hands the engine: the node, with rates over the last sweep."""
        return _encode(self.describe(self._sweep_rates))
