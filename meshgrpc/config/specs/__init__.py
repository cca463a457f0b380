"""Typed, frozen specs: the one place protobuf config becomes what the proxy acts on.

The control plane and the proxy validate `meshapi.v1` messages (validate.py); the
proxy then turns each validated resource into a spec once per config update
(`cluster_spec`, `endpoint_specs`, `route_config_spec`; the control plane's
translation for proxyless clients uses them too, with `listener_spec`) and its call path reads
specs only, never protobuf. Every default is declared once, on its spec field,
with the meaning documented in resources.proto; validation reads the same
defaults. Specs compare by value, so "did this cluster change?" is `==`.
"""

from meshgrpc.config.specs.authz import AuthorizationPolicySpec, AuthorizationRuleSpec, authorization_policy_spec
from meshgrpc.config.specs.clusters import (
    CircuitBreakerSpec, ClusterSpec, EndpointSpec, FailurePenaltySpec, HealthCheckSpec, LeastRequestSpec,
    MutualTlsSpec, OutlierSpec, OutOfBandLoadReportsSpec, PeakEwmaSpec, PrequalSpec, RetryBudgetSpec, RingHashSpec,
    WeightedRoundRobinSpec, cluster_spec, endpoint_specs, outlier_spec,
)
from meshgrpc.config.specs.common import describe, duration, seconds
from meshgrpc.config.specs.routes import (
    ActionSpec, FaultSpec, HeaderMatcherSpec, HedgeSpec, ListenerSpec, MatchSpec, MirrorSpec, RateLimitSpec,
    RetrySpec, RouteConfigSpec, RouteSpec, VirtualHostSpec, listener_spec, route_config_spec,
)

__all__ = [
    "AuthorizationPolicySpec", "AuthorizationRuleSpec", "authorization_policy_spec",
    "ActionSpec", "CircuitBreakerSpec", "ClusterSpec", "EndpointSpec", "FailurePenaltySpec", "FaultSpec",
    "HeaderMatcherSpec", "HealthCheckSpec", "HedgeSpec", "LeastRequestSpec", "ListenerSpec", "MatchSpec",
    "MirrorSpec", "MutualTlsSpec", "OutlierSpec", "OutOfBandLoadReportsSpec", "PeakEwmaSpec", "PrequalSpec",
    "RateLimitSpec", "RetryBudgetSpec", "RetrySpec", "RingHashSpec", "RouteConfigSpec", "WeightedRoundRobinSpec",
    "RouteSpec", "VirtualHostSpec", "cluster_spec", "describe", "duration", "endpoint_specs", "listener_spec",
    "outlier_spec",
    "route_config_spec",
    "seconds",
]
