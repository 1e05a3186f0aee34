"""Engine contracts: small role Protocols that every engine implements the same way.

A server node keeps its own connections and routing tables; an engine holds what all nodes of
a deployment must agree on (who is in a stream channel, who publishes in which topic) and
carries events between nodes. The embedded engine (``memory``) does both inside one process;
the Redis engine does them across many. One contract test suite (``tests/engines``) runs
against every engine, so the server above them cannot tell them apart.

Outcomes are returned as values, not raised: the service layer turns them into RTM errors.
The one exception an engine raises is ``EngineUnavailable``: it could not reach its backing
store (Redis), so the operation did not happen or may have happened. Engines know nothing of
RTM error codes; the service layer picks the code by the request that failed
(``server/unavailable.py``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from enum import IntEnum
from typing import TYPE_CHECKING, Protocol

import msgspec

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "BUS_MESSAGE",
    "BUS_LOCK",
    "BUS_LOCK_QUEUE",
    "BUS_KICK",
    "BUS_PROBE",
    "BUS_LOGIN",
    "BUS_PEER",
    "BUS_PRESENCE",
    "BUS_STORAGE",
    "Ban",
    "BanStore",
    "OP_REMOVE",
    "OP_SET",
    "OP_UPDATE",
    "Item",
    "ItemWrite",
    "LockInfo",
    "LockOutcome",
    "LockStore",
    "Metadata",
    "MetadataStore",
    "WriteOutcome",
    "BUS_TOPIC_EVENT",
    "Broker",
    "BusEvent",
    "BusHandler",
    "BusKind",
    "BusListener",
    "bus_routes",
    "Engine",
    "EngineUnavailable",
    "EventOutbox",
    "OutboxEntry",
    "PresenceEntry",
    "PresenceStore",
    "RecoveryStore",
    "UNNUMBERED",
    "frame_offset",
    "FENCES_KEPT",
    "HISTORY_IDS_PER_MS",
    "HistoryEntry",
    "HistoryStore",
    "subject_app",
    "numbered",
    "StreamStore",
    "TopicPublishers",
]


class EngineUnavailable(Exception):
    """The engine cannot reach what it keeps its state in; the message says why.

    Not an RTM error: the same failure means a different RTM code to each request, which
    the service layer chooses. Outside requests (bus events, sweeps, replays) callers log it
    and carry on.
    """


class BusKind(IntEnum):
    """What a bus event is; its number travels between nodes (so members never change)."""

    # ``frame`` is a message push: a StreamMessage on a stream channel's subject (deliver to
    # subscribers of (topic, user)), a ChannelMessage on a message channel's (``topic`` "")
    MESSAGE = 1
    TOPIC_EVENT = 2  # ``frame`` is a TopicEvent push; deliver to every member but ``user``
    PRESENCE = 3  # ``frame`` is a PresenceEvent push about ``user``; ``topic`` is its kind
    STORAGE = 4  # ``frame`` is a StorageEvent push; deliver to the subject's metadata listeners
    LOCK = 5  # ``frame`` is a LockEvent push; ``topic`` is the lock name
    PEER = 6  # on a user's session subject: ``frame`` is a peer ChannelMessage for that user
    LOGIN = 7  # on a user's session subject: session ``user`` logged in; older ones must go
    LOCK_QUEUE = 8  # ``topic`` is a lock name: its queue moved up, its waiters try again
    # on a user's session subject: the app's backend kicked the user; ``topic`` is why,
    # ``frame`` the ban's length in seconds, as ASCII
    KICK = 9
    # on a user's session subject: nothing to do; its count of receivers says whether a
    # node holds the user's session
    PROBE = 10


# The kinds under their older names, which engine code uses.
BUS_MESSAGE = BusKind.MESSAGE
BUS_TOPIC_EVENT = BusKind.TOPIC_EVENT
BUS_PRESENCE = BusKind.PRESENCE
BUS_STORAGE = BusKind.STORAGE
BUS_LOCK = BusKind.LOCK
BUS_PEER = BusKind.PEER
BUS_LOGIN = BusKind.LOGIN
BUS_LOCK_QUEUE = BusKind.LOCK_QUEUE
BUS_KICK = BusKind.KICK
BUS_PROBE = BusKind.PROBE


class BusEvent(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """What travels between nodes: an event about one channel, with its client push ready.

    ``frame`` is the MessagePack push exactly as clients receive it, encoded once by the node
    where the event happened; receiving nodes only add WebSocket framing.
    """

    kind: int
    topic: str
    user: str
    frame: bytes


BusHandler = Callable[[str, BusEvent], None]


class BusListener(Protocol):
    """Takes a node's bus events, one method per ``BusKind`` (``bus_routes`` maps them)."""

    def on_message(self, subject: str, event: BusEvent) -> None: ...
    def on_topic_event(self, subject: str, event: BusEvent) -> None: ...
    def on_presence(self, subject: str, event: BusEvent) -> None: ...
    def on_storage(self, subject: str, event: BusEvent) -> None: ...
    def on_lock(self, subject: str, event: BusEvent) -> None: ...
    def on_peer(self, subject: str, event: BusEvent) -> None: ...
    def on_login(self, subject: str, event: BusEvent) -> None: ...
    def on_lock_queue(self, subject: str, event: BusEvent) -> None: ...
    def on_kick(self, subject: str, event: BusEvent) -> None: ...
    def on_probe(self, subject: str, event: BusEvent) -> None: ...


