"""``rtm2 api history``: a channel's (or a peer conversation's) stored messages, from a shell.

Registered on the ``rtm2 api`` group (``cli/api.py``) when this module is imported.
"""

from __future__ import annotations

from typing import Any

import click

from .api import _Api, _table, _when, api

__all__ = ["history"]


@api.command()
@click.argument("channel")
@click.option(
    "--type",
    "channel_type",
    type=click.Choice(["message", "user"]),
    default="message",
    show_default=True,
    help="user: the conversation between --user and the user CHANNEL.",
)
@click.option("--user", default="", help="With --type user: the other user of the conversation.")
@click.option("--count", type=click.IntRange(1, 100), default=100, show_default=True)
@click.option("--start", type=int, default=0, help="Older than this (ms, or a new_start).")
@click.option("--end", type=int, default=0, help="From this on (ms, or a position).")
@click.option("--all", "every", is_flag=True, help="Follow the pages to the oldest message.")
@click.pass_obj
def history(
    a: _Api,
    channel: str,
    channel_type: str,
    user: str,
    count: int,
    start: int,
    end: int,
    every: bool,
) -> None:
    """Stored messages of CHANNEL, newest first (docs/HISTORY.md)."""
    found: list[dict[str, Any]] = []
    while True:
        params: dict[str, Any] = {"count": count, "start": start, "end": end}
        if user:
            params["user"] = user
        path = a.app_path("channels", channel_type, channel, "history")
        body = a.call("GET", path, params=params)
        found += body["messages"]
        start = body["new_start"]
        if not (every and start):
            break
    if a.as_json:
        a.show({"messages": found, "new_start": start}, "")
        return
    if not found:
        click.echo("no stored messages")
        return
    rows = [("TIME", "PUBLISHER", "TYPE", "MESSAGE")]
    for m in found:
        text = m["message"] if m.get("message") is not None else f"(base64) {m['message_b64']}"
        rows.append((_when(m["timestamp"] / 1000), m["publisher"], m["custom_type"], text))
    text = _table(rows)
    if start:
        text += f"\nmore: --start {start}"
    click.echo(text)
