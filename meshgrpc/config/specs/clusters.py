"""Cluster and endpoint specs: balancing, health checks, outlier detection,
circuit breakers, retry budgets and timeouts, with the defaults resources.proto
documents declared here once."""

from __future__ import annotations

import dataclasses

from meshapi.v1 import resources_pb2 as pb
from meshgrpc.addresses import split_address
from meshgrpc.config.specs.common import default_of, duration_or, wrapped_or
from meshgrpc.errors import ConfigError, FieldError

# gRPC codes counted as outlier failures by default: UNKNOWN, INTERNAL, UNAVAILABLE, DATA_LOSS.
DEFAULT_FAILURE_CODES = frozenset({2, 13, 14, 15})


@dataclasses.dataclass(frozen=True, slots=True)
class PeakEwmaSpec:
    decay: float = 10.0  # seconds: time constant of the decay towards new samples
    default_rtt: float = 0.030  # seconds: the estimate a new endpoint starts with


@dataclasses.dataclass(frozen=True, slots=True)
class LeastRequestSpec:
    active_request_bias: float = 1.0  # exponent on (in_flight + 1) when weights differ


@dataclasses.dataclass(frozen=True, slots=True)
class WeightedRoundRobinSpec:
    blackout_period: float = 10.0  # seconds an endpoint must report before its weight counts
    weight_expiration_period: float = 180.0  # seconds after which an unrefreshed weight is dropped
    weight_update_period: float = 1.0  # seconds between schedule rebuilds
    error_utilization_penalty: float = 1.0  # multiplier on eps / qps


@dataclasses.dataclass(frozen=True, slots=True)
class PrequalSpec:
    probes_per_call: float = 3.0  # the paper's r_probe
    pool_size: int = 16  # the paper's m
    max_probe_age: float = 1.0  # seconds
    max_reuse: int = 16  # cap on the paper's reuse budget b_reuse
    hot_rif_quantile: float = 0.84  # the paper's q_rif
    max_probes_per_second: int = 500  # probing cost bound, per proxy and cluster


@dataclasses.dataclass(frozen=True, slots=True)
class OutOfBandLoadReportsSpec:
    interval: float = 1.0  # seconds between reports asked of each endpoint


@dataclasses.dataclass(frozen=True, slots=True)
class FailurePenaltySpec:
    penalty: float = 0.1  # seconds added to PEAK_EWMA's estimate per recent failure; 0 disables
    decay: float = 5.0  # seconds: time constant of the penalty's decay
    max_pushback: float = 10.0  # seconds: longest server pushback honoured; 0 ignores pushback


@dataclasses.dataclass(frozen=True, slots=True)
class RingHashSpec:
    minimum_ring_size: int = 1024  # ring entries; 1024-1048576


@dataclasses.dataclass(frozen=True, slots=True)
class HealthCheckSpec:
    interval: float = 5.0  # seconds between checks of one endpoint
    timeout: float = 1.0  # seconds a check may take
    unhealthy_threshold: int = 2  # consecutive failures that take an endpoint out
    healthy_threshold: int = 1  # consecutive passes that bring it back
    service_name: str = ""  # grpc.health.v1 service ("" = the server as a whole)
    jitter_fraction: float = 0.1  # random extra delay per interval, as a fraction of it


@dataclasses.dataclass(frozen=True, slots=True)
class OutlierSpec:
    consecutive_failures: int = 5  # failed calls in a row that eject; 0 disables
    interval: float = 10.0  # seconds between sweeps
    base_ejection_time: float = 30.0  # seconds, times the number of ejections so far
    max_ejection_time: float = 300.0  # seconds, the longest ejection
    max_ejection_percent: int = 10  # of the cluster's endpoints at once
    failure_codes: frozenset[int] = DEFAULT_FAILURE_CODES  # gRPC codes counted as failures
    stdev_factor: float = 1.9  # success_rate_stdev_factor / 1000; 0 disables
    success_rate_volume: int = 100  # calls per interval to count in success-rate ejection
    failure_percentage_threshold: int | None = None  # percent; None disables


@dataclasses.dataclass(frozen=True, slots=True)
class CircuitBreakerSpec:
    max_requests: int = 1024  # calls in flight to the cluster
    max_retries: int = 1024  # retries and hedges in flight to the cluster (the budget is the finer limit)
    max_pending_requests: int = 1024  # calls waiting for a connection or stream slot
    max_connections_per_endpoint: int = 8  # upstream HTTP/2 connections per endpoint


@dataclasses.dataclass(frozen=True, slots=True)
class RetryBudgetSpec:
    retry_ratio: float = 0.2  # retries per original call, over the window
    min_retries_per_second: int = 10  # retries allowed whatever the call rate
    ttl: float = 10.0  # seconds: the window calls and retries are counted over