def bus_routes(listener: BusListener) -> dict[int, BusHandler]:
    """``listener``'s method for each kind, looked up with ``routes[event.kind]`` (a kind
    missing there comes from a newer node: nothing here knows what to do with it)."""
    return {
        BusKind.MESSAGE: listener.on_message,
        BusKind.TOPIC_EVENT: listener.on_topic_event,
        BusKind.PRESENCE: listener.on_presence,
        BusKind.STORAGE: listener.on_storage,
        BusKind.LOCK: listener.on_lock,
        BusKind.PEER: listener.on_peer,
        BusKind.LOGIN: listener.on_login,
        BusKind.LOCK_QUEUE: listener.on_lock_queue,
        BusKind.KICK: listener.on_kick,
        BusKind.PROBE: listener.on_probe,
    }


# A message push (StreamMessage, ChannelMessage) leaves its publisher's node with this offset:
# its last field, encoded as an 8-byte MessagePack uint64, is the last 8 bytes of the frame
# (and of the BusEvent carrying it, whose last field is the frame). The engine numbers the
# message by overwriting those bytes, without decoding anything.
UNNUMBERED = 2**64 - 1


_OFFSET = struct.Struct(">Q")
_pack_offset = _OFFSET.pack
_unpack_offset = _OFFSET.unpack_from


def numbered(data: bytes, offset: int) -> bytes:
    """``data`` (a message frame, or a BusEvent carrying one) with its offset set."""
    return data[:-8] + _pack_offset(offset)


def frame_offset(data: bytes) -> int:
    """The offset of a numbered message frame (or of a BusEvent carrying one)."""
    offset: int = _unpack_offset(data, len(data) - 8)[0]
    return offset


class Broker(Protocol):
    """Carries events on subjects (one per channel) to every node subscribed to them.

    Contract: events published on one subject by one node arrive at each subscribed node once,
    in publish order. ``publish`` never blocks and never raises for a subject nobody
    subscribes to. Delivery calls the handler given to the engine when it was created.
    """

    def publish(self, subject: str, event: BusEvent) -> None: ...

    async def publish_counted(self, subject: str, event: BusEvent) -> int:
        """Publish and return how many nodes received the event (0: nobody listens)."""

    def publish_message(self, subject: str, event: BusEvent, keep: int, seconds: float) -> None:
        """Number a message and publish it.

        ``event.frame`` ends with the ``UNNUMBERED`` offset; the engine writes in the next
        offset of (``subject``, ``event.topic``), and keeps the numbered event for recovery
        (the ``keep`` most recent, none older than ``seconds``; ``keep`` 0: none). Offsets
        of one (subject, topic) only grow, across nodes and restarts of the engine's store.
        """

    async def ready(self, subject: str) -> None:
        """Return once events published on ``subject`` from now on reach this node (it must
        be subscribed): a node that reads a recovery buffer after this misses nothing live."""

    def release(self, subject: str, missed: list[BusEvent]) -> None:
        """After ``gap(subject)`` the broker holds that subject's events: deliver ``missed``
        (what the node read from the RecoveryStore), then the held events that are new. If
        the subject moved again meanwhile, it calls ``gap(subject)`` once more and holds on."""

    def subscribe(self, subject: str) -> None:
        """Start receiving ``subject`` on this node. Idempotent."""

    def unsubscribe(self, subject: str) -> None:
        """Stop receiving ``subject`` on this node. Idempotent."""


