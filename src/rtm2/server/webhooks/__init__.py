"""Webhooks: the node's events, queued durably in the engine and POSTed, signed, to the
apps' backends (docs/WEBHOOKS.md). ``sink`` turns what services do into events (their
settings are ``config.WebhookConfig``), ``delivery`` sends them."""
