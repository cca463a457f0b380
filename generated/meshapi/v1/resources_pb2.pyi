import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import wrappers_pb2 as _wrappers_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Cluster(_message.Message):
    __slots__ = ("name", "lb_policy", "peak_ewma", "least_request", "ring_hash", "health_check", "outlier_detection", "circuit_breaker", "connect_timeout", "panic_threshold_percent", "retry_budget", "transport", "weighted_round_robin", "prequal", "out_of_band_load_reports", "failure_penalty")
    class LbPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        LB_POLICY_UNSPECIFIED: _ClassVar[Cluster.LbPolicy]
        ROUND_ROBIN: _ClassVar[Cluster.LbPolicy]
        LEAST_REQUEST: _ClassVar[Cluster.LbPolicy]
        PEAK_EWMA: _ClassVar[Cluster.LbPolicy]
        RING_HASH: _ClassVar[Cluster.LbPolicy]
        RANDOM: _ClassVar[Cluster.LbPolicy]
        WEIGHTED_ROUND_ROBIN: _ClassVar[Cluster.LbPolicy]
        PREQUAL: _ClassVar[Cluster.LbPolicy]
    LB_POLICY_UNSPECIFIED: Cluster.LbPolicy
    ROUND_ROBIN: Cluster.LbPolicy
    LEAST_REQUEST: Cluster.LbPolicy
    PEAK_EWMA: Cluster.LbPolicy
    RING_HASH: Cluster.LbPolicy
    RANDOM: Cluster.LbPolicy
    WEIGHTED_ROUND_ROBIN: Cluster.LbPolicy
    PREQUAL: Cluster.LbPolicy
    NAME_FIELD_NUMBER: _ClassVar[int]
    LB_POLICY_FIELD_NUMBER: _ClassVar[int]
    PEAK_EWMA_FIELD_NUMBER: _ClassVar[int]
    LEAST_REQUEST_FIELD_NUMBER: _ClassVar[int]
    RING_HASH_FIELD_NUMBER: _ClassVar[int]
    HEALTH_CHECK_FIELD_NUMBER: _ClassVar[int]
    OUTLIER_DETECTION_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_BREAKER_FIELD_NUMBER: _ClassVar[int]
    CONNECT_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    PANIC_THRESHOLD_PERCENT_FIELD_NUMBER: _ClassVar[int]
    RETRY_BUDGET_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    WEIGHTED_ROUND_ROBIN_FIELD_NUMBER: _ClassVar[int]
    PREQUAL_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_BAND_LOAD_REPORTS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_PENALTY_FIELD_NUMBER: _ClassVar[int]
    name: str
    lb_policy: Cluster.LbPolicy
    peak_ewma: PeakEwma
    least_request: LeastRequest
    ring_hash: RingHash
    health_check: HealthCheck
    outlier_detection: OutlierDetection
    circuit_breaker: CircuitBreaker
    connect_timeout: _duration_pb2.Duration
    panic_threshold_percent: _wrappers_pb2.UInt32Value
    retry_budget: RetryBudget
    transport: Transport
    weighted_round_robin: WeightedRoundRobin
    prequal: Prequal
    out_of_band_load_reports: OutOfBandLoadReports
    failure_penalty: FailurePenalty
    def __init__(self, name: _Optional[str] = ..., lb_policy: _Optional[_Union[Cluster.LbPolicy, str]] = ..., peak_ewma: _Optional[_Union[PeakEwma, _Mapping]] = ..., least_request: _Optional[_Union[LeastRequest, _Mapping]] = ..., ring_hash: _Optional[_Union[RingHash, _Mapping]] = ..., health_check: _Optional[_Union[HealthCheck, _Mapping]] = ..., outlier_detection: _Optional[_Union[OutlierDetection, _Mapping]] = ..., circuit_breaker: _Optional[_Union[CircuitBreaker, _Mapping]] = ..., connect_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., panic_threshold_percent: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., retry_budget: _Optional[_Union[RetryBudget, _Mapping]] = ..., transport: _Optional[_Union[Transport, _Mapping]] = ..., weighted_round_robin: _Optional[_Union[WeightedRoundRobin, _Mapping]] = ..., prequal: _Optional[_Union[Prequal, _Mapping]] = ..., out_of_band_load_reports: _Optional[_Union[OutOfBandLoadReports, _Mapping]] = ..., failure_penalty: _Optional[_Union[FailurePenalty, _Mapping]] = ...) -> None: ...

