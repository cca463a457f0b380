"""Translation for proxyless clients, resource by resource: each case sets one API
field and checks the Envoy field gRPC reads (grpc_xds_features.md, the gRFCs) or
the gap line saying what the client gets instead. A descriptor walk checks that
every field of the API has its case, so a new field cannot reach proxyless
clients untranslated and unreported."""

from __future__ import annotations

import copy

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import health_check_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.type.v3 import percent_pb2

from meshapi.v1 import resources_pb2 as pb
from meshgrpc.config import loader
from meshgrpc.proxyless.envoy_types import CDS, EDS, LDS, RDS
from meshgrpc.proxyless.snapshot import EnvoySnapshot, translate
from meshgrpc.proxyless.translate_routes import FAULT_FILTER, ROUTER_FILTER
from meshgrpc.xds.snapshot import Snapshot

BASE = {
    "clusters": [{"name": "greeter", "lb_policy": "ROUND_ROBIN"}, {"name": "canary", "lb_policy": "ROUND_ROBIN"}],
    "endpoints": [{"cluster": "greeter", "endpoints": [{"address": "127.0.0.1:50051", "zone": "a"}]},
                  {"cluster": "canary", "endpoints": [{"address": "127.0.0.1:50052"}]}],
    "routes": [{"name": "default", "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
        {"name": "r0", "match": {"prefix": "/helloworld.Greeter/"}, "route": {"cluster": "greeter"}}]}]}],
    "listeners": [{"name": "greeter.mesh", "route_config": "default"}],
}


class Translated:
    """An Envoy snapshot with lookups by the names BASE uses."""

    def __init__(self, envoy: EnvoySnapshot) -> None:
        self.envoy = envoy
        self.gaps = envoy.gaps({t: None for t in (LDS, RDS, CDS, EDS)})

    def cluster(self, name: str = "greeter") -> cluster_pb2.Cluster:
        return self.envoy[CDS].resources[name].message

    def cla(self, name: str = "greeter"):
        return self.envoy[EDS].resources[name].message

    def route(self, i: int = 0):
        return self.envoy[RDS].resources["default"].message.virtual_hosts[0].routes[i]

    def routes(self):
        return self.envoy[RDS].resources["default"].message.virtual_hosts[0].routes

    def manager(self) -> hcm_pb2.HttpConnectionManager:
        manager = hcm_pb2.HttpConnectionManager()
        self.envoy[LDS].resources["greeter.mesh"].message.api_listener.api_listener.Unpack(manager)
        return manager

    def fault(self, i: int = 0) -> fault_pb2.HTTPFault:
        fault = fault_pb2.HTTPFault()
        self.route(i).typed_per_filter_config[FAULT_FILTER].Unpack(fault)
        return fault

    def gap(self, *words: str) -> bool:
        return any(all(w in line for w in words) for line in self.gaps)


def translated(mutate=lambda d: None) -> Translated:
    doc = copy.deepcopy(BASE)
    mutate(doc)
    return Translated(translate(Snapshot.from_mesh(loader.parse_document(doc))))


def cluster(d: dict, **fields) -> None:
    d["clusters"][0].update(fields)


def action(d: dict, **fields) -> None:
    d["routes"][0]["virtual_hosts"][0]["routes"][0]["route"].update(fields)


def match(d: dict, **fields) -> None:
    m = d["routes"][0]["virtual_hosts"][0]["routes"][0]["match"]
    m.clear()
    m.update(fields)


def endpoint(d: dict, **fields) -> None:
    d["endpoints"][0]["endpoints"][0].update(fields)


def header(**fields) -> dict:
    return {"prefix": "/", "headers": [{"name": "x-canary", **fields}]}


def ms(duration) -> int:
    return duration.seconds * 1000 + duration.nanos // 1_000_000


