"""Route config specs: virtual hosts, matches and route actions with their
resilience policies (retries, hedging, timeouts, rate limits, faults, mirroring),
and the listeners (proxyless targets) that use route configs, with the defaults
resources.proto documents declared here once."""

from __future__ import annotations

import dataclasses
import math

from meshapi.v1 import resources_pb2 as pb
from meshgrpc import grpc_codes
from meshgrpc.config.specs.common import default_of, duration_or, optional_duration, wrapped_or

# retry_on conditions besides gRPC statuses (Envoy's names).
CONNECT_FAILURE = "connect-failure"  # the connection to the endpoint could not be opened
REFUSED_STREAM = "refused-stream"  # RST_STREAM REFUSED_STREAM (or GOAWAY above the stream)
RESET = "reset"  # the upstream reset the stream or dropped the connection before headers
RETRY_CONDITIONS = frozenset({CONNECT_FAILURE, REFUSED_STREAM, RESET})


@dataclasses.dataclass(frozen=True, slots=True)
class RetrySpec:
    codes: frozenset[int] = frozenset({grpc_codes.CODES["UNAVAILABLE"]})  # gRPC statuses retried
    conditions: frozenset[str] = frozenset()  # of RETRY_CONDITIONS
    num_retries: int = 1  # retries after the first attempt
    per_try_timeout: float | None = None  # seconds per attempt; None: no per-try bound
    base_interval: float = 0.025  # seconds: back-off of the first retry (full jitter)
    max_interval: float = 0.250  # seconds: the longest back-off


@dataclasses.dataclass(frozen=True, slots=True)
class HedgeSpec:
    hedge_after: float  # seconds before each further attempt
    max_attempts: int = 2  # attempts in all, the first included
    non_fatal_codes: frozenset[int] = frozenset({grpc_codes.CODES["UNAVAILABLE"]})


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimitSpec:
    requests_per_second: float
    burst: int  # bucket size; default requests_per_second rounded up (at least 1)
    key_header: str = ""  # "" = one bucket for the route
    max_keys: int = 10_000  # buckets kept for key_header, least recently used forgotten


@dataclasses.dataclass(frozen=True, slots=True)
class FaultSpec:
    delay: float | None = None  # seconds added before the call goes upstream
    delay_percent: float = 0.0
    abort_grpc_status: int | None = None  # answered to gRPC calls
    abort_http_status: int | None = None  # answered to plain HTTP calls (mapped for gRPC ones)
    abort_percent: float = 0.0
    header_gate: str = ""  # only calls carrying this header; "" = every call


@dataclasses.dataclass(frozen=True, slots=True)
class MirrorSpec:
    cluster: str
    percent: float = 100.0  # share of calls copied
    max_in_flight: int = 100  # mirrored calls in flight for the route


@dataclasses.dataclass(frozen=True, slots=True)
class ActionSpec:
    cluster: str = ""  # exactly one of cluster and weighted_clusters
    weighted_clusters: tuple[tuple[str, int], ...] = ()  # (name, weight)
    timeout: float | None = None  # seconds for the whole call; None: the client's only
    retry: RetrySpec | None = None
    hedge: HedgeSpec | None = None
    headers_to_add: tuple[tuple[str, str], ...] = ()
    headers_to_remove: tuple[str, ...] = ()
    hash_header: str = ""  # "" = calls hash randomly
    idle_timeout: float | None = None  # seconds without a frame; None: no bound
    retry_buffer_limit: int = 65_536  # request bytes kept to retry, hedge or mirror
    rate_limit: RateLimitSpec | None = None
    fault: FaultSpec | None = None
    mirror: MirrorSpec | None = None
    keep_load_reports: bool = False  # forward endpoint-load-metrics-bin to the client


