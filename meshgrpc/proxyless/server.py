"""Envoy's Aggregated Discovery Service (envoy.service.discovery.v3, state of the
world) for proxyless gRPC clients, on the control plane's port beside meshgrpc's
own discovery service, serving the translation of the same snapshots.

The stream is meshgrpc's discovery session (xds/session.py) with the Envoy
`DiscoveryProtocol`: per-type versions and ACK/NACK with the client's error_detail kept;
resources requested by name, an empty list meaning none (gRPC never asks for a
wildcard); every new stream sent the current state (a client that reconnects
re-requests everything and waits for answers); each response complete for the
names subscribed; make-before-break as on the sidecars' stream: clusters and
endpoints (and listeners) go before the routes that use them, and a cluster the
held routes still use is kept until the new routes are answered.

Status adds, per node, what its resources ask that gRPC cannot do (gaps.py);
each such line is also logged the first time it is sent to a node.
"""

from __future__ import annotations

import importlib
import logging
import weakref
from collections.abc import Callable

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2 as envoy_discovery_pb2

from meshapi.v1 import management_pb2
from meshgrpc.proxyless.envoy_types import CDS, EDS, ENVOY_TYPES, LDS, RDS
from meshgrpc.proxyless.snapshot import ENVOY_RESPONSE, EnvoySnapshot, TranslatedCache, translate
from meshgrpc.xds.cache import SnapshotCache
from meshgrpc.xds.ordering import ResponsePlan
from meshgrpc.xds.protocol import DiscoveryProtocol, Layout, NodeInfo
from meshgrpc.xds.scope import ScopedViews, Visible
from meshgrpc.xds.server import DiscoveryServer
from meshgrpc.xds.session import Session
from meshgrpc.xds.snapshot import Snapshot

log = logging.getLogger(__name__)

SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
METHOD = "StreamAggregatedResources"


def node_info(node: base_pb2.Node) -> NodeInfo:
    """The Node of an Envoy stream; its user agent is the client's kind and version
    (gRPC sends e.g. user_agent_name "gRPC Python", user_agent_version "1.85.3")."""
    client = " ".join(p for p in (node.user_agent_name, node.user_agent_version) if p) or "unknown xDS client"
    return NodeInfo(node.id, node.locality.zone, client)


ENVOY = DiscoveryProtocol(
    type_urls=ENVOY_TYPES,
    layout=Layout(first=(CDS, EDS, LDS), routes=RDS, referenced=frozenset({CDS, EDS})),
    response=ENVOY_RESPONSE,
    request_class=envoy_discovery_pb2.DiscoveryRequest,
    empty_is_wildcard=False,
    resume=False,
    node_info=node_info,
)


def envoy_names(v: Visible) -> dict[str, frozenset[str]]:
    """What a workload's proxyless stream may carry: the listeners on its route
    configs, those route configs, and the clusters (and their endpoints) they reach."""
    return {LDS: v.listeners, RDS: v.routes, CDS: v.clusters, EDS: v.clusters}


class AdsServer(DiscoveryServer):
    """Serves the Envoy translation of `cache` to every connected gRPC client."""

    def __init__(self, cache: SnapshotCache,
                 translator: Callable[[Snapshot, EnvoySnapshot | None], EnvoySnapshot] = translate,
                 **kwargs) -> None:
        views = ScopedViews(lambda: cache.current, envoy_names, ENVOY_RESPONSE)
        super().__init__(TranslatedCache(cache, translator), protocol=ENVOY, service=SERVICE, method=METHOD,
                         delta_method=None, views=views, **kwargs)
        # Gap lines already logged per stream; an entry goes with its session.
        self._logged: weakref.WeakKeyDictionary[Session, set[str]] = weakref.WeakKeyDictionary()

    def on_sent(self, session: Session, plan: ResponsePlan, size: int) -> None:
        super().on_sent(session, plan, size)
        snapshot = self.cache.current
        if snapshot is None:
            return
        logged = self._logged.setdefault(session, set())
        for line in snapshot.gaps({plan.type_url: plan.resources.keys()}):
            if line not in logged:
                logged.add(line)
                log.warning("proxyless node %r cannot get: %s", session.node.id, line)

    def proxy_statuses(self) -> list[management_pb2.ProxyStatus]:
        snapshot = self.cache.current
        statuses = []
        for session in self.sessions():
            status = session.status()
            if snapshot is not None:
                status.unsupported.extend(snapshot.gaps(_subscriptions(session)))
            statuses.append(status)
        return statuses


def _subscriptions(session: Session) -> dict[str, frozenset[str] | None]:
    return {t: s.names for t, s in session.state.types.items() if s.subscribed}


def load_translator(spec: str) -> Callable[[Snapshot, EnvoySnapshot | None], EnvoySnapshot]:
    """`translate`, or the function "MODULE:FUNCTION" names (a test-only hook)."""
    if not spec:
        return translate
    module, _, function = spec.partition(":")
    return getattr(importlib.import_module(module), function)