# (API field, what sets it, what must hold of the translation)
CASES = [
    # ---- listeners
    ("Listener.name", lambda d: None,
     lambda t: t.envoy[LDS].resources["greeter.mesh"].message.name == "greeter.mesh"),
    ("Listener.route_config", lambda d: None,
     lambda t: t.manager().rds.route_config_name == "default" and t.manager().rds.config_source.HasField("ads")),
    # ---- clusters
    ("Cluster.name", lambda d: None,
     lambda t: t.cluster().name == "greeter" and t.cluster().eds_cluster_config.service_name == "greeter"
     and t.cluster().type == cluster_pb2.Cluster.EDS and t.cluster().eds_cluster_config.eds_config.HasField("ads")),
    ("Cluster.lb_policy", lambda d: cluster(d, lb_policy="LEAST_REQUEST"),
     lambda t: t.cluster().lb_policy == cluster_pb2.Cluster.ROUND_ROBIN
     and t.gap("cluster greeter: lb_policy: LEAST_REQUEST is served as round_robin", "A48")),
    ("Cluster.peak_ewma", lambda d: cluster(d, lb_policy="PEAK_EWMA", peak_ewma={"decay": "5s"}),
     lambda t: t.gap("lb_policy: PEAK_EWMA is served as round_robin")),
    ("Cluster.least_request", lambda d: cluster(d, lb_policy="LEAST_REQUEST", least_request={"active_request_bias": 2}),
     lambda t: t.gap("lb_policy: LEAST_REQUEST is served as round_robin")),
    ("Cluster.ring_hash", lambda d: cluster(d, lb_policy="RING_HASH", ring_hash={"minimum_ring_size": 2048}),
     lambda t: t.cluster().lb_policy == cluster_pb2.Cluster.RING_HASH
     and t.cluster().ring_hash_lb_config.minimum_ring_size.value == 2048
     and t.cluster().ring_hash_lb_config.hash_function == cluster_pb2.Cluster.RingHashLbConfig.XX_HASH),
    ("Cluster.health_check", lambda d: cluster(d, health_check={"interval": "1s"}),
     lambda t: t.gap("cluster greeter: health_check", "active health checks")),
    ("Cluster.outlier_detection", lambda d: cluster(d, outlier_detection={"interval": "2s"}),
     lambda t: ms(t.cluster().outlier_detection.interval) == 2000),
    ("OutlierDetection.consecutive_failures", lambda d: cluster(d, outlier_detection={"consecutive_failures": 3}),
     lambda t: t.gap("outlier_detection.consecutive_failures", "3: gRPC has no consecutive-failure ejection")
     and not t.cluster().outlier_detection.HasField("consecutive_5xx")),
    ("OutlierDetection.interval", lambda d: cluster(d, outlier_detection={"interval": "3s"}),
     lambda t: ms(t.cluster().outlier_detection.interval) == 3000),
    ("OutlierDetection.base_ejection_time", lambda d: cluster(d, outlier_detection={"base_ejection_time": "7s"}),
     lambda t: ms(t.cluster().outlier_detection.base_ejection_time) == 7000),
    ("OutlierDetection.max_ejection_time", lambda d: cluster(d, outlier_detection={"max_ejection_time": "70s"}),
     lambda t: ms(t.cluster().outlier_detection.max_ejection_time) == 70000),
    ("OutlierDetection.max_ejection_percent", lambda d: cluster(d, outlier_detection={"max_ejection_percent": 40}),
     lambda t: t.cluster().outlier_detection.max_ejection_percent.value == 40),
    ("OutlierDetection.failure_status_codes", lambda d: cluster(d, outlier_detection={"failure_status_codes": [14]}),
     lambda t: t.gap("outlier_detection.failure_status_codes", "every status but OK", "not only 14")),
    ("OutlierDetection.success_rate_stdev_factor",
     lambda d: cluster(d, outlier_detection={"success_rate_stdev_factor": 0}),
     lambda t: t.cluster().outlier_detection.enforcing_success_rate.value == 0),
    ("OutlierDetection.success_rate_request_volume",
     lambda d: cluster(d, outlier_detection={"success_rate_request_volume": 20}),
     lambda t: t.cluster().outlier_detection.success_rate_request_volume.value == 20
     and t.cluster().outlier_detection.enforcing_success_rate.value == 100
     and t.cluster().outlier_detection.success_rate_stdev_factor.value == 1900),
    ("OutlierDetection.failure_percentage_threshold",
     lambda d: cluster(d, outlier_detection={"failure_percentage_threshold": 60}),
     lambda t: t.cluster().outlier_detection.failure_percentage_threshold.value == 60
     and t.cluster().outlier_detection.enforcing_failure_percentage.value == 100),
    ("Cluster.circuit_breaker", lambda d: cluster(d, circuit_breaker={"max_requests": 7}),
     lambda t: t.cluster().circuit_breakers.thresholds[0].max_requests.value == 7),
    ("CircuitBreaker.max_requests", lambda d: cluster(d, circuit_breaker={"max_requests": 9}),
     lambda t: t.cluster().circuit_breakers.thresholds[0].max_requests.value == 9),
    ("CircuitBreaker.max_retries", lambda d: cluster(d, circuit_breaker={"max_retries": 1}),
     lambda t: t.gap("circuit_breaker.max_retries", "A32")),
    ("CircuitBreaker.max_pending_requests", lambda d: cluster(d, circuit_breaker={"max_pending_requests": 5}),
     lambda t: t.gap("circuit_breaker.max_pending_requests", "A32")),
    ("CircuitBreaker.max_connections_per_endpoint",
     lambda d: cluster(d, circuit_breaker={"max_connections_per_endpoint": 2}),
     lambda t: t.gap("circuit_breaker.max_connections_per_endpoint", "A32")),
    ("Cluster.connect_timeout", lambda d: cluster(d, connect_timeout="3s"),
     lambda t: t.gap("cluster greeter: connect_timeout", "not applied")),
    ("Cluster.panic_threshold_percent", lambda d: cluster(d, panic_threshold_percent=20),
     lambda t: t.gap("cluster greeter: panic_threshold_percent", "no panic mode")),
    ("Cluster.transport", lambda d: cluster(d, transport={"mode": "MUTUAL_TLS"}),
     lambda t: t.gap("cluster greeter: transport", "not served to proxyless clients")),
    ("Cluster.retry_budget", lambda d: cluster(d, retry_budget={"retry_ratio": 0.5}),
     lambda t: t.gap("cluster greeter: retry_budget", "not applied")),
    ("Cluster.weighted_round_robin",
     lambda d: cluster(d, lb_policy="WEIGHTED_ROUND_ROBIN", weighted_round_robin={"blackout_period": "1s"}),
     lambda t: t.cluster().lb_policy == cluster_pb2.Cluster.ROUND_ROBIN
     and t.gap("lb_policy: WEIGHTED_ROUND_ROBIN is served as round_robin")),
    ("Cluster.prequal", lambda d: cluster(d, lb_policy="PREQUAL", prequal={"probes_per_call": 2}),
     lambda t: t.gap("lb_policy: PREQUAL is served as round_robin", "no probing balancer")),
    ("Cluster.out_of_band_load_reports", lambda d: cluster(d, out_of_band_load_reports={"interval": "2s"}),
     lambda t: t.gap("cluster greeter: out_of_band_load_reports", "not applied")),
    ("Cluster.failure_penalty", lambda d: cluster(d, failure_penalty={"penalty": "1s"}),
     lambda t: t.gap("cluster greeter: failure_penalty", "not applied")),
    # ---- endpoints
    ("EndpointSet.cluster", lambda d: None, lambda t: t.cla().cluster_name == "greeter"),
    ("EndpointSet.endpoints", lambda d: d["endpoints"][0]["endpoints"].append({"address": "127.0.0.2:1", "zone": "a"}),
     lambda t: [e.endpoint.address.socket_address.address for e in t.cla().endpoints[0].lb_endpoints]
     == ["127.0.0.1", "127.0.0.2"]),
    ("Endpoint.address", lambda d: endpoint(d, address="localhost:50051"),
     lambda t: len(t.cla().endpoints) == 0 and t.gap("endpoints greeter: endpoints[0].address", "only IP addresses")),
    ("Endpoint.weight", lambda d: endpoint(d, weight=7),
     lambda t: t.cla().endpoints[0].lb_endpoints[0].load_balancing_weight.value == 7
     and t.cla().endpoints[0].load_balancing_weight.value == 7),
    ("Endpoint.zone", lambda d: endpoint(d, zone="z1"),
     lambda t: t.cla().endpoints[0].locality.zone == "z1"),
    # Free-form labels: the mesh acts on none of them, so neither do proxyless clients.
    ("Endpoint.metadata", lambda d: endpoint(d, metadata={"k": "v"}),
     lambda t: t.cla() == translated().cla() and not t.gaps),
    ("Endpoint.health_status", lambda d: endpoint(d, health_status="DRAINING"),
     lambda t: t.cla().endpoints[0].lb_endpoints[0].health_status == health_check_pb2.DRAINING),
    # ---- route configs
    ("RouteConfig.name", lambda d: None, lambda t: t.envoy[RDS].resources["default"].message.name == "default"),
    ("RouteConfig.virtual_hosts", lambda d: None,
     lambda t: [v.name for v in t.envoy[RDS].resources["default"].message.virtual_hosts] == ["all"]),
    ("VirtualHost.name", lambda d: None,
     lambda t: t.envoy[RDS].resources["default"].message.virtual_hosts[0].name == "all"),
    ("VirtualHost.domains", lambda d: d["routes"][0]["virtual_hosts"][0].update(domains=["*.mesh"]),
     lambda t: list(t.envoy[RDS].resources["default"].message.virtual_hosts[0].domains) == ["*.mesh"] and not t.gaps),
    ("VirtualHost.routes", lambda d: None, lambda t: len(t.routes()) == 1),
    ("Route.name", lambda d: None, lambda t: t.route().name == "r0"),
    ("Route.match", lambda d: None, lambda t: t.route().match.prefix == "/helloworld.Greeter/"),
    ("Route.route", lambda d: None, lambda t: t.route().route.cluster == "greeter"),
    ("RouteMatch.path", lambda d: match(d, path="/helloworld.Greeter/SayHello"),
     lambda t: t.route().match.path == "/helloworld.Greeter/SayHello"),
    ("RouteMatch.prefix", lambda d: match(d, prefix="/x/"), lambda t: t.route().match.prefix == "/x/"),
    ("RouteMatch.regex", lambda d: match(d, regex=r"/helloworld\.Greeter/Say\w+"),
     lambda t: t.route().match.safe_regex.regex == r"/helloworld\.Greeter/Say\w+"),  # RE2 already: as written
    ("RouteMatch.headers", lambda d: match(d, **header(exact="true")),
     lambda t: t.route().match.headers[0].name == "x-canary"
     and t.route().match.headers[0].string_match.exact == "true"),
    ("HeaderMatcher.name", lambda d: match(d, **header(exact="1")),
     lambda t: t.route().match.headers[0].name == "x-canary"),
    ("HeaderMatcher.exact", lambda d: match(d, **header(exact="yes")),
     lambda t: t.route().match.headers[0].string_match.exact == "yes"),
    ("HeaderMatcher.prefix", lambda d: match(d, **header(prefix="y")),
     lambda t: t.route().match.headers[0].string_match.prefix == "y"),
    ("HeaderMatcher.suffix", lambda d: match(d, **header(suffix="s")),
     lambda t: t.route().match.headers[0].string_match.suffix == "s"),
    ("HeaderMatcher.regex", lambda d: match(d, **header(regex="[ab]+")),
     lambda t: t.route().match.headers[0].string_match.safe_regex.regex == "[ab]+"),
    ("HeaderMatcher.present", lambda d: match(d, **header(present=False)),
     lambda t: t.route().match.headers[0].HasField("present_match") and not t.route().match.headers[0].present_match),
    ("HeaderMatcher.invert", lambda d: match(d, **header(exact="true", invert=True)),
     lambda t: t.route().match.headers[0].invert_match),
    # ---- route actions
    ("RouteAction.cluster", lambda d: action(d, cluster="canary"), lambda t: t.route().route.cluster == "canary"),
    ("RouteAction.weighted_clusters",
     lambda d: d["routes"][0]["virtual_hosts"][0]["routes"][0].update(route={"weighted_clusters": [
         {"name": "greeter", "weight": 90}, {"name": "canary", "weight": 10}]}),
     lambda t: [(c.name, c.weight.value) for c in t.route().route.weighted_clusters.clusters]
     == [("greeter", 90), ("canary", 10)]),
    ("ClusterWeight.name", lambda d: None, lambda t: True),  # with RouteAction.weighted_clusters
    ("ClusterWeight.weight", lambda d: None, lambda t: True),  # with RouteAction.weighted_clusters
    ("RouteAction.timeout", lambda d: action(d, timeout="1.5s"),
     lambda t: ms(t.route().route.max_stream_duration.max_stream_duration) == 1500),
    ("RouteAction.retry_policy", lambda d: action(d, retry_policy={}),
     lambda t: t.route().route.retry_policy.retry_on == "unavailable"
     and t.route().route.retry_policy.num_retries.value == 1
     and ms(t.route().route.retry_policy.retry_back_off.base_interval) == 25
     and ms(t.route().route.retry_policy.retry_back_off.max_interval) == 250),
    ("RetryPolicy.retry_on", lambda d: action(d, retry_policy={"retry_on": ["INTERNAL", "UNKNOWN", "14", "reset"]}),
     lambda t: t.route().route.retry_policy.retry_on == "internal,unavailable"
     and t.gap("retry_policy.retry_on", "not UNKNOWN") and t.gap("retry_policy.retry_on", '"reset"')),
    ("RetryPolicy.num_retries", lambda d: action(d, retry_policy={"num_retries": 6}),
     lambda t: t.route().route.retry_policy.num_retries.value == 6 and t.gap("num_retries", "at most 5 attempts")),
    ("RetryPolicy.per_try_timeout", lambda d: action(d, retry_policy={"per_try_timeout": "0.2s"}),
     lambda t: t.gap("retry_policy.per_try_timeout", "no per-attempt timeout")),
    ("RetryPolicy.retry_back_off",
     lambda d: action(d, retry_policy={"retry_back_off": {"base_interval": "0.01s", "max_interval": "0.1s"}}),
     lambda t: ms(t.route().route.retry_policy.retry_back_off.base_interval) == 10
     and ms(t.route().route.retry_policy.retry_back_off.max_interval) == 100),
    ("RetryBackOff.base_interval", lambda d: None, lambda t: True),  # with RetryPolicy.retry_back_off
    ("RetryBackOff.max_interval", lambda d: None, lambda t: True),  # with RetryPolicy.retry_back_off
    ("RouteAction.request_headers_to_add", lambda d: action(d, request_headers_to_add=[{"name": "x-a", "value": "1"}]),
     lambda t: t.gap("request_headers_to_add/remove")),
    ("RouteAction.request_headers_to_remove", lambda d: action(d, request_headers_to_remove=["x-a"]),
     lambda t: t.gap("request_headers_to_add/remove")),
    ("RouteAction.hash_policy", lambda d: action(d, hash_policy={"header": "x-user"}),
     lambda t: t.route().route.hash_policy[0].header.header_name == "x-user"),
    ("RouteAction.hedge_policy", lambda d: action(d, hedge_policy={"hedge_after": "0.1s"}),
     lambda t: t.gap("route.hedge_policy", "does not hedge")),
    ("RouteAction.idle_timeout", lambda d: action(d, idle_timeout="5s"), lambda t: t.gap("route.idle_timeout")),
    ("RouteAction.retry_buffer_limit", lambda d: action(d, retry_policy={}, retry_buffer_limit=1024),
     lambda t: t.gap("route.retry_buffer_limit", "per_rpc_retry_buffer_size")),
    ("RouteAction.rate_limit", lambda d: action(d, rate_limit={"requests_per_second": 5}),
     lambda t: t.gap("route.rate_limit", "do not rate-limit")),
    ("RouteAction.fault", lambda d: action(d, fault={"abort": {"grpc_status": "UNAVAILABLE", "percent": 12.5}}),
     lambda t: t.fault().abort.grpc_status == 14 and t.fault().abort.percentage.numerator == 125_000
     and t.fault().abort.percentage.denominator == percent_pb2.FractionalPercent.MILLION
     and [f.name for f in t.manager().http_filters] == [FAULT_FILTER, ROUTER_FILTER]),
    ("Fault.delay", lambda d: action(d, fault={"delay": {"fixed_delay": "0.3s", "percent": 50}}),
     lambda t: ms(t.fault().delay.fixed_delay) == 300 and t.fault().delay.percentage.numerator == 500_000),
    ("Fault.abort", lambda d: action(d, fault={"abort": {"http_status": 503, "percent": 100}}),
     lambda t: t.fault().abort.http_status == 503 and t.fault().abort.percentage.numerator == 1_000_000),
    ("Fault.header_gate", lambda d: action(d, fault={"abort": {"grpc_status": "INTERNAL", "percent": 100},
                                                     "header_gate": "x-chaos"}),
     lambda t: t.fault().headers[0].name == "x-chaos" and t.fault().headers[0].present_match and not t.gaps),
    ("RouteAction.mirror", lambda d: action(d, mirror={"cluster": "canary"}),
     lambda t: t.gap("route.mirror", "do not mirror")),
    # A proxyless client calls the backends itself: their load reports reach it whatever the route says.
    ("RouteAction.keep_load_reports", lambda d: action(d, keep_load_reports=True),
     lambda t: not t.gap("keep_load_reports")),
    ("MeshConfig.clusters", lambda d: None, lambda t: sorted(t.envoy[CDS].resources) == ["canary", "greeter"]),
    ("MeshConfig.endpoints", lambda d: None, lambda t: sorted(t.envoy[EDS].resources) == ["canary", "greeter"]),
    ("MeshConfig.routes", lambda d: None, lambda t: sorted(t.envoy[RDS].resources) == ["default"]),
    ("MeshConfig.listeners", lambda d: None, lambda t: sorted(t.envoy[LDS].resources) == ["greeter.mesh"]),
    # Who may receive a route config is decided on the stream (xds/scope.py), not in its translation.
    ("RouteConfig.services", lambda d: d["routes"][0].update(services=["frontend"]),
     lambda t: sorted(t.envoy[RDS].resources) == ["default"] and not t.gaps),
    # Not translated: gRFC A41 (RBAC) applies on xDS-enabled gRPC servers (gRFC A36), whose
    # server-side listeners meshgrpc does not serve; proxyless clients are not judged by it.
    ("MeshConfig.authorization_policies",
     lambda d: d.update(authorization_policies=[{"name": "p", "service": "greeter", "action": "DENY",
                                                   "rules": [{}]}]),
     lambda t: sorted(t.envoy[LDS].resources) == ["greeter.mesh"] and not t.gaps),
]

