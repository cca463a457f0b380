"""Test-only translations for `meshgrpc control-plane --proxyless-translator`: ways
to send proxyless clients config they reject, which the real translation never does."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2

from meshgrpc.proxyless.envoy_types import CDS, ENVOY_TYPES
from meshgrpc.proxyless.snapshot import EnvoySnapshot, translate, type_resources
from meshgrpc.xds.snapshot import Snapshot


def ring_hash_as_maglev(snapshot: Snapshot, previous: EnvoySnapshot | None = None) -> EnvoySnapshot:
    """The real translation, except that RING_HASH clusters go out as MAGLEV, a
    policy gRPC does not have: it NACKs the whole Cluster response (as a gRPC
    too old for a policy would)."""
    envoy = translate(snapshot)
    clusters = envoy[CDS]
    built = {}
    for name, packed in clusters.resources.items():
        message = packed.message
        if message.lb_policy == cluster_pb2.Cluster.RING_HASH:
            message = cluster_pb2.Cluster()
            message.CopyFrom(packed.message)
            message.lb_policy = cluster_pb2.Cluster.MAGLEV
        built[name] = (message, [], packed.refs)
    by_type = {t: envoy[t] for t in ENVOY_TYPES}
    by_type[CDS] = type_resources(CDS, clusters.version, built)
    return EnvoySnapshot(by_type, {})