class TopicPublishers(msgspec.Struct, frozen=True, gc=False):
    topic: str
    # (user id, meta) of each publisher, in the order they joined.
    publishers: list[tuple[str, str]]


class StreamStore(Protocol):
    """Stream-channel membership and topic publishers, shared by all nodes.

    Every member and publisher entry is owned by a member id (the session id); an update
    carrying another member id than the entry's does nothing, so a stale session's clean-up
    can never remove the entry of a newer session of the same user.
    """

    async def join(
        self, app: str, channel: str, user: str, member: str, max_users: int
    ) -> list[TopicPublishers] | None:
        """Add ``user`` to the channel and return its topics; None when the channel is full.

        Re-joining replaces the user's member id (and keeps the entry if it existed).
        """

    async def leave(self, app: str, channel: str, user: str, member: str) -> list[str]:
        """Remove the user (if ``member`` owns the entry); return the topics it published in."""

    async def join_topic(
        self, app: str, channel: str, topic: str, user: str, member: str, meta: str
    ) -> None:
        """Make ``user`` a publisher of ``topic`` (creating the topic)."""

    async def leave_topic(self, app: str, channel: str, topic: str, user: str, member: str) -> bool:
        """Remove a publisher; the topic goes away with its last one. False if not a publisher."""

    async def publishers(self, app: str, channel: str, topic: str) -> list[str]:
        """Current publishers of ``topic``, in the order they joined."""


class PresenceEntry(msgspec.Struct, gc=False):
    """One user's presence in one channel. ``member`` owns it (the session id)."""

    member: str
    state: dict[str, str]
    quiet: bool = False


class PresenceStore(Protocol):
    """Who is present in which channel, with what temporary state, shared by all nodes.

    Channels are named by subject (``server.subjects``). As in ``StreamStore``, writes that
    carry a member id other than the entry's change nothing.
    """

    async def join(
        self, subject: str, user: str, member: str, state: dict[str, str], quiet: bool
    ) -> PresenceEntry | None:
        """Make ``user`` present (taking the entry over if it exists); return the previous
        entry, None if the user was not present."""

    async def leave(self, subject: str, user: str, member: str) -> PresenceEntry | None:
        """Remove the user's entry if ``member`` owns it; return it (None if nothing changed)."""

    async def update_state(
        self, subject: str, user: str, member: str, upsert: dict[str, str], remove: list[str]
    ) -> dict[str, str] | None:
        """Change the user's state; return the full new state (None if not present)."""

    async def members(self, subject: str) -> dict[str, PresenceEntry]:
        """Everyone present in the channel."""

    async def where_now(self, app: str, user: str) -> list[tuple[str, bool]]:
        """(subject, quiet) of every channel of ``app`` where ``user`` is present."""

    async def channels(self, subject_prefix: str) -> dict[str, int]:
        """Every channel whose subject starts with ``subject_prefix`` (``msg:<app>:`` and
        more) and where someone is present, with how many entries (quiet ones too). Meant
        for the HTTP API's listing, not for hot paths: Redis SCANs the prefix's keys."""


# --- storage (metadata) and locks ---------------------------------------------------------------


# Per app, the last fencing numbers of this many most recently removed locks are kept by name
# (a name set again goes on from its own); older ones fold into the app's fencing floor, where
# every lock set later starts. So a fresh lock starts at fence 0 until the app has removed
# more locks than this, and removed names cost bounded storage.
FENCES_KEPT = 1000


def subject_app(subject: str) -> str:
    """The app of a channel subject, user target or lock scope (``<kind>:<app>:<name>``):
    row quotas and fencing floors are kept per app."""
    return subject.split(":", 2)[1]


OP_SET = 0
OP_UPDATE = 1
OP_REMOVE = 2


