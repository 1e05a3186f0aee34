"""Who may open a connection: the path and Origin of the upgrade request, and the caps on
connections (all of them, per address, and those not logged in yet).

Pure bookkeeping, no I/O: the gateway asks before it answers an upgrade request and when a
connection opens, and tells it when one logs in or ends.
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus

__all__ = ["Admission"]


class Admission:
    """Counts the open connections of one node and says which new ones to refuse."""

    __slots__ = (
        "_by_ip",
        "_origins",
        "_pending_by_ip",
        "max_connections",
        "max_pending",
        "max_pending_per_ip",
        "max_per_ip",
        "open",
        "pending",
    )

    def __init__(
        self,
        max_connections: int,
        max_per_ip: int,
        max_pending: int,
        max_pending_per_ip: int,
        allowed_origins: Iterable[str] = (),
    ) -> None:
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip
        self.max_pending = max_pending
        self.max_pending_per_ip = max_pending_per_ip
        # Empty: any Origin (and none); browsers send one, other clients usually do not.
        self._origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
        self.open = 0
        self.pending = 0  # open and not logged in yet
        self._by_ip: dict[str, int] = {}
        self._pending_by_ip: dict[str, int] = {}

    def check_request(self, path: bytes, origin: str | None) -> tuple[HTTPStatus, str] | None:
        """Why an upgrade request is refused (its HTTP status and a reason), or None."""
        if path.split(b"?", 1)[0] != b"/":
            return HTTPStatus.NOT_FOUND, "rtm2 serves WebSocket on / only"
        if self._origins and origin is not None and origin.rstrip("/").lower() not in self._origins:
            return HTTPStatus.FORBIDDEN, "origin not allowed"
        return None

    def admit(self, ip: str) -> str | None:
        """Count a new connection from ``ip``; or say why it is refused (and count nothing)."""
        if self.open >= self.max_connections:
            return "too many connections"
        if self._by_ip.get(ip, 0) >= self.max_per_ip:
            return "too many connections from this address"
        if self.pending >= self.max_pending:
            return "too many connections logging in"
        if self._pending_by_ip.get(ip, 0) >= self.max_pending_per_ip:
            return "too many connections logging in from this address"
        self.open += 1
        self.pending += 1
        self._by_ip[ip] = self._by_ip.get(ip, 0) + 1
        self._pending_by_ip[ip] = self._pending_by_ip.get(ip, 0) + 1
        return None

    def logged_in(self, ip: str) -> None:
        """An admitted connection logged in (or resumed): it no longer counts as pending."""
        self.pending -= 1
        _decrement(self._pending_by_ip, ip)

    def release(self, ip: str, pending: bool) -> None:
        """An admitted connection ended."""
        self.open -= 1
        _decrement(self._by_ip, ip)
        if pending:
            self.logged_in(ip)


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]