@dataclasses.dataclass(frozen=True, slots=True)
class MutualTlsSpec:
    """Transport MUTUAL_TLS: the SPIFFE ID every endpoint must present."""

    peer_identity: str = ""  # "": spiffe://<the proxy's trust domain>/service/<the cluster's name>


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterSpec:
    name: str
    lb_policy: str = "PEAK_EWMA"  # a Cluster.LbPolicy name; UNSPECIFIED means this
    peak_ewma: PeakEwmaSpec = PeakEwmaSpec()
    least_request: LeastRequestSpec = LeastRequestSpec()
    ring_hash: RingHashSpec = RingHashSpec()
    health_check: HealthCheckSpec | None = None  # None: no active checks
    outlier_detection: OutlierSpec | None = None  # None: no ejection
    circuit_breaker: CircuitBreakerSpec = CircuitBreakerSpec()
    connect_timeout: float = 1.0  # seconds to open a connection to an endpoint
    panic_threshold_percent: int = 50  # below this share usable, balance over all
    retry_budget: RetryBudgetSpec = RetryBudgetSpec()
    weighted_round_robin: WeightedRoundRobinSpec = WeightedRoundRobinSpec()
    prequal: PrequalSpec = PrequalSpec()
    out_of_band_load_reports: OutOfBandLoadReportsSpec | None = None  # None: no stream
    failure_penalty: FailurePenaltySpec = FailurePenaltySpec()
    mutual_tls: MutualTlsSpec | None = None  # None: PLAINTEXT (h2c) upstream connections


@dataclasses.dataclass(frozen=True, slots=True)
class EndpointSpec:
    address: str  # "host:port" as configured
    host: str
    port: int
    weight: int = 1  # relative share of calls, 1-10000
    zone: str = ""
    health: str = "HEALTHY"  # HEALTHY, UNHEALTHY or DRAINING as the control plane knows it
    metadata: tuple[tuple[str, str], ...] = ()  # sorted (key, value) labels


# ---------------------------------------------------------------- from protobuf

def cluster_spec(c: pb.Cluster) -> ClusterSpec:
    """The spec of a validated Cluster, every unset field at its default."""
    return ClusterSpec(
        name=c.name,
        lb_policy=pb.Cluster.LbPolicy.Name(c.lb_policy) if c.lb_policy else default_of(ClusterSpec, "lb_policy"),
        peak_ewma=PeakEwmaSpec(decay=duration_or(c.peak_ewma, "decay", PeakEwmaSpec),
                               default_rtt=duration_or(c.peak_ewma, "default_rtt", PeakEwmaSpec)),
        least_request=LeastRequestSpec(wrapped_or(c.least_request, "active_request_bias", LeastRequestSpec)),
        ring_hash=RingHashSpec(c.ring_hash.minimum_ring_size or default_of(RingHashSpec, "minimum_ring_size")),
        health_check=health_check_spec(c.health_check) if c.HasField("health_check") else None,
        outlier_detection=outlier_spec(c.outlier_detection) if c.HasField("outlier_detection") else None,
        circuit_breaker=circuit_breaker_spec(c.circuit_breaker),
        connect_timeout=duration_or(c, "connect_timeout", ClusterSpec),
        panic_threshold_percent=min(100, wrapped_or(c, "panic_threshold_percent", ClusterSpec)),
        retry_budget=retry_budget_spec(c.retry_budget),
        weighted_round_robin=weighted_round_robin_spec(c.weighted_round_robin),
        prequal=prequal_spec(c.prequal),
        out_of_band_load_reports=(OutOfBandLoadReportsSpec(duration_or(c.out_of_band_load_reports, "interval",
                                                                       OutOfBandLoadReportsSpec))
                                  if c.HasField("out_of_band_load_reports") else None),
        failure_penalty=failure_penalty_spec(c.failure_penalty),
        mutual_tls=MutualTlsSpec(c.transport.peer_identity)
        if c.transport.mode == pb.Transport.MUTUAL_TLS else None,
    )


def weighted_round_robin_spec(w: pb.WeightedRoundRobin) -> WeightedRoundRobinSpec:
    return WeightedRoundRobinSpec(
        blackout_period=duration_or(w, "blackout_period", WeightedRoundRobinSpec),
        weight_expiration_period=duration_or(w, "weight_expiration_period", WeightedRoundRobinSpec),
        weight_update_period=duration_or(w, "weight_update_period", WeightedRoundRobinSpec),
        error_utilization_penalty=wrapped_or(w, "error_utilization_penalty", WeightedRoundRobinSpec),
    )


