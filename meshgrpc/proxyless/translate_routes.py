"""Listeners and route configs as gRPC's xDS client reads them. Pure: typed specs
in, Envoy messages and gap lines (gaps.py) out.

What gRPC acts on is grpc/grpc doc/grpc_xds_features.md and the gRFCs it cites:
- Listener: an `api_listener` holding an HttpConnectionManager that fetches its
  RouteConfiguration over ADS (RDS), the router filter last (A27, A39);
- routes: path / prefix / safe_regex and header matchers incl. invert and
  present (A28, A63); the mesh's regexes are RE2 already (config/regex.py, the
  dialect and full-match semantics gRPC uses), so they are sent as written;
  weighted clusters (A28); the route timeout as `max_stream_duration` (A31); retries: retry_on for cancelled,
  deadline-exceeded, internal, resource-exhausted and unavailable, num_retries,
  retry_back_off (A44); `hash_policy` header for ring hash (A42); fault
  injection, header-gated included, as the fault filter's per-route config (A33).
Anything else a route asks for becomes a gap line, never a field gRPC would
ignore or NACK.
"""

from __future__ import annotations

from envoy.config.listener.v3 import api_listener_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc, route_pb2
from envoy.extensions.filters.common.fault.v3 import fault_pb2 as common_fault_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2, wrappers_pb2
from google.protobuf.message import Message

from meshgrpc import grpc_codes
from meshgrpc.config.specs import (
    ActionSpec, FaultSpec, HeaderMatcherSpec, ListenerSpec, MatchSpec, RetrySpec, RouteConfigSpec, RouteSpec,
)
from meshgrpc.config.specs.common import default_of, duration
from meshgrpc.config.specs.routes import RESET
from meshgrpc.proxyless.envoy_types import ads_source
from meshgrpc.proxyless.gaps import Gaps

FAULT_FILTER = "envoy.filters.http.fault"
ROUTER_FILTER = "envoy.filters.http.router"

# The statuses gRPC retries on (gRFC A44), by code, as Envoy's retry_on names them.
GRPC_RETRY_ON = {1: "cancelled", 4: "deadline-exceeded", 8: "resource-exhausted", 13: "internal",
                 14: "unavailable"}
MAX_ATTEMPTS = 5  # gRPC caps attempts at 5, the first included (gRFC A6)
_STRING_MATCH = {"exact": "exact", "prefix": "prefix", "suffix": "suffix"}


def pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


# ---------------------------------------------------------------- listeners

def listener(spec: ListenerSpec, routes: RouteConfigSpec) -> tuple[listener_pb2.Listener, list[str]]:
    """The Listener a client dialing `xds:///NAME` resolves, for `routes` (the
    route config it names): the fault filter goes in only when a route uses it."""
    gaps = Gaps(f"listener {spec.name}")
    if not any(serves(vh.domains, spec.name) for vh in routes.virtual_hosts):
        gaps.add("route_config", f'no virtual host of route config "{routes.name}" serves the domain '
                                 f'"{spec.name}" that clients dial: their calls fail UNAVAILABLE')
    filters = [hcm_pb2.HttpFilter(name=FAULT_FILTER, typed_config=pack(fault_pb2.HTTPFault()))] \
        if any(r.action.fault for vh in routes.virtual_hosts for r in vh.routes) else []
    filters.append(hcm_pb2.HttpFilter(name=ROUTER_FILTER, typed_config=pack(router_pb2.Router())))
    manager = hcm_pb2.HttpConnectionManager(
        rds=hcm_pb2.Rds(config_source=ads_source(), route_config_name=spec.route_config), http_filters=filters)
    api = api_listener_pb2.ApiListener(api_listener=pack(manager))
    return listener_pb2.Listener(name=spec.name, api_listener=api), gaps.lines


def serves(domains, host: str) -> bool:
    """Whether a virtual host with `domains` serves `host`, as gRPC matches them:
    exact, "*.suffix", "prefix.*" or "*", case-insensitive (gRFC A27)."""
    host = host.lower()
    for domain in (d.lower() for d in domains):
        if domain == "*" or domain == host:
            return True
        if domain.startswith("*") and host.endswith(domain[1:]) and len(host) > len(domain) - 1:
            return True
        if domain.endswith("*") and host.startswith(domain[:-1]) and len(host) > len(domain) - 1:
            return True
    return False


# ---------------------------------------------------------------- route configs

def route_configuration(spec: RouteConfigSpec) -> tuple[route_pb2.RouteConfiguration, list[str]]:
    gaps = Gaps(f"route config {spec.name}")
    config = route_pb2.RouteConfiguration(name=spec.name)
    for i, vh in enumerate(spec.virtual_hosts):
        vhost = config.virtual_hosts.add(name=vh.name, domains=vh.domains)
        vhost.routes.extend(_route(r, f"virtual_hosts[{i}].routes[{j}]", gaps) for j, r in enumerate(vh.routes))
    return config, gaps.lines


def _route(spec: RouteSpec, path: str, gaps: Gaps) -> rc.Route:
    route = rc.Route(name=spec.name, match=_match(spec.match), route=_action(spec.action, f"{path}.route", gaps))
    if spec.action.fault is not None:
        route.typed_per_filter_config[FAULT_FILTER].CopyFrom(pack(fault(spec.action.fault)))
    return route


def _match(spec: MatchSpec) -> rc.RouteMatch:
    match = rc.RouteMatch(headers=[_header(h) for h in spec.headers])
    if spec.kind == "regex":
        match.safe_regex.regex = spec.value
    else:
        setattr(match, spec.kind, spec.value)
    return match


