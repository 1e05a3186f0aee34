"""The API's metadata and lock routes (docs/API.md, "Metadata and locks").

They go through the same services as the SDK's requests (``StorageService`` and
``LockService``, their ``*_from_server`` entry points): the same checks, quotas, codes and
events to subscribers, without the per-session rates. The author of a write is "server".
"""

from collections.abc import Callable
from typing import Annotated, Any, Protocol

import msgspec
from litestar import Request, delete, get, patch, post, put
from litestar.di import NamedDependency, Provide
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody

from ...errors import ErrorCode, RTMError
from ...protocol.frames import LockDetail, MetadataItem, MetadataResult
from ...protocol.names import is_valid_user_id
from ...types import ChannelType
from ..config import AppConfig
from ..engines.base import OP_REMOVE, OP_SET, OP_UPDATE
from ..subjects import channel_subject, user_subject

__all__ = ["StorageBackend", "storage_routes"]


class StorageBackend(Protocol):
    """What these routes ask of the node (``ApiBackend`` has it too)."""

    async def metadata_read(self, app: AppConfig, target: str) -> MetadataResult: ...

    async def metadata_write(
        self,
        app: AppConfig,
        target: str,
        op: int,
        items: list[MetadataItem],
        major_revision: int,
        lock: tuple[str, str] | None,
        record_ts: bool,
        record_author: bool,
    ) -> MetadataResult: ...

    async def locks_of(
        self, app: AppConfig, channel: str, channel_type: int
    ) -> list[LockDetail]: ...

    async def set_lock(
        self, app: AppConfig, channel: str, channel_type: int, name: str, ttl: int
    ) -> None: ...

    async def remove_lock(
        self, app: AppConfig, channel: str, channel_type: int, name: str
    ) -> None: ...

    async def revoke_lock(
        self, app: AppConfig, channel: str, channel_type: int, name: str, owner: str
    ) -> None: ...


# --- bodies and answers -------------------------------------------------------------------


class ItemBody(msgspec.Struct, forbid_unknown_fields=True):
    key: str
    value: str = ""  # ignored by DELETE
    revision: int = -1  # -1: any; 0: only if the item does not exist; n: only at revision n


class MetadataWrite(msgspec.Struct, forbid_unknown_fields=True):
    """A write, as the SDK's set/update/remove_*_metadata."""

    items: list[ItemBody] = []  # DELETE with none removes the whole set
    major_revision: int = -1  # -1: any; n: only if the set is at revision n
    # Channel metadata only: write only if ``lock_owner`` holds this lock of the channel.
    lock_name: str = ""
    lock_owner: str = ""
    record_ts: bool = False
    record_author: bool = False  # the author recorded is "server"


class Item(msgspec.Struct):
    key: str
    value: str
    revision: int
    author: str  # "" unless written with record_author
    update_ts: int  # Unix ms; 0 unless written with record_ts


class Metadata(msgspec.Struct):
    major_revision: int
    items: list[Item]


class Lock(msgspec.Struct):
    name: str
    owner: str  # "" while nobody holds it
    ttl: int


class Locks(msgspec.Struct):
    locks: list[Lock]


class SetLockBody(msgspec.Struct, forbid_unknown_fields=True):
    ttl: int = 10  # seconds the lock outlives its owner's presence, clamped to 10-300


class RevokeBody(msgspec.Struct, forbid_unknown_fields=True):
    owner: Annotated[str, msgspec.Meta(min_length=1)]  # the user that holds it now


class Done(msgspec.Struct):
    ok: bool


# --- helpers ------------------------------------------------------------------------------


def _metadata(result: MetadataResult) -> Metadata:
    return Metadata(
        result.major_revision,
        [Item(i.key, i.value, i.revision, i.author, i.update_ts) for i in result.items],
    )


def _channel_type(name: str) -> int:
    if name == "message":
        return ChannelType.MESSAGE
    if name == "stream":
        return ChannelType.STREAM
    raise RTMError(ErrorCode.INVALID_CHANNEL_TYPE, "channel type: message or stream")


def _user_target(app: AppConfig, user: str) -> str:
    if not is_valid_user_id(user):
        raise RTMError(ErrorCode.INVALID_USER_ID, f"invalid user id {user!r}")
    return user_subject(app.app_id, user)


def _items(body: MetadataWrite) -> list[MetadataItem]:
    return [MetadataItem(i.key, i.value, i.revision) for i in body.items]


def _lock(body: MetadataWrite) -> tuple[str, str] | None:
    if not body.lock_name:
        return None
    if not is_valid_user_id(body.lock_owner):
        # The server holds no locks: a bound write names the user whose lock it must be.
        raise RTMError(ErrorCode.INVALID_PARAMETER, "lock_name needs lock_owner, a user id")
    return body.lock_name, body.lock_owner


def _no_lock(body: MetadataWrite) -> None:
    if body.lock_name:
        raise RTMError(ErrorCode.INVALID_PARAMETER, "user metadata has no locks")


Authorize = Callable[[Request[Any, Any, Any], str], AppConfig]
# A metadata route's set: its app, its target, and how a write names its bound lock.
Target = tuple[AppConfig, str, Callable[[MetadataWrite], tuple[str, str] | None]]

_CHANNEL = "/v1/apps/{app_id:str}/channels/{channel_type:str}/{channel:str}"
_USER = "/v1/apps/{app_id:str}/users/{user_id:str}"
_LOCK = _CHANNEL + "/locks/{name:str}"


