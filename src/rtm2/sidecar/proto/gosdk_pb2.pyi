from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MetadataOpType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SET: _ClassVar[MetadataOpType]
    UPDATE: _ClassVar[MetadataOpType]
    REMOVE: _ClassVar[MetadataOpType]
SET: MetadataOpType
UPDATE: MetadataOpType
REMOVE: MetadataOpType

class Header(_message.Message):
    __slots__ = ("seqId", "uri", "connIndex", "message", "ack", "errCode")
    SEQID_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    CONNINDEX_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    ERRCODE_FIELD_NUMBER: _ClassVar[int]
    seqId: int
    uri: int
    connIndex: int
    message: bytes
    ack: bool
    errCode: int
    def __init__(self, seqId: _Optional[int] = ..., uri: _Optional[int] = ..., connIndex: _Optional[int] = ..., message: _Optional[bytes] = ..., ack: _Optional[bool] = ..., errCode: _Optional[int] = ...) -> None: ...

class LoginReq(_message.Message):
    __slots__ = ("appId", "userId", "areaCode", "presenceTimeout", "token", "logPath", "logSize", "logLevel", "proxyServer", "proxyPort", "proxyAccount", "proxyPassword", "encryptMode", "encryptKey", "encryptSalt", "params")
    APPID_FIELD_NUMBER: _ClassVar[int]
    USERID_FIELD_NUMBER: _ClassVar[int]
    AREACODE_FIELD_NUMBER: _ClassVar[int]
    PRESENCETIMEOUT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LOGPATH_FIELD_NUMBER: _ClassVar[int]
    LOGSIZE_FIELD_NUMBER: _ClassVar[int]
    LOGLEVEL_FIELD_NUMBER: _ClassVar[int]
    PROXYSERVER_FIELD_NUMBER: _ClassVar[int]
    PROXYPORT_FIELD_NUMBER: _ClassVar[int]
    PROXYACCOUNT_FIELD_NUMBER: _ClassVar[int]
    PROXYPASSWORD_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTMODE_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTKEY_FIELD_NUMBER: _ClassVar[int]
    ENCRYPTSALT_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    appId: str
    userId: str
    areaCode: int
    presenceTimeout: int
    token: str
    logPath: str
    logSize: int
    logLevel: int
    proxyServer: str
    proxyPort: int
    proxyAccount: str
    proxyPassword: str
    encryptMode: int
    encryptKey: str
    encryptSalt: bytes
    params: str
    def __init__(self, appId: _Optional[str] = ..., userId: _Optional[str] = ..., areaCode: _Optional[int] = ..., presenceTimeout: _Optional[int] = ..., token: _Optional[str] = ..., logPath: _Optional[str] = ..., logSize: _Optional[int] = ..., logLevel: _Optional[int] = ..., proxyServer: _Optional[str] = ..., proxyPort: _Optional[int] = ..., proxyAccount: _Optional[str] = ..., proxyPassword: _Optional[str] = ..., encryptMode: _Optional[int] = ..., encryptKey: _Optional[str] = ..., encryptSalt: _Optional[bytes] = ..., params: _Optional[str] = ...) -> None: ...

