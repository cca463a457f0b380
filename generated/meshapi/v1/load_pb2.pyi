import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from meshapi.v1 import discovery_pb2 as _discovery_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LoadReport(_message.Message):
    __slots__ = ("node", "window", "versions", "clusters", "routes")
    class VersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    node: _discovery_pb2.Node
    window: _duration_pb2.Duration
    versions: _containers.ScalarMap[str, str]
    clusters: _containers.RepeatedCompositeFieldContainer[ClusterLoad]
    routes: _containers.RepeatedCompositeFieldContainer[RouteLoad]
    def __init__(self, node: _Optional[_Union[_discovery_pb2.Node, _Mapping]] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., versions: _Optional[_Mapping[str, str]] = ..., clusters: _Optional[_Iterable[_Union[ClusterLoad, _Mapping]]] = ..., routes: _Optional[_Iterable[_Union[RouteLoad, _Mapping]]] = ...) -> None: ...

class RouteLoad(_message.Message):
    __slots__ = ("route", "cluster", "calls")
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    route: str
    cluster: str
    calls: int
    def __init__(self, route: _Optional[str] = ..., cluster: _Optional[str] = ..., calls: _Optional[int] = ...) -> None: ...

class ClusterLoad(_message.Message):
    __slots__ = ("name", "lb_policy", "panic", "endpoints")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LB_POLICY_FIELD_NUMBER: _ClassVar[int]
    PANIC_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    lb_policy: str
    panic: bool
    endpoints: _containers.RepeatedCompositeFieldContainer[EndpointLoad]
    def __init__(self, name: _Optional[str] = ..., lb_policy: _Optional[str] = ..., panic: _Optional[bool] = ..., endpoints: _Optional[_Iterable[_Union[EndpointLoad, _Mapping]]] = ...) -> None: ...

class EndpointLoad(_message.Message):
    __slots__ = ("address", "zone", "weight", "calls", "failures", "calls_by_status", "in_flight", "pending", "latency_p50", "latency_p99", "rtt_estimate", "health", "ejected", "balanced_over")
    class CallsByStatusEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    CALLS_BY_STATUS_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P99_FIELD_NUMBER: _ClassVar[int]
    RTT_ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    EJECTED_FIELD_NUMBER: _ClassVar[int]
    BALANCED_OVER_FIELD_NUMBER: _ClassVar[int]
    address: str
    zone: str
    weight: int
    calls: int
    failures: int
    calls_by_status: _containers.ScalarMap[str, int]
    in_flight: int
    pending: int
    latency_p50: _duration_pb2.Duration
    latency_p99: _duration_pb2.Duration
    rtt_estimate: _duration_pb2.Duration
    health: str
    ejected: bool
    balanced_over: bool
    def __init__(self, address: _Optional[str] = ..., zone: _Optional[str] = ..., weight: _Optional[int] = ..., calls: _Optional[int] = ..., failures: _Optional[int] = ..., calls_by_status: _Optional[_Mapping[str, int]] = ..., in_flight: _Optional[int] = ..., pending: _Optional[int] = ..., latency_p50: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., latency_p99: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., rtt_estimate: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., health: _Optional[str] = ..., ejected: _Optional[bool] = ..., balanced_over: _Optional[bool] = ...) -> None: ...

class LoadReportResponse(_message.Message):
    __slots__ = ("report_interval",)
    REPORT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    report_interval: _duration_pb2.Duration
    def __init__(self, report_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...
