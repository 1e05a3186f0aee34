"""``rtm2 api``: the HTTP API (docs/API.md) from a shell, for operators.

Each command is one request. Output is for people; ``--json`` prints the API's answer as is,
for scripts. A refused request prints the API's reason and code and exits with 1.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn
from urllib.parse import quote

import click
import httpx

__all__ = ["api"]

DEFAULT_URL = "http://127.0.0.1:7002"


class _Api:
    def __init__(self, url: str, key: str, app: str | None, as_json: bool) -> None:
        self.url, self.key, self.app, self.as_json = url.rstrip("/"), key, app, as_json

    def app_path(self, *parts: str) -> str:
        if not self.app:
            _fail("no app: give --app or RTM2_API_APP")
        # Names may hold '/', '#' and the like: each path segment is quoted whole.
        return "/v1/apps/" + "/".join(quote(p, safe="") for p in (self.app, *parts))

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        if not self.key:
            _fail("no API key: give --key or RTM2_API_KEY")
        try:
            response = httpx.request(
                method,
                self.url + path,
                headers={"X-API-Key": self.key},
                timeout=10,
                **kwargs,
            )
        except httpx.HTTPError as exc:
            _fail(f"cannot reach {self.url}: {exc}")
        try:
            body = response.json()
        except ValueError:
            body = {"code": 0, "reason": response.text.strip()}
        if response.is_error:
            if self.as_json:
                click.echo(json.dumps(body))
                sys.exit(1)
            reason = body.get("reason", "") if isinstance(body, dict) else str(body)
            code = body.get("code", 0) if isinstance(body, dict) else 0
            _fail(f"{response.status_code}: {reason} (code {code})")
        return body

    def show(self, body: Any, text: str) -> None:
        click.echo(json.dumps(body, indent=2) if self.as_json else text)


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _message(text: str, custom_type: str, publisher: str | None) -> dict[str, str]:
    body = {"message": text, "custom_type": custom_type}
    if publisher:
        body["publisher"] = publisher
    return body


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


_message_options = [
    click.option("--custom-type", default="", help="The message's custom type."),
    click.option("--publisher", default=None, help="Publisher the users see.  [default: server]"),
]


def _with_message_options(f: Any) -> Any:
    for option in reversed(_message_options):
        f = option(f)
    return f


@click.group()
@click.option(
    "--url", envvar="RTM2_API_URL", default=DEFAULT_URL, show_default=True, help="The HTTP API."
)
@click.option("--key", envvar="RTM2_API_KEY", default="", help="API key (the app's, or admin).")
@click.option("--app", envvar="RTM2_API_APP", default=None, help="App id the command is about.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON answer.")
@click.pass_context
def api(ctx: click.Context, url: str, key: str, app: str | None, as_json: bool) -> None:
    """Call the HTTP API: publish, send, list channels and users, kick, unban, info."""
    ctx.obj = _Api(url, key, app, as_json)


@api.command()
@click.argument("channel")
@click.argument("message")
@_with_message_options
@click.pass_obj
def publish(a: _Api, channel: str, message: str, custom_type: str, publisher: str | None) -> None:
    """Publish MESSAGE (text) to a message CHANNEL."""
    body = a.call(
        "POST",
        a.app_path("channels", channel, "messages"),
        json=_message(message, custom_type, publisher),
    )
    a.show(body, f"published to {channel}")


@api.command()
@click.argument("user")
@click.argument("message")
@_with_message_options
@click.pass_obj
def send(a: _Api, user: str, message: str, custom_type: str, publisher: str | None) -> None:
    """Send MESSAGE (text) to USER as a peer message (fails when USER is offline)."""
    body = a.call(
        "POST",
        a.app_path("users", user, "messages"),
        json=_message(message, custom_type, publisher),
    )
    a.show(body, f"delivered to {user}")


@api.command()
@click.option("--type", "channel_type", type=click.Choice(["message", "stream"]), default=None)
@click.option("--prefix", default="", help="Only channels whose name starts with this.")
@click.option("--limit", type=int, default=100, show_default=True, help="Channels a page.")
@click.option("--cursor", default="", help="The page after this one (next_cursor).")
@click.option("--all", "every", is_flag=True, help="Follow the pages to the end.")
@click.pass_obj
def channels(
    a: _Api, channel_type: str | None, prefix: str, limit: int, cursor: str, every: bool
) -> None:
    """The app's live channels with their user counts, on every node."""
    params: dict[str, Any] = {"prefix": prefix, "limit": limit}
    if channel_type:
        params["type"] = channel_type
    found: list[dict[str, Any]] = []
    while True:
        body = a.call("GET", a.app_path("channels"), params={**params, "cursor": cursor})
        found += body["channels"]
        cursor = body["next_cursor"]
        if not (every and cursor):
            break
    if a.as_json:
        a.show({"channels": found, "next_cursor": cursor}, "")
        return
    rows = [("CHANNEL", "TYPE", "USERS")]
    rows += [(c["channel"], c["type"], str(c["users"])) for c in found]
    text = _table(rows) if found else "no channels"
    if cursor:
        text += f"\nmore: --cursor {cursor}"
    click.echo(text)