class LogoutReq(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RenewTokenReq(_message.Message):
    __slots__ = ("token", "channel")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    token: str
    channel: str
    def __init__(self, token: _Optional[str] = ..., channel: _Optional[str] = ...) -> None: ...

class SetParamsReq(_message.Message):
    __slots__ = ("params",)
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    params: str
    def __init__(self, params: _Optional[str] = ...) -> None: ...

class MessageSubReq(_message.Message):
    __slots__ = ("channel", "message", "metadata", "presence", "lock")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_FIELD_NUMBER: _ClassVar[int]
    LOCK_FIELD_NUMBER: _ClassVar[int]
    channel: str
    message: bool
    metadata: bool
    presence: bool
    lock: bool
    def __init__(self, channel: _Optional[str] = ..., message: _Optional[bool] = ..., metadata: _Optional[bool] = ..., presence: _Optional[bool] = ..., lock: _Optional[bool] = ...) -> None: ...

class MessageUnsubReq(_message.Message):
    __slots__ = ("channel",)
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    channel: str
    def __init__(self, channel: _Optional[str] = ...) -> None: ...

class MessagePublishReq(_message.Message):
    __slots__ = ("channel", "type", "sendTs", "message", "customType", "channelType")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SENDTS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMTYPE_FIELD_NUMBER: _ClassVar[int]
    CHANNELTYPE_FIELD_NUMBER: _ClassVar[int]
    channel: str
    type: int
    sendTs: int
    message: bytes
    customType: str
    channelType: int
    def __init__(self, channel: _Optional[str] = ..., type: _Optional[int] = ..., sendTs: _Optional[int] = ..., message: _Optional[bytes] = ..., customType: _Optional[str] = ..., channelType: _Optional[int] = ...) -> None: ...

class StreamJoinReq(_message.Message):
    __slots__ = ("channel", "token", "metadata", "presence", "lock")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_FIELD_NUMBER: _ClassVar[int]
    LOCK_FIELD_NUMBER: _ClassVar[int]
    channel: str
    token: str
    metadata: bool
    presence: bool
    lock: bool
    def __init__(self, channel: _Optional[str] = ..., token: _Optional[str] = ..., metadata: _Optional[bool] = ..., presence: _Optional[bool] = ..., lock: _Optional[bool] = ...) -> None: ...

class StreamLeaveReq(_message.Message):
    __slots__ = ("channel",)
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    channel: str
    def __init__(self, channel: _Optional[str] = ...) -> None: ...

class StreamJoinTopicReq(_message.Message):
    __slots__ = ("channel", "topic", "qos", "priority", "syncMedia", "meta")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    SYNCMEDIA_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    channel: str
    topic: str
    qos: int
    priority: int
    syncMedia: bool
    meta: str
    def __init__(self, channel: _Optional[str] = ..., topic: _Optional[str] = ..., qos: _Optional[int] = ..., priority: _Optional[int] = ..., syncMedia: _Optional[bool] = ..., meta: _Optional[str] = ...) -> None: ...

class StreamMessageReq(_message.Message):
    __slots__ = ("channel", "topic", "type", "sendTs", "message", "customType")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SENDTS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CUSTOMTYPE_FIELD_NUMBER: _ClassVar[int]
    channel: str
    topic: str
    type: int
    sendTs: int
    message: bytes
    customType: str
    def __init__(self, channel: _Optional[str] = ..., topic: _Optional[str] = ..., type: _Optional[int] = ..., sendTs: _Optional[int] = ..., message: _Optional[bytes] = ..., customType: _Optional[str] = ...) -> None: ...

class StreamLeaveTopicReq(_message.Message):
    __slots__ = ("channel", "topic")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    channel: str
    topic: str
    def __init__(self, channel: _Optional[str] = ..., topic: _Optional[str] = ...) -> None: ...

class StreamSubTopicReq(_message.Message):
    __slots__ = ("channel", "topic", "userIds")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    USERIDS_FIELD_NUMBER: _ClassVar[int]
    channel: str
    topic: str
    userIds: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, channel: _Optional[str] = ..., topic: _Optional[str] = ..., userIds: _Optional[_Iterable[str]] = ...) -> None: ...

class StreamUnsubTopicReq(_message.Message):
    __slots__ = ("channel", "topic", "userIds")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    USERIDS_FIELD_NUMBER: _ClassVar[int]
    channel: str
    topic: str
    userIds: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, channel: _Optional[str] = ..., topic: _Optional[str] = ..., userIds: _Optional[_Iterable[str]] = ...) -> None: ...

