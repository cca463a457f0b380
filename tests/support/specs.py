"""Building the proxy's routing table and cluster set from protobuf config in tests,
through the same spec builders the proxy's configurator uses."""

from __future__ import annotations

from meshapi.v1 import resources_pb2
from meshgrpc.config import specs
from meshgrpc.proxy.cluster import ClusterSet
from meshgrpc.proxy.router import RouteTable


def cluster_set_of(clusters: dict[str, resources_pb2.Cluster], endpoint_sets: dict[str, resources_pb2.EndpointSet],
                   previous: ClusterSet | None = None, **kw) -> ClusterSet:
    return ClusterSet.build({n: specs.cluster_spec(c) for n, c in clusters.items()},
                            {n: specs.endpoint_specs(s) for n, s in endpoint_sets.items()}, previous, **kw)


def route_table_of(route_config: resources_pb2.RouteConfig, **kw) -> RouteTable:
    return RouteTable.compile(specs.route_config_spec(route_config), **kw)