def prequal_spec(p: pb.Prequal) -> PrequalSpec:
    return PrequalSpec(
        probes_per_call=wrapped_or(p, "probes_per_call", PrequalSpec),
        pool_size=wrapped_or(p, "pool_size", PrequalSpec),
        max_probe_age=duration_or(p, "max_probe_age", PrequalSpec),
        max_reuse=wrapped_or(p, "max_reuse", PrequalSpec),
        hot_rif_quantile=wrapped_or(p, "hot_rif_quantile", PrequalSpec),
        max_probes_per_second=wrapped_or(p, "max_probes_per_second", PrequalSpec),
    )


def failure_penalty_spec(f: pb.FailurePenalty) -> FailurePenaltySpec:
    return FailurePenaltySpec(
        penalty=duration_or(f, "penalty", FailurePenaltySpec),
        decay=duration_or(f, "decay", FailurePenaltySpec),
        max_pushback=duration_or(f, "max_pushback", FailurePenaltySpec),
    )


def health_check_spec(h: pb.HealthCheck) -> HealthCheckSpec:
    return HealthCheckSpec(
        interval=duration_or(h, "interval", HealthCheckSpec),
        timeout=duration_or(h, "timeout", HealthCheckSpec),
        unhealthy_threshold=h.unhealthy_threshold or default_of(HealthCheckSpec, "unhealthy_threshold"),
        healthy_threshold=h.healthy_threshold or default_of(HealthCheckSpec, "healthy_threshold"),
        service_name=h.service_name,
        jitter_fraction=min(1.0, max(0.0, wrapped_or(h, "jitter_fraction", HealthCheckSpec))),
    )


def outlier_spec(o: pb.OutlierDetection) -> OutlierSpec:
    return OutlierSpec(
        consecutive_failures=wrapped_or(o, "consecutive_failures", OutlierSpec),
        interval=duration_or(o, "interval", OutlierSpec),
        base_ejection_time=duration_or(o, "base_ejection_time", OutlierSpec),
        max_ejection_time=duration_or(o, "max_ejection_time", OutlierSpec),
        max_ejection_percent=wrapped_or(o, "max_ejection_percent", OutlierSpec),
        failure_codes=frozenset(o.failure_status_codes) or default_of(OutlierSpec, "failure_codes"),
        stdev_factor=(o.success_rate_stdev_factor.value / 1000.0 if o.HasField("success_rate_stdev_factor")
                      else default_of(OutlierSpec, "stdev_factor")),
        success_rate_volume=wrapped_or(o, "success_rate_request_volume", OutlierSpec, "success_rate_volume"),
        failure_percentage_threshold=wrapped_or(o, "failure_percentage_threshold", OutlierSpec),
    )


def circuit_breaker_spec(b: pb.CircuitBreaker) -> CircuitBreakerSpec:
    return CircuitBreakerSpec(
        max_requests=wrapped_or(b, "max_requests", CircuitBreakerSpec),
        max_retries=wrapped_or(b, "max_retries", CircuitBreakerSpec),
        max_pending_requests=wrapped_or(b, "max_pending_requests", CircuitBreakerSpec),
        max_connections_per_endpoint=wrapped_or(b, "max_connections_per_endpoint", CircuitBreakerSpec),
    )


def retry_budget_spec(r: pb.RetryBudget) -> RetryBudgetSpec:
    return RetryBudgetSpec(
        retry_ratio=wrapped_or(r, "retry_ratio", RetryBudgetSpec),
        min_retries_per_second=wrapped_or(r, "min_retries_per_second", RetryBudgetSpec),
        ttl=duration_or(r, "ttl", RetryBudgetSpec),
    )


_HEALTH = {pb.Endpoint.UNHEALTHY: "UNHEALTHY", pb.Endpoint.DRAINING: "DRAINING"}


def endpoint_specs(s: pb.EndpointSet | None) -> tuple[EndpointSpec, ...]:
    """The endpoints of a validated EndpointSet in order, the first of a repeated
    address kept. Raises ConfigError naming every address that does not parse."""
    if s is None:
        return ()
    seen: dict[str, EndpointSpec] = {}
    errors = []
    for i, e in enumerate(s.endpoints):
        if e.address in seen:
            continue
        try:
            host, port = split_address(e.address)
        except ValueError as err:
            errors.append(FieldError(f"endpoints[{s.cluster}].endpoints[{i}].address", str(err)))
            continue
        seen[e.address] = EndpointSpec(
            address=e.address, host=host, port=port,
            weight=e.weight.value if e.HasField("weight") else default_of(EndpointSpec, "weight"),
            zone=e.zone, health=_HEALTH.get(e.health_status, "HEALTHY"),
            metadata=tuple(sorted(e.metadata.items())))
    if errors:
        raise ConfigError(errors)
    return tuple(seen.values())