class StreamSubTopicResp(_message.Message):
    __slots__ = ("channel", "topic", "succeed", "failed")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    SUCCEED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    channel: str
    topic: str
    succeed: _containers.RepeatedScalarFieldContainer[str]
    failed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, channel: _Optional[str] = ..., topic: _Optional[str] = ..., succeed: _Optional[_Iterable[str]] = ..., failed: _Optional[_Iterable[str]] = ...) -> None: ...

class StreamSubListReq(_message.Message):
    __slots__ = ("channel", "topic")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    channel: str
    topic: str
    def __init__(self, channel: _Optional[str] = ..., topic: _Optional[str] = ...) -> None: ...

class StreamSubListResp(_message.Message):
    __slots__ = ("channel", "topic", "userIds")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    USERIDS_FIELD_NUMBER: _ClassVar[int]
    channel: str
    topic: str
    userIds: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, channel: _Optional[str] = ..., topic: _Optional[str] = ..., userIds: _Optional[_Iterable[str]] = ...) -> None: ...

class MetadataItem(_message.Message):
    __slots__ = ("key", "value", "author", "rev", "updateTs")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    REV_FIELD_NUMBER: _ClassVar[int]
    UPDATETS_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    author: str
    rev: int
    updateTs: int
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ..., author: _Optional[str] = ..., rev: _Optional[int] = ..., updateTs: _Optional[int] = ...) -> None: ...

class StorageChannelReq(_message.Message):
    __slots__ = ("channel", "channelType", "opType", "items", "majorRev", "lock", "recordTs", "recordUid")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CHANNELTYPE_FIELD_NUMBER: _ClassVar[int]
    OPTYPE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MAJORREV_FIELD_NUMBER: _ClassVar[int]
    LOCK_FIELD_NUMBER: _ClassVar[int]
    RECORDTS_FIELD_NUMBER: _ClassVar[int]
    RECORDUID_FIELD_NUMBER: _ClassVar[int]
    channel: str
    channelType: int
    opType: MetadataOpType
    items: _containers.RepeatedCompositeFieldContainer[MetadataItem]
    majorRev: int
    lock: str
    recordTs: bool
    recordUid: bool
    def __init__(self, channel: _Optional[str] = ..., channelType: _Optional[int] = ..., opType: _Optional[_Union[MetadataOpType, str]] = ..., items: _Optional[_Iterable[_Union[MetadataItem, _Mapping]]] = ..., majorRev: _Optional[int] = ..., lock: _Optional[str] = ..., recordTs: _Optional[bool] = ..., recordUid: _Optional[bool] = ...) -> None: ...

class StorageChannelGetReq(_message.Message):
    __slots__ = ("channel", "channelType")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CHANNELTYPE_FIELD_NUMBER: _ClassVar[int]
    channel: str
    channelType: int
    def __init__(self, channel: _Optional[str] = ..., channelType: _Optional[int] = ...) -> None: ...

class StorageChannelGetResp(_message.Message):
    __slots__ = ("channel", "channelType", "items", "majorRev")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CHANNELTYPE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MAJORREV_FIELD_NUMBER: _ClassVar[int]
    channel: str
    channelType: int
    items: _containers.RepeatedCompositeFieldContainer[MetadataItem]
    majorRev: int
    def __init__(self, channel: _Optional[str] = ..., channelType: _Optional[int] = ..., items: _Optional[_Iterable[_Union[MetadataItem, _Mapping]]] = ..., majorRev: _Optional[int] = ...) -> None: ...

class StorageUserReq(_message.Message):
    __slots__ = ("userId", "opType", "items", "majorRev", "recordTs", "recordUid")
    USERID_FIELD_NUMBER: _ClassVar[int]
    OPTYPE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MAJORREV_FIELD_NUMBER: _ClassVar[int]
    RECORDTS_FIELD_NUMBER: _ClassVar[int]
    RECORDUID_FIELD_NUMBER: _ClassVar[int]
    userId: str
    opType: MetadataOpType
    items: _containers.RepeatedCompositeFieldContainer[MetadataItem]
    majorRev: int
    recordTs: bool
    recordUid: bool
    def __init__(self, userId: _Optional[str] = ..., opType: _Optional[_Union[MetadataOpType, str]] = ..., items: _Optional[_Iterable[_Union[MetadataItem, _Mapping]]] = ..., majorRev: _Optional[int] = ..., recordTs: _Optional[bool] = ..., recordUid: _Optional[bool] = ...) -> None: ...