def storage_routes(
    authorized: Authorize,
    backend: StorageBackend,
    security: list[dict[str, list[str]]],
    responses: dict[int, ResponseSpec],
) -> list[HTTPRouteHandler]:
    """The routes; ``security`` and ``responses`` (the error answers) as the other routes'."""
    common: dict[str, Any] = {"security": security, "responses": responses}

    def metadata_routes(path: str, noun: str, resolve: Callable[..., Any]) -> list[Any]:
        """GET/PUT/PATCH/DELETE of the metadata at ``path``; ``resolve`` (a dependency, so
        its path parameters are the routes') names the set: (app, target, bound lock)."""
        deps = {"target": Provide(resolve, sync_to_thread=False)}
        common_md = {**common, "tags": ["metadata"], "dependencies": deps}

        async def write(target: Target, op: int, body: MetadataWrite) -> Metadata:
            app, name, lock = target
            result = await backend.metadata_write(
                app,
                name,
                op,
                _items(body),
                body.major_revision,
                lock(body),
                body.record_ts,
                body.record_author,
            )
            return _metadata(result)

        @get(path, summary=f"A {noun}'s metadata", **common_md)
        async def read(target: NamedDependency[Target]) -> Metadata:
            app, name, _ = target
            return _metadata(await backend.metadata_read(app, name))

        @put(
            path,
            summary=f"Create or overwrite items of a {noun}'s metadata",
            description=f"As the SDK's set_{noun}_metadata; answers the set after the write.",
            **common_md,
        )
        async def set_(target: NamedDependency[Target], data: JSONBody[MetadataWrite]) -> Metadata:
            return await write(target, OP_SET, data)

        @patch(
            path,
            summary=f"Change existing items of a {noun}'s metadata",
            description=f"As update_{noun}_metadata: a missing key fails the whole write.",
            **common_md,
        )
        async def update(
            target: NamedDependency[Target], data: JSONBody[MetadataWrite]
        ) -> Metadata:
            return await write(target, OP_UPDATE, data)

        @delete(
            path,
            status_code=200,
            summary=f"Remove items of a {noun}'s metadata (no items: all of them)",
            **common_md,
        )
        async def remove(
            target: NamedDependency[Target], data: JSONBody[MetadataWrite | None] = None
        ) -> Metadata:
            return await write(target, OP_REMOVE, data or MetadataWrite())

        return [read, set_, update, remove]

    def channel_target(
        request: Request[Any, Any, Any],
        app_id: FromPath[str],
        channel_type: FromPath[str],
        channel: FromPath[str],
    ) -> Target:
        app = authorized(request, app_id)
        return app, channel_subject(app.app_id, channel, _channel_type(channel_type)), _lock

    def user_target(
        request: Request[Any, Any, Any], app_id: FromPath[str], user_id: FromPath[str]
    ) -> Target:
        app = authorized(request, app_id)
        return app, _user_target(app, user_id), _no_lock

    # --- locks ------------------------------------------------------------------------------

    @get(_CHANNEL + "/locks", summary="A channel's locks", tags=["locks"], **common)
    async def list_locks(
        request: Request[Any, Any, Any],
        app_id: FromPath[str],
        channel_type: FromPath[str],
        channel: FromPath[str],
    ) -> Locks:
        app = authorized(request, app_id)
        found = await backend.locks_of(app, channel, _channel_type(channel_type))
        return Locks([Lock(d.name, d.owner, d.ttl) for d in found])

    @put(_LOCK, summary="Set (create) a lock, free; members get SET", tags=["locks"], **common)
    async def set_lock(
        request: Request[Any, Any, Any],
        app_id: FromPath[str],
        channel_type: FromPath[str],
        channel: FromPath[str],
        name: FromPath[str],
        data: JSONBody[SetLockBody],
    ) -> Done:
        app = authorized(request, app_id)
        await backend.set_lock(app, channel, _channel_type(channel_type), name, data.ttl)
        return Done(True)

    @delete(
        _LOCK,
        status_code=200,
        summary="Remove a lock; members get REMOVED, its waiters fail",
        tags=["locks"],
        **common,
    )
    async def remove_lock(
        request: Request[Any, Any, Any],
        app_id: FromPath[str],
        channel_type: FromPath[str],
        channel: FromPath[str],
        name: FromPath[str],
    ) -> Done:
        app = authorized(request, app_id)
        await backend.remove_lock(app, channel, _channel_type(channel_type), name)
        return Done(True)

    @post(
        _LOCK + "/revoke",
        status_code=200,
        summary="Take a lock from its owner (members get RELEASED)",
        tags=["locks"],
        **common,
    )
    async def revoke_lock(
        request: Request[Any, Any, Any],
        app_id: FromPath[str],
        channel_type: FromPath[str],
        channel: FromPath[str],
        name: FromPath[str],
        data: JSONBody[RevokeBody],
    ) -> Done:
        app = authorized(request, app_id)
        await backend.revoke_lock(app, channel, _channel_type(channel_type), name, data.owner)
        return Done(True)

    return [
        *metadata_routes(_CHANNEL + "/metadata", "channel", channel_target),
        *metadata_routes(_USER + "/metadata", "user", user_target),
        list_locks,
        set_lock,
        remove_lock,
        revoke_lock,
    ]