# Messages a case covers whole: every field inside one of these is decided by the
# case of the field holding it (reported as a whole, or translated together).
COVERED_WHOLE = {"Cluster.transport", "Cluster.peak_ewma", "Cluster.least_request", "Cluster.health_check", "Cluster.retry_budget",
                 "Cluster.weighted_round_robin", "Cluster.prequal", "Cluster.out_of_band_load_reports",
                 "Cluster.failure_penalty",
                 "RouteAction.hedge_policy", "RouteAction.rate_limit", "RouteAction.mirror",
                 "RouteAction.request_headers_to_add", "Cluster.ring_hash", "RouteAction.hash_policy"}
# Fields inside Fault's delay and abort: the Fault.delay and Fault.abort cases check them.
COVERED_WHOLE |= {"Fault.delay", "Fault.abort"}
COVERED_WHOLE |= {"MeshConfig.authorization_policies"}


@pytest.mark.parametrize("field,mutate,check", CASES, ids=[c[0] for c in CASES])
def test_field_translation(field, mutate, check):
    t = translated(mutate)
    assert check(t), (field, t.gaps)


def _fields(descriptor, seen: set[str]):
    if descriptor.full_name in seen:
        return
    seen.add(descriptor.full_name)
    for field in descriptor.fields:
        key = f"{descriptor.name}.{field.name}"
        yield key
        if field.message_type is not None and field.message_type.file is descriptor.file \
                and not field.message_type.GetOptions().map_entry and key not in COVERED_WHOLE:
            yield from _fields(field.message_type, seen)