class WeightedRoundRobin(_message.Message):
    __slots__ = ("blackout_period", "weight_expiration_period", "weight_update_period", "error_utilization_penalty")
    BLACKOUT_PERIOD_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_EXPIRATION_PERIOD_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_UPDATE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    ERROR_UTILIZATION_PENALTY_FIELD_NUMBER: _ClassVar[int]
    blackout_period: _duration_pb2.Duration
    weight_expiration_period: _duration_pb2.Duration
    weight_update_period: _duration_pb2.Duration
    error_utilization_penalty: _wrappers_pb2.DoubleValue
    def __init__(self, blackout_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., weight_expiration_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., weight_update_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., error_utilization_penalty: _Optional[_Union[_wrappers_pb2.DoubleValue, _Mapping]] = ...) -> None: ...

class Prequal(_message.Message):
    __slots__ = ("probes_per_call", "pool_size", "max_probe_age", "max_reuse", "hot_rif_quantile", "max_probes_per_second")
    PROBES_PER_CALL_FIELD_NUMBER: _ClassVar[int]
    POOL_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_PROBE_AGE_FIELD_NUMBER: _ClassVar[int]
    MAX_REUSE_FIELD_NUMBER: _ClassVar[int]
    HOT_RIF_QUANTILE_FIELD_NUMBER: _ClassVar[int]
    MAX_PROBES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    probes_per_call: _wrappers_pb2.DoubleValue
    pool_size: _wrappers_pb2.UInt32Value
    max_probe_age: _duration_pb2.Duration
    max_reuse: _wrappers_pb2.UInt32Value
    hot_rif_quantile: _wrappers_pb2.DoubleValue
    max_probes_per_second: _wrappers_pb2.UInt32Value
    def __init__(self, probes_per_call: _Optional[_Union[_wrappers_pb2.DoubleValue, _Mapping]] = ..., pool_size: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., max_probe_age: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_reuse: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., hot_rif_quantile: _Optional[_Union[_wrappers_pb2.DoubleValue, _Mapping]] = ..., max_probes_per_second: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ...) -> None: ...

