"""Proxyless gRPC clients: the control plane serves grpcio's (C-core's) xDS client
directly, so an application dialing `xds:///NAME` routes, splits, balances and
retries by itself, with no proxy hop.

- envoy_types.py: the four Envoy xDS v3 types and their message classes;
- translate_routes.py, translate_clusters.py: pure translation from the mesh's
  typed specs to Envoy resources, each with what it could not express (`Gaps`);
- snapshot.py: an Envoy snapshot per mesh snapshot, translated once per version;
- server.py: envoy.service.discovery.v3 ADS on the control plane's port;
- bootstrap.py: the GRPC_XDS_BOOTSTRAP file (`meshgrpc bootstrap`);
- status.py: how `meshgrpc status` shows proxyless clients.
"""