def test_every_api_field_has_a_translation_case():
    cased = {c[0] for c in CASES}
    missing = [f for f in _fields(pb.MeshConfig.DESCRIPTOR, set()) if f not in cased]
    assert missing == [], "fields with no proxyless translation case: " + ", ".join(missing)


def test_listener_whose_route_config_serves_no_matching_domain_is_reported():
    t = translated(lambda d: d["routes"][0]["virtual_hosts"][0].update(domains=["api.example.com"]))
    assert t.gap("listener greeter.mesh: route_config", 'serves the domain "greeter.mesh"')


def test_fault_filter_is_in_the_listener_only_when_a_route_injects_faults():
    assert [f.name for f in translated().manager().http_filters] == [ROUTER_FILTER]


def test_cluster_without_endpoint_set_gets_an_empty_assignment():
    t = translated(lambda d: d["endpoints"].pop())
    assert t.cla("canary").cluster_name == "canary" and len(t.cla("canary").endpoints) == 0


def test_localities_are_weighted_by_their_endpoints_and_round_robin_weight_loss_is_reported():
    def mutate(d):
        d["endpoints"][0]["endpoints"] = [{"address": "127.0.0.1:1", "zone": "a", "weight": 3},
                                          {"address": "127.0.0.1:2", "zone": "a", "weight": 1},
                                          {"address": "127.0.0.1:3", "zone": "b", "weight": 2}]
    t = translated(mutate)
    assert [(l.locality.zone, l.load_balancing_weight.value) for l in t.cla().endpoints] == [("a", 4), ("b", 2)]
    assert t.gap("endpoints greeter: endpoints[].weight", "ignores endpoint weights within a zone")