class Item(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A stored metadata item. ``revision`` is the write that last changed it."""

    key: str
    value: str
    revision: int
    author: str = ""
    update_ts: int = 0


class Metadata(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A metadata set: ``major_revision`` is its last write (0: the set does not exist)."""

    major_revision: int
    items: dict[str, Item]


class ItemWrite(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One item of a write; ``revision`` -1 = no check, 0 = must not exist, > 0 = must match."""

    key: str
    value: str = ""
    revision: int = -1


class WriteOutcome(msgspec.Struct, frozen=True, gc=False):
    """Result of a metadata write: ``code`` 0 and the new set, or the RTM code and reason."""

    code: int
    reason: str = ""
    metadata: Metadata | None = None


class MetadataStore(Protocol):
    """Channel and user metadata with revisions, shared by all nodes and durable.

    Targets name a set: a channel's subject (``msg:<app>:<name>``, ``stream:<app>:<name>``)
    or ``user:<app>:<user id>``. A write
    is all or nothing: every check (major revision, item revisions, existence for update and
    remove, the bound lock) passes and every item is written, or nothing changes. It returns
    only once the write is durable. Revisions come from one counter that only grows.
    """

    async def write(
        self,
        target: str,
        op: int,
        items: list[ItemWrite],
        major_revision: int,
        author: str,
        update_ts: int,
        lock: tuple[str, str, str] | None = None,
        max_size: int = 0,
        max_rows: int = 0,
    ) -> WriteOutcome:
        """Apply a write. ``author``/``update_ts`` are stamped on written items ("" / 0 when
        not recorded). ``lock`` is (lock scope, lock name, user that must hold it).
        ``max_size`` (if > 0) bounds the bytes of all keys and values of the resulting set.
        ``max_rows`` (if > 0) bounds the metadata rows of the target's app (``subject_app``):
        each set counts one and each of its items one more; a write that would end above it
        (and grows the count) is refused with STORAGE_METADATA_ITEM_EXCEED_LIMITATION."""

    async def read(self, target: str) -> Metadata: ...


class LockInfo(msgspec.Struct, array_like=True, frozen=True, gc=False):
    name: str
    ttl: int
    owner: str = ""  # "" = free
    fence: int = 0  # grows by one on every acquire


class LockOutcome(msgspec.Struct, frozen=True, gc=False):
    code: int
    reason: str = ""
    lock: LockInfo | None = None


class LockStore(Protocol):
    """Named locks per channel (scope: the channel's subject), durable, shared by nodes.

    Owners are user ids. ``acquire`` succeeds when the lock is free or already the caller's,
    and returns the lock with its fencing number (strictly increasing per lock).

    Waiting is first come, first served across all nodes: each lock has a queue of tickets
    (one per waiting request). While tickets queue, a free lock goes only to the first ticket,
    so nobody overtakes the queue; ``remove`` drops the queue with the lock.
    """

    async def set(
        self, scope: str, name: str, ttl: int, max_locks: int, max_rows: int = 0
    ) -> LockOutcome:
        """Define a free lock: refused when it exists (LOCK_ALREADY_EXIST), when the scope
        has ``max_locks`` or the scope's app (``subject_app``) ``max_rows`` (if > 0) locks
        (LOCK_OPERATION_FAILED). A name set again after a removal goes on from a fencing
        number at least as high as the removed lock's last."""

    async def remove(self, scope: str, name: str) -> LockOutcome: ...

    async def acquire(
        self, scope: str, name: str, owner: str, ticket: str = "", wait: bool = False
    ) -> LockOutcome:
        """Take the lock for ``owner`` (with ``ticket``, leaving the queue). When it cannot
        (LOCK_ACQUIRE_FAILED), ``wait`` puts ``ticket`` at the end of the queue (once)."""

    async def withdraw(self, scope: str, name: str, ticket: str) -> bool:
        """Take ``ticket`` out of the lock's queue; True if it was first (so the next ticket
        may take a free lock now)."""

    async def release(self, scope: str, name: str, owner: str) -> LockOutcome:
        """Free the lock if ``owner`` holds it (LOCK_NOT_ACQUIRED otherwise)."""

    async def revoke(self, scope: str, name: str, owner: str) -> LockOutcome:
        """Free the lock if ``owner`` holds it, whoever asks (LOCK_NOT_ACQUIRED otherwise)."""

    async def locks(self, scope: str) -> dict[str, LockInfo]: ...

    async def held(self) -> list[tuple[str, LockInfo]]:
        """Every held lock with its scope (to restart TTL clocks after a restart)."""


class RecoveryStore(Protocol):
    """The engine's recovery buffers (filled by ``Broker.publish_message``), for a node that
    did not receive the messages a client missed itself."""

    @property
    def epoch(self) -> str:
        """Names the offset sequence: positions from another epoch cannot be resumed."""

    async def position(self, subject: str, topic: str) -> int:
        """The offset of the newest message published on (subject, topic); 0 if none."""

    async def since(
        self, subject: str, topic: str, offset: int, limit: int, seconds: float
    ) -> list[BusEvent] | None:
        """The kept events after ``offset`` (at most the ``limit`` newest, none older than
        ``seconds``), in order; None when some of them are gone."""


class Ban(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A user the app's backend banned: logins are refused until ``until_ms`` (Unix ms)."""

    user: str
    until_ms: int
    reason: str = ""


class BanStore(Protocol):
    """Users banned by the app's backend (the HTTP API's kick), shared by all nodes and
    durable: a ban set through one node refuses logins on every node, one started later
    too, and outlives a restart. A ban ends by itself at ``until_ms``."""

    async def ban(self, app: str, user: str, until_ms: int, reason: str) -> None:
        """Ban ``user`` until ``until_ms`` (the latest ban replaces an earlier one, so an
        operator may shorten one); returns once the ban is durable. A time already past
        lifts the ban."""

    async def unban(self, app: str, user: str) -> bool:
        """Lift the user's ban; whether there was one."""

    async def banned_until(self, app: str, user: str) -> Ban | None:
        """The user's ban, None when there is none (or it ended)."""

    @property
    def local(self) -> bool:
        """Whether ``known`` knows every ban (the store is this process's): logins then need
        no round trip to the engine."""

    def known(self, app: str, user: str) -> Ban | None:
        """The user's ban as this process knows it, without a round trip (when ``local``:
        the same answer as ``banned_until``)."""

    async def bans(self, app: str, limit: int) -> list[Ban]:
        """Up to ``limit`` current bans of ``app``, soonest end first (for operators)."""


# --- message history ---------------------------------------------------------------------------

# A stored message's id is its time in ms times this, plus its rank among the channel's
# messages of that ms: ids order a channel's messages and break ties inside a millisecond, and
# stay below 2**53 (exact in JSON and JavaScript) until the year 2255.
HISTORY_IDS_PER_MS = 1000


class HistoryEntry(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A stored message as the engine keeps it (its id is the store's)."""

    publisher: str
    payload: bytes
    message_type: int = 0
    custom_type: str = ""


class HistoryStore(Protocol):
    """Stored messages per key (a message channel's subject, or a peer conversation's key),
    durable, shared by all nodes. Ids are ``ms * HISTORY_IDS_PER_MS + rank``: each is above
    every id the key had, and the next id of a key is at least ``ts * HISTORY_IDS_PER_MS``."""

    def append(
        self, key: str, entry: HistoryEntry, ts: int, keep: int, retention_ms: int
    ) -> asyncio.Future[int]:
        """Store ``entry`` (published at ``ts`` ms) and resolve with its id once durable.

        Called, not awaited, in publish order: the store takes the message at the call, so
        one node's messages of one key get ids in call order. ``keep`` (> 0) bounds the key's
        messages and ``retention_ms`` (> 0) their age; the store removes the rest in its own
        time (on a later append or a ``sweep``), so a reader filters by age itself."""

    async def read(
        self, key: str, before: int, after: int, count: int
    ) -> list[tuple[int, HistoryEntry]]:
        """At most ``count`` (id, entry) of ``key`` with ``after <= id < before``, newest
        first (``before`` 0: no upper bound)."""

    async def sweep(self, limits: Callable[[str], tuple[int, int]], budget: int) -> int:
        """Remove messages over their key's (keep, retention_ms) (``limits(key)``; 0 = no
        bound) and return how many, deleting at most about ``budget`` per call. Engines that
        trim as they append (Redis) may do nothing here."""


class Engine(Protocol):
    """Everything a server node needs from an engine."""

    @property
    def stream_store(self) -> StreamStore: ...

    @property
    def presence_store(self) -> PresenceStore: ...

    @property
    def metadata_store(self) -> MetadataStore: ...

    @property
    def lock_store(self) -> LockStore: ...

    @property
    def recovery_store(self) -> RecoveryStore: ...

    @property
    def ban_store(self) -> BanStore: ...

    @property
    def history_store(self) -> HistoryStore: ...

    @property
    def event_outbox(self) -> EventOutbox: ...

    def make_broker(self, handler: BusHandler, gap: Callable[[str | None], None]) -> Broker:
        """The node's broker, delivering events on subscribed subjects to ``handler``.

        ``gap(None)``: events of any subject may have been lost (the link to the engine
        broke). ``gap(subject)``: events of that subject may have passed the node by (its
        channel moved within a Redis Cluster); the broker holds the subject's events until
        ``release``."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def shared(self) -> bool:
        """Whether other nodes share the stores (then what they hold is not all this
        node's: a node starting up must leave other nodes' locks alone)."""

    def note(self, node: str, fields: list[str]) -> None:
        """Remember that ``node`` answers for ``fields`` (``["lock", scope, name, owner]``):
        if it dies, ``orphans`` hands the entry to another node. Fire and forget."""

    def unnote(self, node: str, fields: list[str]) -> None:
        """Forget a ``note``."""

    async def heartbeat(self, node: str, descriptor: bytes = b"", ttl: float = 0.0) -> None:
        """Mark ``node`` alive (called every sweep) and, when given, keep its ``descriptor``
        (opaque bytes: what ``node_descriptors`` hands out) for ``ttl`` s at least."""

    async def ping(self) -> None:
        """Return once the engine answers; raise when it does not (the HTTP API's /ready)."""

    async def orphans(self, node: str, timeout: float) -> list[list[str]]:
        """Entries left by nodes silent for ``timeout`` s, each claimed by one node only:
        ``["presence", subject, user, member]``, ``["stream", app, channel, user, member]`` or
        ``["lockq", scope, lock name, ticket, member]`` (a waiting request's ticket) or
        ``["lock", scope, lock name, owner, member]`` (a ``note``)."""

    async def live_nodes(self, timeout: float) -> list[str]:
        """The ids of the nodes that sent a heartbeat within ``timeout`` s, where the engine
        keeps them (Redis); [] for an engine of one node. Best effort: [] when it does not
        answer (the HTTP API's /v1/info)."""

    async def node_descriptors(self, timeout: float) -> dict[str, bytes]:
        """The last descriptor of each node alive as in ``live_nodes`` (a live node that gave
        none yet is missing); on an engine of one node, its own. Best effort: {} when the
        engine does not answer."""


# --- webhook events waiting for delivery (server/webhooks) --------------------------------------


class OutboxEntry(msgspec.Struct, frozen=True, gc=False):
    """A queued webhook event: the engine's id of it, the request body, when it was queued
    (Unix ms), and how many times a node took it for delivery before (0: never)."""

    id: str
    body: bytes
    queued_ms: int
    attempts: int = 0


class EventOutbox(Protocol):
    """Webhook events waiting for delivery, durable, in queues named (hook, partition).

    A queue is delivered in order by one node at a time: the node that ``claim`` s it. Events
    of one channel (or one user) always go to the same partition, so they arrive in order.
    """

    async def put(self, entries: list[tuple[str, int, bytes]], bound: int) -> int:
        """Append each (hook, partition, body) to its queue, in order; return once they are
        durable. A queue keeps at most ``bound`` events: the oldest beyond it are dropped.
        Returns how many were dropped."""

    async def claim(self, hook: str, partition: int, node: str, lease: float) -> bool:
        """Whether ``node`` delivers the queue for the next ``lease`` seconds (it asks again
        before they run out). A dead node's claim runs out; another node then takes over
        the events it had taken, first."""

    async def release(self, hook: str, partition: int, node: str) -> None:
        """``node`` stops delivering the queue (it shuts down): another may claim it now."""

    async def peek(self, hook: str, partition: int, node: str) -> OutboxEntry | None:
        """The queue's oldest event not yet acknowledged, or None (``node`` claimed it)."""

    async def ack(self, hook: str, partition: int, entry_id: str) -> None:
        """The event was delivered (or given up): it leaves the queue for good."""

    async def depth(self, hook: str, partition: int) -> tuple[int, int]:
        """How many events the queue holds, and when its oldest was queued (Unix ms; 0 if
        empty)."""