@api.command()
@click.argument("channel")
@click.option(
    "--type",
    "channel_type",
    type=click.Choice(["message", "stream"]),
    default="message",
    show_default=True,
)
@click.option("--state", is_flag=True, help="With each user's presence state.")
@click.pass_obj
def who(a: _Api, channel: str, channel_type: str, state: bool) -> None:
    """Who is present in CHANNEL (every page)."""
    users: list[dict[str, Any]] = []
    page, total = "", 0
    while True:
        body = a.call(
            "GET",
            a.app_path("channels", channel_type, channel, "presence"),
            params={"include_state": str(state).lower(), "page": page},
        )
        users += body["users"]
        total, page = body["total"], body["next_page"]
        if not page:
            break
    if a.as_json:
        a.show({"users": users, "total": total}, "")
        return
    lines = [f"{total} user(s) in {channel_type} channel {channel}"]
    for u in users:
        extra = "  " + json.dumps(u["state"]) if state and u["state"] else ""
        lines.append(f"  {u['user_id']}{extra}")
    click.echo("\n".join(lines))


@api.command()
@click.argument("user")
@click.pass_obj
def user(a: _Api, user: str) -> None:
    """Whether USER is online, and where it is present."""
    body = a.call("GET", a.app_path("users", user))
    if a.as_json:
        a.show(body, "")
        return
    status = "online" if body["online"] else "offline"
    if body["node"]:
        status += f" on node {body['node']}"
    if body["since"]:
        status += f" since {_when(body['since'])}"
    lines = [f"{user}: {status}"]
    lines += [f"  {c['type']} channel {c['channel']}" for c in body["channels"]]
    click.echo("\n".join(lines))


@api.command()
@click.argument("user")
@click.option("--reason", default="", help="What the client is told.")
@click.option(
    "--ban", "ban_seconds", type=float, default=0, help="Refuse its logins this long (s)."
)
@click.pass_obj
def kick(a: _Api, user: str, reason: str, ban_seconds: float) -> None:
    """End USER's session (and, with --ban, refuse its logins for a while)."""
    body = a.call(
        "POST",
        a.app_path("users", user, "kick"),
        json={"reason": reason, "ban_seconds": ban_seconds},
    )
    text = f"kicked {user}" if body["kicked"] else f"{user} had no session"
    if ban_seconds:
        text += f"; banned for {ban_seconds:g} s"
    a.show(body, text)


@api.command()
@click.argument("user")
@click.pass_obj
def unban(a: _Api, user: str) -> None:
    """Lift USER's ban: it may log in again at once, on every node."""
    body = a.call("DELETE", a.app_path("users", user, "ban"))
    a.show(body, f"unbanned {user}" if body["unbanned"] else f"{user} was not banned")


