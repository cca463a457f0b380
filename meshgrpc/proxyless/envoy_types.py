"""The Envoy xDS v3 resource types gRPC clients subscribe to (gRFC A27), their
message classes (from the xds-protos package) and how `meshgrpc status` names them.

A client resolves `xds:///NAME` through Listener NAME, whose HttpConnectionManager
names a RouteConfiguration, whose routes name Clusters, each of whose endpoints
come in a ClusterLoadAssignment named like the cluster.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2

LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"
RDS = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

ENVOY_TYPES = (LDS, RDS, CDS, EDS)
SHORT_NAME = {LDS: "LDS", RDS: "RDS", CDS: "CDS", EDS: "EDS"}
MESSAGE_CLASS = {
    LDS: listener_pb2.Listener,
    RDS: route_pb2.RouteConfiguration,
    CDS: cluster_pb2.Cluster,
    EDS: endpoint_pb2.ClusterLoadAssignment,
}


def ads_source() -> config_source_pb2.ConfigSource:
    """"Fetch this over the same ADS stream": how a listener names its route config
    and a cluster its endpoints (gRPC accepts `ads` or `self` here, gRFC A27)."""
    return config_source_pb2.ConfigSource(ads={}, resource_api_version=config_source_pb2.V3)
