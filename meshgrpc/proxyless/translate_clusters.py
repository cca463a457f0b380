"""Clusters and their endpoints as gRPC's xDS client reads them. Pure: typed specs
in, Envoy messages and gap lines (gaps.py) out.

- Cluster: EDS over ADS (A27); `lb_policy` ROUND_ROBIN and RING_HASH map directly
  (A42: XX_HASH, the only hash gRPC has). PEAK_EWMA, LEAST_REQUEST, RANDOM and
  PREQUAL have no C-core equivalent (least request, A48, is Java-only);
  WEIGHTED_ROUND_ROBIN has one (A58's client_side_weighted_round_robin, fed by
  the ORCA reports meshgrpc.orca backends send) that this translation does not
  produce yet. They are served as round robin and the substitution is a gap line. Circuit breaking is `max_requests` only (A32); outlier detection is
  success rate and failure percentage only (A50).
- ClusterLoadAssignment: one locality per zone, at priority 0, weighted by the
  sum of its endpoints' weights (gRPC ignores a locality of weight 0); endpoint
  weights as `load_balancing_weight`; health as Envoy's HealthStatus, so the
  client skips UNHEALTHY and DRAINING endpoints. gRPC takes only IP addresses in
  EDS and NACKs a duplicate: such endpoints are left out, each a gap line.
Fields the mesh's proxies act on and gRPC does not are gap lines when the config
sets them to something other than their default.
"""

from __future__ import annotations

import ipaddress

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from google.protobuf import wrappers_pb2

from meshgrpc.config.specs import ClusterSpec, EndpointSpec, OutlierSpec
from meshgrpc.config.specs.common import default_of, duration
from meshgrpc.proxyless.envoy_types import ads_source
from meshgrpc.proxyless.gaps import Gaps

_POLICY = {"ROUND_ROBIN": cluster_pb2.Cluster.ROUND_ROBIN, "RING_HASH": cluster_pb2.Cluster.RING_HASH}
_SUBSTITUTE = {
    "PEAK_EWMA": "gRPC has no peak-EWMA balancer",
    "LEAST_REQUEST": "gRPC's least request (gRFC A48) is Java-only",
    "RANDOM": "gRPC has no random balancer",
    "WEIGHTED_ROUND_ROBIN": "meshgrpc does not translate it to gRPC's client_side_weighted_round_robin yet",
    "PREQUAL": "gRPC has no probing balancer",
}
_HEALTH = {"HEALTHY": health_check_pb2.HEALTHY, "UNHEALTHY": health_check_pb2.UNHEALTHY,
           "DRAINING": health_check_pb2.DRAINING}
# Fields gRPC's xDS client has no equivalent for, reported when set otherwise than their default.
_UNSUPPORTED_LIMITS = {
    "connect_timeout": "gRPC uses its own connect timeout and backoff (20 s minimum)",
    "panic_threshold_percent": "gRPC has no panic mode; it balances over the usable endpoints only",
    "retry_budget": "gRPC bounds retries per call (num_retries), not per cluster",
}
_UNSUPPORTED_BREAKERS = ("max_retries", "max_pending_requests", "max_connections_per_endpoint")


def cluster(spec: ClusterSpec) -> tuple[cluster_pb2.Cluster, list[str]]:
    gaps = Gaps(f"cluster {spec.name}")
    out = cluster_pb2.Cluster(name=spec.name, type=cluster_pb2.Cluster.EDS, lb_policy=_lb_policy(spec, gaps))
    out.eds_cluster_config.eds_config.CopyFrom(ads_source())
    out.eds_cluster_config.service_name = spec.name
    if spec.lb_policy == "RING_HASH":
        out.ring_hash_lb_config.minimum_ring_size.value = spec.ring_hash.minimum_ring_size
        out.ring_hash_lb_config.hash_function = cluster_pb2.Cluster.RingHashLbConfig.XX_HASH
    out.circuit_breakers.thresholds.append(circuit_breaker_pb2.CircuitBreakers.Thresholds(
        max_requests=wrappers_pb2.UInt32Value(value=spec.circuit_breaker.max_requests)))
    if spec.outlier_detection is not None:
        out.outlier_detection.CopyFrom(outlier_detection(spec.outlier_detection, gaps))
    _cluster_gaps(spec, gaps)
    return out, gaps.lines


def _lb_policy(spec: ClusterSpec, gaps: Gaps) -> int:
    if spec.lb_policy in _POLICY:
        return _POLICY[spec.lb_policy]
    gaps.add("lb_policy", f"{spec.lb_policy} is served as round_robin ({_SUBSTITUTE[spec.lb_policy]})")
    return cluster_pb2.Cluster.ROUND_ROBIN