@api.command()
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.pass_obj
def bans(a: _Api, limit: int) -> None:
    """The app's banned users, soonest end first."""
    body = a.call("GET", a.app_path("bans"), params={"limit": limit})
    rows = [("USER", "UNTIL", "REASON")]
    rows += [(b["user_id"], _when(b["until"]), b["reason"]) for b in body["bans"]]
    a.show(body, _table(rows) if body["bans"] else "no bans")


@api.command()
@click.pass_obj
def info(a: _Api) -> None:
    """Every live node and each app's figures, on every node (admin key)."""
    body = a.call("GET", "/v1/info")
    if a.as_json:
        a.show(body, "")
        return
    node = body["node"]
    lines = [
        f"rtm2 {body['version']}",
        f"node {node['id']} at {node['address']}, up since {_when(node['started'])}, "
        f"{node['connections']} connection(s)",
        f"live nodes: {len(body['nodes'])}",
        f"messages/s: {body['messages_per_second']:g}",
    ]
    nodes = [("NODE", "ADDRESS", "HTTP", "UP SINCE", "VERSION", "CONNECTIONS", "MESSAGES/S")]
    nodes += [
        (
            n["id"],
            n["address"],
            n.get("http_address") or "-",
            _when(n["started"]),
            n.get("version") or "?",
            str(n["connections"]),
            f"{n.get('messages_per_second', 0):g}",
        )
        for n in body["nodes"]
    ]
    rows = [("APP", "USERS ONLINE", "CHANNELS", "MESSAGES/S")]
    rows += [
        (x["app_id"], str(x["users_online"]), str(x["channels"]), f"{x['messages_per_second']:g}")
        for x in body["apps"]
    ]
    click.echo("\n".join(lines) + "\n\n" + _table(nodes) + "\n\n" + _table(rows))


# --- metadata and locks ---------------------------------------------------------------------

_TARGET_TYPES = click.Choice(["message", "stream", "user"])


def _metadata_path(a: _Api, target: str, target_type: str) -> str:
    if target_type == "user":
        return a.app_path("users", target, "metadata")
    return a.app_path("channels", target_type, target, "metadata")


def _show_metadata(a: _Api, body: dict[str, Any], what: str) -> None:
    if a.as_json:
        a.show(body, "")
        return
    rows = [("KEY", "VALUE", "REVISION", "AUTHOR")]
    rows += [(i["key"], i["value"], str(i["revision"]), i["author"]) for i in body["items"]]
    click.echo(f"{what}: major revision {body['major_revision']}\n" + _table(rows))


@api.group()
def metadata() -> None:
    """Read and write channel or user metadata (as the SDK's storage calls)."""


@metadata.command("get")
@click.argument("target")
@click.option("--type", "target_type", type=_TARGET_TYPES, default="message", show_default=True)
@click.pass_obj
def metadata_get(a: _Api, target: str, target_type: str) -> None:
    """The metadata of TARGET (a channel, or a user with --type user)."""
    _show_metadata(a, a.call("GET", _metadata_path(a, target, target_type)), target)


