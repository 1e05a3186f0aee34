"""Engines hold what must be shared between server nodes. See ``base`` for the contracts."""
