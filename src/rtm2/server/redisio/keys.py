"""Hash tags: the part of a key name that picks its Redis Cluster slot."""

from __future__ import annotations

import re

__all__ = ["hash_tag", "unescape_tag"]

_UNESCAPE = re.compile("%(25|7B|7D)")


def hash_tag(name: str) -> str:
    """``name`` made safe as a Redis hash tag (no braces), reversibly."""
    return name.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def unescape_tag(tag: str) -> str:
    """The name ``hash_tag`` made ``tag`` from."""
    return _UNESCAPE.sub(lambda m: chr(int(m.group(1), 16)), tag)