class OutOfBandLoadReports(_message.Message):
    __slots__ = ("interval",)
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    interval: _duration_pb2.Duration
    def __init__(self, interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class FailurePenalty(_message.Message):
    __slots__ = ("penalty", "decay", "max_pushback")
    PENALTY_FIELD_NUMBER: _ClassVar[int]
    DECAY_FIELD_NUMBER: _ClassVar[int]
    MAX_PUSHBACK_FIELD_NUMBER: _ClassVar[int]
    penalty: _duration_pb2.Duration
    decay: _duration_pb2.Duration
    max_pushback: _duration_pb2.Duration
    def __init__(self, penalty: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., decay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_pushback: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Transport(_message.Message):
    __slots__ = ("mode", "peer_identity")
    class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        MODE_UNSPECIFIED: _ClassVar[Transport.Mode]
        PLAINTEXT: _ClassVar[Transport.Mode]
        MUTUAL_TLS: _ClassVar[Transport.Mode]
    MODE_UNSPECIFIED: Transport.Mode
    PLAINTEXT: Transport.Mode
    MUTUAL_TLS: Transport.Mode
    MODE_FIELD_NUMBER: _ClassVar[int]
    PEER_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    mode: Transport.Mode
    peer_identity: str
    def __init__(self, mode: _Optional[_Union[Transport.Mode, str]] = ..., peer_identity: _Optional[str] = ...) -> None: ...

class RetryBudget(_message.Message):
    __slots__ = ("retry_ratio", "min_retries_per_second", "ttl")
    RETRY_RATIO_FIELD_NUMBER: _ClassVar[int]
    MIN_RETRIES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    retry_ratio: _wrappers_pb2.DoubleValue
    min_retries_per_second: _wrappers_pb2.UInt32Value
    ttl: _duration_pb2.Duration
    def __init__(self, retry_ratio: _Optional[_Union[_wrappers_pb2.DoubleValue, _Mapping]] = ..., min_retries_per_second: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class PeakEwma(_message.Message):
    __slots__ = ("decay", "default_rtt")
    DECAY_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_RTT_FIELD_NUMBER: _ClassVar[int]
    decay: _duration_pb2.Duration
    default_rtt: _duration_pb2.Duration
    def __init__(self, decay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., default_rtt: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class LeastRequest(_message.Message):
    __slots__ = ("active_request_bias",)
    ACTIVE_REQUEST_BIAS_FIELD_NUMBER: _ClassVar[int]
    active_request_bias: _wrappers_pb2.DoubleValue
    def __init__(self, active_request_bias: _Optional[_Union[_wrappers_pb2.DoubleValue, _Mapping]] = ...) -> None: ...

class RingHash(_message.Message):
    __slots__ = ("minimum_ring_size",)
    MINIMUM_RING_SIZE_FIELD_NUMBER: _ClassVar[int]
    minimum_ring_size: int
    def __init__(self, minimum_ring_size: _Optional[int] = ...) -> None: ...

class HealthCheck(_message.Message):
    __slots__ = ("interval", "timeout", "unhealthy_threshold", "healthy_threshold", "service_name", "jitter_fraction")
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    UNHEALTHY_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    JITTER_FRACTION_FIELD_NUMBER: _ClassVar[int]
    interval: _duration_pb2.Duration
    timeout: _duration_pb2.Duration
    unhealthy_threshold: int
    healthy_threshold: int
    service_name: str
    jitter_fraction: _wrappers_pb2.DoubleValue
    def __init__(self, interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., unhealthy_threshold: _Optional[int] = ..., healthy_threshold: _Optional[int] = ..., service_name: _Optional[str] = ..., jitter_fraction: _Optional[_Union[_wrappers_pb2.DoubleValue, _Mapping]] = ...) -> None: ...

class OutlierDetection(_message.Message):
    __slots__ = ("consecutive_failures", "interval", "base_ejection_time", "max_ejection_time", "max_ejection_percent", "failure_status_codes", "success_rate_stdev_factor", "success_rate_request_volume", "failure_percentage_threshold")
    CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    BASE_EJECTION_TIME_FIELD_NUMBER: _ClassVar[int]
    MAX_EJECTION_TIME_FIELD_NUMBER: _ClassVar[int]
    MAX_EJECTION_PERCENT_FIELD_NUMBER: _ClassVar[int]
    FAILURE_STATUS_CODES_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_STDEV_FACTOR_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_REQUEST_VOLUME_FIELD_NUMBER: _ClassVar[int]
    FAILURE_PERCENTAGE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    consecutive_failures: _wrappers_pb2.UInt32Value
    interval: _duration_pb2.Duration
    base_ejection_time: _duration_pb2.Duration
    max_ejection_time: _duration_pb2.Duration
    max_ejection_percent: _wrappers_pb2.UInt32Value
    failure_status_codes: _containers.RepeatedScalarFieldContainer[int]
    success_rate_stdev_factor: _wrappers_pb2.UInt32Value
    success_rate_request_volume: _wrappers_pb2.UInt32Value
    failure_percentage_threshold: _wrappers_pb2.UInt32Value
    def __init__(self, consecutive_failures: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., base_ejection_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_ejection_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_ejection_percent: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., failure_status_codes: _Optional[_Iterable[int]] = ..., success_rate_stdev_factor: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., success_rate_request_volume: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., failure_percentage_threshold: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ...) -> None: ...

class CircuitBreaker(_message.Message):
    __slots__ = ("max_requests", "max_retries", "max_pending_requests", "max_connections_per_endpoint")
    MAX_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    MAX_PENDING_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONNECTIONS_PER_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    max_requests: _wrappers_pb2.UInt32Value
    max_retries: _wrappers_pb2.UInt32Value
    max_pending_requests: _wrappers_pb2.UInt32Value
    max_connections_per_endpoint: _wrappers_pb2.UInt32Value
    def __init__(self, max_requests: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., max_retries: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., max_pending_requests: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., max_connections_per_endpoint: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ...) -> None: ...

class EndpointSet(_message.Message):
    __slots__ = ("cluster", "endpoints")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    endpoints: _containers.RepeatedCompositeFieldContainer[Endpoint]
    def __init__(self, cluster: _Optional[str] = ..., endpoints: _Optional[_Iterable[_Union[Endpoint, _Mapping]]] = ...) -> None: ...

class Endpoint(_message.Message):
    __slots__ = ("address", "weight", "zone", "metadata", "health_status")
    class HealthStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        HEALTH_STATUS_UNSPECIFIED: _ClassVar[Endpoint.HealthStatus]
        HEALTHY: _ClassVar[Endpoint.HealthStatus]
        UNHEALTHY: _ClassVar[Endpoint.HealthStatus]
        DRAINING: _ClassVar[Endpoint.HealthStatus]
    HEALTH_STATUS_UNSPECIFIED: Endpoint.HealthStatus
    HEALTHY: Endpoint.HealthStatus
    UNHEALTHY: Endpoint.HealthStatus
    DRAINING: Endpoint.HealthStatus
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    HEALTH_STATUS_FIELD_NUMBER: _ClassVar[int]
    address: str
    weight: _wrappers_pb2.UInt32Value
    zone: str
    metadata: _containers.ScalarMap[str, str]
    health_status: Endpoint.HealthStatus
    def __init__(self, address: _Optional[str] = ..., weight: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., zone: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., health_status: _Optional[_Union[Endpoint.HealthStatus, str]] = ...) -> None: ...

class RouteConfig(_message.Message):
    __slots__ = ("name", "virtual_hosts", "services")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_HOSTS_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    name: str
    virtual_hosts: _containers.RepeatedCompositeFieldContainer[VirtualHost]
    services: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., virtual_hosts: _Optional[_Iterable[_Union[VirtualHost, _Mapping]]] = ..., services: _Optional[_Iterable[str]] = ...) -> None: ...

class VirtualHost(_message.Message):
    __slots__ = ("name", "domains", "routes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DOMAINS_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    domains: _containers.RepeatedScalarFieldContainer[str]
    routes: _containers.RepeatedCompositeFieldContainer[Route]
    def __init__(self, name: _Optional[str] = ..., domains: _Optional[_Iterable[str]] = ..., routes: _Optional[_Iterable[_Union[Route, _Mapping]]] = ...) -> None: ...

class Route(_message.Message):
    __slots__ = ("name", "match", "route")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    name: str
    match: RouteMatch
    route: RouteAction
    def __init__(self, name: _Optional[str] = ..., match: _Optional[_Union[RouteMatch, _Mapping]] = ..., route: _Optional[_Union[RouteAction, _Mapping]] = ...) -> None: ...

class RouteMatch(_message.Message):
    __slots__ = ("path", "prefix", "regex", "headers")
    PATH_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    REGEX_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    path: str
    prefix: str
    regex: str
    headers: _containers.RepeatedCompositeFieldContainer[HeaderMatcher]
    def __init__(self, path: _Optional[str] = ..., prefix: _Optional[str] = ..., regex: _Optional[str] = ..., headers: _Optional[_Iterable[_Union[HeaderMatcher, _Mapping]]] = ...) -> None: ...

class HeaderMatcher(_message.Message):
    __slots__ = ("name", "exact", "prefix", "suffix", "regex", "present", "invert")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    SUFFIX_FIELD_NUMBER: _ClassVar[int]
    REGEX_FIELD_NUMBER: _ClassVar[int]
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    INVERT_FIELD_NUMBER: _ClassVar[int]
    name: str
    exact: str
    prefix: str
    suffix: str
    regex: str
    present: bool
    invert: bool
    def __init__(self, name: _Optional[str] = ..., exact: _Optional[str] = ..., prefix: _Optional[str] = ..., suffix: _Optional[str] = ..., regex: _Optional[str] = ..., present: _Optional[bool] = ..., invert: _Optional[bool] = ...) -> None: ...

class RouteAction(_message.Message):
    __slots__ = ("cluster", "weighted_clusters", "timeout", "retry_policy", "request_headers_to_add", "request_headers_to_remove", "hash_policy", "hedge_policy", "idle_timeout", "retry_buffer_limit", "rate_limit", "fault", "mirror", "keep_load_reports")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    WEIGHTED_CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_HEADERS_TO_ADD_FIELD_NUMBER: _ClassVar[int]
    REQUEST_HEADERS_TO_REMOVE_FIELD_NUMBER: _ClassVar[int]
    HASH_POLICY_FIELD_NUMBER: _ClassVar[int]
    HEDGE_POLICY_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    RETRY_BUFFER_LIMIT_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    FAULT_FIELD_NUMBER: _ClassVar[int]
    MIRROR_FIELD_NUMBER: _ClassVar[int]
    KEEP_LOAD_REPORTS_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    weighted_clusters: _containers.RepeatedCompositeFieldContainer[ClusterWeight]
    timeout: _duration_pb2.Duration
    retry_policy: RetryPolicy
    request_headers_to_add: _containers.RepeatedCompositeFieldContainer[HeaderValue]
    request_headers_to_remove: _containers.RepeatedScalarFieldContainer[str]
    hash_policy: HashPolicy
    hedge_policy: HedgePolicy
    idle_timeout: _duration_pb2.Duration
    retry_buffer_limit: _wrappers_pb2.UInt32Value
    rate_limit: RateLimit
    fault: Fault
    mirror: Mirror
    keep_load_reports: bool
    def __init__(self, cluster: _Optional[str] = ..., weighted_clusters: _Optional[_Iterable[_Union[ClusterWeight, _Mapping]]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., retry_policy: _Optional[_Union[RetryPolicy, _Mapping]] = ..., request_headers_to_add: _Optional[_Iterable[_Union[HeaderValue, _Mapping]]] = ..., request_headers_to_remove: _Optional[_Iterable[str]] = ..., hash_policy: _Optional[_Union[HashPolicy, _Mapping]] = ..., hedge_policy: _Optional[_Union[HedgePolicy, _Mapping]] = ..., idle_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., retry_buffer_limit: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., rate_limit: _Optional[_Union[RateLimit, _Mapping]] = ..., fault: _Optional[_Union[Fault, _Mapping]] = ..., mirror: _Optional[_Union[Mirror, _Mapping]] = ..., keep_load_reports: _Optional[bool] = ...) -> None: ...

class ClusterWeight(_message.Message):
    __slots__ = ("name", "weight")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    weight: int
    def __init__(self, name: _Optional[str] = ..., weight: _Optional[int] = ...) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ("retry_on", "num_retries", "per_try_timeout", "retry_back_off")
    RETRY_ON_FIELD_NUMBER: _ClassVar[int]
    NUM_RETRIES_FIELD_NUMBER: _ClassVar[int]
    PER_TRY_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    RETRY_BACK_OFF_FIELD_NUMBER: _ClassVar[int]
    retry_on: _containers.RepeatedScalarFieldContainer[str]
    num_retries: _wrappers_pb2.UInt32Value
    per_try_timeout: _duration_pb2.Duration
    retry_back_off: RetryBackOff
    def __init__(self, retry_on: _Optional[_Iterable[str]] = ..., num_retries: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., per_try_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., retry_back_off: _Optional[_Union[RetryBackOff, _Mapping]] = ...) -> None: ...

class RetryBackOff(_message.Message):
    __slots__ = ("base_interval", "max_interval")
    BASE_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    MAX_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    base_interval: _duration_pb2.Duration
    max_interval: _duration_pb2.Duration
    def __init__(self, base_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class HedgePolicy(_message.Message):
    __slots__ = ("hedge_after", "max_attempts", "hedge_on_statuses")
    HEDGE_AFTER_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    HEDGE_ON_STATUSES_FIELD_NUMBER: _ClassVar[int]
    hedge_after: _duration_pb2.Duration
    max_attempts: _wrappers_pb2.UInt32Value
    hedge_on_statuses: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, hedge_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_attempts: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., hedge_on_statuses: _Optional[_Iterable[str]] = ...) -> None: ...

class RateLimit(_message.Message):
    __slots__ = ("requests_per_second", "burst", "key_header", "max_keys")
    REQUESTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    BURST_FIELD_NUMBER: _ClassVar[int]
    KEY_HEADER_FIELD_NUMBER: _ClassVar[int]
    MAX_KEYS_FIELD_NUMBER: _ClassVar[int]
    requests_per_second: float
    burst: _wrappers_pb2.UInt32Value
    key_header: str
    max_keys: _wrappers_pb2.UInt32Value
    def __init__(self, requests_per_second: _Optional[float] = ..., burst: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., key_header: _Optional[str] = ..., max_keys: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ...) -> None: ...

class Fault(_message.Message):
    __slots__ = ("delay", "abort", "header_gate")
    DELAY_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    HEADER_GATE_FIELD_NUMBER: _ClassVar[int]
    delay: FaultDelay
    abort: FaultAbort
    header_gate: str
    def __init__(self, delay: _Optional[_Union[FaultDelay, _Mapping]] = ..., abort: _Optional[_Union[FaultAbort, _Mapping]] = ..., header_gate: _Optional[str] = ...) -> None: ...

class FaultDelay(_message.Message):
    __slots__ = ("fixed_delay", "percent")
    FIXED_DELAY_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    fixed_delay: _duration_pb2.Duration
    percent: float
    def __init__(self, fixed_delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., percent: _Optional[float] = ...) -> None: ...

class FaultAbort(_message.Message):
    __slots__ = ("grpc_status", "http_status", "percent")
    GRPC_STATUS_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    grpc_status: str
    http_status: int
    percent: float
    def __init__(self, grpc_status: _Optional[str] = ..., http_status: _Optional[int] = ..., percent: _Optional[float] = ...) -> None: ...

class Mirror(_message.Message):
    __slots__ = ("cluster", "percent", "max_in_flight")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    PERCENT_FIELD_NUMBER: _ClassVar[int]
    MAX_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    percent: _wrappers_pb2.DoubleValue
    max_in_flight: _wrappers_pb2.UInt32Value
    def __init__(self, cluster: _Optional[str] = ..., percent: _Optional[_Union[_wrappers_pb2.DoubleValue, _Mapping]] = ..., max_in_flight: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ...) -> None: ...

class HeaderValue(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class HashPolicy(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: str
    def __init__(self, header: _Optional[str] = ...) -> None: ...

class Listener(_message.Message):
    __slots__ = ("name", "route_config")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROUTE_CONFIG_FIELD_NUMBER: _ClassVar[int]
    name: str
    route_config: str
    def __init__(self, name: _Optional[str] = ..., route_config: _Optional[str] = ...) -> None: ...

class AuthorizationPolicy(_message.Message):
    __slots__ = ("name", "service", "action", "rules", "dry_run")
    class Action(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        ACTION_UNSPECIFIED: _ClassVar[AuthorizationPolicy.Action]
        ALLOW: _ClassVar[AuthorizationPolicy.Action]
        DENY: _ClassVar[AuthorizationPolicy.Action]
    ACTION_UNSPECIFIED: AuthorizationPolicy.Action
    ALLOW: AuthorizationPolicy.Action
    DENY: AuthorizationPolicy.Action
    NAME_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    name: str
    service: str
    action: AuthorizationPolicy.Action
    rules: _containers.RepeatedCompositeFieldContainer[AuthorizationRule]
    dry_run: bool
    def __init__(self, name: _Optional[str] = ..., service: _Optional[str] = ..., action: _Optional[_Union[AuthorizationPolicy.Action, str]] = ..., rules: _Optional[_Iterable[_Union[AuthorizationRule, _Mapping]]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class AuthorizationRule(_message.Message):
    __slots__ = ("to", "when")
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    WHEN_FIELD_NUMBER: _ClassVar[int]
    to: _containers.RepeatedScalarFieldContainer[str]
    when: _containers.RepeatedCompositeFieldContainer[HeaderMatcher]
    def __init__(self, to: _Optional[_Iterable[str]] = ..., when: _Optional[_Iterable[_Union[HeaderMatcher, _Mapping]]] = ..., **kwargs) -> None: ...

class MeshConfig(_message.Message):
    __slots__ = ("clusters", "endpoints", "routes", "listeners", "authorization_policies")
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    LISTENERS_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZATION_POLICIES_FIELD_NUMBER: _ClassVar[int]
    clusters: _containers.RepeatedCompositeFieldContainer[Cluster]
    endpoints: _containers.RepeatedCompositeFieldContainer[EndpointSet]
    routes: _containers.RepeatedCompositeFieldContainer[RouteConfig]
    listeners: _containers.RepeatedCompositeFieldContainer[Listener]
    authorization_policies: _containers.RepeatedCompositeFieldContainer[AuthorizationPolicy]
    def __init__(self, clusters: _Optional[_Iterable[_Union[Cluster, _Mapping]]] = ..., endpoints: _Optional[_Iterable[_Union[EndpointSet, _Mapping]]] = ..., routes: _Optional[_Iterable[_Union[RouteConfig, _Mapping]]] = ..., listeners: _Optional[_Iterable[_Union[Listener, _Mapping]]] = ..., authorization_policies: _Optional[_Iterable[_Union[AuthorizationPolicy, _Mapping]]] = ...) -> None: ...
