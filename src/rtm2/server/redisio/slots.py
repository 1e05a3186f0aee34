"""Redis Cluster's hash slots: which slot a key is in, who serves which, and cluster URLs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .resp import Arg, RedisClient, RedisError

__all__ = [
    "SLOTS",
    "SlotRange",
    "fetch_slots",
    "key_slot",
    "node_url",
    "parse_cluster_url",
    "split_cluster_url",
]

SLOTS = 16384


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _crc16_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC16 = _crc16_table()


def _crc16(data: bytes) -> int:
    """CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, as Redis Cluster uses."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[(crc >> 8) ^ byte]
    return crc


def key_slot(key: Arg) -> int:
    """The hash slot of ``key``: CRC16 of its hash tag (if any, else all of it) mod 16384.

    The hash tag is what lies between the first ``{`` and the first ``}`` after it, if that
    is not empty.
    """
    if isinstance(key, str):
        data = key.encode()
    elif isinstance(key, bytes):
        data = key
    else:
        data = str(key).encode()
    start = data.find(b"{")
    if start != -1:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return _crc16(data) % SLOTS


def split_cluster_url(url: str) -> tuple[list[tuple[str, int]], str | None]:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme != "redis-cluster":
        raise ValueError(f"not a redis-cluster:// URL: {url!r}")
    rest = rest.split("?", 1)[0].split("#", 1)[0]
    netloc, _, path = rest.partition("/")
    # Credentials stay as written (percent-encoded): ``node_url`` puts them in each node's URL.
    auth: str | None = None
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        if ":" not in userinfo:  # a bare secret is the default user's password
            userinfo = f":{userinfo}"
        auth = userinfo if userinfo.partition(":")[2] else None
    db = path.strip("/")
    if db not in ("", "0"):
        raise ValueError(f"a Redis Cluster has only database 0, not {db!r}: {url!r}")
    nodes = []
    for item in netloc.split(","):
        item = item.strip()
        if not item:
            continue
        host, colon, port = item.rpartition(":")
        if not colon:
            host, port = item, "6379"
        host = host.strip("[]") or "127.0.0.1"
        try:
            nodes.append((host, int(port)))
        except ValueError:
            raise ValueError(f"bad node {item!r} in {url!r}") from None
    if not nodes:
        raise ValueError(f"no nodes in {url!r}")
    return nodes, auth


def parse_cluster_url(url: str) -> list[tuple[str, int]]:
    """The seed nodes of ``redis-cluster://[[user]:password@]h:p,h:p[/0][?query]``."""
    return split_cluster_url(url)[0]


# One master's share of the slot map: (first slot, last slot, host, port).
SlotRange = tuple[int, int, str, int]


def node_url(host: str, port: int, auth: str | None) -> str:
    """One node's redis:// URL, with the cluster URL's ``[user]:password`` (ACL user or not)."""
    return f"redis://{auth}@{host}:{port}/0" if auth else f"redis://{host}:{port}/0"


def _parse_slots(reply: Any, asked: str) -> list[SlotRange]:
    """CLUSTER SLOTS' reply as ranges; an unknown host ("" or "?") is the node asked."""
    ranges = []
    for entry in reply:
        start, end, master = int(entry[0]), int(entry[1]), entry[2]
        host = _text(master[0])
        if host in ("", "?"):
            host = asked
        ranges.append((start, end, host, int(master[1])))
    ranges.sort()
    return ranges


async def fetch_slots(nodes: Sequence[tuple[str, int]], auth: str | None) -> list[SlotRange]:
    """Ask each node in turn for CLUSTER SLOTS; the first full answer wins."""
    errors = []
    for host, port in nodes:
        client = RedisClient(node_url(host, port, auth))
        try:
            await client.connect()
            ranges = _parse_slots(await client.call("CLUSTER", "SLOTS"), host)
        except RedisError as exc:
            errors.append(f"{host}:{port}: {exc}")
            continue
        finally:
            await client.close()
        if sum(end - start + 1 for start, end, _, _ in ranges) == SLOTS:
            return ranges
        errors.append(f"{host}:{port}: not every slot is served")
    raise RedisError("no Redis Cluster node gave a slot map: " + "; ".join(errors))
