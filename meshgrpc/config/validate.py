"""Semantic validation of mesh config: the one validator both the control plane
(on every apply, file edit and registration) and the proxy (on every update it
receives) run.

Structure is the loader's job (loader.py, structure.py); this module judges meaning
through rule tables. Each rule is a small generator `rule(message, path, ctx) ->
FieldErrors` (rules_clusters.py for clusters and endpoint sets, rules_routes.py for
route configs, rules_listeners.py for listeners, shared helpers in rules_common.py), gathered here in per-message
tables, so every broken rule is reported at once with its full field path, e.g.
`routes[0].virtual_hosts[0].routes[1].route.weighted_clusters: weights sum to 0`.

It runs on every registration, so endpoint rules loop over a whole set inside one
call and build a path string only when they have an error to report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from google.protobuf.message import Message

from meshapi.v1 import resources_pb2 as pb
from meshgrpc.config import (rules_authz as ra, rules_clusters as rc, rules_listeners as rl, rules_resilience as rs,
                             rules_routes as rr)
from meshgrpc.config.rules_unsupported import unsupported_fields
from meshgrpc.config.rules_common import Context, Rule, join
from meshgrpc.errors import ConfigError, FieldError



# ---------------------------------------------------------------- public API


def validate_mesh(mesh: pb.MeshConfig, *, check_references: bool = True,
                  first: Mapping[str, int] | None = None) -> list[FieldError]:
    """Every rule `mesh` breaks, each with its field path; empty when it is valid.

    `first` (list field -> count, e.g. {"endpoints": 1}) judges only the first
    entries of each resource list by the per-resource rules, for a merge that
    adds or replaces resources without removing any: the rest were valid when
    committed, and what a per-resource rule may know of the mesh (its cluster and
    route config names, Context) only grows in a merge, so they still are. The
    mesh-wide rules (unique names, one endpoint set per cluster) judge every
    entry. An apply of one endpoint set to a mesh of 100,000 endpoints then
    checks its own addresses, not all of them."""
    ctx = Context(frozenset(c.name for c in mesh.clusters), frozenset(r.name for r in mesh.routes), first) \
        if check_references else Context(first=first)
    return _apply(MESH_RULES, mesh, "", ctx)


def check_mesh(mesh: pb.MeshConfig, *, check_references: bool = True, source: str = "",
               first: Mapping[str, int] | None = None) -> None:
    """Raises ConfigError carrying every error in `mesh` (validate_mesh)."""
    errors = validate_mesh(mesh, check_references=check_references, first=first)
    if errors:
        raise ConfigError(errors, source=source)


def validate_resource(resource: Message, path: str = "", clusters: Iterable[str] | None = None,
                      route_configs: Iterable[str] | None = None) -> list[FieldError]:
    """Errors in one Cluster, EndpointSet, RouteConfig or Listener. With `clusters`
    (`route_configs`), the cluster (route config) names it refers to must be among
    them; without, those references are not checked."""
    ctx = Context(frozenset(clusters) if clusters is not None else None,
                  frozenset(route_configs) if route_configs is not None else None)
    rules = _RESOURCE_RULES.get(type(resource))
    if rules is None:
        raise TypeError(f"not a mesh resource: {type(resource).__name__}")
    return _apply(rules, resource, path, ctx)


def referenced_clusters(route_config: pb.RouteConfig) -> set[str]:
    """Names of the clusters a route config sends traffic to, mirrored copies included."""
    names: set[str] = set()
    for vhost in route_config.virtual_hosts:
        for route in vhost.routes:
            action = route.route
            if action.cluster:
                names.add(action.cluster)
            names.update(w.name for w in action.weighted_clusters)
            if action.HasField("mirror") and action.mirror.cluster:
                names.add(action.mirror.cluster)
    return names


# ---------------------------------------------------------------- machinery


def _apply(rules: tuple[Rule, ...], message: Message, path: str, ctx: Context) -> list[FieldError]:
    errors: list[FieldError] = []
    for rule in rules:
        errors.extend(rule(message, path, ctx))
    return errors


def _each(field: str, rules: tuple[Rule, ...], limit: Callable[[Context], int | None] = lambda ctx: None) -> Rule:
    """A rule applying `rules` to every element of repeated message `field` (the
    first `limit(ctx)` only, when that is not None)."""

    def rule(message: Message, path: str, ctx: Context) -> Iterator[FieldError]:
        items = getattr(message, field)
        count = limit(ctx)
        for i, item in enumerate(items if count is None else items[:count]):
            item_path = f"{join(path, field)}[{i}]"
            for sub_rule in rules:
                yield from sub_rule(item, item_path, ctx)

    rule.__name__ = f"each_{field}"
    return rule


def _resources(field: str, rules: tuple[Rule, ...]) -> Rule:
    """`_each` for one of the mesh's resource lists: only its first
    `ctx.first[field]` entries when ctx.first is given (validate_mesh)."""
    return _each(field, rules, lambda ctx: None if ctx.first is None else ctx.first.get(field, 0))


def _sub(field: str, rules: tuple[Rule, ...]) -> Rule:
    """A rule applying `rules` to singular message `field` when it is set."""

    def rule(message: Message, path: str, ctx: Context) -> Iterator[FieldError]:
        if message.HasField(field):
            for sub_rule in rules:
                yield from sub_rule(getattr(message, field), join(path, field), ctx)

    rule.__name__ = f"sub_{field}"
    return rule


# ---------------------------------------------------------------- the tables

CLUSTER_RULES: tuple[Rule, ...] = (
    rc.cluster_name,
    rc.lb_policy,
    rc.cluster_timeouts,
    rc.panic_threshold,
    _sub("peak_ewma", (rc.peak_ewma,)),
    _sub("least_request", (rc.least_request,)),
    _sub("ring_hash", (rc.ring_hash,)),
    _sub("health_check", (rc.health_check,)),
    _sub("outlier_detection", (rc.outlier_detection,)),
    _sub("circuit_breaker", (rc.circuit_breaker,)),
    _sub("retry_budget", (rc.retry_budget,)),
    _sub("weighted_round_robin", (rc.weighted_round_robin,)),
    _sub("prequal", (rc.prequal,)),
    _sub("out_of_band_load_reports", (rc.out_of_band_load_reports,)),
    _sub("failure_penalty", (rc.failure_penalty,)),
    _sub("transport", (rc.transport,)),
    rc.checks_over_mutual_tls,
)

ENDPOINT_SET_RULES: tuple[Rule, ...] = (rc.set_cluster, rc.addresses, rc.endpoint_weights, rc.health_statuses)

HEADER_MATCHER_RULES: tuple[Rule, ...] = (rr.matcher_name, rr.matcher_specifier)
MATCH_RULES: tuple[Rule, ...] = (rr.path_specifier, _each("headers", HEADER_MATCHER_RULES))
ACTION_RULES: tuple[Rule, ...] = (
    rr.destination, rr.weighted_clusters, rr.action_timeout, rr.headers_to_add, rr.headers_to_remove,
    rr.hash_policy, rs.retry_policy, rs.hedge_policy, rs.idle_timeout, rs.retry_buffer_limit, rs.rate_limit,
    rs.fault, rs.mirror,
)
ROUTE_RULES: tuple[Rule, ...] = (rr.route_name, rr.route_parts, _sub("match", MATCH_RULES), _sub("route", ACTION_RULES))
VIRTUAL_HOST_RULES: tuple[Rule, ...] = (rr.vhost_name, rr.domains, rr.has_routes, _each("routes", ROUTE_RULES))
ROUTE_CONFIG_RULES: tuple[Rule, ...] = (
    rr.route_config_name, rr.unique_virtual_hosts, rr.unique_domains, _each("virtual_hosts", VIRTUAL_HOST_RULES),
)

LISTENER_RULES: tuple[Rule, ...] = (rl.listener_name, rl.listener_route_config)

AUTHZ_RULE_RULES: tuple[Rule, ...] = (ra.rule_from, ra.rule_to, _each("when", HEADER_MATCHER_RULES))
AUTHZ_POLICY_RULES: tuple[Rule, ...] = (
    ra.policy_name, ra.policy_service, ra.policy_action, ra.policy_rules, _each("rules", AUTHZ_RULE_RULES),
)

MESH_RULES: tuple[Rule, ...] = (
    rc.unique_cluster_names,
    rc.one_endpoint_set_per_cluster,
    rr.unique_route_config_names,
    rl.unique_listener_names,
    ra.unique_policy_names,
    _resources("clusters", CLUSTER_RULES),
    _resources("endpoints", ENDPOINT_SET_RULES),
    _resources("routes", ROUTE_CONFIG_RULES),
    _resources("listeners", LISTENER_RULES),
    _resources("authorization_policies", AUTHZ_POLICY_RULES),
    unsupported_fields,
)

_RESOURCE_RULES: dict[type, tuple[Rule, ...]] = {
    pb.Cluster: CLUSTER_RULES + (unsupported_fields,),
    pb.EndpointSet: ENDPOINT_SET_RULES,
    pb.RouteConfig: ROUTE_CONFIG_RULES + (unsupported_fields,),
    pb.Listener: LISTENER_RULES,
    pb.AuthorizationPolicy: AUTHZ_POLICY_RULES,
}