def test_duplicate_ip_in_another_spelling_is_left_out():
    def mutate(d):
        d["endpoints"][0]["endpoints"] = [{"address": "[::1]:80"}, {"address": "[0:0::1]:80"}]
    t = translated(mutate)
    assert len(t.cla().endpoints[0].lb_endpoints) == 1
    assert t.gap("endpoints[1].address", "repeats an address")


def test_retry_policy_with_no_status_grpc_retries_is_not_sent():
    t = translated(lambda d: action(d, retry_policy={"retry_on": ["UNKNOWN"]}))
    assert not t.route().route.HasField("retry_policy")
    assert t.gap("retry_on", "not UNKNOWN")


def test_versions_follow_the_mesh_versions_each_type_is_built_from():
    mesh = loader.parse_document(copy.deepcopy(BASE))
    envoy = translate(Snapshot.from_mesh(mesh, {
        "type.googleapis.com/meshapi.v1.Cluster": "3", "type.googleapis.com/meshapi.v1.EndpointSet": "5",
        "type.googleapis.com/meshapi.v1.RouteConfig": "7", "type.googleapis.com/meshapi.v1.Listener": "2"}))
    assert envoy.versions() == {LDS: "2.7", RDS: "7", CDS: "3", EDS: "5.3"}
    assert envoy.consistency_errors() == []


def test_a_type_whose_version_did_not_change_is_reused_not_translated_again():
    versions = {"type.googleapis.com/meshapi.v1.Cluster": "1", "type.googleapis.com/meshapi.v1.EndpointSet": "1",
                "type.googleapis.com/meshapi.v1.RouteConfig": "1", "type.googleapis.com/meshapi.v1.Listener": "1"}
    doc = copy.deepcopy(BASE)
    doc["clusters"][0]["lb_policy"] = "PEAK_EWMA"
    first = translate(Snapshot.from_mesh(loader.parse_document(doc), versions))
    action(doc, timeout="3s")
    second = translate(Snapshot.from_mesh(loader.parse_document(doc), {
        **versions, "type.googleapis.com/meshapi.v1.RouteConfig": "2"}), first)
    assert second[CDS] is first[CDS] and second[EDS] is first[EDS]  # the same bytes, not rebuilt
    assert second[RDS] is not first[RDS] and second[LDS].version == "1.2"
    assert second.gaps({CDS: None}) == first.gaps({CDS: None}) != []
