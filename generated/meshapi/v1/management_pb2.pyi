import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from meshapi.v1 import resources_pb2 as _resources_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ResourceKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESOURCE_KIND_UNSPECIFIED: _ClassVar[ResourceKind]
    CLUSTER: _ClassVar[ResourceKind]
    ENDPOINTS: _ClassVar[ResourceKind]
    ROUTE: _ClassVar[ResourceKind]
    LISTENER: _ClassVar[ResourceKind]
    AUTHORIZATION_POLICY: _ClassVar[ResourceKind]
RESOURCE_KIND_UNSPECIFIED: ResourceKind
CLUSTER: ResourceKind
ENDPOINTS: ResourceKind
ROUTE: ResourceKind
LISTENER: ResourceKind
AUTHORIZATION_POLICY: ResourceKind

class ApplyRequest(_message.Message):
    __slots__ = ("config", "replace", "dry_run", "allow_empty")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    ALLOW_EMPTY_FIELD_NUMBER: _ClassVar[int]
    config: _resources_pb2.MeshConfig
    replace: bool
    dry_run: bool
    allow_empty: bool
    def __init__(self, config: _Optional[_Union[_resources_pb2.MeshConfig, _Mapping]] = ..., replace: _Optional[bool] = ..., dry_run: _Optional[bool] = ..., allow_empty: _Optional[bool] = ...) -> None: ...

class ResourceChange(_message.Message):
    __slots__ = ("kind", "name", "action", "diff")
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ACTION_UNSPECIFIED: _ClassVar[ResourceChange.Action]
        ADDED: _ClassVar[ResourceChange.Action]
        MODIFIED: _ClassVar[ResourceChange.Action]
        REMOVED: _ClassVar[ResourceChange.Action]
    ACTION_UNSPECIFIED: ResourceChange.Action
    ADDED: ResourceChange.Action
    MODIFIED: ResourceChange.Action
    REMOVED: ResourceChange.Action
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    DIFF_FIELD_NUMBER: _ClassVar[int]
    kind: ResourceKind
    name: str
    action: ResourceChange.Action
    diff: str
    def __init__(self, kind: _Optional[_Union[ResourceKind, str]] = ..., name: _Optional[str] = ..., action: _Optional[_Union[ResourceChange.Action, str]] = ..., diff: _Optional[str] = ...) -> None: ...

