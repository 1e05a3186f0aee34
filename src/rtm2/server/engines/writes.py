"""Why a metadata write is refused: the checks, codes and messages every engine shares.

A write is checked in this order, and the first failure is its answer: the operation, the
set's major revision, keys given twice, then each item in the order given (revision 0 but it
exists, a positive revision that does not match, an update or removal of a missing item), the
bound lock, and last the size of the resulting set. SQLite runs ``check_write`` itself; Redis
runs the same checks in one Lua script (atomically) and names the failure, which it turns into
the outcome with the functions here, so both engines answer alike.
"""

from __future__ import annotations

from ...errors import ErrorCode
from .base import OP_REMOVE, OP_SET, OP_UPDATE, ItemWrite, LockOutcome, Metadata, WriteOutcome

__all__ = [
    "DUPLICATE_KEY",
    "check_op",
    "check_write",
    "item_exists",
    "item_missing",
    "item_outdated",
    "lock_not_held",
    "lock_rows_full",
    "major_outdated",
    "metadata_rows",
    "rows_full",
    "too_large",
]

DUPLICATE_KEY = WriteOutcome(ErrorCode.STORAGE_DUPLICATE_KEY, "a key is given twice")


def check_op(op: int) -> WriteOutcome | None:
    """The refusal of an operation other than set, update and remove (checked first)."""
    if op not in (OP_SET, OP_UPDATE, OP_REMOVE):
        return WriteOutcome(ErrorCode.STORAGE_INVALID_ARGUMENT, f"unknown operation {op}")
    return None


def check_write(
    current: Metadata, op: int, items: list[ItemWrite], major_revision: int
) -> WriteOutcome | None:
    """The first reason a write of ``current`` may not happen, up to the bound lock (which
    the engine checks next), or None."""
    refused = check_op(op)
    if refused is not None:
        return refused
    if major_revision != -1 and major_revision != current.major_revision:
        return major_outdated(current.major_revision, major_revision)
    if len({w.key for w in items}) != len(items):
        return DUPLICATE_KEY
    for w in items:
        existing = current.items.get(w.key)
        if w.revision == 0 and existing is not None:
            return item_exists(w)
        if w.revision > 0 and (existing is None or existing.revision != w.revision):
            return item_outdated(w, existing.revision if existing else None)
        if op in (OP_UPDATE, OP_REMOVE) and existing is None:
            return item_missing(w)
    return None


def major_outdated(current: int, given: int) -> WriteOutcome:
    return WriteOutcome(
        ErrorCode.STORAGE_OUTDATED_REVISION, f"major revision is {current}, not {given}"
    )


def item_exists(w: ItemWrite) -> WriteOutcome:
    return WriteOutcome(
        ErrorCode.STORAGE_OUTDATED_REVISION, f"item {w.key!r} exists (revision 0 given)"
    )


def item_outdated(w: ItemWrite, have: int | None) -> WriteOutcome:
    """``have``: the item's revision, None if it does not exist."""
    return WriteOutcome(
        ErrorCode.STORAGE_OUTDATED_REVISION,
        f"item {w.key!r} is at revision {'none' if have is None else have}, not {w.revision}",
    )


def item_missing(w: ItemWrite) -> WriteOutcome:
    return WriteOutcome(ErrorCode.STORAGE_INVALID_METADATA_ITEM, f"item {w.key!r} does not exist")


def lock_not_held(name: str) -> WriteOutcome:
    return WriteOutcome(
        ErrorCode.STORAGE_LOCK_NOT_ACQUIRED, f"the caller does not hold lock {name!r}"
    )


def too_large(max_size: int) -> WriteOutcome:
    return WriteOutcome(
        ErrorCode.STORAGE_METADATA_LENGTH_OVERFLOW, f"the set would exceed {max_size} bytes"
    )


def rows_full(max_rows: int) -> WriteOutcome:
    return WriteOutcome(
        ErrorCode.STORAGE_METADATA_ITEM_EXCEED_LIMITATION,
        f"the app has at most {max_rows} metadata rows (sets and items)",
    )


def lock_rows_full(max_rows: int) -> LockOutcome:
    return LockOutcome(ErrorCode.LOCK_OPERATION_FAILED, f"the app has at most {max_rows} locks")


def metadata_rows(metadata: Metadata) -> int:
    """The rows a set counts against its app's quota: itself and each item (none if absent)."""
    return 1 + len(metadata.items) if metadata.major_revision else 0