@dataclasses.dataclass(frozen=True, slots=True)
class HeaderMatcherSpec:
    name: str  # lower case
    kind: str  # exact, prefix, suffix, regex or present
    value: str | bool  # the string to compare, or for `present` whether it must be there
    invert: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class MatchSpec:
    kind: str = "prefix"  # path, prefix or regex
    value: str = "/"
    headers: tuple[HeaderMatcherSpec, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class RouteSpec:
    name: str  # the route's name, or "<virtual host>/<index>" when it has none
    match: MatchSpec
    action: ActionSpec


@dataclasses.dataclass(frozen=True, slots=True)
class VirtualHostSpec:
    name: str
    domains: tuple[str, ...]
    routes: tuple[RouteSpec, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class RouteConfigSpec:
    name: str
    virtual_hosts: tuple[VirtualHostSpec, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class ListenerSpec:
    name: str  # the target proxyless clients dial (xds:///NAME)
    route_config: str  # the RouteConfig its calls follow


# ---------------------------------------------------------------- from protobuf

def listener_spec(l: pb.Listener) -> ListenerSpec:
    return ListenerSpec(l.name, l.route_config)


def route_config_spec(r: pb.RouteConfig) -> RouteConfigSpec:
    """The spec of a validated RouteConfig, every unset field at its default."""
    return RouteConfigSpec(r.name, tuple(
        VirtualHostSpec(vh.name, tuple(vh.domains),
                        tuple(route_spec(vh.name, i, route) for i, route in enumerate(vh.routes)))
        for vh in r.virtual_hosts))


def route_spec(vhost: str, index: int, r: pb.Route) -> RouteSpec:
    return RouteSpec(r.name or f"{vhost}/{index}", match_spec(r.match), action_spec(r.route))


def match_spec(m: pb.RouteMatch) -> MatchSpec:
    kind = m.WhichOneof("path_specifier")
    headers = tuple(header_matcher_spec(h) for h in m.headers)
    if kind is None:
        return MatchSpec(headers=headers)
    return MatchSpec(kind, getattr(m, kind), headers)


def header_matcher_spec(h: pb.HeaderMatcher) -> HeaderMatcherSpec:
    kind = h.WhichOneof("header_match_specifier")
    if kind is None:  # the validator refuses this; read it as "present"
        return HeaderMatcherSpec(h.name.lower(), "present", True, h.invert)
    return HeaderMatcherSpec(h.name.lower(), kind, getattr(h, kind), h.invert)


def action_spec(a: pb.RouteAction) -> ActionSpec:
    return ActionSpec(
        cluster=a.cluster,
        weighted_clusters=tuple((c.name, c.weight) for c in a.weighted_clusters),
        timeout=optional_duration(a, "timeout"),
        retry=retry_spec(a.retry_policy) if a.HasField("retry_policy") else None,
        hedge=hedge_spec(a.hedge_policy) if a.HasField("hedge_policy") else None,
        headers_to_add=tuple((h.name.lower(), h.value) for h in a.request_headers_to_add),
        headers_to_remove=tuple(n.lower() for n in a.request_headers_to_remove),
        hash_header=a.hash_policy.header.lower(),
        idle_timeout=optional_duration(a, "idle_timeout"),
        retry_buffer_limit=wrapped_or(a, "retry_buffer_limit", ActionSpec),
        rate_limit=rate_limit_spec(a.rate_limit) if a.HasField("rate_limit") else None,
        fault=fault_spec(a.fault) if a.HasField("fault") else None,
        mirror=mirror_spec(a.mirror) if a.HasField("mirror") else None,
        keep_load_reports=a.keep_load_reports,
    )


def statuses(texts, default: frozenset[int]) -> frozenset[int]:
    """gRPC codes named in `texts` (names or numbers; conditions skipped), or `default` if none is given."""
    if not texts:
        return default
    return frozenset(c for c in map(grpc_codes.parse, texts) if c is not None)


def retry_spec(p: pb.RetryPolicy) -> RetrySpec:
    back_off = p.retry_back_off
    return RetrySpec(
        codes=statuses(p.retry_on, default_of(RetrySpec, "codes")),
        conditions=frozenset(t for t in p.retry_on if t in RETRY_CONDITIONS),
        num_retries=wrapped_or(p, "num_retries", RetrySpec),
        per_try_timeout=optional_duration(p, "per_try_timeout"),
        base_interval=duration_or(back_off, "base_interval", RetrySpec),
        max_interval=duration_or(back_off, "max_interval", RetrySpec),
    )


def hedge_spec(p: pb.HedgePolicy) -> HedgeSpec:
    return HedgeSpec(
        hedge_after=optional_duration(p, "hedge_after") or 0.0,
        max_attempts=wrapped_or(p, "max_attempts", HedgeSpec),
        non_fatal_codes=statuses(p.hedge_on_statuses, default_of(HedgeSpec, "non_fatal_codes")),
    )


def rate_limit_spec(r: pb.RateLimit) -> RateLimitSpec:
    burst = r.burst.value if r.HasField("burst") else max(1, math.ceil(r.requests_per_second))
    return RateLimitSpec(r.requests_per_second, burst, r.key_header.lower(),
                         wrapped_or(r, "max_keys", RateLimitSpec))


def fault_spec(f: pb.Fault) -> FaultSpec:
    abort = f.abort
    which = abort.WhichOneof("error") if f.HasField("abort") else None
    return FaultSpec(
        delay=optional_duration(f.delay, "fixed_delay") if f.HasField("delay") else None,
        delay_percent=f.delay.percent,
        abort_grpc_status=grpc_codes.parse(abort.grpc_status) if which == "grpc_status" else None,
        abort_http_status=abort.http_status if which == "http_status" else None,
        abort_percent=abort.percent,
        header_gate=f.header_gate.lower(),
    )


def mirror_spec(m: pb.Mirror) -> MirrorSpec:
    return MirrorSpec(m.cluster, wrapped_or(m, "percent", MirrorSpec), wrapped_or(m, "max_in_flight", MirrorSpec))