def _cluster_gaps(spec: ClusterSpec, gaps: Gaps) -> None:
    for field, why in _UNSUPPORTED_LIMITS.items():
        if getattr(spec, field) != default_of(ClusterSpec, field):
            gaps.add(field, f"{why}; not applied")
    breaker = spec.circuit_breaker
    for field in _UNSUPPORTED_BREAKERS:
        if getattr(breaker, field) != default_of(type(breaker), field):
            gaps.add(f"circuit_breaker.{field}", "gRPC limits only max_requests (gRFC A32); not applied")
    if spec.mutual_tls is not None:
        # gRFC A29 (xDS mTLS) needs certificate providers in the client's bootstrap, which
        # meshgrpc does not configure: the client would connect in plaintext and be refused.
        gaps.add("transport", "MUTUAL_TLS is not served to proxyless clients (gRFC A29 certificate providers); "
                              "they connect in plaintext, which the endpoints' inbound listeners refuse")
    if spec.health_check is not None:
        gaps.add("health_check", "gRPC clients do not run active health checks; they skip only endpoints "
                                 "whose health_status is UNHEALTHY or DRAINING")
    if spec.out_of_band_load_reports is not None:
        gaps.add("out_of_band_load_reports", "gRPC opens load-report streams only for its weighted round robin; "
                                             "not applied")
    if spec.failure_penalty != default_of(ClusterSpec, "failure_penalty"):
        gaps.add("failure_penalty", "gRPC's balancers have no failure penalty or pushback; not applied")


def outlier_detection(spec: OutlierSpec, gaps: Gaps) -> outlier_detection_pb2.OutlierDetection:
    """Success-rate and failure-percentage ejection (gRFC A50); gRPC counts every
    non-OK status as a failure and has no consecutive-failure ejection."""
    out = outlier_detection_pb2.OutlierDetection(
        interval=duration(spec.interval), base_ejection_time=duration(spec.base_ejection_time),
        max_ejection_time=duration(spec.max_ejection_time),
        max_ejection_percent=wrappers_pb2.UInt32Value(value=spec.max_ejection_percent),
        success_rate_request_volume=wrappers_pb2.UInt32Value(value=spec.success_rate_volume),
        # gRPC ejects on success rate unless enforcing_success_rate is 0 (A50).
        enforcing_success_rate=wrappers_pb2.UInt32Value(value=100 if spec.stdev_factor > 0 else 0),
        success_rate_stdev_factor=wrappers_pb2.UInt32Value(value=round(spec.stdev_factor * 1000)))
    if spec.failure_percentage_threshold is not None:
        out.failure_percentage_threshold.value = spec.failure_percentage_threshold
        out.enforcing_failure_percentage.value = 100
    if spec.consecutive_failures > 0:
        gaps.add("outlier_detection.consecutive_failures",
                 f"{spec.consecutive_failures}: gRPC has no consecutive-failure ejection (gRFC A50); "
                 "only success rate and failure percentage eject")
    gaps.add("outlier_detection.failure_status_codes",
             "gRPC counts every status but OK as a failure, not only "
             + ", ".join(str(c) for c in sorted(spec.failure_codes)))
    return out


# ---------------------------------------------------------------- endpoints

def load_assignment(spec: ClusterSpec, endpoints: tuple[EndpointSpec, ...]
                    ) -> tuple[endpoint_pb2.ClusterLoadAssignment, list[str]]:
    """The endpoints of cluster `spec` (none when it has no endpoint set: an
    empty assignment, so that the client fails its calls rather than waits)."""
    gaps = Gaps(f"endpoints {spec.name}")
    by_zone: dict[str, list[endpoint_components_pb2.LbEndpoint]] = {}
    weights: dict[str, int] = {}
    seen: set[tuple[str, int]] = set()
    for i, e in enumerate(endpoints):
        ip = _ip(e.host)
        if ip is None:
            gaps.add(f"endpoints[{i}].address", f'"{e.address}": gRPC takes only IP addresses in EDS; left out')
            continue
        if (ip, e.port) in seen:
            gaps.add(f"endpoints[{i}].address", f'"{e.address}" repeats an address gRPC already has; left out')
            continue
        seen.add((ip, e.port))
        by_zone.setdefault(e.zone, []).append(_lb_endpoint(ip, e))
        weights[e.zone] = weights.get(e.zone, 0) + e.weight
    out = endpoint_pb2.ClusterLoadAssignment(cluster_name=spec.name)
    for zone in sorted(by_zone):
        out.endpoints.add(locality=base_pb2.Locality(zone=zone), lb_endpoints=by_zone[zone],
                          load_balancing_weight=wrappers_pb2.UInt32Value(value=weights[zone]))
    _weight_gaps(spec, endpoints, gaps)
    return out, gaps.lines


def _lb_endpoint(ip: str, e: EndpointSpec) -> endpoint_components_pb2.LbEndpoint:
    address = address_pb2.Address(socket_address=address_pb2.SocketAddress(address=ip, port_value=e.port))
    return endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(address=address), health_status=_HEALTH[e.health],
        load_balancing_weight=wrappers_pb2.UInt32Value(value=e.weight))


def _weight_gaps(spec: ClusterSpec, endpoints: tuple[EndpointSpec, ...], gaps: Gaps) -> None:
    if spec.lb_policy == "RING_HASH":
        return  # ring hash weighs endpoints (A42)
    by_zone: dict[str, set[int]] = {}
    for e in endpoints:
        by_zone.setdefault(e.zone, set()).add(e.weight)
    if any(len(weights) > 1 for weights in by_zone.values()):
        gaps.add("endpoints[].weight", "gRPC's round robin ignores endpoint weights within a zone; "
                                       "zones are weighted by the sum of their endpoints' weights")


def _ip(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None
