"""What a dead node left behind in the engine, as typed values.

The engine hands entries over as lists (``Engine.orphans``): ``[kind, *fields, member]``,
where ``member`` is the session (or node) id that owned the entry. Each kind is a msgspec
struct here, tagged with its kind, so one ``msgspec.convert`` checks an entry and names its
fields, and the hub handles each kind with a ``match``.
"""

from __future__ import annotations

import logging

import msgspec

__all__ = [
    "LockOrphan",
    "Orphan",
    "PresenceOrphan",
    "StreamOrphan",
    "WaitOrphan",
    "parse_orphans",
]

log = logging.getLogger("rtm2.server")


class _Entry(msgspec.Struct, array_like=True, frozen=True, gc=False):
    pass


class PresenceOrphan(_Entry, tag="presence", frozen=True):
    """A user present in a channel (by subject) through the dead node: it timed out."""

    subject: str
    user: str
    member: str


class StreamOrphan(_Entry, tag="stream", frozen=True):
    """A stream channel member on the dead node: it leaves the channel and its topics."""

    app: str
    channel: str
    user: str
    member: str


class WaitOrphan(_Entry, tag="lockq", frozen=True):
    """A request of the dead node waiting for a lock: its ticket leaves the queue."""

    scope: str
    name: str
    ticket: str
    member: str


class LockOrphan(_Entry, tag="lock", frozen=True):
    """A lock the dead node answered for: its TTL counts down on another node."""

    scope: str
    name: str
    owner: str
    member: str


Orphan = PresenceOrphan | StreamOrphan | WaitOrphan | LockOrphan


def parse_orphans(entries: list[list[str]]) -> list[Orphan]:
    """The entries as typed values; one this node does not understand (from a newer node, or
    damaged) is logged and left out, as the others still need their clean-up."""
    orphans: list[Orphan] = []
    for entry in entries:
        try:
            orphans.append(msgspec.convert(entry, Orphan))
        except msgspec.ValidationError as exc:
            log.warning("cannot clean up after a dead node's entry %r: %s", entry, exc)
    return orphans
