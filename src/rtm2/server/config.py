"""Server configuration: apps, timers and limits, from flags, a TOML file, or code.

Only the CLI reads the environment and flags; everything below takes explicit values.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import secrets
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..protocol.codec import DEFAULT_MAX_FRAME_SIZE
from ..webhooks import EVENT_TYPES

__all__ = [
    "AppConfig",
    "AppLimits",
    "ConfigError",
    "DEV_HISTORY",
    "HistoryConfig",
    "HttpConfig",
    "ServerConfig",
    "Timers",
    "WebhookConfig",
    "ensure_admin_key",
    "ensure_dev_app",
    "load_config",
]

_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
# The engine URLs that mean Redis; rediss:// is Redis over TLS.
REDIS_SCHEMES = ("redis://", "rediss://", "redis-cluster://")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field."""


@dataclass(frozen=True, slots=True)
class AppLimits:
    """Per-app limits; the defaults are RTM 2's. Each one has its own error code."""

    # stream channels
    topic_message_size: int = 1024  # bytes of payload + custom_type
    topic_message_rate: float = 200.0  # messages per second, per topic, per client
    joined_topics: int = 8  # topics one client publishes in, per channel
    subscribed_topics: int = 50  # topics one client subscribes to, per channel
    publishers_per_topic: int = 64  # publishers one client picks, per topic
    channel_users: int = 1000  # users in one stream channel
    stream_channels: int = 100  # stream channels one client is in
    # message channels and peer messages
    message_size: int = 32 * 1024  # bytes of payload + custom_type
    message_rate: float = 60.0  # messages per second per client (channels and peers together)
    subscribed_channels: int = 50  # message channels one client subscribes to
    # presence
    # A lost connection keeps its user present this long, as the client asks within RTM 2's
    # 5-300 s; the app may narrow or widen the range (see handshake.presence_timeout).
    presence_timeout_min: int = 5  # seconds
    presence_timeout_max: int = 300  # seconds
    presence_interval_threshold: int = 50  # above this many users, events come in intervals
    presence_state_pairs: int = 32  # key/value pairs of one user's state in one channel
    presence_state_bytes: int = 16 * 1024  # bytes of all keys + values of that state
    presence_state_rate: float = 10.0  # SetState/RemoveState calls per second per client
    # storage and locks
    storage_rate: float = 20.0  # storage calls per second per client
    metadata_key_length: int = 32  # characters
    metadata_item_size: int = 16 * 1024  # bytes of key + value
    metadata_set_size: int = 16 * 1024  # bytes of all keys + values of one set
    user_metadata_subscriptions: int = 100  # users whose metadata one client follows
    locks_per_channel: int = 32
    # Rows the app may keep across all channel names, whatever their names: locks, and
    # metadata sets (channel and user) plus their items.
    lock_rows: int = 10_000
    metadata_rows: int = 100_000
    # set, remove, acquire, revoke and get calls per second per client; above storage_rate so
    # that a channel's 32 locks can be set in one burst
    lock_rate: float = 50.0
    # recovery: recent messages kept per channel and topic for clients that resume
    recovery_messages: int = 1000  # 0 disables recovery
    recovery_seconds: float = 30.0
    # requests of one client (pings included, publishes not: they have their own rates)
    request_rate: float = 2000.0  # requests per second per client

    def __post_init__(self) -> None:
        for name in self.__slots__:
            if getattr(self, name) < 0 or (getattr(self, name) == 0 and name not in _MAY_BE_0):
                raise ConfigError(f"limits.{name} must be > 0")
        if not 8 <= self.presence_interval_threshold <= 128:
            raise ConfigError("limits.presence_interval_threshold must be 8..128 (RTM 2 range)")
        if not 1 <= self.presence_timeout_min <= self.presence_timeout_max <= MAX_PRESENCE_TIMEOUT:
            raise ConfigError(
                "limits.presence_timeout_min <= limits.presence_timeout_max must be within "
                f"1..{MAX_PRESENCE_TIMEOUT}"
            )


MAX_PRESENCE_TIMEOUT = 24 * 3600
RTM_PRESENCE_TIMEOUT = (5, 300)  # what RTM 2 clients may ask; the SDK clamps into it
_MAY_BE_0 = frozenset({"recovery_messages", "recovery_seconds"})
JOIN_POLICIES = ("token", "login")
LOCK_ADMIN_POLICIES = ("members", "anyone", "server")
USER_METADATA_POLICIES = ("self", "all")


