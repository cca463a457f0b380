"""Validation rules for route configs: names and domains of virtual hosts, routes,
path and header matchers, and route actions (destinations, weights, timeouts, retries,
header edits, hashing).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from meshapi.v1 import resources_pb2 as pb
from meshgrpc.config.regex import regex_problem
from meshgrpc.config.rules_common import (
    DAY, HOSTNAME, WEIGHT_MAX, Context, duplicates, duration, is_ipv6, join,
    missing_cluster, name_problem,
)
from meshgrpc.errors import FieldError



# HTTP field names are tokens (RFC 9110 5.6.2); HTTP/2 requires them lower case.
_HEADER_TOKEN = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te",
                         "host"})
_CONTROL_CHARS = re.compile(r"[\x00\r\n]")


# ---------------------------------------------------------------- mesh-wide rules


def unique_route_config_names(mesh: pb.MeshConfig, path: str, ctx: Context) -> Iterator[FieldError]:
    yield from duplicates((r.name for r in mesh.routes), lambda i: f"routes[{i}].name", "route config name")


# ---------------------------------------------------------------- shared route checks


def header_name_problem(name: str, *, allow_pseudo: bool = False) -> str | None:
    if not name:
        return "header name is required"
    if name != name.lower():
        return f'header name "{name}" must be lower case'
    token = name[1:] if allow_pseudo and name.startswith(":") else name
    if not _HEADER_TOKEN.fullmatch(token):
        return f'"{name}" is not a valid header name'
    return None


# ---------------------------------------------------------------- route config rules


def route_config_name(r: pb.RouteConfig, path: str, ctx: Context) -> Iterator[FieldError]:
    if problem := name_problem(r.name):
        yield FieldError(join(path, "name"), problem)


def unique_virtual_hosts(r: pb.RouteConfig, path: str, ctx: Context) -> Iterator[FieldError]:
    vhosts = join(path, "virtual_hosts")
    yield from duplicates((v.name for v in r.virtual_hosts), lambda i: f"{vhosts}[{i}].name", "virtual host name")


def unique_domains(r: pb.RouteConfig, path: str, ctx: Context) -> Iterator[FieldError]:
    """Each domain selects one virtual host, so it may appear only once per route config."""
    first: dict[str, str] = {}
    vhosts = join(path, "virtual_hosts")
    for i, vhost in enumerate(r.virtual_hosts):
        for j, domain in enumerate(vhost.domains):
            here = f"{vhosts}[{i}].domains[{j}]"
            there = first.setdefault(domain.lower(), here)
            if there != here:
                yield FieldError(here, f'domain "{domain}" is already served (at {there})')


def vhost_name(v: pb.VirtualHost, path: str, ctx: Context) -> Iterator[FieldError]:
    if problem := name_problem(v.name):
        yield FieldError(f"{path}.name", problem)


def _domain_problem(domain: str) -> str | None:
    if domain == "*":
        return None
    host = domain[2:] if domain.startswith("*.") else domain[:-2] if domain.endswith(".*") else domain
    if "*" in host or not host:
        return f'domain "{domain}" is not exact, "*.suffix", "prefix.*" or "*"'
    if host.startswith("[") and host.endswith("]") and is_ipv6(host[1:-1]):
        return None
    if ":" in host:
        return f'domain "{domain}" must not include a port (ports are ignored when matching)'
    if len(host) > 253 or not HOSTNAME.fullmatch(host):
        return f'domain "{domain}" is not a valid host name'
    return None


def domains(v: pb.VirtualHost, path: str, ctx: Context) -> Iterator[FieldError]:
    if not v.domains:
        yield FieldError(f"{path}.domains", "at least one domain is required")
    for i, domain in enumerate(v.domains):
        if problem := _domain_problem(domain):
            yield FieldError(f"{path}.domains[{i}]", problem)


def has_routes(v: pb.VirtualHost, path: str, ctx: Context) -> Iterator[FieldError]:
    if not v.routes:
        yield FieldError(f"{path}.routes", "at least one route is required")


def route_name(r: pb.Route, path: str, ctx: Context) -> Iterator[FieldError]:
    # Optional, but it becomes a metrics label when set.
    if r.name and (problem := name_problem(r.name)):
        yield FieldError(f"{path}.name", problem)


def route_parts(r: pb.Route, path: str, ctx: Context) -> Iterator[FieldError]:
    if not r.HasField("match"):
        yield FieldError(f"{path}.match", "match is required")
    if not r.HasField("route"):
        yield FieldError(f"{path}.route", "route (the action) is required")


# ---------------------------------------------------------------- match rules


def path_specifier(m: pb.RouteMatch, path: str, ctx: Context) -> Iterator[FieldError]:
    which = m.WhichOneof("path_specifier")
    if which is None:
        yield FieldError(path, "set exactly one of path, prefix, regex")
    elif which in ("path", "prefix") and not getattr(m, which).startswith("/"):
        yield FieldError(f"{path}.{which}", f'{which} "{getattr(m, which)}" must start with "/"')
    elif which == "regex" and (problem := regex_problem(m.regex)):
        yield FieldError(f"{path}.regex", problem)


def matcher_name(h: pb.HeaderMatcher, path: str, ctx: Context) -> Iterator[FieldError]:
    if problem := header_name_problem(h.name, allow_pseudo=True):
        yield FieldError(f"{path}.name", problem)
    elif h.name.endswith("-bin"):
        yield FieldError(f"{path}.name", f'header name "{h.name}" ends in "-bin"; binary headers are never matched')


def matcher_specifier(h: pb.HeaderMatcher, path: str, ctx: Context) -> Iterator[FieldError]:
    which = h.WhichOneof("header_match_specifier")
    if which is None:
        yield FieldError(path, "set exactly one of exact, prefix, suffix, regex, present")
    elif which == "regex" and (problem := regex_problem(h.regex)):
        yield FieldError(f"{path}.regex", problem)


# ---------------------------------------------------------------- action rules


def destination(a: pb.RouteAction, path: str, ctx: Context) -> Iterator[FieldError]:
    if a.cluster and a.weighted_clusters:
        yield FieldError(path, "set exactly one of cluster and weighted_clusters (both are set)")
    elif not a.cluster and not a.weighted_clusters:
        yield FieldError(path, "set exactly one of cluster and weighted_clusters (neither is set)")
    elif a.cluster and (problem := missing_cluster(a.cluster, ctx)):
        yield FieldError(f"{path}.cluster", problem)


def weighted_clusters(a: pb.RouteAction, path: str, ctx: Context) -> Iterator[FieldError]:
    if not a.weighted_clusters:
        return
    wpath = f"{path}.weighted_clusters"
    for i, w in enumerate(a.weighted_clusters):
        if problem := name_problem(w.name):
            yield FieldError(f"{wpath}[{i}].name", problem)
        elif problem := missing_cluster(w.name, ctx):
            yield FieldError(f"{wpath}[{i}].name", problem)
        if w.weight > WEIGHT_MAX:
            yield FieldError(f"{wpath}[{i}].weight", f"weight {w.weight} is out of range 0-{WEIGHT_MAX}")
    yield from duplicates((w.name for w in a.weighted_clusters), lambda i: f"{wpath}[{i}].name", "cluster")
    if sum(w.weight for w in a.weighted_clusters) == 0:
        yield FieldError(wpath, "weights sum to 0")


def action_timeout(a: pb.RouteAction, path: str, ctx: Context) -> Iterator[FieldError]:
    yield from duration(a, "timeout", path, DAY)


def headers_to_add(a: pb.RouteAction, path: str, ctx: Context) -> Iterator[FieldError]:
    for i, header in enumerate(a.request_headers_to_add):
        hpath = f"{path}.request_headers_to_add[{i}]"
        if header.name.startswith(":"):
            yield FieldError(f"{hpath}.name", f'"{header.name}" is a pseudo-header; it cannot be added')
        elif problem := header_name_problem(header.name):
            yield FieldError(f"{hpath}.name", problem)
        elif header.name in _HOP_BY_HOP:
            yield FieldError(f"{hpath}.name", f'"{header.name}" is a hop-by-hop header; it cannot be added')
        if _CONTROL_CHARS.search(header.value):
            yield FieldError(f"{hpath}.value", "value contains CR, LF or NUL")


def headers_to_remove(a: pb.RouteAction, path: str, ctx: Context) -> Iterator[FieldError]:
    for i, name in enumerate(a.request_headers_to_remove):
        if name.startswith(":"):
            yield FieldError(f"{path}.request_headers_to_remove[{i}]", f'"{name}" is a pseudo-header; it cannot be removed')
        elif problem := header_name_problem(name):
            yield FieldError(f"{path}.request_headers_to_remove[{i}]", problem)


def hash_policy(a: pb.RouteAction, path: str, ctx: Context) -> Iterator[FieldError]:
    if a.HasField("hash_policy") and (problem := header_name_problem(a.hash_policy.header)):
        yield FieldError(f"{path}.hash_policy.header", problem)