def _header(spec: HeaderMatcherSpec) -> rc.HeaderMatcher:
    header = rc.HeaderMatcher(name=spec.name, invert_match=spec.invert)
    if spec.kind == "present":
        header.present_match = bool(spec.value)
    elif spec.kind == "regex":
        header.string_match.CopyFrom(string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=spec.value)))
    else:
        header.string_match.CopyFrom(string_pb2.StringMatcher(**{_STRING_MATCH[spec.kind]: spec.value}))
    return header


# ---------------------------------------------------------------- route actions

def _action(spec: ActionSpec, path: str, gaps: Gaps) -> rc.RouteAction:
    action = rc.RouteAction()
    if spec.weighted_clusters:
        action.weighted_clusters.clusters.extend(
            rc.WeightedCluster.ClusterWeight(name=n, weight=wrappers_pb2.UInt32Value(value=w))
            for n, w in spec.weighted_clusters)
    else:
        action.cluster = spec.cluster
    if spec.timeout is not None:
        action.max_stream_duration.max_stream_duration.CopyFrom(duration(spec.timeout))
    if spec.retry is not None and (policy := retry_policy(spec.retry, f"{path}.retry_policy", gaps)):
        action.retry_policy.CopyFrom(policy)
    if spec.hash_header:
        action.hash_policy.add().header.header_name = spec.hash_header
    _action_gaps(spec, path, gaps)
    return action


def _action_gaps(spec: ActionSpec, path: str, gaps: Gaps) -> None:
    """What gRPC's xDS client has no equivalent for (grpc_xds_features.md lists
    none of these): said once per field set."""
    if spec.headers_to_add or spec.headers_to_remove:
        gaps.add(f"{path}.request_headers_to_add/remove", "gRPC clients do not edit request headers; not applied")
    if spec.hedge is not None:
        gaps.add(f"{path}.hedge_policy", "gRPC's xDS client does not hedge; calls go once (with retries if set)")
    if spec.idle_timeout is not None:
        gaps.add(f"{path}.idle_timeout", "gRPC's xDS client has no idle bound per call; only the timeout applies")
    if spec.rate_limit is not None:
        gaps.add(f"{path}.rate_limit", "gRPC clients do not rate-limit calls; not applied")
    if spec.mirror is not None:
        gaps.add(f"{path}.mirror", "gRPC clients do not mirror calls; not applied")
    if spec.retry is not None and spec.retry_buffer_limit != default_of(ActionSpec, "retry_buffer_limit"):
        gaps.add(f"{path}.retry_buffer_limit", "gRPC buffers retried requests up to its channel's "
                                               "grpc.per_rpc_retry_buffer_size (256 KiB by default) instead")


def retry_policy(spec: RetrySpec, path: str, gaps: Gaps) -> rc.RetryPolicy | None:
    """The A44 retry policy, or None when gRPC would make no retry of it."""
    if spec.num_retries == 0:
        return None
    unsupported = sorted(spec.codes - GRPC_RETRY_ON.keys())
    if unsupported:
        names = ", ".join(grpc_codes.name(c) for c in unsupported)
        gaps.add(f"{path}.retry_on", f"gRPC retries only CANCELLED, DEADLINE_EXCEEDED, INTERNAL, "
                                     f"RESOURCE_EXHAUSTED and UNAVAILABLE; not {names}")
    if RESET in spec.conditions:
        gaps.add(f"{path}.retry_on", 'gRPC has no "reset" condition; a reset call fails UNAVAILABLE, '
                                     "retried only if UNAVAILABLE is listed")
    supported = sorted(spec.codes & GRPC_RETRY_ON.keys())
    if not supported:
        return None
    retries = spec.num_retries
    if retries + 1 > MAX_ATTEMPTS:
        gaps.add(f"{path}.num_retries", f"{retries} retries: gRPC makes at most {MAX_ATTEMPTS} attempts, "
                                        f"so {MAX_ATTEMPTS - 1} retries")
    if spec.per_try_timeout is not None:
        gaps.add(f"{path}.per_try_timeout", "gRPC has no per-attempt timeout; only the route timeout applies")
    return rc.RetryPolicy(
        retry_on=",".join(GRPC_RETRY_ON[c] for c in supported),
        num_retries=wrappers_pb2.UInt32Value(value=retries),
        retry_back_off=rc.RetryPolicy.RetryBackOff(base_interval=duration(spec.base_interval),
                                                   max_interval=duration(spec.max_interval)))


def fault(spec: FaultSpec) -> fault_pb2.HTTPFault:
    """The fault filter's per-route config (gRFC A33): a header gate is a header
    matcher on presence, which gRPC's fault filter evaluates itself."""
    out = fault_pb2.HTTPFault()
    if spec.delay is not None:
        out.delay.CopyFrom(common_fault_pb2.FaultDelay(fixed_delay=duration(spec.delay),
                                                       percentage=_percent(spec.delay_percent)))
    if spec.abort_grpc_status is not None:
        out.abort.CopyFrom(fault_pb2.FaultAbort(grpc_status=spec.abort_grpc_status,
                                                percentage=_percent(spec.abort_percent)))
    elif spec.abort_http_status is not None:
        out.abort.CopyFrom(fault_pb2.FaultAbort(http_status=spec.abort_http_status,
                                                percentage=_percent(spec.abort_percent)))
    if spec.header_gate:
        out.headers.add(name=spec.header_gate, present_match=True)
    return out


def _percent(percent: float) -> percent_pb2.FractionalPercent:
    # Per million keeps the mesh's fractional percentages (0.05%) exact to 4 decimals.
    return percent_pb2.FractionalPercent(numerator=round(percent * 10_000),
                                         denominator=percent_pb2.FractionalPercent.MILLION)