HISTORY_READ_POLICIES = ("anyone", "subscribers")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Seconds of ``"7d"``, ``"12h"``, ``"30m"``, ``"45s"``, ``"500ms"`` or a number of
    seconds; ``"forever"`` (and 0) is 0."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and value.strip() == "forever":
        return 0.0
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ConfigError(f'bad duration {value!r}: use e.g. "7d", "12h", "forever"')
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
    if seconds < 0:
        raise ConfigError(f"bad duration {value!r}: negative")
    return seconds


@dataclass(frozen=True, slots=True)
class HistoryConfig:
    """An app's message history (``[apps.history]``, docs/HISTORY.md). Off unless enabled."""

    enabled: bool = False
    retention: float = 7 * 86400.0  # seconds; 0 = forever
    max_messages_per_channel: int = 10000  # 0 = no bound
    # Who may read a message channel's history: any logged-in user of the app, or only
    # users subscribed to the channel. A peer conversation: only its two users, always.
    history_read: str = "anyone"

    def __post_init__(self) -> None:
        if self.history_read not in HISTORY_READ_POLICIES:
            raise ConfigError(f"history_read must be one of {HISTORY_READ_POLICIES}")
        if self.max_messages_per_channel < 0 or self.retention < 0:
            raise ConfigError("history retention and max_messages_per_channel must be >= 0")

    @classmethod
    def from_toml(cls, raw: dict[str, Any]) -> HistoryConfig:
        unknown = set(raw) - {"enabled", "retention", "max_messages_per_channel", "history_read"}
        if unknown:
            raise ConfigError(f"unknown history settings: {', '.join(sorted(unknown))}")
        enabled = raw.get("enabled", False)
        if not isinstance(enabled, bool):
            raise ConfigError("history enabled must be true or false")
        return cls(
            enabled,
            parse_duration(raw.get("retention", "7d")),
            int(raw.get("max_messages_per_channel", 10000)),
            str(raw.get("history_read", "anyone")),
        )


# The development app keeps history, so `make run` users can try it.
DEV_HISTORY = HistoryConfig(enabled=True, retention=7 * 86400.0, max_messages_per_channel=10000)