class ApplyResponse(_message.Message):
    __slots__ = ("changes", "versions")
    class VersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[ResourceChange]
    versions: _containers.ScalarMap[str, str]
    def __init__(self, changes: _Optional[_Iterable[_Union[ResourceChange, _Mapping]]] = ..., versions: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("kind", "name")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    kind: ResourceKind
    name: str
    def __init__(self, kind: _Optional[_Union[ResourceKind, str]] = ..., name: _Optional[str] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("config", "versions")
    class VersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    config: _resources_pb2.MeshConfig
    versions: _containers.ScalarMap[str, str]
    def __init__(self, config: _Optional[_Union[_resources_pb2.MeshConfig, _Mapping]] = ..., versions: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("kind", "name", "dry_run")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    kind: ResourceKind
    name: str
    dry_run: bool
    def __init__(self, kind: _Optional[_Union[ResourceKind, str]] = ..., name: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("changes",)
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[ResourceChange]
    def __init__(self, changes: _Optional[_Iterable[_Union[ResourceChange, _Mapping]]] = ...) -> None: ...

class ProxyStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProxyStatus(_message.Message):
    __slots__ = ("node_id", "zone", "peer", "connected_since", "types", "client", "unsupported")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_SINCE_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    UNSUPPORTED_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    zone: str
    peer: str
    connected_since: _timestamp_pb2.Timestamp
    types: _containers.RepeatedCompositeFieldContainer[TypeStatus]
    client: str
    unsupported: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, node_id: _Optional[str] = ..., zone: _Optional[str] = ..., peer: _Optional[str] = ..., connected_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., types: _Optional[_Iterable[_Union[TypeStatus, _Mapping]]] = ..., client: _Optional[str] = ..., unsupported: _Optional[_Iterable[str]] = ...) -> None: ...

class TypeStatus(_message.Message):
    __slots__ = ("type_url", "state", "sent_version", "acked_version", "error")
    class SyncState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        SYNC_STATE_UNSPECIFIED: _ClassVar[TypeStatus.SyncState]
        SYNCED: _ClassVar[TypeStatus.SyncState]
        STALE: _ClassVar[TypeStatus.SyncState]
        NACKED: _ClassVar[TypeStatus.SyncState]
        NOT_SENT: _ClassVar[TypeStatus.SyncState]
    SYNC_STATE_UNSPECIFIED: TypeStatus.SyncState
    SYNCED: TypeStatus.SyncState
    STALE: TypeStatus.SyncState
    NACKED: TypeStatus.SyncState
    NOT_SENT: TypeStatus.SyncState
    TYPE_URL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACKED_VERSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    type_url: str
    state: TypeStatus.SyncState
    sent_version: str
    acked_version: str
    error: str
    def __init__(self, type_url: _Optional[str] = ..., state: _Optional[_Union[TypeStatus.SyncState, str]] = ..., sent_version: _Optional[str] = ..., acked_version: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class ProxyStatusResponse(_message.Message):
    __slots__ = ("proxies", "versions")
    class VersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PROXIES_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    proxies: _containers.RepeatedCompositeFieldContainer[ProxyStatus]
    versions: _containers.ScalarMap[str, str]
    def __init__(self, proxies: _Optional[_Iterable[_Union[ProxyStatus, _Mapping]]] = ..., versions: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("instance", "lease_id")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    instance: Instance
    lease_id: int
    def __init__(self, instance: _Optional[_Union[Instance, _Mapping]] = ..., lease_id: _Optional[int] = ...) -> None: ...

class Instance(_message.Message):
    __slots__ = ("cluster", "address", "weight", "zone", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    address: str
    weight: int
    zone: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, cluster: _Optional[str] = ..., address: _Optional[str] = ..., weight: _Optional[int] = ..., zone: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("lease_ttl", "lease_id")
    LEASE_TTL_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    lease_ttl: _duration_pb2.Duration
    lease_id: int
    def __init__(self, lease_ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., lease_id: _Optional[int] = ...) -> None: ...

class IssueCertificateRequest(_message.Message):
    __slots__ = ("csr", "service")
    CSR_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    csr: bytes
    service: str
    def __init__(self, csr: _Optional[bytes] = ..., service: _Optional[str] = ...) -> None: ...

class IssueCertificateResponse(_message.Message):
    __slots__ = ("certificate_chain", "ca_bundle", "spiffe_id", "not_before", "not_after", "mtls_port")
    CERTIFICATE_CHAIN_FIELD_NUMBER: _ClassVar[int]
    CA_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    MTLS_PORT_FIELD_NUMBER: _ClassVar[int]
    certificate_chain: bytes
    ca_bundle: bytes
    spiffe_id: str
    not_before: _timestamp_pb2.Timestamp
    not_after: _timestamp_pb2.Timestamp
    mtls_port: int
    def __init__(self, certificate_chain: _Optional[bytes] = ..., ca_bundle: _Optional[bytes] = ..., spiffe_id: _Optional[str] = ..., not_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., not_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., mtls_port: _Optional[int] = ...) -> None: ...

class Token(_message.Message):
    __slots__ = ("id", "role", "service", "created", "expires", "revoked")
    ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    id: str
    role: str
    service: str
    created: _timestamp_pb2.Timestamp
    expires: _timestamp_pb2.Timestamp
    revoked: bool
    def __init__(self, id: _Optional[str] = ..., role: _Optional[str] = ..., service: _Optional[str] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoked: _Optional[bool] = ...) -> None: ...

class CreateTokenRequest(_message.Message):
    __slots__ = ("role", "service", "ttl")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    role: str
    service: str
    ttl: _duration_pb2.Duration
    def __init__(self, role: _Optional[str] = ..., service: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class CreateTokenResponse(_message.Message):
    __slots__ = ("token", "secret")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    token: Token
    secret: str
    def __init__(self, token: _Optional[_Union[Token, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class RevokeTokenRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class RevokeTokenResponse(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: Token
    def __init__(self, token: _Optional[_Union[Token, _Mapping]] = ...) -> None: ...

class ListTokensRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTokensResponse(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[Token]
    def __init__(self, tokens: _Optional[_Iterable[_Union[Token, _Mapping]]] = ...) -> None: ...
