"""The inbound side of a sidecar (`meshgrpc proxy --inbound ADDR --app ADDR`): calls
from other proxies, over mutual TLS, relayed to the local application over h2c.

It is the outbound relay, not a copy of it (Istio's inbound shape): a second Relay
whose state is fixed at start, one catch-all route to one cluster, `app`, holding
the application's address. So an inbound call has the same path as an outbound
one (request head, breakers, deadline from grpc-timeout, flow control, trailers),
with no routing choice and no retries beyond the transparent ones for streams the
application never received: the caller's own proxy already retries, and retrying
twice multiplies load (Envoy's inbound listeners carry no retry policy either).

What the inbound relay adds is authorization (`InboundAuthorization`): each call
is judged once its headers are in, before it is routed, by the service's compiled
AuthorizationPolicies (meshgrpc/authz/authorizer.py) against the caller's SPIFFE ID
read once at its connection's handshake. A refused call is answered trailers-only
PERMISSION_DENIED naming the policy and never reaches the application. Decisions
are counted by the Decision objects the authorizer built at compile time (a dict
increment per call), and turned into labelled counts only when scraped.
"""

from __future__ import annotations

import collections
import logging
import random
from collections.abc import Iterable

from meshapi.v1 import resources_pb2 as pb
from meshgrpc.authz import authorizer
from meshgrpc.config import specs
from meshgrpc.config.specs import AuthorizationPolicySpec
from meshgrpc.config.validate import validate_mesh
from meshgrpc.errors import ConfigError
from meshgrpc.proxy.cluster import ClusterSet
from meshgrpc.proxy.router import RouteTable
from meshgrpc.proxy.state import ProxyState

log = logging.getLogger(__name__)

APP_CLUSTER = "app"
INBOUND_ROUTE = "inbound"
# Would-deny calls of a dry-run policy are logged at the first and then every this many.
WOULD_DENY_LOG_EVERY = 1000


def app_state(app_address: str, rng: random.Random | None = None) -> ProxyState:
    """The inbound relay's fixed state: every call to the cluster `app` at `app_address`.
    Raises ConfigError (naming the address) when it is not host:port."""
    mesh = pb.MeshConfig(
        clusters=[pb.Cluster(name=APP_CLUSTER, lb_policy=pb.Cluster.ROUND_ROBIN)],
        endpoints=[pb.EndpointSet(cluster=APP_CLUSTER, endpoints=[pb.Endpoint(address=app_address)])],
        routes=[pb.RouteConfig(name=INBOUND_ROUTE, virtual_hosts=[pb.VirtualHost(
            name=APP_CLUSTER, domains=["*"], routes=[pb.Route(
                name=INBOUND_ROUTE, match=pb.RouteMatch(prefix="/"), route=pb.RouteAction(cluster=APP_CLUSTER))])])],
    )
    errors = validate_mesh(mesh)
    if errors:
        raise ConfigError(errors)
    clusters = ClusterSet.build({APP_CLUSTER: specs.cluster_spec(mesh.clusters[0])},
                                {APP_CLUSTER: specs.endpoint_specs(mesh.endpoints[0])}, rng=rng)
    routes = RouteTable.compile(specs.route_config_spec(mesh.routes[0]), rng=rng)
    return ProxyState(routes=routes, clusters=clusters, versions={})


class InboundAuthorization:
    """The service's policies, compiled, swapped whole on config change, and what
    they decided. `judge` runs on the event loop thread once per inbound call."""

    __slots__ = ("service", "current", "_counts", "_totals", "_would_deny_seen")

    def __init__(self, service: str) -> None:
        self.service = service
        self.current = authorizer.compile((), service)  # no policies: every call passes (Istio's default)
        self._counts: dict[authorizer.Decision, int] = {}  # decisions of `current`
        self._totals: collections.Counter = collections.Counter()  # (policy, decision) of replaced ones
        self._would_deny_seen: collections.Counter = collections.Counter()

    def update(self, policies: Iterable[AuthorizationPolicySpec]) -> None:
        """Compile the mesh's policies for this service (others' are ignored) and swap them in."""
        compiled = authorizer.compile(policies, self.service)
        self._totals.update(self._labelled())
        self.current, self._counts = compiled, {}
        log.info("authorization for %s: %s", self.service,
                 ", ".join(compiled.policies) if compiled.policies else "no policies (every call passes)")

    def judge(self, identity: str, path: bytes, headers) -> authorizer.Decision:
        decision = self.current.authorize(identity, path, headers)
        counts = self._counts
        counts[decision] = counts.get(decision, 0) + 1
        if decision.would_deny:
            self._log_would_deny(decision, identity, path)
        return decision

    def _log_would_deny(self, decision: authorizer.Decision, identity: str, path: bytes) -> None:
        seen = self._would_deny_seen[decision.would_deny]
        self._would_deny_seen[decision.would_deny] = seen + 1
        if seen % WOULD_DENY_LOG_EVERY == 0:
            log.info("dry-run authorization policy %s would deny %s calling %s (%d so far)", decision.would_deny,
                     identity or "a caller without a SPIFFE ID", path.decode("utf-8", "replace"), seen + 1)

    def decisions(self) -> dict[tuple[str, str], int]:
        """Calls by (policy, decision): decision is allow, deny or would_deny; policy ""
        for calls no policy decided (the service has none that applies)."""
        return dict(self._totals + collections.Counter(self._labelled()))

    def _labelled(self) -> collections.Counter:
        out: collections.Counter = collections.Counter()
        for decision, n in self._counts.items():
            out[(decision.policy_name, "allow" if decision.allowed else "deny")] += n
            if decision.would_deny:
                out[(decision.would_deny, "would_deny")] += n
        return out

    def describe(self) -> dict:
        """For /config_dump: the policies in force and what they decided."""
        return {"service": self.service, "policies": list(self.current.policies),
                "decisions": [{"policy": p, "decision": d, "calls": n} for (p, d), n in sorted(self.decisions().items())]}

    def __repr__(self) -> str:
        return f"InboundAuthorization({self.current!r})"


def denial_message(decision: authorizer.Decision, identity: str, path: bytes) -> str:
    """The grpc-message of a refused call: who, what, and the policy that refused it
    (for a call no ALLOW policy matched: every ALLOW policy, comma-separated)."""
    who = identity or "a caller without a SPIFFE ID"
    return f"{who} may not call {path.decode('utf-8', 'replace')}: denied by authorization policy " \
           f"{decision.policy_name}"