@dataclass(frozen=True, slots=True)
class AppConfig:
    """One app: its id, its certificates, its stream-join policy and its limits.

    Apps are isolated: users, channels and tokens of one app never meet another's.
    """

    app_id: str
    # Primary first; a second certificate lets operators rotate without downtime.
    # Empty: no certificate, so the login token must be "" or the app id itself.
    certificates: tuple[str, ...] = ()
    # "token": joining a stream channel needs a stream (RTC join) token for that channel and
    # user, as in RTM 2; "login": any logged-in user may join.
    stream_join_policy: str = "token"
    limits: AppLimits = field(default_factory=AppLimits)
    # "self": a user may write only its own user metadata; "all": any user's.
    user_metadata_write: str = "self"
    # Who may set, remove and revoke locks: "members" of the channel; "anyone" logged in (RTM 2
    # itself); "server": only the server API, so no client.
    lock_admin: str = "members"
    # Keys of the app's backend for the HTTP API (docs/API.md), as given or as
    # "sha256:<hex>" so the config file need not hold the key itself.
    api_keys: tuple[str, ...] = ()
    # Message history (``[apps.history]``): off unless enabled.
    history: HistoryConfig = field(default_factory=HistoryConfig)
    # Where the app's events are sent (docs/WEBHOOKS.md); none by default.
    webhooks: tuple[WebhookConfig, ...] = ()
    # Events kept in each of the app's pull queues (GET .../events/users and .../channels,
    # docs/WEBHOOKS.md); over it the oldest go. 0: the app has no pull queues.
    event_queue_size: int = 0

    def __post_init__(self) -> None:
        if not _HEX32.match(self.app_id):
            raise ConfigError(f"app id {self.app_id!r} must be 32 hex characters")
        if not 0 <= self.event_queue_size <= MAX_EVENT_QUEUE:
            raise ConfigError(f"event_queue_size of app {self.app_id} must be 0..{MAX_EVENT_QUEUE}")
        for cert in self.certificates:
            if not _HEX32.match(cert):
                raise ConfigError(f"certificate of app {self.app_id} must be 32 hex characters")
        if self.stream_join_policy not in JOIN_POLICIES:
            raise ConfigError(
                f"stream_join_policy of app {self.app_id} must be one of {JOIN_POLICIES}"
            )
        if self.user_metadata_write not in USER_METADATA_POLICIES:
            raise ConfigError(
                f"user_metadata_write of app {self.app_id} must be one of {USER_METADATA_POLICIES}"
            )
        if self.lock_admin not in LOCK_ADMIN_POLICIES:
            raise ConfigError(
                f"lock_admin of app {self.app_id} must be one of {LOCK_ADMIN_POLICIES}"
            )

    @classmethod
    def parse(cls, spec: str) -> AppConfig:
        """Parse ``APP_ID[:CERTIFICATE[,SECOND_CERTIFICATE]]`` as given to ``--app``."""
        app_id, _, certs = spec.partition(":")
        return cls(app_id, tuple(c for c in certs.split(",") if c))

    @classmethod
    def from_toml(cls, raw: dict[str, Any]) -> AppConfig:
        unknown = set(raw) - {
            "id",
            "certificates",
            "stream_join_policy",
            "limits",
            "user_metadata_write",
            "lock_admin",
            "api_keys",
            "history",
            "webhooks",
            "event_queue_size",
        }
        if unknown:
            raise ConfigError(f"unknown app settings: {', '.join(sorted(unknown))}")
        try:
            return cls(
                str(raw["id"]),
                tuple(str(c) for c in raw.get("certificates", ())),
                str(raw.get("stream_join_policy", "token")),
                AppLimits(**raw.get("limits", {})),
                str(raw.get("user_metadata_write", "self")),
                str(raw.get("lock_admin", "members")),
                tuple(str(k) for k in raw.get("api_keys", ())),
                HistoryConfig.from_toml(raw.get("history", {})),
                webhooks=_webhooks(raw.get("webhooks", ())),
                event_queue_size=int(raw.get("event_queue_size", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"bad app settings: {exc}") from None


MAX_EVENT_QUEUE = 100_000


def _webhooks(raw: Any) -> tuple[WebhookConfig, ...]:
    if not isinstance(raw, list | tuple) or not all(isinstance(w, dict) for w in raw):
        raise ConfigError("webhooks must be [[apps.webhooks]] tables")
    return tuple(WebhookConfig.from_toml(w) for w in raw)


@dataclass(frozen=True, slots=True)
class Timers:
    """Server timers, in seconds. Tests shrink them so they run in seconds."""

    # A client pings this often; the server tells it the value at hello.
    heartbeat_interval: float = 5.0
    # A connection silent for heartbeat_interval + heartbeat_grace is dropped.
    heartbeat_grace: float = 10.0
    # How long before a token expires the client is warned (RTM 2: 30 s).
    token_warning: float = 30.0
    # A connection that has not logged in by then is closed.
    login_timeout: float = 10.0
    # Period of the one sweep that checks keepalive, token expiry and presence timers.
    sweep_interval: float = 1.0
    # In interval mode, each member gets one INTERVAL presence event this often.
    presence_interval: float = 30.0
    # A leave followed by a rejoin within this time produces no presence events.
    presence_debounce: float = 2.0
    # With several nodes: a node silent this long is dead; another node cleans up after it
    # (its users time out of presence and topics, their locks count down their TTL).
    node_timeout: float = 15.0
    # The embedded engine forgets a channel's (or topic's) message counter after this long
    # without messages, as Redis does after a day.
    offsets_idle: float = 24 * 3600.0

    def __post_init__(self) -> None:
        for name in self.__slots__:
            if getattr(self, name) <= 0:
                raise ConfigError(f"timers.{name} must be > 0")


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """The HTTP API's listener (docs/API.md), served in the server's own event loop."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 7002  # 0: any free port
    # Opens every app. Empty: one is generated into the data dir (see ensure_admin_key).
    admin_key: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError("http.port must be 0..65535")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 7001
    data_dir: Path = Path("rtm2-data")
    apps: tuple[AppConfig, ...] = ()
    timers: Timers = field(default_factory=Timers)
    # Largest WebSocket message accepted from a client; larger ones close the connection (1009).
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    # Bytes queued for one slow client before it is disconnected.
    max_send_buffer: int = 4 * 1024 * 1024
    # Requests one connection may queue behind one that waits (a join, say); more close it
    # (1008). Reading pauses meanwhile, so a well-behaved client never gets near.
    max_queued_frames: int = 10_000
    # Connections to this node: all of them, and from one IP address. Over a cap a new
    # connection is closed with 1008 as soon as it opens.
    max_connections: int = 100_000
    max_connections_per_ip: int = 10_000
    # Connections that have not logged in yet (each for at most timers.login_timeout): all,
    # and from one IP address.
    max_pending_connections: int = 10_000
    max_pending_connections_per_ip: int = 1_000
    # Browsers' Origin header must be one of these (scheme://host[:port]); empty: any.
    # Requests without an Origin (not from a browser) are not concerned.
    allowed_origins: tuple[str, ...] = ()
    # "memory" (embedded, one node; metadata in SQLite) or a Redis URL (many nodes):
    # redis://[user:password@]host:port/db, rediss:// (TLS), or redis-cluster://.
    engine: str = "memory"
    # PEM certificate chain and private key: with both, the listener speaks wss:// itself.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # When set, WebSocket upgrades must carry it in the X-RTM2-Access-Key header (else 403).
    # The SDK's sidecar mode sets a fresh one per launch, so only its own client gets in.
    access_key: str = ""
    http: HttpConfig = field(default_factory=lambda: HttpConfig(enabled=False))

    def __post_init__(self) -> None:
        ids = [a.app_id for a in self.apps]
        if len(ids) != len(set(ids)):
            raise ConfigError("an app id is configured twice")
        for name in _POSITIVE:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be > 0")
        if not 0 <= self.port <= 65535:
            raise ConfigError("port must be 0..65535")
        if self.engine != "memory" and not self.engine.startswith(REDIS_SCHEMES):
            raise ConfigError(
                "engine must be 'memory', a redis://, rediss:// or redis-cluster:// URL"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls_cert and tls_key go together: give both or neither")

    def with_apps(self, apps: tuple[AppConfig, ...]) -> ServerConfig:
        return replace(self, apps=apps)


_CAPS = (
    "max_connections",
    "max_connections_per_ip",
    "max_pending_connections",
    "max_pending_connections_per_ip",
)
_POSITIVE = ("max_queued_frames", *_CAPS)


def load_config(path: Path, base: ServerConfig | None = None) -> ServerConfig:
    """Read a TOML config file over ``base``. See ``docs/CONFIG.md`` for the format."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    cfg = base or ServerConfig()
    server: dict[str, Any] = data.get("server", {})
    timers: dict[str, Any] = data.get("timers", {})
    http: dict[str, Any] = data.get("http", {})
    apps = tuple(AppConfig.from_toml(a) for a in data.get("apps", ()))
    unknown = set(data) - {"server", "timers", "apps", "http"}
    if unknown:
        raise ConfigError(f"unknown config sections: {', '.join(sorted(unknown))}")
    try:
        return replace(
            cfg,
            host=str(server.get("host", cfg.host)),
            port=int(server.get("port", cfg.port)),
            data_dir=Path(server.get("data_dir", cfg.data_dir)),
            max_frame_size=int(server.get("max_frame_size", cfg.max_frame_size)),
            max_send_buffer=int(server.get("max_send_buffer", cfg.max_send_buffer)),
            max_queued_frames=int(server.get("max_queued_frames", cfg.max_queued_frames)),
            **{name: int(server.get(name, getattr(cfg, name))) for name in _CAPS},
            allowed_origins=tuple(
                str(o) for o in server.get("allowed_origins", cfg.allowed_origins)
            ),
            engine=str(server.get("engine", cfg.engine)),
            tls_cert=_path_or_none(server.get("tls_cert"), cfg.tls_cert),
            tls_key=_path_or_none(server.get("tls_key"), cfg.tls_key),
            access_key=str(server.get("access_key", cfg.access_key)),
            apps=cfg.apps + apps,
            timers=replace(cfg.timers, **{k: float(v) for k, v in timers.items()}),
            http=replace(cfg.http, **http),
        )
    except TypeError as exc:
        raise ConfigError(f"bad config {path}: {exc}") from None


def _path_or_none(value: object, default: Path | None) -> Path | None:
    return default if value is None else Path(str(value))


# The development app lets any logged-in user join stream channels, so trying things out
# needs one token, not one per channel.
DEV_APP_POLICY = "login"


def ensure_dev_app(data_dir: Path) -> tuple[AppConfig, bool]:
    """The development app kept in ``data_dir``, created on first use.

    Returns the app and whether it was created now. The file is private to its owner since
    it holds the certificate.
    """
    path = data_dir / "dev-app.json"
    if path.exists():
        raw = json.loads(path.read_text())
        app_id, cert = raw["app_id"], raw["certificate"]
        # Apps made before the HTTP API had no key: they get one, kept from then on.
        api_key = (
            raw.get("api_key")
            or _write_private(
                path, {"app_id": app_id, "certificate": cert, "api_key": secrets.token_urlsafe(24)}
            )["api_key"]
        )
        return AppConfig(
            app_id, (cert,), DEV_APP_POLICY, api_keys=(api_key,), history=DEV_HISTORY
        ), False
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    raw = _write_private(
        path,
        {
            "app_id": secrets.token_hex(16),
            "certificate": secrets.token_hex(16),
            "api_key": secrets.token_urlsafe(24),
        },
    )
    return AppConfig(
        raw["app_id"],
        (raw["certificate"],),
        DEV_APP_POLICY,
        api_keys=(raw["api_key"],),
        history=DEV_HISTORY,
    ), True


def ensure_admin_key(data_dir: Path) -> tuple[str, bool]:
    """The server-wide HTTP API key kept in ``data_dir``, and whether it was created now."""
    path = data_dir / "admin-key"
    if path.exists():
        return path.read_text().strip(), False
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    tmp = path.with_suffix(".tmp")
    # Private from the first byte: the key opens every app.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    tmp.replace(path)
    return key, True


def _write_private(path: Path, raw: dict[str, str]) -> dict[str, str]:
    """Write ``raw`` as JSON to ``path``, readable by its owner only from the first byte."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(raw, f)
    tmp.replace(path)
    return raw


# --- webhooks (docs/WEBHOOKS.md) ----------------------------------------------------------

# High volume: sent only to webhooks that name it, never through a wildcard.
OPT_IN = frozenset({"message.published"})
_FIELDS = frozenset(
    {"url", "secret", "events", "name", "timeout", "retry_horizon", "queue_bound"}
    | {"retry_min", "retry_max"}
)


def matching_types(patterns: tuple[str, ...]) -> frozenset[str]:
    """The event types ``patterns`` select (``user.*``, ``*``, or exact names)."""
    chosen: set[str] = set()
    for pattern in patterns:
        every = {t for t in EVENT_TYPES if fnmatch.fnmatchcase(t, pattern)}
        found = every if pattern in OPT_IN else every - OPT_IN
        if not found and every:
            raise ConfigError(
                f"webhook event pattern {pattern!r} selects only {', '.join(sorted(every))}, "
                "which is sent only to webhooks that name it"
            )
        if not found:
            raise ConfigError(
                f"webhook event pattern {pattern!r} matches no event type "
                f"(known: {', '.join(EVENT_TYPES)})"
            )
        chosen |= found
    return frozenset(chosen)


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """Where an app's events go, signed with ``secret``; see docs/WEBHOOKS.md."""

    url: str
    secret: str
    events: tuple[str, ...] = ("*",)
    # The metrics label (never the URL, which may carry credentials); default: its index.
    name: str = ""
    timeout: float = 10.0  # seconds for the receiver to answer 2xx
    retry_horizon: float = 24 * 3600.0  # seconds an event is retried before it is dropped
    # Events kept per webhook (spread over its ordering partitions); over it the oldest go.
    queue_bound: int = 10_000
    retry_min: float = 1.0  # first backoff, seconds; doubles per failure, with jitter
    retry_max: float = 300.0  # longest backoff, seconds

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"webhook url {self.url!r} must be an http:// or https:// URL")
        if not self.secret:
            raise ConfigError("a webhook needs a secret (its requests are signed with it)")
        if not self.events:
            raise ConfigError("webhook events must name at least one event type or pattern")
        matching_types(self.events)
        for name in ("timeout", "retry_horizon", "retry_min", "retry_max"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"webhook {name} must be > 0")
        if self.retry_min > self.retry_max:
            raise ConfigError("webhook retry_min must be <= retry_max")
        if self.queue_bound < 1:
            raise ConfigError("webhook queue_bound must be > 0")

    @property
    def types(self) -> frozenset[str]:
        return matching_types(self.events)

    @classmethod
    def from_toml(cls, raw: dict[str, Any]) -> WebhookConfig:
        unknown = set(raw) - _FIELDS
        if unknown:
            raise ConfigError(f"unknown webhook settings: {', '.join(sorted(unknown))}")
        try:
            events = raw.get("events", ("*",))
            if isinstance(events, str):
                events = (events,)
            return cls(
                str(raw["url"]),
                str(raw["secret"]),
                tuple(str(e) for e in events),
                str(raw.get("name", "")),
                float(raw.get("timeout", 10.0)),
                float(raw.get("retry_horizon", 24 * 3600.0)),
                int(raw.get("queue_bound", 10_000)),
                float(raw.get("retry_min", 1.0)),
                float(raw.get("retry_max", 300.0)),
            )
        except ConfigError:
            raise
        except KeyError as exc:
            raise ConfigError(f"a webhook needs {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"bad webhook settings: {exc}") from None