@metadata.command("set")
@click.argument("target")
@click.argument("items", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.option("--type", "target_type", type=_TARGET_TYPES, default="message", show_default=True)
@click.option("--update", is_flag=True, help="Only change existing keys (PATCH), not create.")
@click.option("--major-revision", type=int, default=-1, show_default=True)
@click.option("--revision", type=int, default=-1, show_default=True, help="For every item.")
@click.option("--author", is_flag=True, help='Record the author ("server") and the time.')
@click.pass_obj
def metadata_set(
    a: _Api,
    target: str,
    items: tuple[str, ...],
    target_type: str,
    update: bool,
    major_revision: int,
    revision: int,
    author: bool,
) -> None:
    """Set (or with --update, update) KEY=VALUE items of TARGET, compare-and-set on revisions."""
    pairs = [item.partition("=") for item in items]
    if any(not sep for _, sep, _ in pairs):
        _fail("items are KEY=VALUE")
    body = {
        "items": [{"key": k, "value": v, "revision": revision} for k, _, v in pairs],
        "major_revision": major_revision,
        "record_ts": author,
        "record_author": author,
    }
    method = "PATCH" if update else "PUT"
    _show_metadata(a, a.call(method, _metadata_path(a, target, target_type), json=body), target)


@metadata.command("remove")
@click.argument("target")
@click.argument("keys", nargs=-1)
@click.option("--type", "target_type", type=_TARGET_TYPES, default="message", show_default=True)
@click.pass_obj
def metadata_remove(a: _Api, target: str, keys: tuple[str, ...], target_type: str) -> None:
    """Remove KEYS of TARGET's metadata (no keys: the whole set)."""
    body = {"items": [{"key": k, "value": "", "revision": -1} for k in keys]}
    _show_metadata(a, a.call("DELETE", _metadata_path(a, target, target_type), json=body), target)


_CHANNEL_TYPES = click.Choice(["message", "stream"])


@api.group()
def locks() -> None:
    """A channel's locks: list, set, remove, revoke (as the SDK's lock calls)."""


@locks.command("list")
@click.argument("channel")
@click.option("--type", "channel_type", type=_CHANNEL_TYPES, default="message", show_default=True)
@click.pass_obj
def lock_list(a: _Api, channel: str, channel_type: str) -> None:
    """The locks of CHANNEL, with their owners and TTLs."""
    body = a.call("GET", a.app_path("channels", channel_type, channel, "locks"))
    if a.as_json:
        a.show(body, "")
        return
    rows = [("NAME", "OWNER", "TTL")]
    rows += [(x["name"], x["owner"] or "(free)", str(x["ttl"])) for x in body["locks"]]
    click.echo(_table(rows))


def _lock_path(a: _Api, channel: str, channel_type: str, name: str, *rest: str) -> str:
    return a.app_path("channels", channel_type, channel, "locks", name, *rest)


@locks.command("set")
@click.argument("channel")
@click.argument("name")
@click.option("--type", "channel_type", type=_CHANNEL_TYPES, default="message", show_default=True)
@click.option("--ttl", type=int, default=30, show_default=True, help="Seconds (10-300).")
@click.pass_obj
def lock_set(a: _Api, channel: str, name: str, channel_type: str, ttl: int) -> None:
    """Set lock NAME on CHANNEL."""
    body = a.call("PUT", _lock_path(a, channel, channel_type, name), json={"ttl": ttl})
    a.show(body, f"set lock {name} on {channel} (ttl {ttl} s)")


@locks.command("remove")
@click.argument("channel")
@click.argument("name")
@click.option("--type", "channel_type", type=_CHANNEL_TYPES, default="message", show_default=True)
@click.pass_obj
def lock_remove(a: _Api, channel: str, name: str, channel_type: str) -> None:
    """Remove lock NAME from CHANNEL."""
    a.show(a.call("DELETE", _lock_path(a, channel, channel_type, name)), f"removed lock {name}")


@locks.command("revoke")
@click.argument("channel")
@click.argument("name")
@click.option("--owner", required=True, help="The user that holds it now.")
@click.option("--type", "channel_type", type=_CHANNEL_TYPES, default="message", show_default=True)
@click.pass_obj
def lock_revoke(a: _Api, channel: str, name: str, owner: str, channel_type: str) -> None:
    """Take lock NAME of CHANNEL from OWNER (the next waiter gets it)."""
    path = _lock_path(a, channel, channel_type, name, "revoke")
    a.show(a.call("POST", path, json={"owner": owner}), f"revoked lock {name} from {owner}")
