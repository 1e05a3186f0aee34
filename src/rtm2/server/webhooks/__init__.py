"""Webhooks: the node's events, queued durably in the engine and POSTed, signed, to the
apps' backends (docs/WEBHOOKS.md). ``config`` is the settings, ``sink`` turns what services
do into events, ``delivery`` sends them."""
