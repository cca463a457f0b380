"""Semantic validation of mesh config: the one validator both the control plane
(on every apply, file edit and registration) and the proxy (on every update it
receives) run.

Structure is the loader's job (loader.py); this module judges meaning: names and
their uniqueness, addresses, weights, regexes, durations, percentages, domains,
headers and references between resources. Each rule is a small generator
`rule(message, path, ctx) -> FieldErrors`, gathered in per-message tables, so
every broken rule is reported at once with its full field path, e.g.
`routes[0].virtual_hosts[0].routes[1].route.weighted_clusters: weights sum to 0`.

It runs on every registration, so endpoint rules loop over a whole set inside one
call and build a path string only when they have an error to report.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator

import grpc
from google.protobuf.message import Message

from meshapi.v1 import resources_pb2 as pb
from meshgrpc.errors import ConfigError, FieldError

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0

NAME_MAX = 128
WEIGHT_MAX = 10000
NUM_RETRIES_MAX = 10
RING_SIZE_MIN, RING_SIZE_MAX = 1024, 1_048_576

# gRPC status codes by name and number, for retry_on (grpc/doc/statuscodes.md).
GRPC_STATUS_CODES: dict[str, int] = {c.name: c.value[0] for c in grpc.StatusCode}

_NAME_CHARS = re.compile(r"[A-Za-z0-9._-]+")
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
                   r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])")
_NUMERIC_HOST = re.compile(r"[0-9.]+")
# HTTP field names are tokens (RFC 9110 5.6.2); HTTP/2 requires them lower case.
_HEADER_TOKEN = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te",
                         "host"})
_CONTROL_CHARS = re.compile(r"[\x00\r\n]")


@dataclasses.dataclass(frozen=True, slots=True)
class _Context:
    """What rules may know beyond the message they judge. `clusters` is None when
    references are not checked (a resource validated on its own)."""

    clusters: frozenset[str] | None = None


Rule = Callable[[Message, str, _Context], Iterable[FieldError]]


# ---------------------------------------------------------------- public API


def validate_mesh(mesh: pb.MeshConfig, *, check_references: bool = True) -> list[FieldError]:
    """Every rule `mesh` breaks, each with its field path; empty when it is valid."""
    ctx = _Context(frozenset(c.name for c in mesh.clusters) if check_references else None)
    return _apply(MESH_RULES, mesh, "", ctx)


def check_mesh(mesh: pb.MeshConfig, *, check_references: bool = True, source: str = "") -> None:
    """Raises ConfigError carrying every error in `mesh`."""
    errors = validate_mesh(mesh, check_references=check_references)
    if errors:
        raise ConfigError(errors, source=source)


def validate_resource(resource: Message, path: str = "", clusters: Iterable[str] | None = None) -> list[FieldError]:
    """Errors in one Cluster, EndpointSet or RouteConfig. With `clusters`, the
    cluster names it refers to must be among them; without, references are not checked."""
    ctx = _Context(frozenset(clusters) if clusters is not None else None)
    rules = _RESOURCE_RULES.get(type(resource))
    if rules is None:
        raise TypeError(f"not a mesh resource: {type(resource).__name__}")
    return _apply(rules, resource, path, ctx)


def referenced_clusters(route_config: pb.RouteConfig) -> set[str]:
    """Names of the clusters a route config sends traffic to."""
    names: set[str] = set()
    for vhost in route_config.virtual_hosts:
        for route in vhost.routes:
            action = route.route
            if action.cluster:
                names.add(action.cluster)
            names.update(w.name for w in action.weighted_clusters)
    return names


# ---------------------------------------------------------------- machinery


def _apply(rules: tuple[Rule, ...], message: Message, path: str, ctx: _Context) -> list[FieldError]:
    errors: list[FieldError] = []
    for rule in rules:
        errors.extend(rule(message, path, ctx))
    return errors


def _each(field: str, rules: tuple[Rule, ...]) -> Rule:
    """A rule applying `rules` to every element of repeated message `field`."""

    def rule(message: Message, path: str, ctx: _Context) -> Iterator[FieldError]:
        for i, item in enumerate(getattr(message, field)):
            item_path = f"{path}.{field}[{i}]" if path else f"{field}[{i}]"
            for sub_rule in rules:
                yield from sub_rule(item, item_path, ctx)

    rule.__name__ = f"each_{field}"
    return rule


def _sub(field: str, rules: tuple[Rule, ...]) -> Rule:
    """A rule applying `rules` to singular message `field` when it is set."""

    def rule(message: Message, path: str, ctx: _Context) -> Iterator[FieldError]:
        if message.HasField(field):
            for sub_rule in rules:
                yield from sub_rule(getattr(message, field), _join(path, field), ctx)

    rule.__name__ = f"sub_{field}"
    return rule


def _join(path: str, field: str) -> str:
    return f"{path}.{field}" if path else field


# ---------------------------------------------------------------- shared checks


def _name_problem(name: str, what: str = "name") -> str | None:
    if not name:
        return f"{what} is required"
    if len(name) > NAME_MAX:
        return f"{what} is {len(name)} characters long; at most {NAME_MAX}"
    if not _NAME_CHARS.fullmatch(name):
        return f'{what} "{name}" has characters outside [A-Za-z0-9._-]'
    return None


def _duplicates(names: Iterable[str], path_of: Callable[[int], str], what: str) -> Iterator[FieldError]:
    """An error at each repeat of a name, pointing back at its first use."""
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        j = first.setdefault(name, i)
        if j != i and name:
            yield FieldError(path_of(i), f'duplicate {what} "{name}" (also at {path_of(j)})')


def _seconds(d) -> float:
    return d.seconds + d.nanos / 1e9


def _fmt(seconds: float) -> str:
    return f"{seconds:g}s"


def _duration(message: Message, field: str, path: str, limit: float) -> Iterator[FieldError]:
    """A set Duration must be positive and at most `limit` seconds."""
    if not message.HasField(field):
        return
    d = getattr(message, field)
    if not -1e9 < d.nanos < 1e9 or (d.seconds > 0 > d.nanos) or (d.seconds < 0 < d.nanos):
        yield FieldError(f"{path}.{field}", f"malformed duration (seconds={d.seconds}, nanos={d.nanos})")
        return
    s = _seconds(d)
    if s <= 0:
        yield FieldError(f"{path}.{field}", f"duration {_fmt(s)} must be positive")
    elif s > limit:
        yield FieldError(f"{path}.{field}", f"duration {_fmt(s)} is longer than the limit of {_fmt(limit)}")


def _in_range(message: Message, field: str, path: str, low: float, high: float, what: str = "") -> Iterator[FieldError]:
    """A set wrapper or scalar field must lie in [low, high]."""
    value = getattr(message, field)
    if hasattr(value, "value"):
        if not message.HasField(field):
            return
        value = value.value
    if not (low <= value <= high):  # also false for NaN
        yield FieldError(f"{path}.{field}", f"{value:g} is out of range {low:g}-{high:g}{what}")


def _enum(message: Message, field: str, path: str) -> Iterator[FieldError]:
    """An enum number the schema does not define (it may arrive as a bare number)."""
    enum = message.DESCRIPTOR.fields_by_name[field].enum_type
    value = getattr(message, field)
    if value not in enum.values_by_number:
        names = ", ".join(v.name for v in enum.values if v.number)
        yield FieldError(f"{path}.{field}", f"{value} is not a valid {enum.name} (valid: {names})")


def _regex_problem(pattern: str) -> str | None:
    try:
        re.compile(pattern)
    except (re.error, OverflowError, RecursionError, ValueError) as e:
        return f"regex {pattern!r} does not compile: {e}"
    return None


def _header_name_problem(name: str, *, allow_pseudo: bool = False) -> str | None:
    if not name:
        return "header name is required"
    if name != name.lower():
        return f'header name "{name}" must be lower case'
    token = name[1:] if allow_pseudo and name.startswith(":") else name
    if not _HEADER_TOKEN.fullmatch(token):
        return f'"{name}" is not a valid header name'
    return None


# ---------------------------------------------------------------- mesh-wide rules


def _unique_cluster_names(mesh: pb.MeshConfig, path: str, ctx: _Context) -> Iterator[FieldError]:
    yield from _duplicates((c.name for c in mesh.clusters), lambda i: f"clusters[{i}].name", "cluster name")


def _unique_route_config_names(mesh: pb.MeshConfig, path: str, ctx: _Context) -> Iterator[FieldError]:
    yield from _duplicates((r.name for r in mesh.routes), lambda i: f"routes[{i}].name", "route config name")


def _one_endpoint_set_per_cluster(mesh: pb.MeshConfig, path: str, ctx: _Context) -> Iterator[FieldError]:
    yield from _duplicates((s.cluster for s in mesh.endpoints), lambda i: f"endpoints[{i}].cluster",
                           "endpoint set for cluster")


# ---------------------------------------------------------------- cluster rules


def _cluster_name(c: pb.Cluster, path: str, ctx: _Context) -> Iterator[FieldError]:
    if problem := _name_problem(c.name):
        yield FieldError(_join(path, "name"), problem)


def _lb_policy(c: pb.Cluster, path: str, ctx: _Context) -> Iterator[FieldError]:
    yield from _enum(c, "lb_policy", path)


def _cluster_timeouts(c: pb.Cluster, path: str, ctx: _Context) -> Iterator[FieldError]:
    yield from _duration(c, "connect_timeout", path, 5 * MINUTE)


def _panic_threshold(c: pb.Cluster, path: str, ctx: _Context) -> Iterator[FieldError]:
    yield from _in_range(c, "panic_threshold_percent", path, 0, 100, " (a percentage)")


def _peak_ewma(p: pb.PeakEwma, path: str, ctx: _Context) -> Iterator[FieldError]:
    yield from _duration(p, "decay", path, HOUR)
    yield from _duration(p, "default_rtt", path, MINUTE)


def _least_request(p: pb.LeastRequest, path: str, ctx: _Context) -> Iterator[FieldError]:
    yield from _in_range(p, "active_request_bias", path, 0, 100)


def _ring_hash(r: pb.RingHash, path: str, ctx: _Context) -> Iterator[FieldError]:
    size = r.minimum_ring_size
    if size and not RING_SIZE_MIN <= size <= RING_SIZE_MAX:
        yield FieldError(f"{path}.minimum_ring_size",
                         f"{size} is out of range {RING_SIZE_MIN}-{RING_SIZE_MAX} (0 for the default)")


def _health_check(h: pb.HealthCheck, path: str, ctx: _Context) -> Iterator[FieldError]:
    yield from _duration(h, "interval", path, HOUR)
    yield from _duration(h, "timeout", path, HOUR)
    yield from _in_range(h, "jitter_fraction", path, 0, 1)
    interval = _seconds(h.interval) if h.HasField("interval") else 5.0
    timeout = _seconds(h.timeout) if h.HasField("timeout") else 1.0
    if 0 < interval < timeout:
        yield FieldError(f"{path}.timeout", f"timeout {_fmt(timeout)} must not exceed the interval {_fmt(interval)}")


def _outlier_detection(o: pb.OutlierDetection, path: str, ctx: _Context) -> Iterator[FieldError]:
    yield from _duration(o, "interval", path, HOUR)
    yield from _duration(o, "base_ejection_time", path, DAY)
    yield from _duration(o, "max_ejection_time", path, DAY)
    yield from _in_range(o, "max_ejection_percent", path, 0, 100, " (a percentage)")
    yield from _in_range(o, "failure_percentage_threshold", path, 0, 100, " (a percentage)")
    base = _seconds(o.base_ejection_time) if o.HasField("base_ejection_time") else 30.0
    most = _seconds(o.max_ejection_time) if o.HasField("max_ejection_time") else 300.0
    if 0 < most < base:
        yield FieldError(f"{path}.max_ejection_time",
                         f"max_ejection_time {_fmt(most)} is shorter than base_ejection_time {_fmt(base)}")
    for i, code in enumerate(o.failure_status_codes):
        if not 1 <= code <= 16:
            yield FieldError(f"{path}.failure_status_codes[{i}]", f"{code} is not a gRPC failure status code (1-16)")


def _circuit_breaker(b: pb.CircuitBreaker, path: str, ctx: _Context) -> Iterator[FieldError]:
    if b.HasField("max_requests") and b.max_requests.value == 0:
        yield FieldError(f"{path}.max_requests", "max_requests 0 would refuse every call; at least 1")


# ---------------------------------------------------------------- endpoint rules


def _set_cluster(s: pb.EndpointSet, path: str, ctx: _Context) -> Iterator[FieldError]:
    if problem := _name_problem(s.cluster, "cluster"):
        yield FieldError(_join(path, "cluster"), problem)
    elif ctx.clusters is not None and s.cluster not in ctx.clusters:
        yield FieldError(_join(path, "cluster"), f'cluster "{s.cluster}" does not exist')


def _address_problem(address: str) -> str | None:
    """Why `address` is not `host:port` (IPv6 in brackets, port 1-65535), or None."""
    host, sep, port = address.rpartition(":")
    if not address:
        return "address is required"
    if not sep or not host or not port:
        return f'"{address}" is not host:port'
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        return f'port "{port}" is out of range 1-65535'
    if host[0] == "[":
        return None if host[-1] == "]" and _is_ipv6(host[1:-1]) else f'"{host}" is not a valid IPv6 address'
    if ":" in host:
        return f'IPv6 hosts need brackets, e.g. "[{host}]:{port}"'
    if _NUMERIC_HOST.fullmatch(host):
        return None if _IPV4.fullmatch(host) else f'"{host}" is not a valid IPv4 address'
    if len(host) > 253 or not _HOSTNAME.fullmatch(host):
        return f'"{host}" is not a valid host name'
    return None


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _addresses(s: pb.EndpointSet, path: str, ctx: _Context) -> Iterator[FieldError]:
    first: dict[str, int] = {}
    for i, endpoint in enumerate(s.endpoints):
        address = endpoint.address
        if problem := _address_problem(address):
            yield FieldError(f"{_join(path, 'endpoints')}[{i}].address", problem)
            continue
        j = first.setdefault(address.lower(), i)
        if j != i:
            yield FieldError(f"{_join(path, 'endpoints')}[{i}].address",
                             f'duplicate address "{address}" (also at {_join(path, "endpoints")}[{j}])')


def _endpoint_weights(s: pb.EndpointSet, path: str, ctx: _Context) -> Iterator[FieldError]:
    for i, endpoint in enumerate(s.endpoints):
        if endpoint.HasField("weight") and not 1 <= endpoint.weight.value <= WEIGHT_MAX:
            yield FieldError(f"{_join(path, 'endpoints')}[{i}].weight",
                             f"weight {endpoint.weight.value} is out of range 1-{WEIGHT_MAX}")


_HEALTH_STATUSES = frozenset(pb.Endpoint.HealthStatus.values())


def _health_statuses(s: pb.EndpointSet, path: str, ctx: _Context) -> Iterator[FieldError]:
    for i, endpoint in enumerate(s.endpoints):
        if endpoint.health_status not in _HEALTH_STATUSES:
            yield from _enum(endpoint, "health_status", f"{_join(path, 'endpoints')}[{i}]")


# ---------------------------------------------------------------- route config rules


def _route_config_name(r: pb.RouteConfig, path: str, ctx: _Context) -> Iterator[FieldError]:
    if problem := _name_problem(r.name):
        yield FieldError(_join(path, "name"), problem)


def _unique_virtual_hosts(r: pb.RouteConfig, path: str, ctx: _Context) -> Iterator[FieldError]:
    vhosts = _join(path, "virtual_hosts")
    yield from _duplicates((v.name for v in r.virtual_hosts), lambda i: f"{vhosts}[{i}].name", "virtual host name")


def _unique_domains(r: pb.RouteConfig, path: str, ctx: _Context) -> Iterator[FieldError]:
    """Each domain selects one virtual host, so it may appear only once per route config."""
    first: dict[str, str] = {}
    vhosts = _join(path, "virtual_hosts")
    for i, vhost in enumerate(r.virtual_hosts):
        for j, domain in enumerate(vhost.domains):
            here = f"{vhosts}[{i}].domains[{j}]"
            there = first.setdefault(domain.lower(), here)
            if there != here:
                yield FieldError(here, f'domain "{domain}" is already served (at {there})')


def _vhost_name(v: pb.VirtualHost, path: str, ctx: _Context) -> Iterator[FieldError]:
    if problem := _name_problem(v.name):
        yield FieldError(f"{path}.name", problem)


def _domain_problem(domain: str) -> str | None:
    if domain == "*":
        return None
    host = domain[2:] if domain.startswith("*.") else domain[:-2] if domain.endswith(".*") else domain
    if "*" in host or not host:
        return f'domain "{domain}" is not exact, "*.suffix", "prefix.*" or "*"'
    if host.startswith("[") and host.endswith("]") and _is_ipv6(host[1:-1]):
        return None
    if ":" in host:
        return f'domain "{domain}" must not include a port (ports are ignored when matching)'
    if len(host) > 253 or not _HOSTNAME.fullmatch(host):
        return f'domain "{domain}" is not a valid host name'
    return None


def _domains(v: pb.VirtualHost, path: str, ctx: _Context) -> Iterator[FieldError]:
    if not v.domains:
        yield FieldError(f"{path}.domains", "at least one domain is required")
    for i, domain in enumerate(v.domains):
        if problem := _domain_problem(domain):
            yield FieldError(f"{path}.domains[{i}]", problem)


def _has_routes(v: pb.VirtualHost, path: str, ctx: _Context) -> Iterator[FieldError]:
    if not v.routes:
        yield FieldError(f"{path}.routes", "at least one route is required")


def _route_name(r: pb.Route, path: str, ctx: _Context) -> Iterator[FieldError]:
    # Optional, but it becomes a metrics label when set.
    if r.name and (problem := _name_problem(r.name)):
        yield FieldError(f"{path}.name", problem)


def _route_parts(r: pb.Route, path: str, ctx: _Context) -> Iterator[FieldError]:
    if not r.HasField("match"):
        yield FieldError(f"{path}.match", "match is required")
    if not r.HasField("route"):
        yield FieldError(f"{path}.route", "route (the action) is required")


# ---------------------------------------------------------------- match rules


def _path_specifier(m: pb.RouteMatch, path: str, ctx: _Context) -> Iterator[FieldError]:
    which = m.WhichOneof("path_specifier")
    if which is None:
        yield FieldError(path, "set exactly one of path, prefix, regex")
    elif which in ("path", "prefix") and not getattr(m, which).startswith("/"):
        yield FieldError(f"{path}.{which}", f'{which} "{getattr(m, which)}" must start with "/"')
    elif which == "regex" and (problem := _regex_problem(m.regex)):
        yield FieldError(f"{path}.regex", problem)


def _matcher_name(h: pb.HeaderMatcher, path: str, ctx: _Context) -> Iterator[FieldError]:
    if problem := _header_name_problem(h.name, allow_pseudo=True):
        yield FieldError(f"{path}.name", problem)
    elif h.name.endswith("-bin"):
        yield FieldError(f"{path}.name", f'header name "{h.name}" ends in "-bin"; binary headers are never matched')


def _matcher_specifier(h: pb.HeaderMatcher, path: str, ctx: _Context) -> Iterator[FieldError]:
    which = h.WhichOneof("header_match_specifier")
    if which is None:
        yield FieldError(path, "set exactly one of exact, prefix, suffix, regex, present")
    elif which == "regex" and (problem := _regex_problem(h.regex)):
        yield FieldError(f"{path}.regex", problem)


# ---------------------------------------------------------------- action rules


def _destination(a: pb.RouteAction, path: str, ctx: _Context) -> Iterator[FieldError]:
    if a.cluster and a.weighted_clusters:
        yield FieldError(path, "set exactly one of cluster and weighted_clusters (both are set)")
    elif not a.cluster and not a.weighted_clusters:
        yield FieldError(path, "set exactly one of cluster and weighted_clusters (neither is set)")
    elif a.cluster and ctx.clusters is not None and a.cluster not in ctx.clusters:
        yield FieldError(f"{path}.cluster", f'cluster "{a.cluster}" does not exist')


def _weighted_clusters(a: pb.RouteAction, path: str, ctx: _Context) -> Iterator[FieldError]:
    if not a.weighted_clusters:
        return
    wpath = f"{path}.weighted_clusters"
    for i, w in enumerate(a.weighted_clusters):
        if problem := _name_problem(w.name):
            yield FieldError(f"{wpath}[{i}].name", problem)
        elif ctx.clusters is not None and w.name not in ctx.clusters:
            yield FieldError(f"{wpath}[{i}].name", f'cluster "{w.name}" does not exist')
        if w.weight > WEIGHT_MAX:
            yield FieldError(f"{wpath}[{i}].weight", f"weight {w.weight} is out of range 0-{WEIGHT_MAX}")
    yield from _duplicates((w.name for w in a.weighted_clusters), lambda i: f"{wpath}[{i}].name", "cluster")
    if sum(w.weight for w in a.weighted_clusters) == 0:
        yield FieldError(wpath, "weights sum to 0")


def _action_timeout(a: pb.RouteAction, path: str, ctx: _Context) -> Iterator[FieldError]:
    yield from _duration(a, "timeout", path, DAY)


def _retry_policy(a: pb.RouteAction, path: str, ctx: _Context) -> Iterator[FieldError]:
    if not a.HasField("retry_policy"):
        return
    policy, rpath = a.retry_policy, f"{path}.retry_policy"
    for i, code in enumerate(policy.retry_on):
        if _status_code(code) in (None, 0):
            yield FieldError(f"{rpath}.retry_on[{i}]", f'"{code}" is not a retryable gRPC status (a name like '
                             f'UNAVAILABLE or a number 1-16)')
    yield from _in_range(policy, "num_retries", rpath, 0, NUM_RETRIES_MAX)
    yield from _duration(policy, "per_try_timeout", rpath, DAY)
    if policy.HasField("per_try_timeout") and a.HasField("timeout"):
        per_try, whole = _seconds(policy.per_try_timeout), _seconds(a.timeout)
        if per_try > whole > 0:
            yield FieldError(f"{rpath}.per_try_timeout",
                             f"per_try_timeout {_fmt(per_try)} exceeds the route's timeout {_fmt(whole)}")


def _status_code(text: str) -> int | None:
    if text.isascii() and text.isdigit():
        return int(text) if int(text) <= 16 else None
    return GRPC_STATUS_CODES.get(text)


def _headers_to_add(a: pb.RouteAction, path: str, ctx: _Context) -> Iterator[FieldError]:
    for i, header in enumerate(a.request_headers_to_add):
        hpath = f"{path}.request_headers_to_add[{i}]"
        if header.name.startswith(":"):
            yield FieldError(f"{hpath}.name", f'"{header.name}" is a pseudo-header; it cannot be added')
        elif problem := _header_name_problem(header.name):
            yield FieldError(f"{hpath}.name", problem)
        elif header.name in _HOP_BY_HOP:
            yield FieldError(f"{hpath}.name", f'"{header.name}" is a hop-by-hop header; it cannot be added')
        if _CONTROL_CHARS.search(header.value):
            yield FieldError(f"{hpath}.value", "value contains CR, LF or NUL")


def _headers_to_remove(a: pb.RouteAction, path: str, ctx: _Context) -> Iterator[FieldError]:
    for i, name in enumerate(a.request_headers_to_remove):
        if name.startswith(":"):
            yield FieldError(f"{path}.request_headers_to_remove[{i}]", f'"{name}" is a pseudo-header; it cannot be removed')
        elif problem := _header_name_problem(name):
            yield FieldError(f"{path}.request_headers_to_remove[{i}]", problem)


def _hash_policy(a: pb.RouteAction, path: str, ctx: _Context) -> Iterator[FieldError]:
    if a.HasField("hash_policy") and (problem := _header_name_problem(a.hash_policy.header)):
        yield FieldError(f"{path}.hash_policy.header", problem)


# ---------------------------------------------------------------- the tables

CLUSTER_RULES: tuple[Rule, ...] = (
    _cluster_name,
    _lb_policy,
    _cluster_timeouts,
    _panic_threshold,
    _sub("peak_ewma", (_peak_ewma,)),
    _sub("least_request", (_least_request,)),
    _sub("ring_hash", (_ring_hash,)),
    _sub("health_check", (_health_check,)),
    _sub("outlier_detection", (_outlier_detection,)),
    _sub("circuit_breaker", (_circuit_breaker,)),
)

ENDPOINT_SET_RULES: tuple[Rule, ...] = (_set_cluster, _addresses, _endpoint_weights, _health_statuses)

HEADER_MATCHER_RULES: tuple[Rule, ...] = (_matcher_name, _matcher_specifier)
MATCH_RULES: tuple[Rule, ...] = (_path_specifier, _each("headers", HEADER_MATCHER_RULES))
ACTION_RULES: tuple[Rule, ...] = (
    _destination, _weighted_clusters, _action_timeout, _retry_policy, _headers_to_add, _headers_to_remove,
    _hash_policy,
)
ROUTE_RULES: tuple[Rule, ...] = (_route_name, _route_parts, _sub("match", MATCH_RULES), _sub("route", ACTION_RULES))
VIRTUAL_HOST_RULES: tuple[Rule, ...] = (_vhost_name, _domains, _has_routes, _each("routes", ROUTE_RULES))
ROUTE_CONFIG_RULES: tuple[Rule, ...] = (
    _route_config_name, _unique_virtual_hosts, _unique_domains, _each("virtual_hosts", VIRTUAL_HOST_RULES),
)

MESH_RULES: tuple[Rule, ...] = (
    _unique_cluster_names,
    _one_endpoint_set_per_cluster,
    _unique_route_config_names,
    _each("clusters", CLUSTER_RULES),
    _each("endpoints", ENDPOINT_SET_RULES),
    _each("routes", ROUTE_CONFIG_RULES),
)

_RESOURCE_RULES: dict[type, tuple[Rule, ...]] = {
    pb.Cluster: CLUSTER_RULES,
    pb.EndpointSet: ENDPOINT_SET_RULES,
    pb.RouteConfig: ROUTE_CONFIG_RULES,
}