class StorageUserGetReq(_message.Message):
    __slots__ = ("userId",)
    USERID_FIELD_NUMBER: _ClassVar[int]
    userId: str
    def __init__(self, userId: _Optional[str] = ...) -> None: ...

class StorageUserSubReq(_message.Message):
    __slots__ = ("userId",)
    USERID_FIELD_NUMBER: _ClassVar[int]
    userId: str
    def __init__(self, userId: _Optional[str] = ...) -> None: ...

class StorageUserUnsubReq(_message.Message):
    __slots__ = ("userId",)
    USERID_FIELD_NUMBER: _ClassVar[int]
    userId: str
    def __init__(self, userId: _Optional[str] = ...) -> None: ...

class StorageUserGetResp(_message.Message):
    __slots__ = ("userId", "items", "majorRev")
    USERID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MAJORREV_FIELD_NUMBER: _ClassVar[int]
    userId: str
    items: _containers.RepeatedCompositeFieldContainer[MetadataItem]
    majorRev: int
    def __init__(self, userId: _Optional[str] = ..., items: _Optional[_Iterable[_Union[MetadataItem, _Mapping]]] = ..., majorRev: _Optional[int] = ...) -> None: ...

class UserStateItem(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class UserState(_message.Message):
    __slots__ = ("userId", "items")
    USERID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    userId: str
    items: _containers.RepeatedCompositeFieldContainer[UserStateItem]
    def __init__(self, userId: _Optional[str] = ..., items: _Optional[_Iterable[_Union[UserStateItem, _Mapping]]] = ...) -> None: ...

class PresenceWhoNowReq(_message.Message):
    __slots__ = ("channel", "channelType", "withUserId", "withState", "page")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CHANNELTYPE_FIELD_NUMBER: _ClassVar[int]
    WITHUSERID_FIELD_NUMBER: _ClassVar[int]
    WITHSTATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    channel: str
    channelType: int
    withUserId: bool
    withState: bool
    page: str
    def __init__(self, channel: _Optional[str] = ..., channelType: _Optional[int] = ..., withUserId: _Optional[bool] = ..., withState: _Optional[bool] = ..., page: _Optional[str] = ...) -> None: ...

class PresenceWhoNowResp(_message.Message):
    __slots__ = ("channel", "channelType", "users", "count", "nextPage")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CHANNELTYPE_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    NEXTPAGE_FIELD_NUMBER: _ClassVar[int]
    channel: str
    channelType: int
    users: _containers.RepeatedCompositeFieldContainer[UserState]
    count: int
    nextPage: str
    def __init__(self, channel: _Optional[str] = ..., channelType: _Optional[int] = ..., users: _Optional[_Iterable[_Union[UserState, _Mapping]]] = ..., count: _Optional[int] = ..., nextPage: _Optional[str] = ...) -> None: ...

class PresenceWhereNowReq(_message.Message):
    __slots__ = ("userId",)
    USERID_FIELD_NUMBER: _ClassVar[int]
    userId: str
    def __init__(self, userId: _Optional[str] = ...) -> None: ...

class ChannelInfo(_message.Message):
    __slots__ = ("channel", "channelType")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CHANNELTYPE_FIELD_NUMBER: _ClassVar[int]
    channel: str
    channelType: int
    def __init__(self, channel: _Optional[str] = ..., channelType: _Optional[int] = ...) -> None: ...

class PresenceWhereNowResp(_message.Message):
    __slots__ = ("userId", "channels")
    USERID_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    userId: str
    channels: _containers.RepeatedCompositeFieldContainer[ChannelInfo]
    def __init__(self, userId: _Optional[str] = ..., channels: _Optional[_Iterable[_Union[ChannelInfo, _Mapping]]] = ...) -> None: ...

class PresenceSetStateReq(_message.Message):
    __slots__ = ("channel", "channelType", "items")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CHANNELTYPE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    channel: str
    channelType: int
    items: _containers.RepeatedCompositeFieldContainer[UserStateItem]
    def __init__(self, channel: _Optional[str] = ..., channelType: _Optional[int] = ..., items: _Optional[_Iterable[_Union[UserStateItem, _Mapping]]] = ...) -> None: ...

class PresenceRemoveStateReq(_message.Message):
    __slots__ = ("channel", "channelType", "keys")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CHANNELTYPE_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    channel: str
    channelType: int
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, channel: _Optional[str] = ..., channelType: _Optional[int] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...

class PresenceGetStateReq(_message.Message):
    __slots__ = ("channel", "channelType", "userId")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CHANNELTYPE_FIELD_NUMBER: _ClassVar[int]
    USERID_FIELD_NUMBER: _ClassVar[int]
    channel: str
    channelType: int
    userId: str
    def __init__(self, channel: _Optional[str] = ..., channelType: _Optional[int] = ..., userId: _Optional[str] = ...) -> None: ...

class PresenceGetStateResp(_message.Message):
    __slots__ = ("channel", "channelType", "userId", "items")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CHANNELTYPE_FIELD_NUMBER: _ClassVar[int]
    USERID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    channel: str
    channelType: int
    userId: str
    items: _containers.RepeatedCompositeFieldContainer[UserStateItem]
    def __init__(self, channel: _Optional[str] = ..., channelType: _Optional[int] = ..., userId: _Optional[str] = ..., items: _Optional[_Iterable[_Union[UserStateItem, _Mapping]]] = ...) -> None: ...

class LockDetail(_message.Message):
    __slots__ = ("lock", "owner", "ttl")
    LOCK_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    lock: str
    owner: str
    ttl: int
    def __init__(self, lock: _Optional[str] = ..., owner: _Optional[str] = ..., ttl: _Optional[int] = ...) -> None: ...

class LockSetReq(_message.Message):
    __slots__ = ("channel", "channelType", "lock", "ttl")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CHANNELTYPE_FIELD_NUMBER: _ClassVar[int]
    LOCK_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    channel: str
    channelType: int
    lock: str
    ttl: int
    def __init__(self, channel: _Optional[str] = ..., channelType: _Optional[int] = ..., lock: _Optional[str] = ..., ttl: _Optional[int] = ...) -> None: ...

class LockGetReq(_message.Message):
    __slots__ = ("channel", "channelType")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CHANNELTYPE_FIELD_NUMBER: _ClassVar[int]
    channel: str
    channelType: int
    def __init__(self, channel: _Optional[str] = ..., channelType: _Optional[int] = ...) -> None: ...

class LockGetResp(_message.Message):
    __slots__ = ("channel", "channelType", "locks")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CHANNELTYPE_FIELD_NUMBER: _ClassVar[int]
    LOCKS_FIELD_NUMBER: _ClassVar[int]
    channel: str
    channelType: int
    locks: _containers.RepeatedCompositeFieldContainer[LockDetail]
    def __init__(self, channel: _Optional[str] = ..., channelType: _Optional[int] = ..., locks: _Optional[_Iterable[_Union[LockDetail, _Mapping]]] = ...) -> None: ...

class LockRemoveReq(_message.Message):
    __slots__ = ("channel", "channelType", "lock")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CHANNELTYPE_FIELD_NUMBER: _ClassVar[int]
    LOCK_FIELD_NUMBER: _ClassVar[int]
    channel: str
    channelType: int
    lock: str
    def __init__(self, channel: _Optional[str] = ..., channelType: _Optional[int] = ..., lock: _Optional[str] = ...) -> None: ...

class LockReleaseReq(_message.Message):
    __slots__ = ("channel", "channelType", "lock")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CHANNELTYPE_FIELD_NUMBER: _ClassVar[int]
    LOCK_FIELD_NUMBER: _ClassVar[int]
    channel: str
    channelType: int
    lock: str
    def __init__(self, channel: _Optional[str] = ..., channelType: _Optional[int] = ..., lock: _Optional[str] = ...) -> None: ...

class LockAcquireReq(_message.Message):
    __slots__ = ("channel", "channelType", "lock", "retry")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CHANNELTYPE_FIELD_NUMBER: _ClassVar[int]
    LOCK_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    channel: str
    channelType: int
    lock: str
    retry: bool
    def __init__(self, channel: _Optional[str] = ..., channelType: _Optional[int] = ..., lock: _Optional[str] = ..., retry: _Optional[bool] = ...) -> None: ...

class LockRevokeReq(_message.Message):
    __slots__ = ("channel", "channelType", "lock", "owner")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CHANNELTYPE_FIELD_NUMBER: _ClassVar[int]
    LOCK_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    channel: str
    channelType: int
    lock: str
    owner: str
    def __init__(self, channel: _Optional[str] = ..., channelType: _Optional[int] = ..., lock: _Optional[str] = ..., owner: _Optional[str] = ...) -> None: ...

class LockEvent(_message.Message):
    __slots__ = ("channel", "channelType", "eventType", "locks")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CHANNELTYPE_FIELD_NUMBER: _ClassVar[int]
    EVENTTYPE_FIELD_NUMBER: _ClassVar[int]
    LOCKS_FIELD_NUMBER: _ClassVar[int]
    channel: str
    channelType: int
    eventType: int
    locks: _containers.RepeatedCompositeFieldContainer[LockDetail]
    def __init__(self, channel: _Optional[str] = ..., channelType: _Optional[int] = ..., eventType: _Optional[int] = ..., locks: _Optional[_Iterable[_Union[LockDetail, _Mapping]]] = ...) -> None: ...

class ConnectionStateChangeEvent(_message.Message):
    __slots__ = ("state", "reason", "channel")
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    state: int
    reason: int
    channel: str
    def __init__(self, state: _Optional[int] = ..., reason: _Optional[int] = ..., channel: _Optional[str] = ...) -> None: ...

class MessageEvent(_message.Message):
    __slots__ = ("channel", "publisher", "type", "message", "sendTs", "customType", "channelType")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PUBLISHER_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SENDTS_FIELD_NUMBER: _ClassVar[int]
    CUSTOMTYPE_FIELD_NUMBER: _ClassVar[int]
    CHANNELTYPE_FIELD_NUMBER: _ClassVar[int]
    channel: str
    publisher: str
    type: int
    message: bytes
    sendTs: int
    customType: str
    channelType: int
    def __init__(self, channel: _Optional[str] = ..., publisher: _Optional[str] = ..., type: _Optional[int] = ..., message: _Optional[bytes] = ..., sendTs: _Optional[int] = ..., customType: _Optional[str] = ..., channelType: _Optional[int] = ...) -> None: ...

class StreamMessageEvent(_message.Message):
    __slots__ = ("channel", "type", "sendTs", "message", "topic", "publisher", "customType")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SENDTS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PUBLISHER_FIELD_NUMBER: _ClassVar[int]
    CUSTOMTYPE_FIELD_NUMBER: _ClassVar[int]
    channel: str
    type: int
    sendTs: int
    message: bytes
    topic: str
    publisher: str
    customType: str
    def __init__(self, channel: _Optional[str] = ..., type: _Optional[int] = ..., sendTs: _Optional[int] = ..., message: _Optional[bytes] = ..., topic: _Optional[str] = ..., publisher: _Optional[str] = ..., customType: _Optional[str] = ...) -> None: ...

class Publish(_message.Message):
    __slots__ = ("userId", "meta")
    USERID_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    userId: str
    meta: str
    def __init__(self, userId: _Optional[str] = ..., meta: _Optional[str] = ...) -> None: ...

class TopicInfo(_message.Message):
    __slots__ = ("topic", "publishers")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PUBLISHERS_FIELD_NUMBER: _ClassVar[int]
    topic: str
    publishers: _containers.RepeatedCompositeFieldContainer[Publish]
    def __init__(self, topic: _Optional[str] = ..., publishers: _Optional[_Iterable[_Union[Publish, _Mapping]]] = ...) -> None: ...

class StreamTopicEvent(_message.Message):
    __slots__ = ("type", "channel", "userId", "infos")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    USERID_FIELD_NUMBER: _ClassVar[int]
    INFOS_FIELD_NUMBER: _ClassVar[int]
    type: int
    channel: str
    userId: str
    infos: _containers.RepeatedCompositeFieldContainer[TopicInfo]
    def __init__(self, type: _Optional[int] = ..., channel: _Optional[str] = ..., userId: _Optional[str] = ..., infos: _Optional[_Iterable[_Union[TopicInfo, _Mapping]]] = ...) -> None: ...

class StorageChannelEvent(_message.Message):
    __slots__ = ("channel", "channelType", "items", "majorRev", "eventType")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CHANNELTYPE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MAJORREV_FIELD_NUMBER: _ClassVar[int]
    EVENTTYPE_FIELD_NUMBER: _ClassVar[int]
    channel: str
    channelType: int
    items: _containers.RepeatedCompositeFieldContainer[MetadataItem]
    majorRev: int
    eventType: int
    def __init__(self, channel: _Optional[str] = ..., channelType: _Optional[int] = ..., items: _Optional[_Iterable[_Union[MetadataItem, _Mapping]]] = ..., majorRev: _Optional[int] = ..., eventType: _Optional[int] = ...) -> None: ...

class StorageUserEvent(_message.Message):
    __slots__ = ("userId", "items", "majorRev", "eventType")
    USERID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    MAJORREV_FIELD_NUMBER: _ClassVar[int]
    EVENTTYPE_FIELD_NUMBER: _ClassVar[int]
    userId: str
    items: _containers.RepeatedCompositeFieldContainer[MetadataItem]
    majorRev: int
    eventType: int
    def __init__(self, userId: _Optional[str] = ..., items: _Optional[_Iterable[_Union[MetadataItem, _Mapping]]] = ..., majorRev: _Optional[int] = ..., eventType: _Optional[int] = ...) -> None: ...

class PresenceEvent(_message.Message):
    __slots__ = ("channel", "channelType", "eventType", "publisher", "items", "joined", "left", "timeout", "snapshot")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CHANNELTYPE_FIELD_NUMBER: _ClassVar[int]
    EVENTTYPE_FIELD_NUMBER: _ClassVar[int]
    PUBLISHER_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    JOINED_FIELD_NUMBER: _ClassVar[int]
    LEFT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    channel: str
    channelType: int
    eventType: int
    publisher: str
    items: _containers.RepeatedCompositeFieldContainer[UserStateItem]
    joined: _containers.RepeatedScalarFieldContainer[str]
    left: _containers.RepeatedScalarFieldContainer[str]
    timeout: _containers.RepeatedScalarFieldContainer[str]
    snapshot: _containers.RepeatedCompositeFieldContainer[UserState]
    def __init__(self, channel: _Optional[str] = ..., channelType: _Optional[int] = ..., eventType: _Optional[int] = ..., publisher: _Optional[str] = ..., items: _Optional[_Iterable[_Union[UserStateItem, _Mapping]]] = ..., joined: _Optional[_Iterable[str]] = ..., left: _Optional[_Iterable[str]] = ..., timeout: _Optional[_Iterable[str]] = ..., snapshot: _Optional[_Iterable[_Union[UserState, _Mapping]]] = ...) -> None: ...

class TokenPrivilegeExpire(_message.Message):
    __slots__ = ("channel",)
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    channel: str
    def __init__(self, channel: _Optional[str] = ...) -> None: ...
